"""The ledger's database: engine set-up for SQLite or PostgreSQL, write transactions, migrations.

SQLite runs in WAL mode (readers never block the writer) with `synchronous=FULL`, so a
committed charge survives a power cut, and a busy timeout, so that several processes on one
file wait for each other instead of failing. Write transactions start with BEGIN IMMEDIATE:
a deferred transaction that reads and then writes cannot wait for the lock on its upgrade and
fails with "database is locked" at once. PostgreSQL needs none of this; it is the choice when
several gateways share one ledger.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event, make_url, text
from sqlalchemy.engine import URL

from tritonfleet.config import FleetConfig

SCRIPT_LOCATION = "tritonfleet.payments.ledger:migrations"
# How long a ledger connection waits to connect, for a lock, or for a statement.
LEDGER_TIMEOUT_S = 5.0
MIGRATION_TIMEOUT_S = 600.0
# Execution option that makes the SQLite begin hook take the write lock at once.
_WRITE = "tritonfleet_write"
# Any fixed number: the key of the advisory lock under which PostgreSQL migrations run.
_MIGRATION_LOCK = 0x7472_6974_6F6E
# Relative to the working directory, beside the rest of `make up`'s state.
DEFAULT_LEDGER_FILE = Path(".tritonfleet/ledger.sqlite")


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def default_ledger_url(config: FleetConfig) -> str:
    """`payments.ledger_url` (or its file), else the SQLite file that every local service shares."""
    return config.payments.read_ledger_url() or sqlite_url(DEFAULT_LEDGER_FILE)


def create_ledger_engine(url: str, timeout_s: float = LEDGER_TIMEOUT_S) -> Engine:
    """An engine whose connections give up after `timeout_s`: connecting, waiting for a lock or
    running a statement. A ledger that hangs then fails the charges at hand, which are not
    served, rather than hold every paid request until the client gives up."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(parsed, timeout_s)
    if parsed.drivername == "postgresql":
        # psycopg 3 is the driver this project ships, whatever SQLAlchemy's default.
        parsed = parsed.set(drivername="postgresql+psycopg")
    timeout_ms = max(1, int(timeout_s * 1000))
    # After the URL's own options (a search_path, say), which these would otherwise replace.
    given = parsed.query.get("options", ())
    options = [*([given] if isinstance(given, str) else given)]
    options.append(f"-c statement_timeout={timeout_ms} -c lock_timeout={timeout_ms}")
    connect_args = {"connect_timeout": max(1, round(timeout_s)), "options": " ".join(options)}
    return create_engine(parsed, pool_pre_ping=True, connect_args=connect_args)


def _sqlite_engine(url: URL, busy_timeout_s: float) -> Engine:
    if url.database in (None, "", ":memory:"):
        # Each connection of an in-memory database is a database of its own.
        raise ValueError("the ledger needs an SQLite file, not an in-memory database")
    Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url)
    event.listen(engine, "connect", partial(_on_sqlite_connect, busy_timeout_s))
    event.listen(engine, "begin", _on_sqlite_begin)
    return engine


def _on_sqlite_connect(busy_timeout_s: float, dbapi_connection: Any, _record: Any) -> None:
    # Hand BEGIN to SQLAlchemy (the hook below); the sqlite3 module's own is deferred only.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
    _use_wal(cursor, busy_timeout_s)
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _use_wal(cursor: Any, busy_timeout_s: float) -> None:
    """Switch the file to WAL once. The switch takes the file's exclusive lock, and SQLite
    answers "database is locked" at once, without its busy handler, while another connection
    holds a lock: services opening a new ledger together try again for up to the busy timeout."""
    deadline = time.monotonic() + busy_timeout_s
    while cursor.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
        except sqlite3.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _on_sqlite_begin(connection: Connection) -> None:
    immediate = connection.get_execution_options().get(_WRITE, False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction that will write: committed on exit, rolled back on an exception."""
    with engine.connect() as connection:
        connection.execution_options(**{_WRITE: True})
        with connection.begin():
            yield connection


@contextmanager
def driver_write_transaction(engine: Engine) -> Iterator[Any]:
    """`write_transaction` on the driver's own cursor, for the one hot statement where
    SQLAlchemy's per-execution work costs more than the database's (ChargeWriter's inserts).
    Parameters take the driver's style, `engine.dialect.paramstyle`."""
    connection = engine.raw_connection()
    try:
        cursor = connection.cursor()
        if engine.dialect.name == "sqlite":
            cursor.execute("BEGIN IMMEDIATE")  # the hook above does this for SQLAlchemy's own
        try:
            yield cursor
        except BaseException:
            connection.rollback()
            raise
        connection.commit()
    finally:
        connection.close()  # back to the pool


def migrate(engine: Engine) -> None:
    """Bring the schema to head; safe to run from several processes at once. Give it an engine
    with `MIGRATION_TIMEOUT_S`: a migration may take long (a key rebuilt on a large table), and
    so may waiting for another process's."""
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    with write_transaction(engine) as connection:
        if connection.dialect.name == "postgresql":
            # Gateways starting together would otherwise race to create the same tables.
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
