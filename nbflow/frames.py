"""``run.frame()``: a stored run as a pandas DataFrame, one row per instance, with its state, error,
output and inputs. It reads the store only (nothing runs); each upstream value is decoded once per
step, each JSON column in one parse (a 100,000-item step: bench/frame_100k.py)."""
from __future__ import annotations

import contextlib
import gc
import itertools
import json
from collections.abc import Iterator, Mapping, Sequence
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


_FINISHED = frozenset({InstanceStatus.SUCCEEDED.value, InstanceStatus.SKIPPED.value})
"""The statuses of a foreach's items whose outputs are in its list."""

class Values:
    """Decodes a run's stored values in bulk: JSON ones in one parse, large ones (codec ``ref``) as
    :class:`ValueRef` (*load* False) or read from their file (*load* True)."""

    def __init__(self, store: Store, load: bool) -> None:
        self.store = store
        self.load = load
        self._blobs: dict[str, tuple[str, int]] = {}

    def know(self, codecs: Sequence[str | None], datas: Sequence[bytes | None]) -> None:
        """Read the blobs rows of the references among these values (one query per 500)."""
        digests = {_digest(d) for c, d in zip(codecs, datas) if c == codec.REF and d is not None}
        digests -= self._blobs.keys()
        if digests:
            self._blobs.update(rows_of.blob_info(self.store, digests))

    def ref(self, data: bytes) -> ValueRef:
        ref = data.decode()
        found = self._blobs.get(_digest(data))
        if found is None:
            self.know([codec.REF], [data])
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

    def many(self, codecs: Sequence[str | None], datas: Sequence[bytes | None]) -> list[Any]:
        """The values stored as *codecs* and *datas*, in order; the JSON ones parsed as one JSON array."""
        kinds = set(codecs)
        if kinds <= {codec.JSON, None}:  # the common column: every value small and JSON, or none
            parsed = _json_array(datas if None not in kinds else [_NULL if c is None else d
                                                                  for c, d in zip(codecs, datas)])
            if parsed is not None:
                return parsed
        self.know(codecs, datas)
        out: list[Any] = [None] * len(codecs)
        if codec.JSON in kinds:
            at = [i for i, c in enumerate(codecs) if c == codec.JSON]
            parsed = _json_array([datas[i] for i in at])
            for i, v in zip(at, parsed if parsed is not None else [self.one(codec.JSON, datas[i]) for i in at]):
                out[i] = v
        if kinds - {None, codec.JSON}:
            for i, (c, d) in enumerate(zip(codecs, datas)):
                if c is not None and c != codec.JSON:
                    out[i] = self.one(c, d)
        return out


_NULL = b"null"


def _json_array(datas: Sequence[bytes | None]) -> list[Any] | None:
    """JSON texts parsed as one array (one pass of the C parser); None when one of them is not one JSON text."""
    if None in datas:
        return None
    try:
        parsed: list[Any] = json.loads(b"[" + b",".join(datas) + b"]")  # type: ignore[arg-type]
    except ValueError:
        return None
    return parsed if len(parsed) == len(datas) else None


_AT = {name: n for n, name in enumerate(rows_of.FRAME_COLUMNS)}


class _Columns:
    """One step's instance rows (:func:`nbflow.store.frames.frame_rows`, with or without their first
    column, ``step``) as columns, by column name."""

    def __init__(self, rows: Sequence[Sequence[Any]], with_step: bool) -> None:
        self.n = len(rows)
        self._shift = 0 if with_step else 1
        self._cols: list[tuple[Any, ...]] = list(zip(*rows)) if rows else [()] * len(_AT)

    def __getitem__(self, name: str) -> tuple[Any, ...]:
        return self._cols[_AT[name] - self._shift]


def _keys(cols: _Columns) -> list[Any]:
    """The user's keys (as the key function returned them), JSON ones parsed as one array."""
    texts, codecs, datas = cols["key"], cols["key_codec"], cols["key_value"]
    kinds = set(codecs)
    if kinds == {None}:
        return list(texts)
    if kinds == {codec.JSON}:
        parsed = _json_array(datas)
        if parsed is not None:
            return parsed
    return [t if c is None else key_value(t, c, d) for t, c, d in zip(texts, codecs, datas)]


class _Upstream:
    """The values a step's inputs read, each decoded once: a task's output, a foreach's outputs in item
    order, and the items a foreach step iterates over (always decoded, to be indexed)."""

    def __init__(self, store: Store, run_id: str, definition: StoredDefinition, values: Values,
                 by_step: dict[str, _Columns]) -> None:
        self.store = store
        self.run_id = run_id
        self.definition = definition
        self.values = values
        self.by_step = by_step
        self._out: dict[tuple[str, bool], Any] = {}

    def columns(self, step: str) -> _Columns:
        if step not in self.by_step:
            self.by_step[step] = _Columns(rows_of.frame_rows(self.store, self.run_id, step), with_step=False)
        return self.by_step[step]

    def is_task(self, step: str) -> bool:
        spec = self.definition.steps.get(step)
        return spec is not None and spec.kind != StepKind.FOREACH

    def outputs(self, step: str, *, loaded: bool = False) -> list[Any]:
        """The output of each of *step*'s rows, decoded once (*loaded*: references decoded too)."""
        ident = (step, loaded or self.values.load)
        if ident not in self._out:
            cols = self.columns(step)
            vals = Values(self.store, True) if loaded and not self.values.load else self.values
            self._out[ident] = vals.many(cols["output_codec"], cols["output"])
        found: list[Any] = self._out[ident]
        return found

    def output(self, step: str, *, loaded: bool = False) -> Any:
        """*step*'s output as a step reading it receives it: a task's value, a foreach's list in item order."""
        outs = self.outputs(step, loaded=loaded)
        if self.is_task(step):
            return outs[0] if outs else None
        cols = self.columns(step)
        items, statuses = cols["item"], cols["status"]
        if TASK_ITEM not in items and all(st in _FINISHED for st in statuses):
            return outs
        # as the scheduler hands it on: the items that succeeded or were skipped (a dead letter is left out)
        return [v for v, i, st in zip(outs, items, statuses) if i != TASK_ITEM and st in _FINISHED]


def _inputs(spec: StoredStep) -> list[tuple[str, str, str]]:
    """(column, source, name) for each input of *spec* (every parameter but ``ctx``), in its order."""
    return [(INPUT_PREFIX + b.param if b.param in FIXED else b.param, b.source, b.name)
            for b in spec.bindings if b.source != "ctx"]


def _step_columns(
    spec: StoredStep, cols: _Columns, values: Values, up: _Upstream, params: Mapping[str, Any],
) -> dict[str, Sequence[Any]]:
    """One step's columns (all but ``step``), each a sequence with a cell per row."""
    n = cols.n
    error_type, error_message = cols["error_type"], cols["error_message"]
    blank = [i for i, t in enumerate(error_type) if t is not None and error_message[i] is None]
    if blank:  # an error without a message has the message ""
        fixed = list(error_message)
        for i in blank:
            fixed[i] = ""
        error_message = tuple(fixed)
    out: dict[str, Sequence[Any]] = {
        "key": [None] * n if spec.kind != StepKind.FOREACH else _keys(cols),
        "status": cols["status"],
        "attempts": cols["attempt"],
        "started_at": cols["started_at"],
        "finished_at": cols["finished_at"],
        "error_type": error_type,
        "error_message": error_message,
        "output": up.outputs(spec.name),
    }
    for column, source, name in _inputs(spec):
        if source == "step":
            out[column] = [up.output(name)] * n
        elif source == "item" and spec.foreach is not None:
            items = up.output(spec.foreach, loaded=up.is_task(spec.foreach))
            size = len(items) if isinstance(items, list) else 0
            at = cols["item"]
            if isinstance(items, list) and n <= size and at == tuple(range(n)):  # every item in order: the list
                out[column] = items[:n]
            else:
                out[column] = [items[i] if 0 <= i < size else None for i in at]
        else:
            out[column] = [params.get(name)] * n
    edited = [i for i, c in enumerate(cols["inputs_codec"]) if c is not None]
    if edited:
        over = values.many([cols["inputs_codec"][i] for i in edited], [cols["inputs"][i] for i in edited])
        names = {b.param: (INPUT_PREFIX + b.param if b.param in FIXED else b.param) for b in spec.bindings}
        changed = {c: list(out[c]) for c in set(names.values()) if c in out}
        for i, edits in zip(edited, over):
            if isinstance(edits, Mapping):
                for param, value in edits.items():
                    if names.get(param) in changed:
                        changed[names[param]][i] = value
        out.update(changed)
    return out


def frame(store: Store, run_id: str, step: str | None = None, *, values: str = "ref") -> pd.DataFrame:
    """The DataFrame of :meth:`nbflow.Run.frame`: one row per instance of *step* (every step, with a
    ``step`` column, when None), in (DAG order, item) order."""
    with without_gc():
        return _frame(store, run_id, step, values)


@contextlib.contextmanager
def without_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector: a bulk read makes hundreds of thousands of new objects (rows,
    decoded values), none in a cycle, and the collections they trigger cost ~20% (bench/frame_100k.py)."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


def _frame(store: Store, run_id: str, step: str | None, values: str) -> pd.DataFrame:
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
    rows = rows_of.frame_rows(store, run_id, step)
    if step is not None:
        by_step = {step: _Columns(rows, with_step=False)}
    else:
        by_step = {s: _Columns(list(group), with_step=True) for s, group in itertools.groupby(rows, key=lambda r: r[0])}
    del rows
    up = _Upstream(store, run_id, definition, vals, by_step)
    steps = [step] if step is not None else [s for s in definition.order if s in by_step]

    columns = (["step"] if step is None else []) + list(FIXED[1:])
    for s in ([step] if step is not None else list(definition.order)):
        for column, _source, _name in _inputs(definition.steps[s]):
            if column not in columns:
                columns.append(column)
    parts = [(s, _step_columns(definition.steps[s], by_step[s], vals, up, params)) for s in steps]
    data: dict[str, list[Any]] = {c: [] for c in columns}
    if step is not None:  # one step: its columns as they are
        part = parts[0][1]
        data = {c: list(part[c]) for c in columns if c in part}
        parts = []
    for s, part in parts:
        n = by_step[s].n
        for c in columns:
            if c == "step":
                data[c].extend([s] * n)
            else:
                data[c].extend(part.get(c, [None] * n))
    keys = data["key"]
    out: dict[str, Any] = {}
    for c in columns:
        if c in ("step", "status"):
            out[c] = pd.Series(data[c], dtype=str)
        elif c == "key":
            out[c] = pd.Series(keys, dtype="int64" if keys and set(map(type, keys)) == {int} else object)
        elif c == "attempts":
            out[c] = pd.Series(data[c], dtype="int64")
        elif c in ("started_at", "finished_at"):
            out[c] = pd.to_datetime(np.array(data[c], dtype=float), unit="s", utc=True)
        elif c == "duration_s":
            started = np.array(data["started_at"], dtype=float)
            finished = np.array(data["finished_at"], dtype=float)
            out[c] = np.round(np.maximum(finished - started, 0.0), 6)
        else:
            out[c] = pd.Series(data[c], dtype=object)
    result: pd.DataFrame = pd.DataFrame(out, columns=columns)
    return result


__all__ = ["FIXED", "VALUES", "Unavailable", "ValueRef", "Values", "frame", "without_gc"]
