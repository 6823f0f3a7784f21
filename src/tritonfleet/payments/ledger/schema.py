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
    Integer,
    MetaData,
    String,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from tritonfleet.payments.ledger.states import BatchState, ChargeKind, ChargeState

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
    # The block whose receipt confirmed it: a gateway whose chain view is older still sees the
    # deposit from before, so it keeps counting the batch's charges as unsettled.
    confirmed_block: Mapped[int | None] = mapped_column(BigInteger)
    # Failed sends so far, and the last one's error: a batch refused for good stops after N.
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    last_error: Mapped[str | None] = mapped_column(String)

    __table_args__ = (
        CheckConstraint(_one_of("state", BatchState), name="state"),
        Index(None, "state"),
        # A lease grant reads the batches confirmed after its chain view's block.
        Index(None, "confirmed_block"),
    )


class ChargeRow(Base):
    __tablename__ = "charge"

    # Request ids are the client's, so they are unique per account only: another account
    # cannot take a victim's id before it.
    account: Mapped[str] = mapped_column(String, primary_key=True)
    request_id: Mapped[str] = mapped_column(String, primary_key=True)
    model: Mapped[str] = mapped_column(String)
    version: Mapped[str] = mapped_column(String)
    amount: Mapped[int] = mapped_column(BigInteger)
    state: Mapped[str] = mapped_column(String(16))
    batch_id: Mapped[str | None] = mapped_column(ForeignKey("batch.batch_id"))
    created_at_s: Mapped[float] = mapped_column(Double)
    updated_at_s: Mapped[float] = mapped_column(Double)
    key_id: Mapped[str] = mapped_column(String(16), server_default="")
    # The credit lease it was served from; None for a debt, or a charge from before leases.
    lease_id: Mapped[str | None] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(16), server_default=ChargeKind.INFERENCE.value)

    __table_args__ = (
        CheckConstraint("amount >= 0", name="amount"),
        CheckConstraint(_one_of("state", ChargeState), name="state"),
        # The settler takes the oldest committed charges; the token manager pages an
        # account's usage newest first; batch totals read a batch's charges.
        Index(None, "state", "created_at_s"),
        Index(None, "account", "created_at_s"),
        Index(None, "batch_id"),
        # A lease grant sums the account's unsettled charges, whatever its history.
        Index(None, "account", "state"),
    )


class CreditLeaseRow(Base):
    """A slice of an account's credit that one gateway (`holder`) serves from in memory.

    Its outstanding part, `amount - spent`, counts against the account until `expires_at_s`;
    the holder renews it while it lives, and a dead holder's lease simply lapses. `spent` grows
    in the transaction that records the lease's charges, so a charge never counts twice.
    """

    __tablename__ = "credit_lease"

    lease_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    account: Mapped[str] = mapped_column(String)
    holder: Mapped[str] = mapped_column(String)
    amount: Mapped[int] = mapped_column(BigInteger)
    spent: Mapped[int] = mapped_column(BigInteger)
    expires_at_s: Mapped[float] = mapped_column(Double)
    created_at_s: Mapped[float] = mapped_column(Double)

    __table_args__ = (
        CheckConstraint("amount >= 0", name="amount"),
        CheckConstraint("spent >= 0", name="spent"),
        # Grants sum an account's live leases; renewals and purges range over expiry.
        Index(None, "account", "expires_at_s"),
        Index(None, "expires_at_s"),
    )


class ApiKeyRow(Base):
    __tablename__ = "api_key"

    key_hash: Mapped[str] = mapped_column(String, primary_key=True)
    account: Mapped[str] = mapped_column(String)
    label: Mapped[str] = mapped_column(String)
    created_at_s: Mapped[float] = mapped_column(Double)
    revoked_at_s: Mapped[float | None] = mapped_column(Double)

    __table_args__ = (Index(None, "account"),)
