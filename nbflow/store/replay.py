"""The reads behind time travel (``nbflow.timetravel``): a run's event range, the heads of its events
(id, instance, kind: no data) to fold, the instances' identities to number them, and a few events and
instance rows by id or item. Each read is one range seek of the events table or one run's instance rows."""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple, cast

import sqlalchemy as sa

from ..errors import StoreError
from . import logpoints, schema
from .store import Store

_Row = Mapping[str, Any]
_IN_CHUNK = 500  # ids per IN (...) list: under every SQLite build's variable limit


class Bounds(NamedTuple):
    """A run's event ids lie in ``(low, high)``; ``last`` is its newest (``low`` when it has none)."""

    low: int
    high: int
    last: int
    created_at: float

    @property
    def total(self) -> int:
        """How many events the run has (ids are dense: the n-th is ``low + n``)."""
        return self.last - self.low


def bounds(store: Store, run_id: str) -> Bounds:
    """The run's event range, newest event and creation time (two primary-key seeks)."""
    e, r = schema.events, schema.runs
    with store.engine.connect() as conn:
        low, high = store.event_range(run_id, conn)
        last = conn.execute(sa.select(sa.func.max(e.c.id)).where(e.c.id > low, e.c.id < high)).scalar() or low
        created = conn.execute(sa.select(r.c.created_at).where(r.c.id == run_id)).scalar()
    return Bounds(int(low), int(high), int(last), float(created or 0.0))


def identities(store: Store, run_id: str) -> Sequence[tuple[Any, ...]]:
    """``(step, item, key, status, finished_at)`` of each of the run's instances, in (step, item) order,
    as plain tuples on the DB-API cursor (100,000 of them to number once)."""
    t = schema.instances
    sql = store.compiled(
        sa.select(t.c.step, t.c.item, t.c.key, t.c.status, t.c.finished_at)
        .where(t.c.run_id == sa.bindparam("run_id")).order_by(t.c.step, t.c.item)
    )
    return cast("Sequence[tuple[Any, ...]]", store.raw_rows(sql, {"run_id": run_id}))


def heads(store: Store, run_id: str, after_id: int, upto: int) -> Sequence[tuple[Any, ...]]:
    """``(id, step, key, kind)`` of the run's events in ``(after_id, upto]``, oldest first, without their
    data and without ``logpoint`` events (they change no state)."""
    e = schema.events
    sql = store.compiled(
        sa.select(e.c.id, e.c.step, e.c.key, e.c.kind)
        .where(e.c.id > sa.bindparam("a"), e.c.id <= sa.bindparam("b"), e.c.kind != sa.bindparam("k"))
        .order_by(e.c.id)
    )
    return cast("Sequence[tuple[Any, ...]]", store.raw_rows(sql, {"a": after_id, "b": upto, "k": logpoints.LOGPOINT}))


def events_by_id(store: Store, ids: Iterable[int]) -> dict[int, _Row]:
    """Whole event rows (data included) by id, read in chunks of primary-key lookups."""
    e = schema.events
    wanted = sorted(set(ids))
    out: dict[int, _Row] = {}
    with store.engine.connect() as conn:
        for i in range(0, len(wanted), _IN_CHUNK):
            for r in conn.execute(sa.select(e).where(e.c.id.in_(wanted[i:i + _IN_CHUNK]))).mappings():
                out[int(r["id"])] = cast("_Row", r)
    return out


def event_row(store: Store, run_id: str, event_id: int) -> _Row | None:
    """One event of the run with ``n``, its 1-based position (logpoints' definitions put back)."""
    e = schema.events
    with store.engine.connect() as conn:
        low, high = store.event_range(run_id, conn)
        if not low < event_id < high:
            return None
        rows = list(conn.execute(sa.select(e, (e.c.id - low).label("n")).where(e.c.id == event_id)).mappings())
        found = logpoints.with_definitions(conn, run_id, low, high, rows)
    return cast("_Row", found[0]) if found else None


def instance_rows_at(store: Store, run_id: str, step: str, items: Iterable[int]) -> dict[int, _Row]:
    """Whole instance rows of *step* at *items*, by item (chunks of primary-key lookups)."""
    t = schema.instances
    wanted = sorted(set(items))
    out: dict[int, _Row] = {}
    with store.engine.connect() as conn:
        for i in range(0, len(wanted), _IN_CHUNK):
            stmt = sa.select(t).where(t.c.run_id == run_id, t.c.step == step, t.c.item.in_(wanted[i:i + _IN_CHUNK]))
            for r in conn.execute(stmt).mappings():
                out[int(r["item"])] = cast("_Row", r)
    return out


def durations(store: Store, run_id: str, step: str) -> dict[int, float | None]:
    """Each of *step*'s instances' last attempt's duration in seconds now, by item (None: not finished)."""
    t = schema.instances
    stmt = sa.select(t.c.item, t.c.finished_at - t.c.started_at).where(t.c.run_id == run_id, t.c.step == step)
    with store.engine.connect() as conn:
        return {int(item): None if d is None else float(d) for item, d in conn.execute(stmt)}


def saved_fold(store: Store, run_id: str, fmt: int) -> tuple[int, bytes] | None:
    """``(upto, data)`` of the run's folded history kept by :func:`save_fold` in format *fmt* (None: none)."""
    t = schema.travel_folds
    with store.engine.connect() as conn:
        row = conn.execute(sa.select(t.c.upto, t.c.data).where(t.c.run_id == run_id, t.c.format == fmt)).first()
    return None if row is None else (int(row[0]), bytes(row[1]))


SAVE_WAIT_MS = 200
"""How long keeping a fold waits for SQLite's write lock (another connection's transaction) before it
gives up: a reader's ``run.at()`` must not wait the store's 30 s busy timeout for a cache."""


def save_fold(store: Store, run_id: str, upto: int, fmt: int, data: bytes, ts: float) -> bool:
    """Keep the run's folded history up to event *upto* (it replaces the one kept, in one transaction).
    False when the store cannot be written now (read-only, or its write lock is held for more than
    :data:`SAVE_WAIT_MS`): it is a cache."""
    t = schema.travel_folds
    kept = False
    with store.engine.connect() as conn:
        waited = None
        try:
            if conn.dialect.name == "sqlite":
                waited = conn.exec_driver_sql("PRAGMA busy_timeout").scalar()
                conn.exec_driver_sql(f"PRAGMA busy_timeout={SAVE_WAIT_MS}")
            conn.execute(t.delete().where(t.c.run_id == run_id))
            conn.execute(t.insert().values(run_id=run_id, upto=upto, format=fmt, data=data, created_at=ts))
            conn.commit()
            kept = True
        except (sa.exc.DBAPIError, StoreError):  # the store says which (read-only, locked): a cache does without
            pass
        finally:
            try:
                conn.rollback()
                if waited is not None:  # the pooled connection goes back with the store's own timeout
                    conn.exec_driver_sql(f"PRAGMA busy_timeout={int(waited)}")
                    conn.commit()
            except (sa.exc.DBAPIError, StoreError):
                conn.invalidate()  # never back to the pool with the short timeout
    return kept


def marks(store: Store, run_id: str, kinds: Sequence[str], limit: int) -> list[_Row]:
    """The run's first *limit* events of *kinds* (id, n, kind, step, key, ts), oldest first."""
    e = schema.events
    with store.engine.connect() as conn:
        low, high = store.event_range(run_id, conn)
        stmt = (sa.select(e.c.id, (e.c.id - low).label("n"), e.c.kind, e.c.step, e.c.key, e.c.ts)
                .where(e.c.id > low, e.c.id < high, e.c.kind.in_(list(kinds))).order_by(e.c.id).limit(limit))
        return cast("list[_Row]", list(conn.execute(stmt).mappings()))


__all__ = [
    "Bounds", "bounds", "durations", "event_row", "events_by_id", "heads", "identities", "instance_rows_at", "marks",
    "save_fold", "saved_fold",
]
