"""Alembic environment: runs on the connection that `tritonfleet.payments.ledger.store` hands it."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine

from tritonfleet.payments.ledger.schema import VERSION_TABLE, Base


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        version_table=VERSION_TABLE,
        # SQLite alters a table by copying it; batch mode makes later migrations portable.
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


def main() -> None:
    given = context.config.attributes.get("connection")
    if given is not None:
        _run(given)
        return
    # Command-line use (e.g. autogenerate): `-x url=...`.
    engine = create_engine(context.get_x_argument(as_dictionary=True)["url"])
    with engine.connect() as connection:
        _run(connection)
    engine.dispose()


main()
