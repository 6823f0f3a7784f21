"""Initial ledger: charges, settlement batches, API keys.

Revision ID: 0001
Revises:
Create Date: 2026-05-09
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

CHARGE_STATES = "state IN ('reserved', 'committed', 'released', 'batched', 'settled')"
BATCH_STATES = "state IN ('building', 'sent', 'confirmed', 'failed')"


def upgrade() -> None:
    op.create_table(
        "batch",
        sa.Column("batch_id", sa.String(66), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("tx_hash", sa.String(66), nullable=True),
        sa.Column("nonce", sa.BigInteger(), nullable=True),
        sa.Column("created_at_s", sa.Double(), nullable=False),
        sa.Column("updated_at_s", sa.Double(), nullable=False),
        sa.CheckConstraint(BATCH_STATES, name=op.f("ck_batch_state")),
        sa.PrimaryKeyConstraint("batch_id", name=op.f("pk_batch")),
    )
    op.create_index(op.f("ix_batch_state"), "batch", ["state"])
    op.create_table(
        "charge",
        sa.Column("request_id", sa.String(), nullable=False),
        sa.Column("account", sa.String(), nullable=False),
        sa.Column("model", sa.String(), nullable=False),
        sa.Column("version", sa.String(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("batch_id", sa.String(66), nullable=True),
        sa.Column("created_at_s", sa.Double(), nullable=False),
        sa.Column("updated_at_s", sa.Double(), nullable=False),
        sa.CheckConstraint("amount >= 0", name=op.f("ck_charge_amount")),
        sa.CheckConstraint(CHARGE_STATES, name=op.f("ck_charge_state")),
        sa.ForeignKeyConstraint(["batch_id"], ["batch.batch_id"], name=op.f("fk_charge_batch_id_batch")),
        sa.PrimaryKeyConstraint("request_id", name=op.f("pk_charge")),
    )
    op.create_index(op.f("ix_charge_state_created_at_s"), "charge", ["state", "created_at_s"])
    op.create_index(op.f("ix_charge_account_created_at_s"), "charge", ["account", "created_at_s"])
    op.create_index(op.f("ix_charge_batch_id"), "charge", ["batch_id"])
    op.create_table(
        "api_key",
        sa.Column("key_hash", sa.String(), nullable=False),
        sa.Column("account", sa.String(), nullable=False),
        sa.Column("label", sa.String(), nullable=False),
        sa.Column("created_at_s", sa.Double(), nullable=False),
        sa.Column("revoked_at_s", sa.Double(), nullable=True),
        sa.PrimaryKeyConstraint("key_hash", name=op.f("pk_api_key")),
    )
    op.create_index(op.f("ix_api_key_account"), "api_key", ["account"])


def downgrade() -> None:
    op.drop_table("api_key")
    op.drop_table("charge")
    op.drop_table("batch")
