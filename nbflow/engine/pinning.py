"""Pinned step code: the step's function pickled by value, without the notebook's data or connections.

A step that reads a notebook global gets it pickled with its code (cloudpickle pickles the
globals a function names). That is right for small values (a threshold, a lookup table) and
wrong for two kinds: values that cannot be pickled (a database connection, an HTTP or boto3
client, a lock) and large data (a list of millions, a DataFrame). Those are *notebook uses*:
left out of the pickle by identity, listed by name and type, and replaced by :class:`Missing`
when the code is loaded elsewhere, which names them if a step touches one.
"""
from __future__ import annotations

import dis
import io
import pickle
import sys
import types
from collections.abc import Iterator, Mapping
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
        if self.size is not None:
            return f"{self.name} ({self.type}, {_size_text(self.size)})"
        return f"{self.name} ({self.type}{', over 1 MB' if self.reason == 'large' else ''})"

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "reason": self.reason, "size": self.size}

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> Use:
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
            f"definitions first), or in that notebook with `wf.attach(RUN)`, or create the object inside the step"
        )

    def __reduce__(self) -> Any:
        return Missing, object.__getattribute__(self, "_use")

    def __repr__(self) -> str:
        name, type_name, _reason = object.__getattribute__(self, "_use")
        return f"<{name} ({type_name}) from the notebook, not stored with the pinned code>"

    __getattr__ = __call__ = __getitem__ = __iter__ = __len__ = __bool__ = __setattr__ = _fail
    __enter__ = __contains__ = __eq__ = __lt__ = __gt__ = __add__ = __index__ = __int__ = __float__ = _fail
    __str__ = __format__ = __fspath__ = __radd__ = __mul__ = __truediv__ = __sub__ = _fail
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


def _global_names(code: types.CodeType) -> Iterator[str]:
    """The global names *code* (and code nested in it) reads or writes: the ones cloudpickle pickles
    with a function (its own helper where it has one, so the two agree; attribute names don't count)."""
    extract = getattr(getattr(cloudpickle, "cloudpickle", None), "_extract_code_globals", None)
    if extract is not None:
        yield from extract(code)
        return
    for ins in dis.get_instructions(code):  # pragma: no cover - a cloudpickle without the helper
        if ins.opname in ("LOAD_GLOBAL", "STORE_GLOBAL", "DELETE_GLOBAL"):
            yield ins.argval
    for const in code.co_consts:  # pragma: no cover
        if isinstance(const, types.CodeType):
            yield from _global_names(const)


def _class_functions(cls: type) -> Iterator[tuple[str, Any]]:
    """A notebook class's functions (methods, static and class methods, properties) and other attributes."""
    for attr, value in vars(cls).items():
        if attr.startswith("__") and attr.endswith("__"):
            continue
        if isinstance(value, (staticmethod, classmethod)):
            value = value.__func__  # noqa: PLW2901 - the method stands for its function
        if isinstance(value, property):
            for part in (value.fget, value.fset, value.fdel):
                if part is not None:
                    yield f"{cls.__qualname__}.{attr}", part
            continue
        yield f"{cls.__qualname__}.{attr}", value


def _walk(fns: list[Any]) -> tuple[list[types.FunctionType], list[tuple[str, Any]]]:
    """From a step's functions, through the functions and classes of the same module they reach
    (cloudpickle pickles those by value with them): (every such function, the other values they read
    as ``(name, value)``: globals, closure cells, default arguments, class attributes)."""
    funcs: list[types.FunctionType] = []
    values: list[tuple[str, Any]] = []
    seen: set[int] = set()
    todo: list[tuple[Any, str | None]] = [(f, getattr(f, "__module__", None)) for f in fns if f is not None]
    while todo:
        obj, module = todo.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, type):
            found = list(_class_functions(obj))
        elif isinstance(obj, types.FunctionType):
            funcs.append(obj)
            g = obj.__globals__
            found = [(n, g[n]) for n in dict.fromkeys(_global_names(obj.__code__)) if n in g]
            for name, cell in zip(obj.__code__.co_freevars, obj.__closure__ or ()):
                try:
                    found.append((name, cell.cell_contents))
                except ValueError:  # an empty cell
                    continue
            found += [(f"{obj.__name__}() default", v) for v in obj.__defaults__ or ()]
            found += [(f"{obj.__name__}({k}=) default", v) for k, v in (obj.__kwdefaults__ or {}).items()]
        else:
            continue
        for name, value in found:
            if isinstance(value, (types.FunctionType, type)) and getattr(value, "__module__", None) == module:
                todo.append((value, module))
            else:
                values.append((name, value))
    return funcs, values


def functions(spec: Any) -> list[types.FunctionType]:
    """Every function pickled by value with *spec*: its own, its key function, the notebook helpers
    and class methods they reach."""
    return _walk([spec.fn, spec.key])[0]


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


class _TooLarge(Exception):
    pass


class _Bounded(io.RawIOBase):
    """A file that counts what is written to it and gives up past *limit* bytes."""

    def __init__(self, limit: int) -> None:
        self.size, self.limit = 0, limit

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        self.size += len(b)
        if self.size > self.limit:
            raise _TooLarge
        return len(b)


def _pickled_size(value: Any) -> int | None:
    """The size of *value*'s pickle, or None once it passes the bound (so measuring costs at most
    about LARGE_GLOBAL_BYTES of pickling, whatever the value's size). Raises if it cannot be pickled."""
    out = _Bounded(LARGE_GLOBAL_BYTES)
    try:
        cloudpickle.Pickler(out, protocol=cloudpickle.DEFAULT_PROTOCOL).dump(value)
    except _TooLarge:
        return None
    return out.size


def notebook_uses(spec: Any) -> tuple[dict[int, tuple[str, str, str]], list[Use]]:
    """The globals of *spec*'s functions to leave out of the pickle: (ids to leave out, their uses)."""
    left_out: dict[int, tuple[str, str, str]] = {}
    uses: list[Use] = []
    for name, value in _walk([spec.fn, spec.key])[1]:
        if id(value) in left_out or _is_code(value) or value is None or type(value) in (int, float, bool):
            continue
        if type(value) is Missing:  # pinned code loaded here: still a use (its pickle keeps the reference)
            uses.append(Use(*object.__getattribute__(value, "_use")))
            continue
        size = _estimate(value)
        reason = "large" if size is not None and size > LARGE_GLOBAL_BYTES else None
        if reason is None:
            try:
                pickled = _pickled_size(value)
            except Exception:  # noqa: BLE001 - a connection, a client, a lock: anything pickle refuses
                reason, size = "unpicklable", None
            else:
                if pickled is None:
                    reason = "large"  # size: unknown past the bound
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


def _in_notebook(spec: Any) -> bool:
    return "__main__" in {getattr(f, "__module__", None) for f in (spec.fn, spec.key) if f is not None}


def pickle_step(spec: Any) -> tuple[bytes, list[Use]]:
    """Pickle a step's code, and say what it uses from the notebook (left out of the pickle).

    A notebook's or script's step (``__main__``) leaves out what it reads that cannot be pickled or is
    large. A step of an importable module is pickled with that module by value (by reference, a
    pinned run would import today's module, or fail where it cannot be imported), else by reference
    when the module's objects cannot be pickled; only a step that neither can pickle (a function
    defined inside another one, closing over a lock) leaves out what it reads, as a notebook's does."""
    pinned = getattr(spec, "__dict__", {}).get(_PINNED)
    if pinned is not None:
        return pinned[0], list(pinned[1])
    if _in_notebook(spec):
        left_out, uses = notebook_uses(spec)
        return _dumps(spec, left_out, uses), uses
    try:
        return _module_dumps(spec), []
    except Exception:  # noqa: BLE001 - neither by value nor by reference: leave out what cannot go
        left_out, uses = notebook_uses(spec)
        return _dumps(spec, left_out, uses), uses


def _module_dumps(spec: Any) -> bytes:
    names = {getattr(f, "__module__", None) for f in (spec.fn, spec.key)}
    registered = cloudpickle.list_registry_pickle_by_value()
    mods = [
        sys.modules[n] for n in names
        if n and n != "__main__" and not n.startswith("nbflow") and n in sys.modules and n not in registered
    ]
    if mods:
        for mod in mods:
            cloudpickle.register_pickle_by_value(mod)
        try:
            return cloudpickle.dumps(spec)  # type: ignore[no-any-return]
        except Exception:  # noqa: BLE001, S110 - e.g. a module global that cannot be pickled: keep the reference
            pass
        finally:
            for mod in mods:
                cloudpickle.unregister_pickle_by_value(mod)
    return cloudpickle.dumps(spec)  # type: ignore[no-any-return]


__all__ = ["LARGE_GLOBAL_BYTES", "Missing", "Use", "functions", "loads", "notebook_uses", "pickle_step", "remember"]
