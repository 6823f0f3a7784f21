"""Ledger databases for the payments tests: an SQLite file, and a fresh PostgreSQL schema.

PostgreSQL is the server at TRITONFLEET_TEST_POSTGRES_URL (default: the local `test` database);
each test gets a schema of its own, dropped afterwards (tests/postgres.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.payments.devnet import deployed_chain, running_anvil
from tests.postgres import postgres_schema
from tritonfleet.payments.anvil import Anvil
from tritonfleet.payments.database import sqlite_url
from tritonfleet.payments.devchain import DevChain


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
