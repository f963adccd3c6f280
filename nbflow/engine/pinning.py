"""Pinned step code: the step's function pickled by value, without the notebook's data or connections.

A step that reads a notebook global gets it pickled with its code (cloudpickle pickles the
globals a function names). That is right for small values (a threshold, a lookup table) and
wrong for two kinds: values that cannot be pickled (a database connection, an HTTP or boto3
client, a lock) and large data (a list of millions, a DataFrame). Those are *notebook uses*:
left out of the pickle by identity, listed by name and type, and replaced by :class:`Missing`
when the code is loaded elsewhere, which names them if a step touches one.
"""
from __future__ import annotations

import io
import pickle
import sys
import types
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import cloudpickle

LARGE_GLOBAL_BYTES = 1 << 20
"""A notebook global whose pickle is larger than this is data, not code: it is not pinned."""
_MANY_ITEMS = 100_000
"""A collection with more items than this is counted as large without pickling it to measure."""
_PID = "nbflow.notebook-use"


@dataclass(frozen=True, slots=True)
class Use:
    """A notebook global a step reads that is not stored with its code."""

    name: str
    type: str
    reason: str  # "unpicklable" or "large"
    size: int | None = None  # bytes, when known

    def describe(self) -> str:
        """E.g. ``conn (sqlite3.Connection)`` or ``df (pandas.DataFrame, 48 MB)``."""
        return f"{self.name} ({self.type}{'' if self.size is None else ', ' + _size_text(self.size)})"

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "reason": self.reason, "size": self.size}

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> Use:
        return cls(str(value["name"]), str(value["type"]), str(value["reason"]), value.get("size"))


def _size_text(n: int) -> str:
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.0f} {unit}"
    return f"{n} bytes"


def _type_name(value: Any) -> str:
    tp = type(value)
    return tp.__qualname__ if tp.__module__ == "builtins" else f"{tp.__module__.split('.')[0]}.{tp.__qualname__}"


class Missing:
    """Stands in for a notebook global that was not stored with the pinned code."""

    def __init__(self, name: str, type_name: str, reason: str) -> None:
        object.__setattr__(self, "_use", (name, type_name, reason))

    def _fail(self, *_args: Any, **_kwargs: Any) -> Any:
        name, type_name, reason = object.__getattribute__(self, "_use")
        why = "it cannot be pickled" if reason == "unpicklable" else "it is large data"
        raise NameError(
            f"{name} ({type_name}) comes from the notebook that started this run and was not stored with the run's "
            f"code ({why}); resume the run with `nbflow resume RUN --notebook NB` (which runs the notebook's "
            f"definitions first), or attach it from that notebook, or create the object inside the step"
        )

    def __reduce__(self) -> Any:
        return Missing, object.__getattribute__(self, "_use")

    def __repr__(self) -> str:
        name, type_name, _reason = object.__getattribute__(self, "_use")
        return f"<{name} ({type_name}) from the notebook, not stored with the pinned code>"

    __getattr__ = __call__ = __getitem__ = __iter__ = __len__ = __bool__ = __setattr__ = _fail
    __enter__ = __contains__ = __eq__ = __lt__ = __gt__ = __add__ = __index__ = __int__ = __float__ = _fail
    __hash__ = None  # type: ignore[assignment]


class _Pickler(cloudpickle.Pickler):  # type: ignore[misc]
    """cloudpickle, with the notebook uses (by id) written as persistent references."""

    def __init__(self, file: io.BytesIO, left_out: dict[int, tuple[str, str, str]]) -> None:
        super().__init__(file, protocol=cloudpickle.DEFAULT_PROTOCOL)
        self._left_out = left_out

    def persistent_id(self, obj: Any) -> Any:
        use = self._left_out.get(id(obj))
        if use is not None:
            return (_PID, *use)
        if type(obj) is Missing:
            return (_PID, *object.__getattribute__(obj, "_use"))
        return None


class _Unpickler(pickle.Unpickler):
    def persistent_load(self, pid: Any) -> Any:
        if isinstance(pid, tuple) and len(pid) == 4 and pid[0] == _PID:
            return Missing(*pid[1:])
        raise pickle.UnpicklingError(f"unknown persistent reference {pid!r} in pinned code")


def loads(data: bytes) -> Any:
    """Load pinned code (a notebook use becomes a :class:`Missing`)."""
    return _Unpickler(io.BytesIO(data)).load()


def _code_names(code: types.CodeType) -> Iterator[str]:
    yield from code.co_names
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _code_names(const)


def _by_value(fn: Any, module: str | None) -> bool:
    return isinstance(fn, types.FunctionType) and fn.__module__ == module


def _read_globals(fns: list[Any]) -> Iterator[tuple[str, Any]]:
    """The globals (and closure values) the step's functions read, through the helper functions of
    the same module they call (those are pickled by value with them)."""
    seen: set[int] = set()
    todo = [f for f in fns if isinstance(f, types.FunctionType)]
    while todo:
        fn = todo.pop()
        if id(fn) in seen:
            continue
        seen.add(id(fn))
        found: list[tuple[str, Any]] = []
        g = fn.__globals__
        for name in dict.fromkeys(_code_names(fn.__code__)):
            if name in g:
                found.append((name, g[name]))
        for name, cell in zip(fn.__code__.co_freevars, fn.__closure__ or ()):
            try:
                found.append((name, cell.cell_contents))
            except ValueError:  # an empty cell
                continue
        for name, value in found:
            if _by_value(value, fn.__module__):
                todo.append(value)
            else:
                yield name, value


def _is_code(value: Any) -> bool:
    return isinstance(value, (types.ModuleType, type, types.FunctionType, types.BuiltinFunctionType,
                              types.MethodType, types.BuiltinMethodType))


def _estimate(value: Any) -> int | None:
    """A cheap size in bytes for values that are obviously large, without pickling them; else None."""
    nbytes = getattr(value, "nbytes", None)  # numpy arrays, pandas Series, Arrow arrays
    if isinstance(nbytes, int):
        return nbytes
    usage = getattr(value, "memory_usage", None)
    if callable(usage) and type(value).__module__.startswith("pandas"):
        try:
            return int(usage(index=True, deep=False).sum())
        except Exception:  # noqa: BLE001 - not the pandas method after all
            return None
    if isinstance(value, (bytes, bytearray, memoryview, str)):
        return len(value)
    if isinstance(value, (list, tuple, dict, set, frozenset)) and len(value) > _MANY_ITEMS:
        return sys.getsizeof(value) + 8 * len(value)
    return None


def notebook_uses(spec: Any) -> tuple[dict[int, tuple[str, str, str]], list[Use]]:
    """The globals of *spec*'s functions to leave out of the pickle: (ids to leave out, their uses)."""
    left_out: dict[int, tuple[str, str, str]] = {}
    uses: list[Use] = []
    for name, value in _read_globals([spec.fn, spec.key]):
        if id(value) in left_out or _is_code(value) or value is None or type(value) in (int, float, bool):
            continue
        if type(value) is Missing:  # pinned code loaded here: still a use (its pickle keeps the reference)
            uses.append(Use(*object.__getattribute__(value, "_use")))
            continue
        size = _estimate(value)
        reason = "large" if size is not None and size > LARGE_GLOBAL_BYTES else None
        if reason is None:
            try:
                pickled = len(cloudpickle.dumps(value))
            except Exception:  # noqa: BLE001 - a connection, a client, a lock: anything pickle refuses
                reason, size = "unpicklable", None
            else:
                if pickled > LARGE_GLOBAL_BYTES:
                    reason, size = "large", pickled
        if reason is not None:
            use = Use(name, _type_name(value), reason, size)
            left_out[id(value)] = (use.name, use.type, use.reason)
            uses.append(use)
    return left_out, uses


def _dumps(spec: Any, left_out: dict[int, tuple[str, str, str]], uses: list[Use]) -> bytes:
    if not uses:  # nothing to leave out: plain cloudpickle (a persistent_id call per object costs ~50%)
        return cloudpickle.dumps(spec)  # type: ignore[no-any-return]
    buf = io.BytesIO()
    _Pickler(buf, left_out).dump(spec)
    return buf.getvalue()


_PINNED = "_nbflow_pinned"


def remember(spec: Any, data: bytes, uses: list[Use]) -> None:
    """Mark *spec*, just loaded from *data*, as that pinned code: pickling it again returns *data*
    (a takeover with pinned code pins the same version without pickling every step again)."""
    spec.__dict__[_PINNED] = (data, uses)


def pickle_step(spec: Any) -> tuple[bytes, list[Use]]:
    """Pickle a step with the code of its own module by value, and what it reads from the notebook
    left out. By reference, a pinned run would import today's module (or fail where it cannot be
    imported); it falls back to that when the module's objects cannot be pickled by value."""
    pinned = getattr(spec, "__dict__", {}).get(_PINNED)
    if pinned is not None:
        return pinned[0], list(pinned[1])
    left_out, uses = notebook_uses(spec)
    names = {getattr(f, "__module__", None) for f in (spec.fn, spec.key)}
    registered = cloudpickle.list_registry_pickle_by_value()
    mods = [
        sys.modules[n] for n in names
        if n and n != "__main__" and not n.startswith("nbflow") and n in sys.modules and n not in registered
    ]
    if not mods:
        return _dumps(spec, left_out, uses), uses
    for mod in mods:
        cloudpickle.register_pickle_by_value(mod)
    try:
        return _dumps(spec, left_out, uses), uses
    except Exception:  # noqa: BLE001 - e.g. a module global that cannot be pickled: keep the reference
        pass
    finally:
        for mod in mods:
            cloudpickle.unregister_pickle_by_value(mod)
    return _dumps(spec, left_out, uses), uses


__all__ = ["LARGE_GLOBAL_BYTES", "Missing", "Use", "loads", "notebook_uses", "pickle_step", "remember"]
