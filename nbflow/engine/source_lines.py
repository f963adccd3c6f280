"""Source lines for step code that was pickled by value.

cloudpickle >= 3.1 names the file of every code object it pickles by value ``<dynamic-code>``
(a deterministic payload), so a traceback raised where the step was unpickled (a worker process,
a Dask worker, ``nbflow resume`` in a new process) has no source line. The owner has the lines:
it ships each function's file name and lines with the code (the step's function, its key
function, and the notebook helpers and class methods they reach), and the loading side puts
both back.
"""
from __future__ import annotations

import linecache
import threading
from dataclasses import dataclass
from types import CodeType, FunctionType
from typing import Any

from .pinning import functions

_lock = threading.Lock()  # linecache entries are merged by read-modify-write (Dask runs threads)


@dataclass(frozen=True, slots=True)
class Origin:
    """Where one function pickled with a step was defined: its file name and its lines from line
    *first*; *name* (its qualified name) and *first* find it again after unpickling."""

    name: str
    filename: str
    first: int
    lines: tuple[str, ...]

    def as_json(self) -> list[Any]:
        return [self.name, self.filename, self.first, list(self.lines)]

    @classmethod
    def from_json(cls, value: Any) -> Origin:
        name, filename, first, lines = value
        return cls(str(name), str(filename), int(first), tuple(str(ln) for ln in lines))


def _last_line(code: CodeType) -> int:
    last = code.co_firstlineno
    for _start, _end, line in code.co_lines():
        if line is not None and line > last:
            last = line
    for const in code.co_consts:
        if isinstance(const, CodeType):
            last = max(last, _last_line(const))
    return last


def _origin(fn: FunctionType) -> Origin | None:
    code = fn.__code__
    lines = linecache.getlines(code.co_filename)
    first = code.co_firstlineno
    if not lines or first < 1 or first > len(lines):
        return None
    return Origin(fn.__qualname__, code.co_filename, first, tuple(lines[first - 1:_last_line(code)]))


def origins(spec: Any) -> tuple[Origin, ...]:
    """The origins of the functions pickled by value with *spec*, as far as their lines are known here."""
    found = (_origin(fn) for fn in functions(spec))
    return tuple(o for o in found if o is not None)


def _renamed(code: CodeType, filename: str) -> CodeType:
    consts = tuple(_renamed(c, filename) if isinstance(c, CodeType) else c for c in code.co_consts)
    return code.replace(co_filename=filename, co_consts=consts)


def register(origin: Origin) -> None:
    """Make linecache hold *origin*'s lines under its file name, keeping the lines already there
    (two steps of one notebook cell share a file name)."""
    start = origin.first - 1
    with _lock:
        have = linecache.getlines(origin.filename)
        if tuple(have[start:start + len(origin.lines)]) == origin.lines:
            return
        lines = list(have) + ["\n"] * max(0, start + len(origin.lines) - len(have))
        lines[start:start + len(origin.lines)] = origin.lines
        # mtime None: linecache.checkcache keeps the entry (as for code loaded through a __loader__).
        linecache.cache[origin.filename] = (sum(map(len, lines)), None, lines, origin.filename)


def restore(spec: Any, found: tuple[Origin, ...]) -> None:
    """Give *spec*'s unpickled functions back their file names, and their lines to linecache."""
    if not found:
        return
    by_place = {(o.name, o.first): o for o in found}
    for fn in functions(spec):
        origin = by_place.get((fn.__qualname__, fn.__code__.co_firstlineno))
        if origin is None:
            continue
        if fn.__code__.co_filename != origin.filename:
            fn.__code__ = _renamed(fn.__code__, origin.filename)
        register(origin)


__all__ = ["Origin", "origins", "register", "restore"]
