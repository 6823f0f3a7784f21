"""Every process a test starts carries a marker in its environment; none may outlive its module."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

MARKER = "TRITONFLEET_TEST_RUN"
os.environ[MARKER] = uuid.uuid4().hex


def marked_processes() -> list[str]:
    """`pid comm` of live processes started by this test session (they inherit the marker)."""
    needle = f"{MARKER}={os.environ[MARKER]}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
                if state != "Z":
                    found.append(f"{entry.name} {(entry / 'comm').read_text().strip()}")
        except OSError:
            continue
    return found


# Module scope, so that a module may share one cluster between its tests; this fixture is set up
# before the module's own and so torn down after them.
@pytest.fixture(autouse=True, scope="module")
def no_leaked_processes() -> Iterator[None]:
    yield
    deadline = time.monotonic() + 10
    while (left := marked_processes()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left, f"processes outlived the tests of this module: {left}"
