"""``run.frame()``: a stored run as a pandas DataFrame, one row per instance, with its state, error,
output and inputs. It reads the store only (nothing runs); each upstream value is decoded once per
step, each JSON column in one parse (a 100,000-item step: bench/frame_100k.py)."""
from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import cloudpickle

from .breakpoints import key_value
from .definition import StoredDefinition, StoredStep
from .errors import NbflowError
from .states import TASK_ITEM, InstanceStatus, StepKind
from .store import Store, codec
from .store import frames as rows_of

if TYPE_CHECKING:
    import pandas as pd

VALUES = ("ref", "load")
"""What ``values=`` takes: ``"ref"`` keeps values stored as files as :class:`ValueRef`, ``"load"`` decodes them."""

FIXED = ("step", "key", "status", "attempts", "started_at", "finished_at", "duration_s", "error_type",
         "error_message", "output")
"""A frame's columns before its inputs' (``step`` only in the frame of every step)."""

INPUT_PREFIX = "input:"
"""An input whose name is already one of :data:`FIXED` is the column ``input:NAME``."""

_DONE_OK = frozenset(s.value for s in InstanceStatus if s.done_ok)


@dataclass(frozen=True)
class ValueRef:
    """A value the store keeps as a file (over 256 KiB encoded), not loaded: its reference
    ``res://sha256/<hex>``, its size in bytes and its own codec (``json`` or ``pickle``)."""

    ref: str
    size: int
    codec: str

    @property
    def digest(self) -> str:
        """``sha256:<hex>``, the file's content hash."""
        return "sha256:" + self.ref.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class Unavailable:
    """A stored value this process cannot decode (a pickle of a class it cannot import): why."""

    error: str

    def __repr__(self) -> str:
        return f"<unavailable: {self.error}>"


def _digest(data: bytes) -> str:
    return data.decode().rsplit("/", 1)[-1]


class Values:
    """Decodes a run's stored values in bulk: JSON ones in one parse, large ones (codec ``ref``) as
    :class:`ValueRef` (*load* False) or read from their file (*load* True)."""

    def __init__(self, store: Store, load: bool) -> None:
        self.store = store
        self.load = load
        self._blobs: dict[str, tuple[str, int]] = {}

    def know(self, encs: Iterable[tuple[str | None, bytes | None]]) -> None:
        """Read the blobs rows of the references among *encs* (one query per 500)."""
        digests = {_digest(d) for c, d in encs if c == codec.REF and d is not None}
        digests -= self._blobs.keys()
        if digests:
            self._blobs.update(rows_of.blob_info(self.store, digests))

    def ref(self, data: bytes) -> ValueRef:
        ref = data.decode()
        found = self._blobs.get(_digest(data))
        if found is None:
            self.know([(codec.REF, data)])
            found = self._blobs.get(_digest(data))
        if found is None:
            raise NbflowError(f"no blob row for {ref}; the store is incomplete")
        return ValueRef(ref, found[1], found[0])

    def one(self, codec_name: str | None, data: bytes | None) -> Any:
        """One value (None when there is none)."""
        if codec_name is None or data is None:
            return None
        try:
            if codec_name == codec.JSON:
                return json.loads(data)
            if codec_name == codec.PICKLE:
                return cloudpickle.loads(data)
            if codec_name == codec.REF:
                found = self.ref(data)
                if not self.load:
                    return found
                return codec.decode(found.codec, self.store.artifacts.get(found.ref))
            return codec.decode(codec_name, data)
        except NbflowError:
            raise
        except Exception as exc:  # noqa: BLE001 - a pickled value whose class this process cannot import
            return Unavailable(f"{type(exc).__name__}: {exc}")

    def many(self, encs: Sequence[tuple[str | None, bytes | None]]) -> list[Any]:
        """The values of *encs*, in order; the JSON ones parsed as one JSON array."""
        self.know(encs)
        out: list[Any] = [None] * len(encs)
        at = [i for i, (c, d) in enumerate(encs) if c == codec.JSON and d is not None]
        if at:
            try:
                parsed = json.loads(b"[" + b",".join(encs[i][1] for i in at) + b"]")  # type: ignore[misc]
            except ValueError:  # a value that is not one JSON text: parse them one by one
                parsed = [self.one(*encs[i]) for i in at]
            for i, v in zip(at, parsed):
                out[i] = v
        for i, (c, d) in enumerate(encs):
            if c is not None and c != codec.JSON:
                out[i] = self.one(c, d)
        return out


def _keys(rows: Sequence[tuple[Any, ...]]) -> list[Any]:
    """The user's keys of rows (``key``, ``key_codec``, ``key_value`` at 2, 3, 4): ints without a parse each."""
    out: list[Any] = []
    for r in rows:
        c, d = r[3], r[4]
        if c == codec.JSON:
            try:
                out.append(int(d))
                continue
            except ValueError:
                pass
        out.append(r[2] if c is None else key_value(r[2], c, d))
    return out


class _Upstream:
    """The values a step's inputs read, each decoded once: a task's output, a foreach's outputs in item
    order, and the items a foreach step iterates over (always decoded, to be indexed)."""

    def __init__(self, store: Store, run_id: str, values: Values, by_step: dict[str, list[tuple[Any, ...]]]) -> None:
        self.store = store
        self.run_id = run_id
        self.values = values
        self.by_step = by_step
        self.definition: StoredDefinition | None = None
        self._out: dict[tuple[str, bool], Any] = {}

    def _rows(self, step: str) -> list[tuple[Any, ...]]:
        if step not in self.by_step:
            self.by_step[step] = rows_of.frame_rows(self.store, self.run_id, step)
        return self.by_step[step]

    def output(self, step: str, *, loaded: bool = False) -> Any:
        """*step*'s output as a step reading it receives it (*loaded*: references decoded too)."""
        ident = (step, loaded or self.values.load)
        if ident in self._out:
            return self._out[ident]
        assert self.definition is not None
        spec = self.definition.steps.get(step)
        rows = self._rows(step)
        vals = Values(self.store, True) if loaded and not self.values.load else self.values
        if spec is not None and spec.kind == StepKind.FOREACH:
            value: Any = vals.many([(r[11], r[12]) for r in rows if r[1] != TASK_ITEM])
        else:
            value = vals.one(rows[0][11], rows[0][12]) if rows else None
        self._out[ident] = value
        return value


def _inputs(spec: StoredStep) -> list[tuple[str, str, str]]:
    """(column, source, name) for each input of *spec* (every parameter but ``ctx``), in its order."""
    return [(INPUT_PREFIX + b.param if b.param in FIXED else b.param, b.source, b.name)
            for b in spec.bindings if b.source != "ctx"]


def _step_columns(
    spec: StoredStep, rows: Sequence[tuple[Any, ...]], values: Values, up: _Upstream, params: Mapping[str, Any],
) -> dict[str, list[Any]]:
    """One step's columns (all but ``step``), each a list with a cell per row."""
    n = len(rows)
    cols: dict[str, list[Any]] = {
        "key": [None] * n if spec.kind != StepKind.FOREACH else _keys(rows),
        "status": [r[5] for r in rows],
        "attempts": [r[6] for r in rows],
        "started_at": [r[7] for r in rows],
        "finished_at": [r[8] for r in rows],
        "error_type": [r[9] for r in rows],
        "error_message": [(r[10] or "") if r[9] is not None else r[10] for r in rows],
        "output": values.many([(r[11], r[12]) for r in rows]),
    }
    for column, source, name in _inputs(spec):
        if source == "step":
            cols[column] = [up.output(name)] * n
        elif source == "item" and spec.foreach is not None:
            items = up.output(spec.foreach, loaded=_is_task(up, spec.foreach))
            size = len(items) if isinstance(items, list) else 0
            cols[column] = [items[r[1]] if 0 <= r[1] < size else None for r in rows]
        else:
            cols[column] = [params.get(name)] * n
    edited = [i for i, r in enumerate(rows) if r[13] is not None]
    if edited:
        over = values.many([(rows[i][13], rows[i][14]) for i in edited])
        names = {b.param: (INPUT_PREFIX + b.param if b.param in FIXED else b.param) for b in spec.bindings}
        for i, edits in zip(edited, over):
            if isinstance(edits, Mapping):
                for param, value in edits.items():
                    if param in names:
                        cols[names[param]][i] = value
    return cols


def _is_task(up: _Upstream, step: str) -> bool:
    assert up.definition is not None
    spec = up.definition.steps.get(step)
    return spec is not None and spec.kind != StepKind.FOREACH


def frame(store: Store, run_id: str, step: str | None = None, *, values: str = "ref") -> pd.DataFrame:
    """The DataFrame of :meth:`nbflow.Run.frame`: one row per instance of *step* (every step, with a
    ``step`` column, when None), in (DAG order, item) order."""
    if values not in VALUES:
        raise NbflowError(f"values must be one of {', '.join(map(repr, VALUES))}, got {values!r}: \"ref\" keeps "
                          "values stored as files as nbflow.ValueRef, \"load\" reads them")
    try:
        import numpy as np
        import pandas as pd
    except ImportError:
        raise NbflowError("run.frame needs pandas: pip install 'nbflow[pandas]'") from None
    row = store.run_row(run_id)
    definition = store.definition(row["workflow"], row["version"])
    if step is not None and step not in definition.steps:
        raise NbflowError(definition.no_step(run_id, step))
    params = store.decode(row["params_codec"], row["params"]) or {}
    vals = Values(store, values == "load")
    by_step: dict[str, list[tuple[Any, ...]]] = {}
    for r in rows_of.frame_rows(store, run_id, step):
        by_step.setdefault(r[0], []).append(r)
    up = _Upstream(store, run_id, vals, by_step if step is None else dict(by_step))
    up.definition = definition
    steps = [step] if step is not None else [s for s in definition.order if s in by_step]

    columns = (["step"] if step is None else []) + list(FIXED[1:])
    for s in ([step] if step is not None else list(definition.order)):
        for column, _source, _name in _inputs(definition.steps[s]):
            if column not in columns:
                columns.append(column)
    data: dict[str, list[Any]] = {c: [] for c in columns}
    for s in steps:
        rows = by_step.get(s, [])
        part = _step_columns(definition.steps[s], rows, vals, up, params)
        if step is None:
            data["step"].extend([s] * len(rows))
        for c in columns:
            if c != "step":
                data[c].extend(part.get(c, [None] * len(rows)))

    def times(col: list[Any]) -> Any:
        return pd.to_datetime(np.array(col, dtype=float), unit="s", utc=True)

    started = np.array(data["started_at"], dtype=float)
    finished = np.array(data["finished_at"], dtype=float)
    keys = data["key"]
    out: dict[str, Any] = {}
    for c in columns:
        if c in ("step", "status"):
            out[c] = pd.Series(data[c], dtype=str) if data[c] else pd.Series([], dtype=str)
        elif c == "key":
            typed = all(type(k) is int for k in keys)
            out[c] = pd.Series(keys, dtype="int64" if typed and keys else object)
        elif c == "attempts":
            out[c] = pd.Series(data[c], dtype="int64")
        elif c in ("started_at", "finished_at"):
            out[c] = times(data[c])
        elif c == "duration_s":
            out[c] = np.round(np.maximum(finished - started, 0.0), 6)
        else:
            out[c] = pd.Series(data[c], dtype=object)
    result: pd.DataFrame = pd.DataFrame(out, columns=columns)
    return result


__all__ = ["FIXED", "VALUES", "Unavailable", "ValueRef", "Values", "frame"]
