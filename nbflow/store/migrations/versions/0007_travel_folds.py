"""Time travel's folded histories: ``nbflow.timetravel`` folds a long run's events once into a compact
index (every instance's status after every event) and keeps it here, so the first ``run.at()`` in another
process reads one row instead of folding 200,000 events again. A cache: a missing or stale row is rebuilt.

Revision ID: 0007
Revises: 0006
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "travel_folds",
        sa.Column("run_id", sa.String(64), primary_key=True),
        sa.Column("upto", sa.BigInteger, nullable=False),
        sa.Column("format", sa.Integer, nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("travel_folds")
