"""Alembic migrations of the usage ledger; `Ledger.open` runs them to head (no alembic.ini).

A new revision is a file in versions/ whose `down_revision` is the last one's. The ledger
tests check that an empty database migrated to head has exactly the schema of `ledger/schema.py`.
"""
