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
import enum
import hashlib
import io
import marshal
import pickle
import sys
import types
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import cloudpickle

from ..definition import Backoff

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


# ------------------------------------------------------------------------------------ fingerprints
# A takeover with today's code must know whether each step's pinned code is still today's. Pickling
# every step again to compare the bytes costs ~150 us a step in cloudpickle's Python reducers; a
# fingerprint reads the same inputs (the code objects' fields, the values the functions read, the
# spec's options) without pickling functions. Equal fingerprints mean equal pinned code, so the
# stored pickle and its hash stand. Anything a fingerprint cannot stand for exactly (an instance of
# a notebook class, a numpy array, a class pickled by value, a large value) gives no fingerprint:
# that step is pickled, as before.

_cp = getattr(cloudpickle, "cloudpickle", None)
_by_reference = getattr(_cp, "_should_pickle_by_reference", None)
_submodules = getattr(_cp, "_find_imported_submodules", None)
_ATOMS = frozenset({type(None), bool, int, float, complex, str, bytes, types.EllipsisType, type(NotImplemented)})
_CONTAINERS: dict[type, str] = {tuple: "tuple", list: "list", dict: "dict", set: "set", frozenset: "frozenset"}
_FP_ITEMS = 10_000
"""A step whose functions read more container items than this is pickled, not fingerprinted."""
_FP_BYTES = LARGE_GLOBAL_BYTES // 2
"""Nor one whose fingerprint's text is longer than this (a value that may be large data: a notebook use)."""
_BASE_GLOBALS = ("__package__", "__name__", "__path__", "__file__")
_FP_SALT = (sys.version, getattr(cloudpickle, "__version__", ""), 1)


def _ref(kind: str, name: str) -> tuple[str, str, str]:
    """In a fingerprint: an object pickled by reference (*kind* and qualified name), a function pickled
    by value (its index), a repeated container, an absent global or an empty cell. Three items: a
    container is two (its kind, its items), an atom is no tuple."""
    return ("ref", kind, name)


class _NoFingerprint(Exception):
    """The step reaches something a fingerprint cannot stand for exactly: pickle it to know."""


def _names(code: types.CodeType) -> dict[str, None]:
    """Every name *code* (and code nested in it) uses, in order: a superset of the globals it reads
    (attribute names too), which is all a fingerprint needs (cloudpickle's exact list parses bytecode)."""
    out = dict.fromkeys(code.co_names)
    for const in code.co_consts:
        if type(const) is types.CodeType:
            out.update(_names(const))
    return out


_IMPORTABLE: dict[type, bool] = {}


def _importable(cls: type) -> bool:
    """Whether cloudpickle pickles *cls* by reference (remembered for classes of imported modules:
    those are the same objects for the life of the process; a notebook's are asked each time)."""
    known = _IMPORTABLE.get(cls)
    if known is not None:
        return known
    found = _by_reference is not None and bool(_by_reference(cls))
    if cls.__module__ != "__main__" and not cloudpickle.list_registry_pickle_by_value():
        _IMPORTABLE[cls] = found
    return found


def _qualified(obj: Any) -> str:
    return f"{getattr(obj, '__module__', None)}.{getattr(obj, '__qualname__', None)}"


def _ordered(items: set[Any] | frozenset[Any]) -> Any:
    """A set's items sorted when they are all str, or all int (their pickle's order varies by process)."""
    kinds = {type(x) for x in items}
    return sorted(items) if kinds in ({str}, {int}) else items


class _Fingerprinter:
    """Turns what pickling a step would write into plain data (``parts``), or raises :class:`_NoFingerprint`."""

    def __init__(self, by_value: frozenset[str | None]) -> None:
        self.by_value = by_value  # the modules whose functions are pickled by value with the step
        self.memo: dict[int, int] = {}
        self.keep: list[Any] = []  # what memo's ids stand for, alive until the end
        self.items = 0
        self.size = 0  # the characters and bytes of the strings read so far
        self.parts: list[Any] = []

    def value(self, v: Any, same: bool = True) -> Any:
        t = type(v)
        if t in _ATOMS:
            if t is str or t is bytes:
                self.size += len(v)
                if self.size > _FP_BYTES:  # large data (a notebook use): not copied to find that out
                    raise _NoFingerprint
            return v
        tag = _CONTAINERS.get(t)
        if tag is not None:
            if same:  # two names for one list pickle as one object: so does this
                seen = self.memo.get(id(v))
                if seen is not None:
                    return _ref("again", str(seen))
                self.memo[id(v)] = len(self.memo)
                self.keep.append(v)
            self.items += len(v)
            if self.items > _FP_ITEMS:
                raise _NoFingerprint
            if t is dict:
                return (tag, [(self.value(k, same), self.value(x, same)) for k, x in v.items()])
            if t is set or t is frozenset:
                v = _ordered(v)  # a set of str iterates in an order that differs by process
            return (tag, [self.value(x, same) for x in v])
        if t is types.FunctionType:
            return self.function(v)
        if t is types.CodeType:
            return _code_bytes(v)
        if isinstance(v, type):
            if v.__module__ not in self.by_value and _importable(v):
                return _ref("global", _qualified(v))
            raise _NoFingerprint  # a class pickled by value
        if t is types.ModuleType:
            if _by_reference is not None and _by_reference(v):
                return _ref("module", v.__name__)
            raise _NoFingerprint
        if t is types.BuiltinFunctionType and (v.__self__ is None or type(v.__self__) is types.ModuleType):
            return _ref("global", _qualified(v))
        if isinstance(v, enum.Enum) and _importable(t):
            return (_ref("enum", _qualified(t)), self.value(v._value_, same))
        if t is Backoff:
            return (_ref("global", _qualified(t)), self.value(vars(v), same))
        raise _NoFingerprint  # an instance: its class's reduce decides what is pickled

    def field(self, v: Any) -> Any:
        """A step option's value: *value*, with shortcuts for the kinds every step has (names, its
        kind, its backoff, builtin exception classes)."""
        t = type(v)
        if t in _ATOMS:
            return v
        if t is tuple or t is frozenset:
            if all(type(x) is str for x in v):
                return (_CONTAINERS[t], sorted(v) if t is frozenset else v)
            if all(type(x) is type and x.__module__ == "builtins" for x in v):
                return (_CONTAINERS[t], "builtins", sorted(x.__qualname__ for x in v) if t is frozenset
                        else tuple(x.__qualname__ for x in v))
        elif t is Backoff:
            return ("backoff", v.base, v.factor, v.cap, v.jitter)
        elif isinstance(v, enum.Enum) and type(v._value_) in _ATOMS and _importable(t):
            return ("enum", _qualified(t), v._value_)
        return self.value(v)

    def function(self, f: types.FunctionType) -> Any:
        seen = self.memo.get(id(f))
        if seen is not None:
            return _ref("function", str(seen))
        if f.__module__ not in self.by_value and _by_reference is not None and _by_reference(f):
            return _ref("global", _qualified(f))
        index = self.memo[id(f)] = len(self.memo)
        self.keep.append(f)
        g, code, closure = f.__globals__, f.__code__, f.__closure__
        names = [n for n in _names(code) if n in g]  # a global not there is not pickled either
        cells: list[Any] = []
        for cell in closure or ():
            try:
                cells.append(cell.cell_contents)
            except ValueError:  # an empty cell
                cells.append(_ref("empty", ""))
        read = [g[n] for n in names] + cells
        modules: list[Any] = []
        if any(type(x) is types.ModuleType for x in read):
            if _submodules is None:
                raise _NoFingerprint
            modules = sorted(m.__name__ for m in _submodules(code, read))
        doc, annotations, attrs = f.__doc__, f.__annotations__, f.__dict__
        kwdefaults, defaults = f.__kwdefaults__, f.__defaults__
        self.parts.append((
            index, f.__name__, f.__qualname__, f.__module__, doc if type(doc) in _ATOMS else self.value(doc),
            _code_bytes(code), self.value(annotations, False) if annotations else None,
            self.value(kwdefaults) if kwdefaults else kwdefaults, self.value(defaults) if defaults else defaults,
            [self.value(c) for c in cells] if cells else None, [(n, self.value(g[n])) for n in names],
            [(k, self.value(g[k])) for k in _BASE_GLOBALS if k in g], modules,
            self.value(attrs, False) if attrs else None,
        ))
        return _ref("function", str(index))


def _blank(code: types.CodeType) -> types.CodeType:
    """*code* (and the code nested in it) without its file name: cloudpickle leaves it out too, and
    a notebook cell's differs from one kernel to the next."""
    consts = code.co_consts
    if any(type(c) is types.CodeType for c in consts):
        consts = tuple(_blank(c) if type(c) is types.CodeType else c for c in consts)
        return code.replace(co_filename="", co_consts=consts)
    return code.replace(co_filename="")


def _code_bytes(code: types.CodeType) -> bytes:
    """Every field of *code* but its file name, in marshal's format 2 (no references: the same code
    gives the same bytes in every process of the same Python)."""
    return marshal.dumps(_blank(code), 2)


_IN_DEFINITION = frozenset({"kind", "params", "defaults", "foreach", "after", "retries", "backoff", "retry_on",
                            "timeout", "on_item_error", "max_parallel", "on_timeout", "source", "key_source"})
"""The step's fields its stored definition holds (``definition_of``): its version compares them."""


def fingerprint(spec: Any) -> str | None:
    """What pinning *spec* would pickle beyond its stored definition (its functions, what they read,
    the rest of its fields), as a SHA-256 (hex), without pickling its functions; None when only its
    pickle can tell (see above). Equal fingerprints and equal definitions pin equal code."""
    fields = getattr(spec, "__dict__", None)
    if fields is None or _PINNED in fields or _by_reference is None:
        return None  # (pinned code loaded here: pickle_step returns its bytes at once)
    kind, retry_on = fields.get("kind"), fields.get("retry_on")
    if type(fields.get("backoff")) is not Backoff or type(retry_on) is not tuple:
        return None  # the definition holds their values: these are the types it assumes
    if not isinstance(kind, enum.Enum) or not _importable(type(kind)):
        return None
    by_value = frozenset({"__main__"} if _in_notebook(spec) else {
        getattr(f, "__module__", None) for f in (spec.fn, spec.key) if f is not None})
    fp = _Fingerprinter(by_value)
    try:
        head = (_qualified(type(spec)), tuple(fields), sorted(by_value, key=str), _qualified(type(kind)),
                fp.field(retry_on),
                [(k, v if type(v) in _ATOMS else fp.field(v)) for k, v in fields.items() if k not in _IN_DEFINITION])
        # marshal's format 2 keeps no references (those depend on reference counts): the same data
        # gives the same bytes in every process of the same Python (the salt names it).
        text = marshal.dumps((_FP_SALT, head, fp.parts), 2)
    except Exception:  # noqa: BLE001 - _NoFingerprint, or anything an odd object raises: pickling will tell
        return None
    if len(text) > _FP_BYTES:
        return None
    return hashlib.sha256(text).hexdigest()


__all__ = [
    "LARGE_GLOBAL_BYTES", "Missing", "Use", "fingerprint", "functions", "loads", "notebook_uses", "pickle_step",
    "remember",
]
