"""The process side of the faults, on a small tree of our own processes (no root needed)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from tritonfleet.netns import faults
from tritonfleet.netns.hosts import NetnsError

# A parent whose one child sleeps: the shape of a manager's guard and its tritonserver.
PARENT = (
    "import subprocess, sys, time;"
    "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); time.sleep(60)"
)


@pytest.fixture
def parent() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([sys.executable, "-c", PARENT], start_new_session=True)
    yield proc
    os.killpg(proc.pid, signal.SIGKILL)  # its group: it and its child
    proc.wait()


def child_of(parent: subprocess.Popen[bytes]) -> int:
    deadline = time.monotonic() + 10
    while not (found := list(faults.descendants(parent.pid))):
        assert time.monotonic() < deadline, "the child started"
        time.sleep(0.02)
    return found[0]


def test_descendants_lists_a_child_and_a_stopped_process_reads_t(parent: subprocess.Popen[bytes]) -> None:
    child = child_of(parent)
    faults.pause(child)
    deadline = time.monotonic() + 10
    while faults.process_state(child) != "T":
        assert time.monotonic() < deadline, "SIGSTOP stops it"
        time.sleep(0.02)
    faults.resume(child)
    while faults.process_state(child) == "T":
        assert time.monotonic() < deadline, "SIGCONT runs it again"
        time.sleep(0.02)


def test_a_tree_without_tritonserver_says_so(parent: subprocess.Popen[bytes]) -> None:
    child_of(parent)
    with pytest.raises(NetnsError, match="no tritonserver"):
        faults.triton_pid(parent.pid)
