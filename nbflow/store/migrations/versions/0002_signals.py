"""Signals: external deliveries to waiting instances, one per correlation token.

Revision ID: 0002
Revises: 0001
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "signals",
        sa.Column("token", sa.String(255), primary_key=True),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("step", sa.String(200), nullable=False),
        sa.Column("item", sa.Integer, nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("payload_codec", sa.String(16)),
        sa.Column("payload", sa.LargeBinary),
        sa.Column("actor", sa.String(200)),
        sa.Column("received_at", sa.Float, nullable=False),
    )
    op.create_index("ix_signals_run", "signals", ["run_id"])


def downgrade() -> None:
    op.drop_index("ix_signals_run", "signals")
    op.drop_table("signals")
