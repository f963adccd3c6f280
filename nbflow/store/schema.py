"""The store's tables (SQLAlchemy Core). Alembic migrations in ``migrations/`` create them;
``tests/test_store.py`` checks the two agree."""
from __future__ import annotations

from sqlalchemy import BigInteger, Column, Float, Index, Integer, LargeBinary, MetaData, String, Table, Text

metadata = MetaData()

SCHEMA_HEAD = "0007"
"""The newest migration this nbflow knows; a store at another revision is migrated or refused."""

EVENT_ID_SPAN = 2**30
"""Event ids are per run: ``runs.seq * EVENT_ID_SPAN + n`` for the run's n-th event. A run's history
is one range of the events table's primary key, read and written without a second index (a step's
commit writes one page fewer: B1 in bench/). Ids stay below 2**53 for 8 million runs (exact in JSON)."""

_ID = BigInteger().with_variant(Integer, "sqlite")  # SQLite: INTEGER PRIMARY KEY is the rowid itself

meta = Table(
    "meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

workflows = Table(
    "workflows",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("version", String(64), primary_key=True),
    Column("definition", Text, nullable=False),
    Column("created_at", Float, nullable=False),
)

step_code = Table(
    "step_code",
    metadata,
    Column("version", String(64), primary_key=True),
    Column("step", String(200), primary_key=True),
    Column("source", Text, nullable=False),
    Column("pickled", LargeBinary, nullable=False),
    Column("created_at", Float, nullable=False),
)

runs = Table(
    "runs",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("workflow", String(200), nullable=False, index=True),
    Column("version", String(64), nullable=False),
    Column("params_codec", String(16)),
    Column("params", LargeBinary),
    Column("options", Text, nullable=False, default="{}"),
    Column("status", String(16), nullable=False),
    Column("owner_host", String(255)),
    Column("owner_pid", Integer),
    Column("owner_id", String(64)),
    Column("heartbeat_at", Float),
    Column("parent_run_id", String(64)),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("finished_at", Float),
    Column("seq", _ID, nullable=False),  # the run's number, in creation order: its events' id range
    Index("ix_runs_seq", "seq", unique=True),
)

instances = Table(
    "instances",
    metadata,
    Column("run_id", String(64), primary_key=True),
    Column("step", String(200), primary_key=True),
    Column("item", Integer, primary_key=True),  # -1 for a task step's single instance
    Column("key", Text),
    Column("status", String(16), nullable=False),
    Column("attempt", Integer, nullable=False, default=0),
    Column("inputs_codec", String(16)),
    Column("inputs", LargeBinary),  # operator edits only; other inputs derive from upstream outputs
    Column("output_codec", String(16)),
    Column("output", LargeBinary),
    Column("saved_codec", String(16)),
    Column("saved", LargeBinary),  # ctx.checkpoint progress
    Column("error_type", String(200)),
    Column("error_message", Text),
    Column("error_traceback", Text),
    Column("error_signature", Text),  # what groups errors of one cause (nbflow.triage.error_signature)
    Column("pause_reason", Text),
    Column("held_by", Text),  # JSON list of breakpoint ids holding a paused instance
    Column("released", Text),  # JSON list of breakpoint ids that already let it go
    Column("next_attempt_at", Float),
    Column("deadline", Float),
    Column("started_at", Float),
    Column("finished_at", Float),
    Column("logs", Text),
    Column("token", String(255)),
    # The key as the key function returned it (see nbflow.breakpoints.encode_key); NULL when the key is
    # its text (a str, a task's None). ``key`` stays the text every lookup and address uses.
    Column("key_codec", String(16)),
    Column("key_value", LargeBinary),
)

breakpoints = Table(
    "breakpoints",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("workflow", String(200), nullable=False, index=True),
    Column("run_id", String(64)),  # NULL: every run of the workflow
    Column("step", String(200), nullable=False),
    Column("key", Text),
    Column("when", String(16), nullable=False),
    Column("condition", Text),
    Column("created_by", String(200)),
    Column("created_at", Float, nullable=False),
    Column("action", String(16), nullable=False, server_default="pause"),  # "pause" | "log" (a logpoint)
    Column("expression", Text),  # what a logpoint records
    Column("hit_count", Integer),  # acts from this hit on (NULL: the first)
    Column("one_shot", Integer, nullable=False, server_default="0"),  # a step over's: removed once it fired
    Column("origin", Text),  # what made a one-shot breakpoint ("step over enrich:3")
    sqlite_autoincrement=True,  # an id is never reused: instances' held_by, released and hits name breakpoints by id
)

breakpoint_hits = Table(
    "breakpoint_hits",
    metadata,
    Column("run_id", String(64), primary_key=True),
    Column("breakpoint_id", Integer, primary_key=True),
    Column("hits", Integer, nullable=False),  # instances of the run that reached it and matched its condition
)

commands = Table(
    "commands",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(64), nullable=False),
    Column("verb", String(32), nullable=False),
    Column("target", Text),  # JSON: {"step": ..., "keys": [...]}
    Column("payload_codec", String(16)),
    Column("payload", LargeBinary),
    Column("actor", String(200), nullable=False),
    Column("reason", Text),
    Column("created_at", Float, nullable=False),
    Column("applied_at", Float),
    Column("result", String(16)),  # "ok" | "refused"
    Column("message", Text),
    Index("ix_commands_pending", "run_id", "applied_at"),
)

events = Table(
    "events",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=False),  # see EVENT_ID_SPAN
    Column("run_id", String(64), nullable=False),
    Column("step", String(200)),
    Column("key", Text),
    Column("kind", String(32), nullable=False),
    Column("actor", String(200)),
    Column("data", Text),
    Column("ts", Float, nullable=False),
)

blobs = Table(
    "blobs",
    metadata,
    Column("hash", String(64), primary_key=True),
    Column("codec", String(16), nullable=False),
    Column("size", Integer, nullable=False),
    Column("data", LargeBinary),
    Column("path", Text),
)

signals = Table(
    "signals",
    metadata,
    Column("token", String(255), primary_key=True),  # one delivery per correlation token
    Column("run_id", String(64), nullable=False),
    Column("step", String(200), nullable=False),
    Column("item", Integer, nullable=False),
    Column("name", String(200), nullable=False),
    Column("payload_codec", String(16)),
    Column("payload", LargeBinary),
    Column("actor", String(200)),
    Column("received_at", Float, nullable=False),
    Index("ix_signals_run", "run_id"),
)

travel_folds = Table(
    "travel_folds",
    metadata,
    Column("run_id", String(64), primary_key=True),
    Column("upto", BigInteger, nullable=False),  # the newest event folded
    Column("format", Integer, nullable=False),
    Column("data", LargeBinary, nullable=False),
    Column("created_at", Float, nullable=False),
)
"""Time travel's folded history of a long run (``nbflow.timetravel``): a cache, rebuilt when missing or stale."""
