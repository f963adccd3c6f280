"""The first schema: workflows, code, runs, instances, breakpoints, commands, events, blobs.

Revision ID: 0001
Revises:
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "meta",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    op.create_table(
        "workflows",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("version", sa.String(64), primary_key=True),
        sa.Column("definition", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "step_code",
        sa.Column("version", sa.String(64), primary_key=True),
        sa.Column("step", sa.String(200), primary_key=True),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("pickled", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "runs",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("workflow", sa.String(200), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("params_codec", sa.String(16)),
        sa.Column("params", sa.LargeBinary),
        sa.Column("options", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("owner_host", sa.String(255)),
        sa.Column("owner_pid", sa.Integer),
        sa.Column("owner_id", sa.String(64)),
        sa.Column("heartbeat_at", sa.Float),
        sa.Column("parent_run_id", sa.String(64)),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("finished_at", sa.Float),
    )
    op.create_index("ix_runs_workflow", "runs", ["workflow"])
    op.create_table(
        "instances",
        sa.Column("run_id", sa.String(64), primary_key=True),
        sa.Column("step", sa.String(200), primary_key=True),
        sa.Column("item", sa.Integer, primary_key=True),
        sa.Column("key", sa.Text),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("inputs_codec", sa.String(16)),
        sa.Column("inputs", sa.LargeBinary),
        sa.Column("output_codec", sa.String(16)),
        sa.Column("output", sa.LargeBinary),
        sa.Column("saved_codec", sa.String(16)),
        sa.Column("saved", sa.LargeBinary),
        sa.Column("error_type", sa.String(200)),
        sa.Column("error_message", sa.Text),
        sa.Column("error_traceback", sa.Text),
        sa.Column("pause_reason", sa.Text),
        sa.Column("held_by", sa.Text),
        sa.Column("released", sa.Text),
        sa.Column("next_attempt_at", sa.Float),
        sa.Column("deadline", sa.Float),
        sa.Column("started_at", sa.Float),
        sa.Column("finished_at", sa.Float),
        sa.Column("logs", sa.Text),
        sa.Column("token", sa.String(255)),
    )
    op.create_table(
        "breakpoints",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("workflow", sa.String(200), nullable=False),
        sa.Column("run_id", sa.String(64)),
        sa.Column("step", sa.String(200), nullable=False),
        sa.Column("key", sa.Text),
        sa.Column("when", sa.String(16), nullable=False),
        sa.Column("condition", sa.Text),
        sa.Column("created_by", sa.String(200)),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_index("ix_breakpoints_workflow", "breakpoints", ["workflow"])
    op.create_table(
        "commands",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("verb", sa.String(32), nullable=False),
        sa.Column("target", sa.Text),
        sa.Column("payload_codec", sa.String(16)),
        sa.Column("payload", sa.LargeBinary),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("applied_at", sa.Float),
        sa.Column("result", sa.String(16)),
        sa.Column("message", sa.Text),
    )
    op.create_index("ix_commands_pending", "commands", ["run_id", "applied_at"])
    op.create_table(
        "events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("step", sa.String(200)),
        sa.Column("key", sa.Text),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("actor", sa.String(200)),
        sa.Column("data", sa.Text),
        sa.Column("ts", sa.Float, nullable=False),
    )
    op.create_index("ix_events_run", "events", ["run_id", "id"])
    op.create_table(
        "blobs",
        sa.Column("hash", sa.String(64), primary_key=True),
        sa.Column("codec", sa.String(16), nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("data", sa.LargeBinary),
        sa.Column("path", sa.Text),
    )


def downgrade() -> None:
    for name in ("blobs", "events", "commands", "breakpoints", "instances", "runs", "step_code", "workflows", "meta"):
        op.drop_table(name)
