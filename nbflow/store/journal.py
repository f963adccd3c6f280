"""The owner's journal: the statements a run's scheduler writes with, compiled once per dialect, and
the one transaction per flush that commits a turn (instance rows, blobs, signals, events, command
results, and when due the run row with its lease) on a DB-API connection held for the run's lifetime.

The scheduler builds its rows as tuples in the orders named here (``INST_COLS``, ``UPDATE_KEYS``,
``EVENT_KEYS``...); no SQLAlchemy runs per turn (B1 in bench/)."""
from __future__ import annotations

import contextlib
import operator
import os
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from .._util import HOST, now
from . import schema as t
from .codec import Encoded
from .store import Store

EVENT_ID_SPAN = t.EVENT_ID_SPAN
"""How many event ids one run may use (see ``schema.EVENT_ID_SPAN``)."""
INST_COLS = tuple(c.name for c in t.instances.columns)
"""An inserted instance row's values, in this order (the key's value last: it is written once)."""
_KEY_COLS = ("key_codec", "key_value")  # written once, with the row: a key never changes
UPDATE_KEYS = (*INST_COLS[3:-2], "b_run", "b_step", "b_item")
"""An updated instance row's values: every column but the key's, then the row's (run, step, item)."""
EVENT_KEYS = ("id", "run_id", "step", "key", "kind", "actor", "data", "ts")
"""An event row's values, in this order."""
_BLOB_KEYS = tuple(c.name for c in t.blobs.columns)
_SIGNAL_KEYS = tuple(c.name for c in t.signals.columns)
_HIT_KEYS = ("run_id", "breakpoint_id", "hits")
_COMMAND_KEYS = ("b_id", "applied_at", "result", "message")  # a command's outcome, as the scheduler's cmd_done has it
_RUN_KEYS = ("status", "updated_at", "heartbeat_at", "version", "finished_at", "owner_id", "owner_pid", "owner_host",
             "b_id", "b_owner")
_RUN_UPDATE = (
    t.runs.update()
    .where(t.runs.c.id == sa.bindparam("b_id"), t.runs.c.owner_id == sa.bindparam("b_owner"))
    .values(
        status=sa.bindparam("status"), updated_at=sa.bindparam("updated_at"), heartbeat_at=sa.bindparam("heartbeat_at"),
        version=sa.bindparam("version"),
        finished_at=sa.func.coalesce(sa.bindparam("finished_at", type_=sa.Float), t.runs.c.finished_at),
        owner_id=sa.bindparam("owner_id"), owner_pid=sa.bindparam("owner_pid"), owner_host=sa.bindparam("owner_host"),
    )
)
"""The run row's status and heartbeat, written by its owner only; finished_at once, owner cleared at the end."""
_UPDATE = (
    t.instances.update()
    .where(
        t.instances.c.run_id == sa.bindparam("b_run"),
        t.instances.c.step == sa.bindparam("b_step"),
        t.instances.c.item == sa.bindparam("b_item"),
    )
    .values({c.name: sa.bindparam(c.name) for c in t.instances.columns
             if c.name not in ("run_id", "step", "item", *_KEY_COLS)})
)
assert INST_COLS == (
    "run_id", "step", "item", "key", "status", "attempt", "inputs_codec", "inputs", "output_codec", "output",
    "saved_codec", "saved", "error_type", "error_message", "error_traceback", "error_signature", "pause_reason",
    "held_by", "released", "next_attempt_at", "deadline", "started_at", "finished_at", "logs", "token", "key_codec",
    "key_value",
), "Inst.values() must follow the instances table's columns (the key's value last: inserts only)"


class LostOwnership(RuntimeError):
    """The run row names another owner: a process took the run over from this scheduler."""


class Journal:
    """The writes of one run's owner, on its own connection (no pool round trip per turn)."""

    def __init__(self, store: Store, run_id: str, owner_id: str) -> None:
        self.store = store
        self.run_id = run_id
        self.owner_id = owner_id
        self._conn: sa.Connection | None = None
        self._raw: tuple[Any, Any] = (None, None)  # the DB-API connection and cursor
        self._sql = _statements(store)

    def last_event_id(self) -> int:
        """The id of the run's newest event."""
        with self.store.engine.connect() as conn:
            return self.store.last_event_id(self.run_id, conn)

    def connect(self) -> sa.Connection:
        """The journal's connection, opened on first use and held until :meth:`close`."""
        if self._conn is None:
            self._conn = self.store.engine.connect()
            raw = self._conn.connection.dbapi_connection
            assert raw is not None  # a connection just checked out of the pool holds its driver's
            self._raw = (raw, raw.cursor())
        return self._conn

    def close(self) -> None:
        """Drop the connection (a broken one is simply dropped); the next write opens another."""
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._raw[1].close()
            self._raw = (None, None)
            try:
                self._conn.close()
            except Exception:  # noqa: BLE001, S110 - a broken connection is simply dropped
                pass
            self._conn = None

    def pending_commands(self) -> list[Mapping[str, Any]]:
        """The run's commands not yet applied, oldest first. On an error the connection is dropped."""
        conn = self.connect()
        try:
            if self.store.is_sqlite:  # the same query on the DB-API cursor: no SQLAlchemy compile per run
                cur = self._raw[1]
                cur.execute(self._sql["poll"][0], (self.run_id,))
                names = [d[0] for d in cur.description]
                return [dict(zip(names, r)) for r in cur.fetchall()]
            with conn.begin():
                return self.store.pending_commands(self.run_id, conn)
        except Exception:
            self.close()
            raise

    def write(
        self, inserts: list[tuple[Any, ...]], updates: list[tuple[Any, ...]], blobs: Sequence[Encoded],
        signal_rows: Sequence[Mapping[str, Any]], events: list[tuple[Any, ...]], cmd_done: Sequence[Mapping[str, Any]],
        run: tuple[str, str, float, bool, bool] | None,
        breakpoints: tuple[Sequence[tuple[str, int, int]], Sequence[int]] | None = None,
    ) -> None:
        """One transaction: instance rows to insert (``INST_COLS``) and update (``UPDATE_KEYS``), blobs,
        signals, events (``EVENT_KEYS``), command outcomes and, when *run* is given as (status, version,
        time, terminal, final), the run row, whose owner must still be this journal's
        (:class:`LostOwnership` otherwise). A terminal run's own breakpoints go with it. *breakpoints*:
        (hits as (run, breakpoint id, hits), ids of one-shot breakpoints that fired and go)."""
        sql = self._sql
        if self._conn is None:
            self.connect()
        raw, cur = self._raw
        try:
            if inserts:
                _executemany(cur, sql["insert"], inserts)
            if updates:
                _executemany(cur, sql["update"], updates)
            if blobs:  # content-addressed: another run may have stored the same value
                _executemany(cur, sql["blob"], [tuple(e.blob[k] for k in _BLOB_KEYS) for e in blobs if e.blob])
            if signal_rows:
                _executemany(cur, sql["signal"], [tuple(r[k] for k in _SIGNAL_KEYS) for r in signal_rows])
            if events:
                _executemany(cur, sql["event"], events)
            if breakpoints is not None:
                hits, gone = breakpoints
                if hits:
                    _executemany(cur, sql["hits_clear"], [h[:2] for h in hits])
                    _executemany(cur, sql["hits"], list(hits))
                if gone:
                    _executemany(cur, sql["bp_delete"], [(b,) for b in gone])
            if cmd_done:
                _executemany(cur, sql["command"], [tuple(d[k] for k in _COMMAND_KEYS) for d in cmd_done])
            if run is not None:
                status, version, t0, terminal, final = run
                _executemany(cur, sql["run"], [(
                    status, t0, t0, version, t0 if terminal else None,
                    None if final else self.owner_id, None if final else os.getpid(), None if final else HOST,
                    self.run_id, self.owner_id,
                )])
                if cur.rowcount != 1:
                    raise LostOwnership(f"run {self.run_id} was taken over by another owner")
                if terminal:
                    _executemany(cur, sql["unbreak"], [(self.run_id,)])
            raw.commit()
        except BaseException:
            raw.rollback()
            raise

    def event_at(self, event_id: int) -> tuple[int, tuple[Any, ...] | None]:
        """The run's newest event id, and the (kind, ts) of the event stored with *event_id* (None: no such event)."""
        with self.store.engine.connect() as conn:
            last = self.store.last_event_id(self.run_id, conn)
            there = conn.execute(
                sa.select(t.events.c.kind, t.events.c.ts).where(t.events.c.id == event_id)
            ).first()
        return last, None if there is None else tuple(there)

    def hand_back(self, error: str) -> None:
        """Give up the lease on the run (if this journal's owner still holds it) and record why, in a
        transaction of its own."""
        self.close()
        with self.store.engine.begin() as conn:
            released = conn.execute(
                t.runs.update()
                .where(t.runs.c.id == self.run_id, t.runs.c.owner_id == self.owner_id)
                .values(owner_id=None, owner_pid=None, owner_host=None, updated_at=now())
            ).rowcount
            if released:
                self.store.add_event(conn, self.run_id, "scheduler_stopped", ts=now(), data={"error": error})


_STATEMENTS: dict[str, dict[str, tuple[str, Any]]] = {}


def _statements(store: Store) -> dict[str, tuple[str, Any]]:
    """The hot-path statements, compiled once per dialect: (SQL text, shape). The scheduler builds
    rows as tuples; shape None: the driver takes them as they are; a tuple of keys: it takes dicts;
    an itemgetter: it takes tuples in another order."""
    name = store.engine.dialect.name
    if name not in _STATEMENTS:

        def rows_as(sql: tuple[str, tuple[str, ...] | None], keys: tuple[str, ...]) -> tuple[str, Any]:
            text, order = sql
            if order == keys:
                return text, None
            if order is None:  # a named paramstyle (PostgreSQL drivers): dicts
                return text, keys
            return text, operator.itemgetter(*(keys.index(k) for k in order))  # positional, another order

        _STATEMENTS[name] = {
            "insert": rows_as(store.compiled(t.instances.insert(), INST_COLS), INST_COLS),
            "update": rows_as(store.compiled(_UPDATE), UPDATE_KEYS),
            "event": rows_as(store.compiled(t.events.insert(), EVENT_KEYS), EVENT_KEYS),
            "blob": rows_as(store.compiled(store.blob_insert, _BLOB_KEYS), _BLOB_KEYS),
            "signal": rows_as(store.compiled(t.signals.insert(), _SIGNAL_KEYS), _SIGNAL_KEYS),
            "run": rows_as(store.compiled(_RUN_UPDATE), _RUN_KEYS),
            "unbreak": rows_as(
                store.compiled(t.breakpoints.delete().where(t.breakpoints.c.run_id == sa.bindparam("b_run"))),
                ("b_run",),
            ),
            "hits_clear": rows_as(store.compiled(t.breakpoint_hits.delete().where(
                t.breakpoint_hits.c.run_id == sa.bindparam("b_run"),
                t.breakpoint_hits.c.breakpoint_id == sa.bindparam("b_bp"))), ("b_run", "b_bp")),
            "hits": rows_as(store.compiled(t.breakpoint_hits.insert(), _HIT_KEYS), _HIT_KEYS),
            "bp_delete": rows_as(
                store.compiled(t.breakpoints.delete().where(t.breakpoints.c.id == sa.bindparam("b_id"))), ("b_id",)),
            "poll": store.compiled(
                sa.select(t.commands)
                .where(t.commands.c.run_id == sa.bindparam("run_id"), t.commands.c.applied_at.is_(None))
                .order_by(t.commands.c.id)
            ),
            "command": rows_as(store.compiled(
                t.commands.update()
                .where(t.commands.c.id == sa.bindparam("b_id"))
                .values(applied_at=sa.bindparam("applied_at"), result=sa.bindparam("result"),
                        message=sa.bindparam("message"))
            ), _COMMAND_KEYS),
        }
    return _STATEMENTS[name]


def _executemany(cur: Any, sql: tuple[str, Any], rows: list[tuple[Any, ...]]) -> None:
    """Run a compiled statement over tuple rows on a DB-API cursor (see _statements for the shapes)."""
    text, shape = sql
    if shape is None:
        cur.executemany(text, rows)
    elif isinstance(shape, tuple):
        cur.executemany(text, [dict(zip(shape, r)) for r in rows])
    else:
        cur.executemany(text, [shape(r) for r in rows])


__all__ = ["EVENT_ID_SPAN", "EVENT_KEYS", "INST_COLS", "UPDATE_KEYS", "Journal", "LostOwnership"]
