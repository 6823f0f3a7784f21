"""The ledger's tables, as SQLAlchemy 2 typed declarations; migrations create exactly these.

Money columns are BIGINT. One charge is one inference's price, and int64 holds 9.2·10¹⁸ base
units (over 9 whole tokens of an 18-decimal token per inference), so a row never needs more.
A wider column would buy nothing on SQLite, whose only exact type is int64 (NUMERIC turns
larger values into REAL, losing units). Sums, which can outgrow int64, are exact elsewhere:
batch totals are summed in Python from the batch's rows (Python ints, any size), and
PostgreSQL's SUM over BIGINT is NUMERIC; SQLite raises "integer overflow" rather than round.

Timestamps are Unix seconds as floats, from the ledger's injected clock. States are strings
checked against their enum, not native ENUM types, so a new state is a one-line migration.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Double,
    ForeignKey,
    Index,
    MetaData,
    String,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from tritonfleet.payments.ledger.states import BatchState, ChargeState

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# Alembic's bookkeeping table, named so that a shared PostgreSQL database can hold other apps'.
VERSION_TABLE = "ledger_alembic_version"

# "0x" and 64 hex digits: a bytes32 batch id or a transaction hash.
HEX32 = String(66)


def _one_of(column: str, values: type[ChargeState] | type[BatchState]) -> str:
    listed = ", ".join(f"'{value}'" for value in values)
    return f"{column} IN ({listed})"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class BatchRow(Base):
    __tablename__ = "batch"

    batch_id: Mapped[str] = mapped_column(HEX32, primary_key=True)
    state: Mapped[str] = mapped_column(String(16))
    tx_hash: Mapped[str | None] = mapped_column(HEX32)
    nonce: Mapped[int | None] = mapped_column(BigInteger)
    created_at_s: Mapped[float] = mapped_column(Double)
    updated_at_s: Mapped[float] = mapped_column(Double)

    __table_args__ = (
        CheckConstraint(_one_of("state", BatchState), name="state"),
        Index(None, "state"),
    )


class ChargeRow(Base):
    __tablename__ = "charge"

    request_id: Mapped[str] = mapped_column(String, primary_key=True)
    account: Mapped[str] = mapped_column(String)
    model: Mapped[str] = mapped_column(String)
    version: Mapped[str] = mapped_column(String)
    amount: Mapped[int] = mapped_column(BigInteger)
    state: Mapped[str] = mapped_column(String(16))
    batch_id: Mapped[str | None] = mapped_column(ForeignKey("batch.batch_id"))
    created_at_s: Mapped[float] = mapped_column(Double)
    updated_at_s: Mapped[float] = mapped_column(Double)
    key_id: Mapped[str] = mapped_column(String(16), server_default="")

    __table_args__ = (
        CheckConstraint("amount >= 0", name="amount"),
        CheckConstraint(_one_of("state", ChargeState), name="state"),
        # The settler takes the oldest committed charges; the token manager pages an
        # account's usage newest first; batch totals read a batch's charges.
        Index(None, "state", "created_at_s"),
        Index(None, "account", "created_at_s"),
        Index(None, "batch_id"),
    )


class ApiKeyRow(Base):
    __tablename__ = "api_key"

    key_hash: Mapped[str] = mapped_column(String, primary_key=True)
    account: Mapped[str] = mapped_column(String)
    label: Mapped[str] = mapped_column(String)
    created_at_s: Mapped[float] = mapped_column(Double)
    revoked_at_s: Mapped[float | None] = mapped_column(Double)

    __table_args__ = (Index(None, "account"),)
