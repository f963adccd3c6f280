"""Typed keys: an instance keeps the value its key function returned (an int stays an int) next to
the key's text, which every lookup and address still uses.

Runs recorded before this revision have no typed value: their keys read back as text.

Revision ID: 0004
Revises: 0003
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("instances") as batch:
        batch.add_column(sa.Column("key_codec", sa.String(16)))
        batch.add_column(sa.Column("key_value", sa.LargeBinary))


def downgrade() -> None:
    with op.batch_alter_table("instances") as batch:
        batch.drop_column("key_value")
        batch.drop_column("key_codec")
