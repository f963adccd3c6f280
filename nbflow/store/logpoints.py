"""A logpoint's events, as stored and as read. Each ``logpoint`` event stores only its breakpoint's id,
the attempt (when not the first) and the value: ``{"breakpoint":3,"value":6}``. The breakpoint's
definition is stored once per run, in the ``logpoint_armed`` event its first hit in the run writes, so a
logpoint over 10,000 items does not store its expression 10,000 times (bench/README.md, "Logpoints").
Every read puts the two together: readers see ``{"breakpoint", "expression", "when", "attempt",
"value"}`` (and ``error``), whatever deleted the breakpoint since."""
from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa

from . import schema

LOGPOINT = "logpoint"
LOGPOINT_ARMED = "logpoint_armed"

_STORED = re.compile(r'\{"breakpoint":(\d+),')


def armed_data(breakpoint_id: int, step: str, key: str | None, when: str, expression: str | None,
               condition: str | None, hit_count: int | None) -> str:
    """The ``logpoint_armed`` event's data: the definition the run's ``logpoint`` events refer to."""
    return json.dumps({"breakpoint": breakpoint_id, "step": step, "key": key, "when": when,
                       "expression": expression, "condition": condition, "hit_count": hit_count})


def stored_head(breakpoint_id: int, attempt: int) -> str:
    """A ``logpoint`` event's stored data up to its value (the caller appends the value and ``}``)."""
    if attempt == 1:
        return f'{{"breakpoint":{breakpoint_id},"value":'
    return f'{{"breakpoint":{breakpoint_id},"attempt":{attempt},"value":'


def definitions(conn: sa.Connection, run_id: str, low: int, high: int) -> dict[str, str]:
    """Breakpoint id (as stored text) -> the JSON members a read puts back into its ``logpoint``
    events (``"expression":...,"when":...,``), from the run's ``logpoint_armed`` events (ids in
    (*low*, *high*): the run's range, ``Store.event_range``)."""
    e = schema.events
    stmt = sa.select(e.c.data).where(e.c.id > low, e.c.id < high, e.c.run_id == run_id,
                                     e.c.kind == LOGPOINT_ARMED).order_by(e.c.id)
    out: dict[str, str] = {}
    for (text,) in conn.execute(stmt):
        data = json.loads(text or "{}")
        out[str(data.get("breakpoint"))] = (f'"expression":{json.dumps(data.get("expression"))},'
                                            f'"when":{json.dumps(data.get("when"))},')
    return out


def whole(text: str | None, defs: Mapping[str, str]) -> str | None:
    """A ``logpoint`` event's data as readers see it: its stored *text* with its breakpoint's definition
    (*defs*, :func:`definitions`) and the attempt put back. Text that is already whole (or not
    ours) is returned as it is."""
    if text is None:
        return None
    m = _STORED.match(text)
    if m is None or text.startswith('"expression":', m.end()):  # stored whole, before definitions were apart
        return text
    rest = text[m.end():]
    if not rest.startswith('"attempt":'):
        rest = '"attempt":1,' + rest
    members = defs.get(m.group(1), '"expression":null,"when":null,')
    return f'{{"breakpoint":{m.group(1)},{members}{rest}'


def with_definitions(conn: sa.Connection, run_id: str, low: int, high: int,
                     rows: Iterable[Mapping[Any, Any]]) -> list[Mapping[Any, Any]]:
    """*rows* (event rows with ``kind`` and ``data``), their ``logpoint`` events' data made whole."""
    out = list(rows)
    if not any(r["kind"] == LOGPOINT for r in out):
        return out
    defs = definitions(conn, run_id, low, high)
    return [{**r, "data": whole(r["data"], defs)} if r["kind"] == LOGPOINT else r for r in out]


__all__ = ["LOGPOINT", "LOGPOINT_ARMED", "armed_data", "definitions", "stored_head", "whole", "with_definitions"]
