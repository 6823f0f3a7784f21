"""Credit leases shared by gateways, request ids scoped per account, debts, batch follow-up.

- `credit_lease`: the slices of an account's credit that gateways serve from in memory.
- `charge`: keyed by (account, request_id), so that one account cannot take another's id;
  `lease_id` names the lease a charge was served from; `kind` tells an inference's charge from
  a debt (what a settlement could not take from a short deposit, carried to the next one).
- `batch`: the block that confirmed it (gateways count its charges as unsettled until their
  chain view reaches it), and how often sending it failed, with the last error.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "credit_lease",
        sa.Column("lease_id", sa.String(32), nullable=False),
        sa.Column("account", sa.String(), nullable=False),
        sa.Column("holder", sa.String(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("spent", sa.BigInteger(), nullable=False),
        sa.Column("expires_at_s", sa.Double(), nullable=False),
        sa.Column("created_at_s", sa.Double(), nullable=False),
        sa.CheckConstraint("amount >= 0", name=op.f("ck_credit_lease_amount")),
        sa.CheckConstraint("spent >= 0", name=op.f("ck_credit_lease_spent")),
        sa.PrimaryKeyConstraint("lease_id", name=op.f("pk_credit_lease")),
    )
    op.create_index(op.f("ix_credit_lease_account_expires_at_s"), "credit_lease", ["account", "expires_at_s"])
    op.create_index(op.f("ix_credit_lease_expires_at_s"), "credit_lease", ["expires_at_s"])
    with op.batch_alter_table("charge", recreate="auto") as charge:
        charge.drop_constraint("pk_charge", type_="primary")
        charge.create_primary_key("pk_charge", ["account", "request_id"])
        charge.add_column(sa.Column("lease_id", sa.String(32), nullable=True))
        charge.add_column(sa.Column("kind", sa.String(16), nullable=False, server_default="inference"))
        charge.create_index(op.f("ix_charge_account_state"), ["account", "state"])
    with op.batch_alter_table("batch") as batch:
        batch.add_column(sa.Column("confirmed_block", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("last_error", sa.String(), nullable=True))
        batch.create_index(op.f("ix_batch_confirmed_block"), ["confirmed_block"])


def downgrade() -> None:
    with op.batch_alter_table("batch") as batch:
        batch.drop_index(op.f("ix_batch_confirmed_block"))
        batch.drop_column("last_error")
        batch.drop_column("attempts")
        batch.drop_column("confirmed_block")
    with op.batch_alter_table("charge", recreate="auto") as charge:
        charge.drop_index(op.f("ix_charge_account_state"))
        charge.drop_column("kind")
        charge.drop_column("lease_id")
        charge.drop_constraint("pk_charge", type_="primary")
        charge.create_primary_key("pk_charge", ["request_id"])
    op.drop_table("credit_lease")
