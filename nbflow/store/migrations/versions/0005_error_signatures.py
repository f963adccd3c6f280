"""Error signatures: each failed instance keeps what groups its error with others of one cause (the
exception type, its message with values masked, the failing line: ``nbflow.triage.error_signature``),
so a step's error groups are one GROUP BY in the store. Rows recorded before get theirs here.

Revision ID: 0005
Revises: 0004
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from nbflow.triage import error_signature

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("instances") as batch:
        batch.add_column(sa.Column("error_signature", sa.Text))
    t = sa.table("instances", sa.column("run_id"), sa.column("step"), sa.column("item"), sa.column("error_type"),
                 sa.column("error_message"), sa.column("error_traceback"), sa.column("error_signature"))
    conn = op.get_bind()
    rows = conn.execute(sa.select(t.c.run_id, t.c.step, t.c.item, t.c.error_type, t.c.error_message,
                                  t.c.error_traceback).where(t.c.error_type.is_not(None))).all()
    update = (t.update().where(t.c.run_id == sa.bindparam("b_run"), t.c.step == sa.bindparam("b_step"),
                               t.c.item == sa.bindparam("b_item"))
              .values(error_signature=sa.bindparam("sig")))
    params = [{"b_run": r[0], "b_step": r[1], "b_item": r[2], "sig": error_signature(r[3], r[4] or "", r[5] or "")}
              for r in rows]
    if params:
        conn.execute(update, params)


def downgrade() -> None:
    with op.batch_alter_table("instances") as batch:
        batch.drop_column("error_signature")
