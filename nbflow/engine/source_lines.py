"""Source lines for step code that was pickled by value.

cloudpickle >= 3.1 names the file of every code object it pickles by value ``<dynamic-code>``
(a deterministic payload), so a traceback raised where the step was unpickled (a worker process,
a Dask worker, ``nbflow resume`` in a new process) has no source line. The owner has the lines:
it ships each function's file name and lines with the code, and the loading side puts both back.
"""
from __future__ import annotations

import linecache
from dataclasses import dataclass
from types import CodeType
from typing import Any

_ATTRS = ("fn", "key")


@dataclass(frozen=True, slots=True)
class Origin:
    """Where one of a step's functions was defined: its file name and its lines, from line *first*."""

    attr: str
    filename: str
    first: int
    lines: tuple[str, ...]

    def as_json(self) -> list[Any]:
        return [self.attr, self.filename, self.first, list(self.lines)]

    @classmethod
    def from_json(cls, value: Any) -> Origin:
        attr, filename, first, lines = value
        return cls(str(attr), str(filename), int(first), tuple(str(ln) for ln in lines))


def _last_line(code: CodeType) -> int:
    last = code.co_firstlineno
    for _start, _end, line in code.co_lines():
        if line is not None and line > last:
            last = line
    for const in code.co_consts:
        if isinstance(const, CodeType):
            last = max(last, _last_line(const))
    return last


def origins(spec: Any) -> tuple[Origin, ...]:
    """The origins of *spec*'s function and key function, as far as the lines are known here."""
    found: list[Origin] = []
    for attr in _ATTRS:
        code = getattr(getattr(spec, attr, None), "__code__", None)
        if not isinstance(code, CodeType):
            continue
        lines = linecache.getlines(code.co_filename)
        first = code.co_firstlineno
        if not lines or first < 1 or first > len(lines):
            continue
        found.append(Origin(attr, code.co_filename, first, tuple(lines[first - 1:_last_line(code)])))
    return tuple(found)


def _renamed(code: CodeType, filename: str) -> CodeType:
    consts = tuple(_renamed(c, filename) if isinstance(c, CodeType) else c for c in code.co_consts)
    return code.replace(co_filename=filename, co_consts=consts)


def register(origin: Origin) -> None:
    """Make linecache hold *origin*'s lines under its file name, unless it already does."""
    have = linecache.getlines(origin.filename)
    start = origin.first - 1
    if tuple(have[start:start + len(origin.lines)]) == origin.lines:
        return
    lines = ["\n"] * start + list(origin.lines)
    # mtime None: linecache.checkcache keeps the entry (as for code loaded through a __loader__).
    linecache.cache[origin.filename] = (sum(map(len, lines)), None, lines, origin.filename)


def restore(spec: Any, found: tuple[Origin, ...]) -> None:
    """Give *spec*'s unpickled functions back their file names, and their lines to linecache."""
    for origin in found:
        fn = getattr(spec, origin.attr, None)
        code = getattr(fn, "__code__", None)
        if not isinstance(code, CodeType):
            continue
        if code.co_filename != origin.filename:
            fn.__code__ = _renamed(code, origin.filename)  # type: ignore[union-attr]
        register(origin)


__all__ = ["Origin", "origins", "register", "restore"]
