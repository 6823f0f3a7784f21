"""Charges name the API key that made them, for usage per key.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    # Charges from before this revision belong to no known key: "".
    op.add_column("charge", sa.Column("key_id", sa.String(16), nullable=False, server_default=""))


def downgrade() -> None:
    op.drop_column("charge", "key_id")
