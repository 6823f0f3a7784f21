"""A fresh PostgreSQL schema per test, for the ledger tests (unit and end to end).

The server is TRITONFLEET_TEST_POSTGRES_URL (default: the local `test` database). PostgreSQL
is part of the tested configuration, so a missing server fails the tests rather than skip them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest
from sqlalchemy import make_url

POSTGRES_URL = os.environ.get(
    "TRITONFLEET_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@contextmanager
def postgres_schema() -> Iterator[str]:
    """A ledger URL whose tables live in a new schema, dropped on exit."""
    admin = make_url(POSTGRES_URL).set(drivername="postgresql").render_as_string(hide_password=False)
    schema = f"tf_test_{uuid.uuid4().hex[:12]}"
    try:
        connection = psycopg.connect(admin, autocommit=True, connect_timeout=2)
    except psycopg.OperationalError as exc:
        pytest.fail(f"no PostgreSQL at {POSTGRES_URL} (set TRITONFLEET_TEST_POSTGRES_URL): {exc}")
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
