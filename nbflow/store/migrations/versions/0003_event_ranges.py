"""Per-run event ids: each run gets a number (``runs.seq``, in creation order) and its events the ids
``seq * 2**30 + 1, + 2, ...``, so a run's history is one primary-key range and the events index goes.

Revision ID: 0003
Revises: 0002
"""
from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

SPAN = 2**30
_ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")
_COLS = '"run_id", "step", "key", "kind", "actor", "data", "ts"'


def _events_table(
    name: str, id_type: sa.types.TypeEngine[Any] | type[sa.types.TypeEngine[Any]], autoincrement: bool
) -> None:
    op.create_table(
        name,
        sa.Column("id", id_type, primary_key=True, autoincrement=autoincrement),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("step", sa.String(200)),
        sa.Column("key", sa.Text),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("actor", sa.String(200)),
        sa.Column("data", sa.Text),
        sa.Column("ts", sa.Float, nullable=False),
    )


def upgrade() -> None:
    conn = op.get_bind()
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("seq", _ID, nullable=True))
    runs = sa.table("runs", sa.column("id"), sa.column("seq"), sa.column("created_at"))
    ids = conn.execute(sa.select(runs.c.id).order_by(runs.c.created_at, runs.c.id)).scalars().all()
    if ids:
        conn.execute(runs.update().where(runs.c.id == sa.bindparam("b_id")).values(seq=sa.bindparam("b_seq")),
                     [{"b_id": run_id, "b_seq": n} for n, run_id in enumerate(ids, 1)])
    with op.batch_alter_table("runs") as batch:
        batch.alter_column("seq", existing_type=_ID, nullable=False)
        batch.create_index("ix_runs_seq", ["seq"], unique=True)
    # An event of a run that no longer exists has no range; such rows cannot be shown anyway.
    _events_table("events_new", _ID, autoincrement=False)
    op.execute(
        f"INSERT INTO events_new (id, {_COLS}) "  # noqa: S608 - fixed table and column names
        f"SELECT r.seq * {SPAN} + ROW_NUMBER() OVER (PARTITION BY e.run_id ORDER BY e.id), "
        + ", ".join(f"e.{c}" for c in _COLS.split(", "))
        + " FROM events e JOIN runs r ON r.id = e.run_id"
    )
    op.drop_table("events")
    op.rename_table("events_new", "events")
    if conn.dialect.name == "postgresql":  # the constraint keeps the name it was created with
        op.execute("ALTER TABLE events RENAME CONSTRAINT events_new_pkey TO events_pkey")


def downgrade() -> None:
    _events_table("events_old", sa.Integer, autoincrement=True)
    op.execute(
        f"INSERT INTO events_old (id, {_COLS}) SELECT ROW_NUMBER() OVER (ORDER BY e.id), "  # noqa: S608 - fixed names
        + ", ".join(f"e.{c}" for c in _COLS.split(", ")) + " FROM events e"
    )
    op.drop_table("events")
    op.rename_table("events_old", "events")
    if op.get_bind().dialect.name == "postgresql":  # names as 0001 made them; the serial continues after the ids
        op.execute("ALTER TABLE events RENAME CONSTRAINT events_old_pkey TO events_pkey")
        op.execute("ALTER SEQUENCE events_old_id_seq RENAME TO events_id_seq")
        op.execute("SELECT setval(pg_get_serial_sequence('events', 'id'), COALESCE(MAX(id), 1)) FROM events")
    op.create_index("ix_events_run", "events", ["run_id", "id"])
    with op.batch_alter_table("runs") as batch:
        batch.drop_index("ix_runs_seq")
        batch.drop_column("seq")
