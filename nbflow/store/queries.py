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

from ..states import InstanceStatus, When
from . import logpoints, schema
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


RUNS_PER_QUERY = 500
"""Run ids bound in one ``IN (...)`` of :func:`status_counts_of_runs` (well under every driver's limit)."""


def status_counts_of_runs(store: Store, run_ids: Iterable[str]) -> dict[str, dict[str, int]]:
    """``{run_id: {status: n}}`` for the instances of many runs, one GROUP BY per :data:`RUNS_PER_QUERY`
    runs (``nbflow runs`` lists 50 runs with one query, not 50); a run without instances is absent."""
    t = schema.instances
    ids = list(dict.fromkeys(run_ids))
    out: dict[str, dict[str, int]] = {}
    with store.engine.connect() as conn:
        for i in range(0, len(ids), RUNS_PER_QUERY):
            chunk = ids[i:i + RUNS_PER_QUERY]
            stmt = (sa.select(t.c.run_id, t.c.status, sa.func.count()).where(t.c.run_id.in_(chunk))
                    .group_by(t.c.run_id, t.c.status))
            for run_id, status, n in conn.execute(stmt):
                out.setdefault(run_id, {})[status] = int(n)
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


def _filter(run_id: str, step: str, status: str | Iterable[str] | None, text: str | None,
            signature: str | None) -> list[sa.ColumnElement[bool]]:
    """The WHERE of a step's instances narrowed by *status*, by *text* (found in the key, the error
    message or the pause reason) and by an error group's *signature*."""
    t = schema.instances
    where = [t.c.run_id == run_id, t.c.step == step]
    if status:
        wanted = [status] if isinstance(status, str) else list(status)
        where.append(t.c.status.in_([str(s) for s in wanted]))
    if text:
        pattern = _like(text)
        where.append(sa.or_(*(c.like(pattern, escape="\\") for c in (t.c.key, t.c.error_message, t.c.pause_reason))))
    if signature is not None:
        where.append(t.c.error_signature == signature)
        where.append(_grouped())
    return where


SORTS = ("item", "duration")
"""What a page can be ordered by in the store (a watch column is ordered where it is evaluated)."""


def instance_page(
    store: Store, run_id: str, step: str, *, status: str | Iterable[str] | None = None, text: str | None = None,
    offset: int = 0, limit: int = 50, signature: str | None = None, sort: str = "item", desc: bool = False,
) -> Page:
    """A page of *step*'s instances (*limit* from *offset*, both already whole and in range), narrowed as
    :func:`_filter` says and ordered by item or by duration (:data:`SORTS`). The count and the page are
    read in one transaction."""
    t = schema.instances
    where = _filter(run_id, step, status, text, signature)
    cols = [t.c[n] for n in PAGE_COLUMNS]
    if sort == "duration":  # instances that have not finished come last either way
        unfinished = sa.case((t.c.finished_at.is_(None), 1), else_=0)
        order: list[sa.ColumnElement[Any]] = [unfinished, _duration().desc() if desc else _duration().asc(), t.c.item]
    else:
        order = [t.c.item.desc() if desc else t.c.item]
    with store.engine.connect() as conn:
        total = int(conn.execute(sa.select(sa.func.count()).select_from(t).where(*where)).scalar_one())
        if offset >= total and total:
            offset = (total - 1) // limit * limit  # the last page, when the filter shrank the list
        query = sa.select(*cols).where(*where).order_by(*order).offset(offset).limit(limit)
        rows = cast("list[_Row]", list(conn.execute(query).mappings()))
    return Page(total, offset, rows)


def _duration() -> sa.ColumnElement[Any]:
    t = schema.instances
    return sa.func.coalesce(t.c.finished_at - t.c.started_at, -1.0)


def filter_keys(
    store: Store, run_id: str, step: str, *, status: str | Iterable[str] | None = None, text: str | None = None,
    signature: str | None = None,
) -> list[str | None]:
    """The key texts of every instance a page filter matches, in item order (what "all matching the
    filter" acts on)."""
    t = schema.instances
    query = sa.select(t.c.key).where(*_filter(run_id, step, status, text, signature)).order_by(t.c.item)
    with store.engine.connect() as conn:
        return [r[0] for r in conn.execute(query)]


def _grouped() -> sa.ColumnElement[bool]:
    """An instance whose stored error is its state now: failed, waiting to retry, or paused on that
    error (a retried instance paused by a breakpoint before its body keeps its old error, not its cause)."""
    t = schema.instances
    return sa.or_(
        t.c.status.in_((InstanceStatus.FAILED.value, InstanceStatus.RETRYING.value)),
        sa.and_(t.c.status == InstanceStatus.PAUSED.value, t.c.pause_reason.like(f"{When.ERROR.value}%")),
    )


class ErrorGroupRow(NamedTuple):
    """One error group of a step: its signature, how many instances and in which status, its first item."""

    signature: str
    size: int
    statuses: dict[str, int]
    first_item: int


def error_groups(store: Store, run_id: str, step: str) -> list[ErrorGroupRow]:
    """The step's errors grouped by signature (one GROUP BY), the largest group first. An instance
    paused by a breakpoint before or after its body carries no error and is in no group."""
    t = schema.instances
    stmt = (
        sa.select(t.c.error_signature, t.c.status, sa.func.count(), sa.func.min(t.c.item))
        .where(t.c.run_id == run_id, t.c.step == step, t.c.error_signature.is_not(None), _grouped())
        .group_by(t.c.error_signature, t.c.status)
    )
    groups: dict[str, ErrorGroupRow] = {}
    with store.engine.connect() as conn:
        for sig, status, n, first in conn.execute(stmt):
            g = groups.get(sig)
            if g is None:
                groups[sig] = ErrorGroupRow(sig, int(n), {status: int(n)}, int(first))
            else:
                g.statuses[status] = int(n)
                groups[sig] = g._replace(size=g.size + int(n), first_item=min(g.first_item, int(first)))
    return sorted(groups.values(), key=lambda g: (-g.size, g.first_item))


def group_examples(store: Store, run_id: str, step: str, first_items: Iterable[int]) -> dict[int, _Row]:
    """The rows (key, error, traceback) of the given items: each error group's first example."""
    t = schema.instances
    items = list(first_items)
    if not items:
        return {}
    stmt = sa.select(t.c.item, t.c.key, t.c.key_codec, t.c.key_value, t.c.error_type, t.c.error_message,
                     t.c.error_traceback).where(t.c.run_id == run_id, t.c.step == step, t.c.item.in_(items))
    with store.engine.connect() as conn:
        return {r["item"]: cast("_Row", r) for r in conn.execute(stmt).mappings()}


def group_keys(store: Store, run_id: str, step: str, signature: str, limit: int | None = None) -> list[str | None]:
    """The key texts of an error group's instances, in item order (at most *limit*)."""
    t = schema.instances
    stmt = (sa.select(t.c.key).where(*_filter(run_id, step, None, None, signature)).order_by(t.c.item)
            .limit(limit))
    with store.engine.connect() as conn:
        return [r[0] for r in conn.execute(stmt)]


TIMELINE_KINDS = ("started", "succeeded", "failed", "attempt_failed", "retrying", "paused", "waiting")
"""The events a step's timeline counts."""


def instance_states(store: Store, run_id: str, step: str) -> list[_Row]:
    """``key``, ``status`` and ``pause_reason`` of each of *step*'s instances, in item order: what a
    command is checked against (no values read: a 100,000-item step's check reads a few MB, not its outputs)."""
    t = schema.instances
    stmt = (sa.select(t.c.key, t.c.status, t.c.pause_reason).where(t.c.run_id == run_id, t.c.step == step)
            .order_by(t.c.item))
    with store.engine.connect() as conn:
        return cast("list[_Row]", list(conn.execute(stmt).mappings()))


_IN_CHUNK = 500  # values per IN (...) list: under every SQLite build's variable limit


def rows_by_key(store: Store, run_id: str, step: str, keys: Iterable[str | None]) -> dict[str | None, _Row]:
    """The whole rows of *step*'s instances whose key texts are *keys* (None: a task's instance), by key;
    keys with no instance are left out. Read in chunks of :data:`_IN_CHUNK` keys."""
    t = schema.instances
    wanted = list(dict.fromkeys(keys))
    out: dict[str | None, _Row] = {}
    with store.engine.connect() as conn:
        if None in wanted:
            for r in conn.execute(sa.select(t).where(t.c.run_id == run_id, t.c.step == step,
                                                     t.c.key.is_(None))).mappings():
                out[None] = cast("_Row", r)
        texts = [k for k in wanted if k is not None]
        for i in range(0, len(texts), _IN_CHUNK):
            stmt = sa.select(t).where(t.c.run_id == run_id, t.c.step == step, t.c.key.in_(texts[i:i + _IN_CHUNK]))
            for r in conn.execute(stmt).mappings():
                out[r["key"]] = cast("_Row", r)
    return out


class Durations(NamedTuple):
    """A step's finished attempts' durations in seconds, sorted (what a timeline's median and p95 read)."""

    values: list[float]
    start: float | None
    end: float | None


def durations(store: Store, run_id: str, step: str) -> Durations:
    """The durations of the step's instances that started and finished, sorted, and the time span of
    the step's timeline events (10,000 floats for a 10,000-item step)."""
    t = schema.instances
    stmt = (sa.select(t.c.finished_at - t.c.started_at)
            .where(t.c.run_id == run_id, t.c.step == step, t.c.started_at.is_not(None), t.c.finished_at.is_not(None))
            .order_by(t.c.finished_at - t.c.started_at))
    e = schema.events
    with store.engine.connect() as conn:
        values = [float(r[0]) for r in conn.execute(stmt)]
        low, high = store.event_range(run_id, conn)
        start, end = conn.execute(
            sa.select(sa.func.min(e.c.ts), sa.func.max(e.c.ts))
            .where(e.c.id > low, e.c.id < high, e.c.run_id == run_id, e.c.step == step, e.c.kind.in_(TIMELINE_KINDS))
        ).one()
    return Durations(values, start, end)


def event_bins(store: Store, run_id: str, step: str, start: float, width: float) -> list[tuple[int, str, int]]:
    """``(bin, kind, n)`` for the step's :data:`TIMELINE_KINDS` events, binned by time from *start* in
    bins of *width* seconds (one GROUP BY over the run's event range)."""
    e = schema.events
    scaled = (e.c.ts - start) / width
    # ts >= start: SQLite's CAST truncates (floor); PostgreSQL's rounds, so floor it there first
    bin_ = sa.cast(scaled if store.is_sqlite else sa.func.floor(scaled), sa.Integer).label("bin")
    with store.engine.connect() as conn:
        low, high = store.event_range(run_id, conn)
        stmt = (sa.select(bin_, e.c.kind, sa.func.count())
                .where(e.c.id > low, e.c.id < high, e.c.run_id == run_id, e.c.step == step,
                       e.c.kind.in_(TIMELINE_KINDS))
                .group_by(bin_, e.c.kind))
        return [(int(b), str(k), int(n)) for b, k, n in conn.execute(stmt)]


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


class EventText(NamedTuple):
    """One event: its id, its instance, its ``data`` as stored (JSON text) and its time."""

    id: int
    step: str | None
    key: str | None
    data: str | None
    ts: float


def events_of_kind(store: Store, run_id: str, kind: str, after_id: int = 0) -> tuple[int, list[EventText]]:
    """The run's events of *kind* newer than event *after_id*, oldest first, and the id of the run's
    newest event when they were read (pass it as *after_id* next time: events are only ever appended,
    so a reader that folds them in reads each one once). Two seeks of the run's event range."""
    e = schema.events
    with store.engine.connect() as conn:
        low, high = store.event_range(run_id, conn)
        last = conn.execute(sa.select(sa.func.max(e.c.id)).where(e.c.id > low, e.c.id < high)).scalar() or low
        start = max(low, after_id)
        if last <= start:
            return max(last, after_id), []
        stmt = (sa.select(e.c.id, e.c.step, e.c.key, e.c.data, e.c.ts)
                .where(e.c.id > start, e.c.id <= last, e.c.kind == kind).order_by(e.c.id))
        events = [EventText(*r) for r in conn.execute(stmt)]
        if kind == logpoints.LOGPOINT and events:
            defs = logpoints.definitions(conn, run_id, low, high)
            events = [ev._replace(data=logpoints.whole(ev.data, defs)) for ev in events]
        return last, events


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
        events = cast("list[_Row]", logpoints.with_definitions(conn, run_id, low, high, conn.execute(
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
    "PAGE_COLUMNS",
    "SORTS",
    "TIMELINE_KINDS",
    "Durations",
    "ErrorGroupRow",
    "EventText",
    "InstanceRead",
    "Page",
    "change_token",
    "durations",
    "error_groups",
    "event_bins",
    "events_of_kind",
    "filter_keys",
    "group_examples",
    "group_keys",
    "held_counts",
    "instance_counts",
    "instance_page",
    "instance_stamp",
    "instance_with_events",
    "runs_of",
    "status_counts_of_runs",
]
