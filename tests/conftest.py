"""Every process a test starts carries a marker in its environment; none may outlive its module.

Also the ledgers and chains that the payments, gateway, token-manager and settler tests share:
an SQLite file or a fresh PostgreSQL schema (tests/postgres.py), and a real anvil (tests/devnet.py).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.devnet import deployed_chain, running_anvil
from tests.postgres import postgres_schema
from tests.slow_rpc import slow_rpc  # noqa: F401  (a fixture)
from tritonfleet.payments.chain.anvil import Anvil
from tritonfleet.payments.chain.devchain import DevChain
from tritonfleet.payments.ledger.database import sqlite_url

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


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield sqlite_url(tmp_path / "ledger.db")
    else:
        with postgres_schema() as url:
            yield url


@pytest.fixture(scope="module")
def anvil(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Anvil]:
    """One real anvil per test module."""
    with running_anvil(tmp_path_factory.mktemp("anvil")) as node:
        yield node


@pytest.fixture
def chain(anvil: Anvil) -> DevChain:
    """Fresh contracts for each test, on the module's anvil."""
    return deployed_chain(anvil)
