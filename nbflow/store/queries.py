"""The reads behind the live views (``nbflow.views``: the widget, the sidebar, the REST API, the CLI's
``-o json``), as functions over a :class:`~nbflow.store.Store`. Each costs the same for 10 or 100,000
instances: counts come from GROUP BY queries, instances from one page, one instance's row by its key.
The store's own row reads (``Store.run_row``, ``instance_rows``, ``event_rows``, ...) stay on the store;
what is here is what only the views and the papermill side ask."""
from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple, cast

import sqlalchemy as sa

from ..states import InstanceStatus
from . import schema
from .store import Store

# SQLAlchemy types a RowMapping's keys as names or columns; these rows are read by name.
_Row = Mapping[str, Any]

PAGE_COLUMNS = (
    "step", "item", "key", "status", "attempt", "pause_reason", "error_type", "error_message", "held_by",
    "started_at", "finished_at", "next_attempt_at", "deadline", "key_codec", "key_value",
)
"""The columns of an instance row :func:`instance_page` reads: its state, without its values."""

_STAMP_COLUMNS = ("status", "attempt", "pause_reason", "held_by", "error_type", "started_at", "finished_at",
                  "next_attempt_at", "inputs_codec", "output_codec")
_STAMP_SIZES = ("inputs", "output", "logs", "saved", "error_traceback")


def instance_counts(store: Store, run_id: str) -> dict[str, dict[str, int]]:
    """``{step: {status: n}}`` for the run's instances, from one GROUP BY query."""
    t = schema.instances
    stmt = sa.select(t.c.step, t.c.status, sa.func.count()).where(t.c.run_id == run_id).group_by(t.c.step, t.c.status)
    out: dict[str, dict[str, int]] = {}
    with store.engine.connect() as conn:
        for step, status, n in conn.execute(stmt):
            out.setdefault(step, {})[status] = int(n)
    return out


def held_counts(store: Store, run_id: str) -> dict[int, int]:
    """Breakpoint id (``states.BREAK_ON_ERROR`` for the run's flag) -> how many paused instances it
    holds, grouped by the ``held_by`` text (which has few distinct values)."""
    t = schema.instances
    stmt = (
        sa.select(t.c.held_by, sa.func.count())
        .where(t.c.run_id == run_id, t.c.status == InstanceStatus.PAUSED.value, t.c.held_by.is_not(None))
        .group_by(t.c.held_by)
    )
    out: dict[int, int] = {}
    with store.engine.connect() as conn:
        for held_by, n in conn.execute(stmt):
            for bid in json.loads(held_by or "[]"):
                out[bid] = out.get(bid, 0) + int(n)
    return out


class Page(NamedTuple):
    """One page of a step's instance rows (:data:`PAGE_COLUMNS`), in item order."""

    total: int
    """How many instances match, over every page."""
    offset: int
    """Where the page starts: the asked offset, or the last page's when the matches end before it."""
    rows: list[_Row]


def _like(text: str) -> str:
    """A LIKE pattern (escape ``\\``) that finds *text* anywhere, its own ``%`` and ``_`` taken literally."""
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def instance_page(
    store: Store, run_id: str, step: str, *, status: str | Iterable[str] | None = None, text: str | None = None,
    offset: int = 0, limit: int = 50,
) -> Page:
    """A page of *step*'s instances (*limit* from *offset*, both already whole and in range), narrowed by
    *status* and by *text* (found in the key, the error message or the pause reason). The count and the
    page are read in one transaction."""
    t = schema.instances
    where = [t.c.run_id == run_id, t.c.step == step]
    if status:
        wanted = [status] if isinstance(status, str) else list(status)
        where.append(t.c.status.in_([str(s) for s in wanted]))
    if text:
        pattern = _like(text)
        where.append(sa.or_(*(c.like(pattern, escape="\\") for c in (t.c.key, t.c.error_message, t.c.pause_reason))))
    cols = [t.c[n] for n in PAGE_COLUMNS]
    with store.engine.connect() as conn:
        total = int(conn.execute(sa.select(sa.func.count()).select_from(t).where(*where)).scalar_one())
        if offset >= total and total:
            offset = (total - 1) // limit * limit  # the last page, when the filter shrank the list
        query = sa.select(*cols).where(*where).order_by(t.c.item).offset(offset).limit(limit)
        rows = cast("list[_Row]", list(conn.execute(query).mappings()))
    return Page(total, offset, rows)


def change_token(store: Store, run_id: str) -> tuple[Any, ...]:
    """A cheap value that changes whenever what a debug view shows may have changed: the newest
    event of the run, the run row's status and update time, and the breakpoints that apply to it."""
    r, b = schema.runs, schema.breakpoints
    with store.engine.connect() as conn:
        run = conn.execute(
            sa.select(r.c.status, r.c.updated_at, r.c.owner_id, r.c.workflow).where(r.c.id == run_id)
        ).first()
        if run is None:
            return (None,)
        last = store.last_event_id(run_id, conn)
        bps = conn.execute(
            sa.select(sa.func.count(), sa.func.max(b.c.id), sa.func.sum(b.c.id)).where(
                b.c.workflow == run.workflow, sa.or_(b.c.run_id.is_(None), b.c.run_id == run_id)
            )
        ).first()
    return (run.status, run.updated_at, run.owner_id, last, tuple(bps or ()))


class InstanceRead(NamedTuple):
    """One instance's whole row and its events, read in one transaction."""

    row: _Row | None
    """Every column of the instance (None when it does not exist yet)."""
    events: list[_Row]
    """Its events, oldest first; each with ``n``, its 1-based position in the run's whole history."""


def instance_with_events(store: Store, run_id: str, step: str, key: str | None) -> InstanceRead:
    """The instance of *step* whose key text is *key* (None: a task's one instance), with its events."""
    t, e = schema.instances, schema.events
    key_cond = t.c.key.is_(None) if key is None else t.c.key == str(key)
    ekey = e.c.key.is_(None) if key is None else e.c.key == str(key)
    with store.engine.connect() as conn:
        row = conn.execute(sa.select(t).where(t.c.run_id == run_id, t.c.step == step, key_cond)).mappings().first()
        low, high = store.event_range(run_id, conn)
        events = cast("list[_Row]", list(conn.execute(
            sa.select(e, (e.c.id - low).label("n"))
            .where(e.c.id > low, e.c.id < high, e.c.run_id == run_id, e.c.step == step, ekey)
            .order_by(e.c.id)
        ).mappings()))
    return InstanceRead(cast("_Row | None", row), events)


def instance_stamp(store: Store, run_id: str, step: str, key: str | None) -> tuple[Any, ...] | None:
    """A cheap value that changes when what ``views.instance_detail`` shows of this instance may have
    changed (its state columns and the sizes of its values), or None when it does not exist."""
    t = schema.instances
    cols = [t.c[n] for n in _STAMP_COLUMNS]
    sizes = [sa.func.length(t.c[n]) for n in _STAMP_SIZES]
    key_cond = t.c.key.is_(None) if key is None else t.c.key == str(key)
    with store.engine.connect() as conn:
        row = conn.execute(sa.select(*cols, *sizes).where(t.c.run_id == run_id, t.c.step == step, key_cond)).first()
    return None if row is None else tuple(row)


def runs_of(store: Store, actor: str, since: float = 0.0) -> list[str]:
    """Runs that *actor* created or took over since *since*, oldest first (what a papermill run of a
    notebook drove: ``nbflow.batch``)."""
    e = schema.events
    stmt = (
        sa.select(e.c.run_id)
        .where(e.c.actor == actor, e.c.kind.in_(("run_created", "taken_over")), e.c.ts >= since)
        .order_by(e.c.ts, e.c.id)  # ids are per run (schema.EVENT_ID_SPAN): time orders across runs
    )
    with store.engine.connect() as conn:
        ids = [r[0] for r in conn.execute(stmt)]
    return list(dict.fromkeys(ids))


__all__ = [
    "PAGE_COLUMNS", "InstanceRead", "Page", "change_token", "held_counts", "instance_counts", "instance_page",
    "instance_stamp", "instance_with_events", "runs_of",
]
