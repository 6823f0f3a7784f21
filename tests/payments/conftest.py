"""Ledger databases for the payments tests: an SQLite file, and a fresh PostgreSQL schema.

PostgreSQL is the server at TRITONFLEET_TEST_POSTGRES_URL (default: the local `test` database);
each test gets a schema of its own, dropped afterwards. Tests skip PostgreSQL, saying so, when
no server answers.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import make_url

from tritonfleet.payments.database import sqlite_url

POSTGRES_URL = os.environ.get(
    "TRITONFLEET_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield sqlite_url(tmp_path / "ledger.db")
    else:
        yield from _postgres_schema()


def _postgres_schema() -> Iterator[str]:
    admin = make_url(POSTGRES_URL).set(drivername="postgresql").render_as_string(hide_password=False)
    schema = f"tf_test_{uuid.uuid4().hex[:12]}"
    try:
        connection = psycopg.connect(admin, autocommit=True, connect_timeout=2)
    except psycopg.OperationalError as exc:
        pytest.skip(f"no PostgreSQL at {POSTGRES_URL}: {exc}")
    with connection:
        connection.execute(f"CREATE SCHEMA {schema}")
        try:
            yield (
                make_url(POSTGRES_URL)
                .update_query_dict({"options": f"-csearch_path={schema}"})
                .render_as_string(hide_password=False)
            )
        finally:
            connection.execute(f"DROP SCHEMA {schema} CASCADE")
