"""TritonProcess: the one wrapper over the `tritonserver` subprocess; nothing else spawns it.

`tritonserver` runs under a small guard process (guard.py) in a session of its own, with its
output appended to a log file. The guard dies with the manager (parent-death signal), and takes
`tritonserver` and its backend stubs with it, so that even a SIGKILLed manager leaves nothing
behind. Popen must be called from the thread that lives as long as the manager (the event
loop's): the parent-death signal fires when the forking *thread* exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

from tritonfleet.config import is_setting
from tritonfleet.node import guard
from tritonfleet.node.dist import TritonDist
from tritonfleet.node.endpoints import TritonUrls
from tritonfleet.node.errors import TritonStartError
from tritonfleet.node.options import TritonOptions

log = logging.getLogger(__name__)

ReadyProbe = Callable[[str], Awaitable[bool]]
READY_POLL_S = 0.1
PORT_ATTEMPTS = 3
# After SIGTERM has had its time, how long the guard gets to SIGKILL the tree (SIGHUP).
HANG_UP_S = 3.0


class TritonProcess:
    """Starts `tritonserver`, waits until it is ready, watches it exit, and stops it.

    Ports given as 0 are picked here and kept across restarts; when `tritonserver` exits before
    it is ready (a picked port was taken meanwhile), it is started again on fresh ones.
    """

    def __init__(self, options: TritonOptions, dist: TritonDist, probe: ReadyProbe) -> None:
        self.options = options
        self.dist = dist
        self.probe = probe
        self.ports = options.ports.pick(options.bind_host)
        self._proc: subprocess.Popen[bytes] | None = None
        self._run_dir: Path | None = None
        self._extra_args: list[str] = []
        # Names of the Python backend's shared-memory regions of the current run start with it.
        self.shm_prefix = ""

    @property
    def urls(self) -> TritonUrls:
        """Where this machine reaches it (the ports may change when a start is retried)."""
        return TritonUrls.on(self.options.connect_host, self.ports)

    @property
    def log_path(self) -> Path:
        if self.options.log_path is not None:
            return self.options.log_path
        return self._prepare() / "tritonserver.log"

    @property
    def pid(self) -> int | None:
        """The guard's process id; `tritonserver` is its child (see server_pid)."""
        return self._proc.pid if self._proc is not None else None

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def server_pid(self) -> int | None:
        """The `tritonserver` process itself, the guard's one child."""
        if not self.running() or self.pid is None:
            return None
        with contextlib.suppress(OSError, ValueError):
            return int(Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text().split()[0])
        return None

    async def start(self) -> None:
        """Launch and wait until ready; TritonStartError (with the log's end) if it cannot be."""
        for attempt in range(1, PORT_ATTEMPTS + 1):
            self._launch()
            try:
                await self._wait_ready()
                return
            except TritonStartError:
                await self.stop()
                if attempt == PORT_ATTEMPTS or self.options.ports.fixed:
                    raise
                # A port picked here may have been taken meanwhile: try fresh ones.
                log.warning("tritonserver failed to start; retrying on fresh ports", extra=self._context())
                self.ports = self.options.ports.pick(self.options.bind_host)

    async def wait(self) -> int:
        """Until it exits; its exit status (128 + N when killed by signal N)."""
        assert self._proc is not None, "tritonserver was not started"
        if self._proc.poll() is None:
            await _exited(self._proc.pid)
        return self._proc.wait()

    async def stop(self) -> int | None:
        """SIGTERM and wait; then the guard SIGKILLs the tree; then the guard itself is killed."""
        proc = self._proc
        if proc is None:
            return None
        for signum, wait_s in (
            (signal.SIGTERM, self.options.stop_wait_s),
            (signal.SIGHUP, HANG_UP_S),
            (signal.SIGKILL, HANG_UP_S),
        ):
            if proc.poll() is not None:
                break
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signum)
            if await self._exited_within(wait_s):
                break
            log.warning("tritonserver did not stop in time", extra={**self._context(), "signal": signum})
        return proc.poll()

    def close(self) -> None:
        """Remove the run directory; call after stop()."""
        if self._run_dir is not None:
            shutil.rmtree(self._run_dir, ignore_errors=True)
            self._run_dir = None

    def tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def _prepare(self) -> Path:
        if self._run_dir is None:
            self._run_dir = Path(tempfile.mkdtemp(prefix="tritonfleet-triton-"))
            self._extra_args = self.dist.prepare(self._run_dir)
        return self._run_dir

    def _launch(self) -> None:
        self._prepare()
        self.shm_prefix = shm_prefix = f"{guard.SHM_PREFIX_START}{uuid.uuid4().hex[:12]}_"
        argv = [
            str(self.dist.binary),
            *self._extra_args,
            *self.options.argv(self.ports),
            f"--backend-config=python,shm-region-prefix-name={shm_prefix}",
        ]
        guarded = [sys.executable, "-I", "-S", guard.__file__, str(os.getpid()), shm_prefix, *argv]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as out:
            command = " ".join(argv)
            if self.options.admin_key:
                command = command.replace(self.options.admin_key, "<admin key>")
            out.write(f"\n=== {time.strftime('%Y-%m-%dT%H:%M:%S')} {command}\n".encode())
            out.flush()
            self._proc = subprocess.Popen(
                guarded,
                env=self.dist.env(self.options.environment(triton_environment(os.environ))),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_hang_up_with_parent,
            )
        log.info("tritonserver starting", extra=self._context())

    async def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.options.start_timeout_s
        while not await self.probe(self.urls.http):
            if not self.running():
                raise TritonStartError(f"tritonserver exited before it was ready; log ends:\n{self.tail()}")
            if time.monotonic() > deadline:
                within = f"within {self.options.start_timeout_s} s"
                raise TritonStartError(f"tritonserver not ready {within}; log ends:\n{self.tail()}")
            await asyncio.sleep(READY_POLL_S)

    async def _exited_within(self, timeout_s: float) -> bool:
        try:
            await asyncio.wait_for(self.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    def _context(self) -> dict[str, object]:
        return {"pid": self.pid, "triton_http_url": self.urls.http, "log": str(self.log_path)}


def triton_environment(base: Mapping[str, str]) -> dict[str, str]:
    """The manager's environment less the fleet's settings, which carry the cluster token and
    other secrets that `tritonserver` and the models it runs have no use for."""
    return {name: value for name, value in base.items() if not is_setting(name)}


def _hang_up_with_parent() -> None:
    guard.die_with_parent(signal.SIGHUP)


async def _exited(pid: int) -> None:
    """Until process pid exits: its pidfd turns readable then."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        if not done.done():
            done.set_result(None)

    loop.add_reader(fd, readable)
    try:
        await done
    finally:
        loop.remove_reader(fd)
        os.close(fd)
