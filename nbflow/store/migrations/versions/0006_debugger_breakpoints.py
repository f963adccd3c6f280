"""Logpoints, hit counts and step over: a breakpoint has an action (pause or log), a logpoint's
expression, a hit count, and a one-shot flag with its origin (a step over's); ``breakpoint_hits``
counts, per run, the instances that reached each breakpoint. On SQLite the table is rebuilt with
AUTOINCREMENT: a deleted breakpoint's id is never given to another (instances and hits name them by id).

Revision ID: 0006
Revises: 0005
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # SQLite reuses the largest rowid once it is deleted unless the table says AUTOINCREMENT, which only a
    # rebuilt table can; PostgreSQL's sequence never gives an id twice, and its table is altered in place.
    sqlite = op.get_bind().dialect.name == "sqlite"
    with op.batch_alter_table("breakpoints", recreate="always" if sqlite else "auto",
                              table_kwargs={"sqlite_autoincrement": True} if sqlite else {}) as batch:
        batch.add_column(sa.Column("action", sa.String(16), nullable=False, server_default="pause"))
        batch.add_column(sa.Column("expression", sa.Text))
        batch.add_column(sa.Column("hit_count", sa.Integer))
        batch.add_column(sa.Column("one_shot", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("origin", sa.Text))
    op.create_table(
        "breakpoint_hits",
        sa.Column("run_id", sa.String(64), primary_key=True),
        sa.Column("breakpoint_id", sa.Integer, primary_key=True),
        sa.Column("hits", sa.Integer, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("breakpoint_hits")
    with op.batch_alter_table("breakpoints") as batch:
        for name in ("origin", "one_shot", "hit_count", "expression", "action"):
            batch.drop_column(name)
