"""The parent of `tritonserver`, so that no Triton process outlives its manager.

`tritonserver` forks one Python-backend stub per model instance, and a stub notices the death
of `tritonserver` only seconds later (docs/benchmarks.md, "Measurements behind the code"), so
a parent-death signal on
`tritonserver` alone leaves stubs behind. The manager therefore starts this guard, with SIGHUP
as its parent-death signal; the guard starts `tritonserver` in a process group of its own, with
SIGKILL as the parent-death signal of `tritonserver`, and adopts the stubs it orphans
(child subreaper). Then:

    SIGTERM, SIGINT       passed on to tritonserver, which stops gracefully with its stubs
    SIGHUP                the manager died or wants a hard stop: SIGKILL to the whole group
    tritonserver exits    SIGKILL to what is left of its group, reap it all, remove the
                          Python backend's shared-memory regions (those of killed stubs would
                          stay in /dev/shm), exit with the status of tritonserver (128 + N when
                          signal N killed it)

It imports only the standard library and runs as
`python -I -S guard.py MANAGER_PID SHM_PREFIX ARGV...`, where SHM_PREFIX is the
`shm-region-prefix-name` given to the Python backend in ARGV.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pathlib
import signal
import subprocess
import sys
from types import FrameType

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
SHM_PREFIX_START = "tritonfleet_"


# Resolved once here, not in a forked child, where loading a library could deadlock.
_PRCTL = ctypes.CDLL(None, use_errno=True).prctl


def prctl(option: int, value: int) -> None:
    _PRCTL(option, value, 0, 0, 0)


def die_with_parent(signum: int = signal.SIGKILL) -> None:
    """`preexec_fn`: the kernel sends signum to the child when the forking thread dies."""
    prctl(PR_SET_PDEATHSIG, signum)


def kill_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signum)


class Guard:
    """Relays the manager's signals to the `tritonserver` group, even one that came too early."""

    def __init__(self) -> None:
        self.child: subprocess.Popen[bytes] | None = None
        self.early: int | None = None
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, self.on_signal)

    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.child is None:
            self.early = signum
        elif signum == signal.SIGHUP:
            kill_group(self.child.pid, signal.SIGKILL)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.child.pid, signal.SIGTERM)

    def run(self, argv: list[str]) -> int:
        self.child = child = subprocess.Popen(argv, process_group=0, preexec_fn=die_with_parent)
        if self.early is not None:
            self.on_signal(self.early, None)
        # Wait without reaping, so that the group id cannot be reused before the stragglers go.
        os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)
        kill_group(child.pid, signal.SIGKILL)
        status = child.wait()
        reap_all()
        return 128 - status if status < 0 else status


def remove_shm_regions(prefix: str, shm_dir: pathlib.Path = pathlib.Path("/dev/shm")) -> None:
    if not prefix.startswith(SHM_PREFIX_START):
        return  # never touch regions that are not ours
    for region in shm_dir.glob(f"{prefix}*"):
        with contextlib.suppress(OSError):
            region.unlink()


def main(manager_pid: int, shm_prefix: str, argv: list[str]) -> int:
    guard = Guard()
    prctl(PR_SET_CHILD_SUBREAPER, 1)
    if os.getppid() != manager_pid:
        return 128 + signal.SIGHUP  # the manager died before our death signal was armed
    try:
        return guard.run(argv)
    finally:
        remove_shm_regions(shm_prefix)


def reap_all() -> None:
    while True:
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            return


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]), sys.argv[2], sys.argv[3:]))
