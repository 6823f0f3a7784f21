"""Child processes that never outlive their parent: the one wrapper over `subprocess` for services."""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """`preexec_fn`: the kernel SIGKILLs the child when its parent dies, even by SIGKILL."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


# `die_with_parent` for a parent whose threads make `preexec_fn` unsafe (gRPC's fork handlers
# abort a child forked while its threads poll): the child is spawned without it, arms the
# signal itself, checks that its parent is still the one that spawned it, then becomes argv.
_ARM_THEN_EXEC = (
    "import ctypes, os, sys; ctypes.CDLL(None).prctl(1, 9); "
    "os.getppid() == int(sys.argv[1]) or sys.exit(1); os.execv(sys.argv[2], sys.argv[2:])"
)


def dying_with_parent(argv: Sequence[str]) -> list[str]:
    """argv, wrapped so that the kernel SIGKILLs it when this process dies."""
    return [sys.executable, "-I", "-S", "-c", _ARM_THEN_EXEC, str(os.getpid()), *argv]


class ServiceProcess:
    """A long-running child (a service, a node manager) with its output in a log file.

    It runs in its own process group, so that a terminal's Ctrl-C reaches only the parent,
    which then stops its children in order.
    """

    def __init__(self, name: str, argv: Sequence[str], env: Mapping[str, str], log_path: Path) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = dict(env)
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(
                self.argv,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )

    @property
    def pid(self) -> int:
        assert self.proc is not None, f"{self.name} was not started"
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, signum: int) -> None:
        if self.alive():
            os.kill(self.pid, signum)

    def stop(self, timeout_s: float = 30.0) -> int | None:
        """SIGTERM, wait up to timeout_s for a graceful exit, then SIGKILL the whole group."""
        self.signal(signal.SIGTERM)
        return self.wait_or_kill(timeout_s)

    def wait_or_kill(self, timeout_s: float) -> int | None:
        if self.proc is None:
            return None
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            log.warning("did not stop in time; killing", extra={"service": self.name, "pid": self.pid})
            return self.kill()

    def kill(self) -> int | None:
        if self.proc is None:
            return None
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return self.proc.wait()

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def wait_http_ok(
    url: str, timeout_s: float, process: ServiceProcess | None = None, verify: ssl.SSLContext | bool = True
) -> None:
    """Poll until GET url answers 200; fail early when the process serving it has died. `verify`:
    what an https url's certificate is checked against (httpx's)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and not process.alive():
            raise RuntimeError(f"{process.name} exited early; its log ends:\n{process.tail()}")
        try:
            if httpx.get(url, verify=verify, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer 200 within {timeout_s} s")
