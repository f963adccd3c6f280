"""``run.diff(other)``: what differs between the outputs of two runs of one workflow, instance by
instance by (step, key text). Values compare by what they are, not by their stored bytes (two dicts
in another order are equal); large values show as references with their size and digest. Reads only."""
from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

import cloudpickle

from ._jsontext import to_json_text
from .errors import NbflowError
from .frames import Values, without_gc
from .states import TASK_ITEM, InstanceStatus, StepKind
from .store import Store, codec
from .store import frames as rows_of
from .views import shown_key

SECTIONS = ("changed", "added", "removed")
"""The lists of a diff, in this order."""

REPR_CHARS = 2000
"""A non-JSON value shows as ``{"repr": ...}`` of at most this many characters."""

_DONE_OK = frozenset(s.value for s in InstanceStatus if s.done_ok)
_Enc = tuple[str | None, bytes | None]


class _Side:
    """One run's instances by (step, key text), as :data:`nbflow.store.frames.OUTPUT_COLUMNS` rows."""

    def __init__(self, store: Store, run_id: str) -> None:
        self.store = store
        self.row = store.run_row(run_id)
        self.definition = store.definition(self.row["workflow"], self.row["version"])
        self.values = Values(store, load=False)
        self.foreach = {s for s, spec in self.definition.steps.items() if spec.kind == StepKind.FOREACH}
        self.by: dict[tuple[str, str | None], Sequence[Any]] = {(r[0], r[2]): r
                                                                 for r in rows_of.output_rows(store, run_id)}

    @staticmethod
    def output(r: Sequence[Any] | None) -> _Enc:
        """The instance's stored output: none unless it succeeded or was skipped."""
        return (r[6], r[7]) if r is not None and r[5] in _DONE_OK else (None, None)

    def key(self, r: Sequence[Any]) -> Any:
        """The key as the views show it (None for a task step's instance)."""
        if r[1] == TASK_ITEM or r[0] not in self.foreach:
            return None
        return shown_key({"key": r[2], "key_codec": r[3], "key_value": r[4]})

    def resolved(self, enc: _Enc) -> _Enc:
        """A reference's file as (its own codec, its bytes); other values unchanged."""
        c, d = enc
        if c != codec.REF or d is None:
            return enc
        found = self.values.ref(d)
        return found.codec, self.store.artifacts.get(found.ref)

    def shown(self, enc: _Enc) -> Any:
        """A value as a diff shows it: JSON as itself, a reference as ref/size/digest, else its repr."""
        c, d = enc
        if c is None or d is None:
            return None
        if c == codec.REF:
            found = self.values.ref(d)
            return {"ref": found.ref, "size": found.size, "digest": found.digest}
        value = self.values.one(c, d)
        if c == codec.JSON or to_json_text(value) is not None:
            return value
        return {"repr": repr(value)[:REPR_CHARS]}


def _canonical(value: Any) -> str | None:
    """JSON text with sorted keys (what makes two orders of one dict equal); None when not JSON."""
    try:
        return json.dumps(value, sort_keys=True, allow_nan=True)
    except (TypeError, ValueError):
        return None


def _same(x: Any, y: Any) -> bool:
    """Whether two decoded values are equal: dicts key by key, lists and tuples item by item, and values
    whose ``==`` is not a bool (numpy arrays, pandas objects) by ``.equals`` or by all their elements."""
    if type(x) is type(y) and isinstance(x, dict):
        return x.keys() == y.keys() and all(_same(x[k], y[k]) for k in x)
    if type(x) is type(y) and isinstance(x, (list, tuple)):
        return len(x) == len(y) and all(map(_same, x, y))
    equals = getattr(x, "equals", None)
    if type(x) is type(y) and callable(equals):
        with contextlib.suppress(Exception):
            return bool(equals(y))
    try:
        result = x == y
        if isinstance(result, bool):
            return result
        return getattr(x, "shape", None) == getattr(y, "shape", None) and bool(result.all())
    except Exception:  # noqa: BLE001 - a comparison may raise anything: not known equal
        return False


def _equal(a: _Side, ea: _Enc, b: _Side, eb: _Enc) -> bool:
    """Whether two stored values are the same value (bytes first, then decoded)."""
    if ea == eb:
        return True
    if ea[0] is None or eb[0] is None:
        return False
    ra, rb = a.resolved(ea), b.resolved(eb)
    if ra == rb:
        return True
    (ca, da), (cb, db) = ra, rb
    if ca != cb or da is None or db is None:
        return False
    try:
        if ca == codec.JSON:
            return _canonical(json.loads(da)) == _canonical(json.loads(db))
        if ca == codec.PICKLE:
            return _same(cloudpickle.loads(da), cloudpickle.loads(db))
    except Exception:  # noqa: BLE001 - a value that cannot be loaded or compared here: not known equal
        return False
    return False


def diff(store: Store, run_a: str, run_b: str, store_b: Store | None = None) -> dict[str, list[dict[str, Any]]]:
    """The diff of :meth:`nbflow.Run.diff`: ``before`` is *run_a*'s output, ``after`` *run_b*'s."""
    with without_gc():
        return _diff(store, run_a, run_b, store_b)


def _diff(store: Store, run_a: str, run_b: str, store_b: Store | None) -> dict[str, list[dict[str, Any]]]:
    a = _Side(store, run_a)
    b = _Side(store_b or store, run_b)
    if a.row["workflow"] != b.row["workflow"]:
        raise NbflowError(f"runs {run_a} (workflow {a.row['workflow']!r}) and {run_b} (workflow "
                          f"{b.row['workflow']!r}) are of different workflows; diff two runs of one workflow")
    order = {s: n for n, s in enumerate(a.definition.order)}
    for s in b.definition.order:
        order.setdefault(s, len(order))
    out: dict[str, list[tuple[tuple[int, int], dict[str, Any]]]] = {s: [] for s in SECTIONS}
    for ident in a.by.keys() | b.by.keys():
        step = ident[0]
        in_a, in_b = a.by.get(ident), b.by.get(ident)
        ea, eb = a.output(in_a), b.output(in_b)
        if ea[0] is None and eb[0] is None:
            continue  # neither has an output: nothing to compare
        if in_a is not None and in_b is not None:
            if _equal(a, ea, b, eb):
                continue
            section = "changed"
        elif in_a is None:
            section = "added"
        else:
            section = "removed"
        side, r = (a, in_a) if in_a is not None else (b, in_b)
        assert r is not None
        entry = {"step": step, "key": side.key(r), "before": a.shown(ea), "after": b.shown(eb)}
        out[section].append(((order.get(step, len(order)), r[1]), entry))
    return {s: [e for _, e in sorted(out[s], key=lambda p: p[0])] for s in SECTIONS}


def summary(result: Mapping[str, Sequence[Any]]) -> str:
    """``2 changed, 0 added, 1 removed``."""
    return ", ".join(f"{len(result[s])} {s}" for s in SECTIONS)


__all__ = ["SECTIONS", "diff", "summary"]
