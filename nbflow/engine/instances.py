"""The scheduler's in-memory instance record (:class:`Inst`) and its conversion from and to rows."""
from __future__ import annotations

import contextlib
import functools
import gc
import json
from collections.abc import Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any

from ..states import InstanceStatus as S
from ..states import label
from ..store.codec import Encoded
from ..triage import error_signature
from .executor import Result

MISSING: Any = object()
"""An instance's decoded value or operator-edited inputs not decoded yet."""
_STATUS = {m.value: m for m in S}
_STATUS_TEXT = {m: m.value for m in S}


@dataclass(slots=True, eq=False)
class Inst:
    """The scheduler's in-memory copy of one instance row."""

    step: str
    item: int
    key: str | None  # the key's text: what breakpoints, addresses and events use
    status: S
    attempt: int = 0
    inputs: Encoded | None = None
    out: Encoded | None = None
    saved: Encoded | None = None
    error: tuple[str, str, str] | None = None
    pause_reason: str | None = None
    # Empty by default without a container per instance (10,000 items: 20,000 fewer objects for the
    # garbage collector to walk, B2 in bench/); they are replaced, never changed in place.
    held_by: Sequence[int] = ()
    released: AbstractSet[int] = frozenset()
    next_attempt_at: float | None = None
    deadline: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    logs: str | None = None
    token: str | None = None
    key_enc: tuple[str, bytes] | None = None  # the key's value as (codec, bytes); None: the text is the key
    new: bool = True
    value: Any = MISSING
    overrides: Any = MISSING
    pending_error: Result | None = None  # the failed attempt an error breakpoint is holding
    hydrated: bool = True  # False: loaded without its values (a finished instance after a takeover)

    @property
    def ident(self) -> tuple[str, int]:
        return (self.step, self.item)

    @property
    def label(self) -> str:
        return label(self.step, self.key)

    def values(self, run_id: str) -> tuple[Any, ...]:
        """The row in ``store.journal.INST_COLS`` order but the key's value: what the flush writes
        (an insert adds ``key_enc``)."""
        i, o, sv, err = self.inputs, self.out, self.saved, self.error
        return (
            run_id, self.step, self.item, self.key, _STATUS_TEXT[self.status], self.attempt,
            i.codec if i else None, i.data if i else None,
            o.codec if o else None, o.data if o else None,
            sv.codec if sv else None, sv.data if sv else None,
            err[0] if err else None, err[1] if err else None, err[2] if err else None,
            error_signature(*err) if err else None,
            self.pause_reason,
            json.dumps(self.held_by) if self.held_by else None,
            _ids_text(self.released) if self.released else None,
            self.next_attempt_at, self.deadline, self.started_at, self.finished_at, self.logs, self.token,
        )

    @classmethod
    def light(cls, r: Sequence[Any]) -> Inst:
        """From ``Store.STATE_COLUMNS``: everything but the values, which load on first use. Built
        slot by slot, not through ``__init__``'s keywords: a takeover builds 10,000 (B3 in bench/)."""
        inst = _new(cls)
        inst.step, inst.item, inst.key, inst.status, inst.attempt = r[0], r[1], r[2], _STATUS[r[3]], r[4]
        inst.inputs = inst.out = inst.saved = inst.logs = inst.pending_error = None
        inst.error = (r[5], r[6], "") if r[5] else None
        inst.pause_reason = r[7]
        inst.held_by = json.loads(r[8]) if r[8] else ()
        inst.released = frozenset(json.loads(r[9])) if r[9] else frozenset()
        inst.next_attempt_at, inst.deadline, inst.started_at, inst.finished_at = r[10], r[11], r[12], r[13]
        inst.token = r[14]
        inst.key_enc = (r[15], r[16]) if r[15] else None
        inst.new = False
        inst.value = inst.overrides = MISSING
        inst.hydrated = not r[17]
        return inst

    def hydrate(self, r: Mapping[str, Any]) -> None:
        """Fill in the values from a full row."""
        full = Inst.from_row(r)
        self.inputs, self.out, self.saved, self.logs = full.inputs, full.out, full.saved, full.logs
        self.error = full.error
        self.hydrated = True

    @classmethod
    def from_row(cls, r: Mapping[str, Any]) -> Inst:
        def enc(c: str) -> Encoded | None:
            return Encoded(r[f"{c}_codec"], r[c]) if r[f"{c}_codec"] else None

        return cls(
            step=r["step"], item=r["item"], key=r["key"], status=S(r["status"]), attempt=r["attempt"],
            inputs=enc("inputs"), out=enc("output"), saved=enc("saved"),
            error=(r["error_type"], r["error_message"], r["error_traceback"]) if r["error_type"] else None,
            pause_reason=r["pause_reason"], held_by=json.loads(r["held_by"]) if r["held_by"] else [],
            released=frozenset(json.loads(r["released"])) if r["released"] else frozenset(),
            next_attempt_at=r["next_attempt_at"], deadline=r["deadline"], started_at=r["started_at"],
            finished_at=r["finished_at"], logs=r["logs"], token=r["token"],
            key_enc=(r["key_codec"], r["key_value"]) if r["key_codec"] else None, new=False,
        )


@functools.lru_cache(maxsize=256)
def _frozen_text(ids: frozenset[int]) -> str:
    return json.dumps(sorted(ids))


def _ids_text(ids: AbstractSet[int]) -> str:
    """``released`` as its column holds it; the few distinct sets a run has (10,000 items a logpoint let
    go share one) are written without encoding each again."""
    return _frozen_text(ids if isinstance(ids, frozenset) else frozenset(ids))


_new = object.__new__
assert Inst.__slots__ == (
    "step", "item", "key", "status", "attempt", "inputs", "out", "saved", "error", "pause_reason", "held_by",
    "released",
    "next_attempt_at", "deadline", "started_at", "finished_at", "logs", "token", "key_enc", "new", "value",
    "overrides", "pending_error", "hydrated",
), "Inst.light must set every field"


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """The cyclic garbage collector off while a takeover builds its objects (10,000 instances: B3 in
    bench/). They all survive, so collecting only walks them, and a full collection of a busy
    notebook's heap falling into that window costs ~50-120 ms here. Collection resumes after, as
    usual; a collector the process had turned off stays off."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


__all__ = ["MISSING", "Inst", "gc_paused"]
