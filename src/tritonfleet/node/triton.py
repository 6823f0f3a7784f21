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
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from tritonfleet.net import free_port, http_url
from tritonfleet.node import guard
from tritonfleet.node.dist import TritonDist
from tritonfleet.node.errors import TritonStartError

log = logging.getLogger(__name__)

ReadyProbe = Callable[[str], Awaitable[bool]]
POLL_S = 0.05
PORT_ATTEMPTS = 3
# After SIGTERM has had its time, how long the guard gets to SIGKILL the tree (SIGHUP).
HANG_UP_S = 3.0


@dataclass(frozen=True, slots=True)
class TritonPorts:
    http: int = 0
    grpc: int = 0
    metrics: int = 0

    @property
    def fixed(self) -> bool:
        return 0 not in (self.http, self.grpc, self.metrics)

    def pick(self, host: str) -> TritonPorts:
        """These ports, with a free one for each 0."""
        return TritonPorts(*(port or free_port(host) for port in (self.http, self.grpc, self.metrics)))


@dataclass(frozen=True, slots=True)
class TritonOptions:
    model_repository: Path
    bind_host: str = "127.0.0.1"
    ports: TritonPorts = TritonPorts()
    model_control_mode: str = "poll"
    repository_poll_s: int = 5
    start_timeout_s: float = 120.0
    stop_timeout_s: float = 30.0
    log_path: Path | None = None

    @property
    def connect_host(self) -> str:
        return "127.0.0.1" if self.bind_host in ("", "0.0.0.0", "::") else self.bind_host

    def argv(self, ports: TritonPorts) -> list[str]:
        args = [
            f"--model-repository={self.model_repository.resolve()}",
            f"--http-port={ports.http}",
            f"--grpc-port={ports.grpc}",
            f"--metrics-port={ports.metrics}",
            *(f"--{kind}-address={self.bind_host}" for kind in ("http", "grpc", "metrics")),
            "--allow-metrics=true",
            # One broken model (or a stray folder) must not take the others down: Triton stays
            # up and ready, and the node announces the models that are READY.
            "--exit-on-error=false",
            "--strict-readiness=false",
            f"--exit-timeout-secs={max(1, math.ceil(self.stop_timeout_s))}",
            f"--model-control-mode={self.model_control_mode}",
        ]
        if self.model_control_mode == "poll":
            args.append(f"--repository-poll-secs={self.repository_poll_s}")
        elif self.model_control_mode == "explicit":
            args.append("--load-model=*")
        return args


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

    @property
    def http_url(self) -> str:
        return http_url(self.options.connect_host, self.ports.http)

    @property
    def log_path(self) -> Path:
        if self.options.log_path is not None:
            return self.options.log_path
        return self._prepare() / "tritonserver.log"

    @property
    def pid(self) -> int | None:
        """The guard's process id (the process group of the whole tree)."""
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
        while (status := self._proc.poll()) is None:
            await asyncio.sleep(POLL_S)
        return status

    async def stop(self) -> int | None:
        """SIGTERM and wait; then the guard SIGKILLs the tree; then the guard itself is killed."""
        proc = self._proc
        if proc is None:
            return None
        for signum, wait_s in (
            (signal.SIGTERM, self.options.stop_timeout_s + 2),
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
        argv = [str(self.dist.binary), *self._extra_args, *self.options.argv(self.ports)]
        guarded = [sys.executable, "-I", "-S", guard.__file__, str(os.getpid()), *argv]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as out:
            out.write(f"\n=== {time.strftime('%Y-%m-%dT%H:%M:%S')} {' '.join(argv)}\n".encode())
            out.flush()
            self._proc = subprocess.Popen(
                guarded,
                env=self.dist.env(os.environ),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_hang_up_with_parent,
            )
        log.info("tritonserver starting", extra=self._context())

    async def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.options.start_timeout_s
        while not await self.probe(self.http_url):
            if not self.running():
                raise TritonStartError(f"tritonserver exited before it was ready; its log ends:\n{self.tail()}")
            if time.monotonic() > deadline:
                raise TritonStartError(
                    f"tritonserver not ready within {self.options.start_timeout_s} s; log ends:\n{self.tail()}"
                )
            await asyncio.sleep(POLL_S * 2)

    async def _exited_within(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while self.running():
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(POLL_S)
        return True

    def _context(self) -> dict[str, object]:
        return {"pid": self.pid, "triton_http_url": self.http_url, "log": str(self.log_path)}


def _hang_up_with_parent() -> None:
    guard.die_with_parent(signal.SIGHUP)
