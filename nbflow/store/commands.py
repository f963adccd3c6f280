"""The rows the command path writes outside a scheduler: commands, a signal delivery judged for a
finished run (command, history event), and breakpoints. :mod:`nbflow.commands` decides; this writes."""
from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from . import codec
from . import schema as t
from .store import Store


def _new_id(result: sa.CursorResult[Any]) -> int:
    """The id the database gave the one row an INSERT wrote (SQLAlchemy types it as absent for other statements)."""
    pk = result.inserted_primary_key
    assert pk is not None
    new_id: int = pk[0]
    return new_id


def _target(step: str | None, keys: list[str | None] | None) -> str:
    return json.dumps({"step": step, "keys": keys})


def insert_command(
    store: Store, run_id: str, verb: str, step: str | None, keys: list[str | None] | None,
    payload: Mapping[str, Any], actor: str, reason: str | None, created_at: float,
) -> int:
    """Write one command for the run's owner to apply; returns its id. The payload is encoded as every
    stored value (a large one goes to a file, removed again if the row is not written)."""
    enc = codec.encode(dict(payload), f"payload of {verb}")
    with store.begin() as conn:
        enc = store.write_value(conn, enc)
        return _new_id(conn.execute(t.commands.insert().values(
            run_id=run_id, verb=verb, target=_target(step, keys), payload_codec=enc.codec, payload=enc.data,
            actor=actor, reason=reason, created_at=created_at,
        )))


@dataclass(frozen=True)
class SignalTarget:
    """What a delivery to a finished run is judged on: the instance (None if it never existed) and
    whether the token was received before."""

    key: str | None
    status: str | None
    error_type: str | None
    received: bool


def _signal_target(conn: sa.Connection, token: str, run_id: str, step: str, item: int) -> SignalTarget:
    inst = conn.execute(sa.select(t.instances.c.key, t.instances.c.status, t.instances.c.error_type).where(
        t.instances.c.run_id == run_id, t.instances.c.step == step, t.instances.c.item == item,
    )).first()
    received = conn.execute(sa.select(t.signals.c.token).where(t.signals.c.token == token)).first() is not None
    if inst is None:
        return SignalTarget(None, None, None, received)
    return SignalTarget(inst[0], inst[1], inst[2], received)


SignalAnswer = tuple[str, str, str, Mapping[str, Any]]
"""How a delivery without an owner is answered: (result, message, event kind, event data)."""


def record_signal_answer(
    store: Store, token: str, run_id: str, step: str, item: int, name: str, actor: str,
    judge: Callable[[SignalTarget], SignalAnswer], ts: float,
) -> tuple[int, SignalTarget, str, str]:
    """Judge a delivery no owner will answer (*judge*, on what the store holds now) and record it in
    one transaction: an applied command row and its history event. Returns (command id, target,
    result, message)."""
    with store.begin() as conn:
        target = _signal_target(conn, token, run_id, step, item)
        result, message, kind, data = judge(target)
        enc = store.write_value(conn, codec.encode({"token": token, "name": name}, "signal"))
        cid = _new_id(conn.execute(t.commands.insert().values(
            run_id=run_id, verb="signal", target=_target(step, None), payload_codec=enc.codec, payload=enc.data,
            actor=actor, created_at=ts, applied_at=ts, result=result, message=message,
        )))
        store.add_event(conn, run_id, kind, step=step, key=target.key, actor=actor, data=dict(data), ts=ts)
    return cid, target, result, message


def insert_breakpoint(
    store: Store, workflow: str, run_id: str | None, columns: Mapping[str, Any], actor: str, created_at: float,
) -> int:
    """Write one breakpoint (*columns*: :meth:`nbflow.breakpoints.Breakpoint.row`); returns its id."""
    with store.engine.begin() as conn:
        return _new_id(conn.execute(t.breakpoints.insert().values(
            workflow=workflow, run_id=run_id, **columns, created_by=actor, created_at=created_at,
        )))


def delete_breakpoints(store: Store, workflow: str, step: str, key: str | None, run_id: str | None) -> list[int]:
    """Delete the breakpoints on *step* (only *key*'s when given) in the scope; returns their ids."""
    c = t.breakpoints.c
    where = [c.workflow == workflow, c.step == step, c.run_id.is_(None) if run_id is None else c.run_id == run_id]
    if key is not None:
        where.append(c.key == key)
    with store.engine.begin() as conn:
        ids = [r[0] for r in conn.execute(sa.select(c.id).where(*where))]
        if ids:
            conn.execute(t.breakpoints.delete().where(c.id.in_(ids)))
    return ids
