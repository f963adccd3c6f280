"""The SQL that starts and takes over runs: pinning a version's code, creating a run with its first
instances, and claiming ownership of a run. :mod:`nbflow.engine.lifecycle` decides; this writes."""
from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from .._util import now
from . import schema as t
from .codec import Encoded
from .store import Store

WRITE_TRIES = 5
"""How often a takeover is tried again when an old owner, still writing, took the event id it read."""
RUN_SEQ_LOCK = 7262012
"""PostgreSQL advisory lock creators hold while they take a run number (SQLite's write lock does that)."""
_NEXT_SEQ = sa.select(sa.func.coalesce(sa.func.max(t.runs.c.seq), 0) + 1).scalar_subquery()
"""A new run's number (``runs.seq``): one more than the newest."""


def save_version(
    store: Store, workflow: str, version: str, definition: Mapping[str, Any], code: Iterable[tuple[str, str, bytes]]
) -> None:
    """Pin the code of *version* of *workflow*: its JSON definition and each step's ``(step, source,
    pickled callable)``. A version already stored stays as it is (another process may pin it first)."""
    if store.has_version(workflow, version):
        return
    code_rows = [
        {"version": version, "step": step, "source": source, "pickled": pickled, "created_at": now()}
        for step, source, pickled in code
    ]
    try:
        with store.engine.begin() as conn:
            conn.execute(
                t.workflows.insert().values(
                    name=workflow, version=version, definition=json.dumps(definition), created_at=now()
                )
            )
            conn.execute(t.step_code.insert(), code_rows)
    except sa.exc.IntegrityError:
        pass  # another process pinned the same version first


def create_run(
    store: Store,
    row: Mapping[str, Any],
    params: Encoded,
    instances: Iterable[Sequence[Mapping[str, Any]]],
    breakpoints: Iterable[Mapping[str, Any]],
    *,
    actor: str,
    event: Mapping[str, Any],
) -> dict[str, Any]:
    """Write a new run in one transaction: its *row* (with its parameters' value and the next run
    number), its first *instances* (groups of rows with one key set each), its run-scoped
    *breakpoints* (rows of the breakpoints table) and its ``run_created`` *event*. Returns the row
    as written (``params_codec``, ``params`` and ``seq`` filled in)."""
    written = dict(row)
    with store.begin() as conn:  # a large parameter's file goes again if the run is not written
        enc = store.write_value(conn, params)
        written["params_codec"], written["params"] = enc.codec, enc.data
        # The run's number: the next one, taken under SQLite's write lock or PostgreSQL's advisory
        # lock, so creators queue instead of colliding (the unique index guards it).
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": RUN_SEQ_LOCK})
        written["seq"] = conn.execute(
            t.runs.insert().values(**written, seq=_NEXT_SEQ).returning(t.runs.c.seq)
        ).scalar_one()
        # Copied rows carry every column, fresh ones only a few: one executemany needs one key set.
        for rows in instances:
            if rows:
                conn.execute(t.instances.insert(), list(rows))
        for bp in breakpoints:
            conn.execute(t.breakpoints.insert().values(**bp))
        store.add_event(conn, written["id"], "run_created", actor=actor, ts=written["created_at"], data=event)
    return written


def claim_run(
    store: Store,
    run_id: str,
    previous_owner: str | None,
    values: Mapping[str, Any],
    events: Sequence[tuple[str, Mapping[str, Any]]],
    *,
    actor: str,
    ts: float,
) -> bool:
    """Make this process the owner of *run_id* while its owner is still *previous_owner* (None: no
    owner): set *values* on the run's row and write *events* (``(kind, data)``) in one transaction.
    False when another process claimed it first (nothing is written)."""
    owned = t.runs.c.owner_id.is_(None) if previous_owner is None else t.runs.c.owner_id == previous_owner
    for tries_left in reversed(range(WRITE_TRIES)):
        try:
            with store.engine.begin() as conn:
                res = conn.execute(t.runs.update().where(t.runs.c.id == run_id, owned).values(**values))
                if res.rowcount != 1:
                    return False
                for kind, data in events:
                    store.add_event(conn, run_id, kind, actor=actor, ts=ts, data=data)
            return True
        except sa.exc.IntegrityError:  # an old owner, still writing, took the event id just read: read again
            if not tries_left:
                raise
    raise AssertionError("unreachable: the last try returns or raises")


__all__ = ["claim_run", "create_run", "save_version"]
