"""Tiny shared helpers: clock, actor identity, JSON-safe rendering, process liveness."""
from __future__ import annotations

import contextvars
import functools
import getpass
import json
import math
import os
import socket
import time
from collections.abc import Callable
from typing import Any, overload

from ._jsontext import has_lone_surrogate, to_json_text, utf8_text

HOST = socket.gethostname()

DISPLAY: list[Any] = []
"""The rich display of runs (``nbflow.run.use_display``): here, below everything, so that ``import nbflow``
installs the notebook's without importing ``Run``."""

_actor: contextvars.ContextVar[str | None] = contextvars.ContextVar("nbflow_actor", default=None)


def now() -> float:
    return time.time()


def plural(n: int, word: str) -> str:
    """``1 instance``, ``2 instances``: a count and its noun, for messages people read."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def current_actor() -> str:
    """Who is acting: a surface's identity (e.g. the Jupyter user) if set, else NBFLOW_ACTOR, else the OS user."""
    actor = _actor.get()
    if actor:
        return actor
    env = os.environ.get("NBFLOW_ACTOR")
    if env:
        return env
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - getuser raises KeyError, OSError, ... when no user name is known
        return f"uid:{os.getuid()}" if hasattr(os, "getuid") else "unknown"


def set_actor(actor: str | None) -> contextvars.Token[str | None]:
    """Make *actor* the author of commands written from this context (the server extension uses it)."""
    return _actor.set(actor)


def jsonable(value: Any) -> Any:
    """The value itself when it is JSON, else its repr (for events and the CLI's JSON)."""
    text = to_json_text(value)
    return json.loads(text) if text is not None else {"repr": repr(value)[:2000]}


# ------------------------------------------------------------------ strict JSON in and out
# JSON in, JSON out (RFC 8259): NaN, Infinity and lone surrogates are not JSON, and a browser's
# JSON.parse or a strict parser refuses a document holding them. Every surface refuses them on input
# (parse_json) and every JSON nbflow writes goes through dumps, which shows such values as text.

class _Constant:
    """What the parser makes of ``NaN``/``Infinity``/``-Infinity``, to say where one was."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name


def _surrogate(what: str, text: str) -> str:
    bad = next(c for c in text if 0xD800 <= ord(c) <= 0xDFFF)
    return f"{what} holds a lone surrogate ({ascii(bad)[1:-1]}), which is not Unicode text; send valid UTF-8 text"


def _not_strict(value: Any, at: str) -> str | None:
    """Why *value* (parsed JSON, at path *at*) is not strict JSON, or None when it is."""
    where = f" at {at}" if at else ""
    if isinstance(value, _Constant):
        return (f"{value.name} is not JSON{where} (JSON has no NaN or Infinity); write null or a number, "
                f"or the string \"{value.name}\"")
    if isinstance(value, str):
        return _surrogate(f"the string{where}", value) if has_lone_surrogate(value) else None
    items: Any = ()
    if isinstance(value, list):
        items = ((f"{at}[{i}]", v) for i, v in enumerate(value))
    elif isinstance(value, dict):
        for k in value:
            if has_lone_surrogate(k):
                return _surrogate(f"a key{where}", k)
        items = ((f"{at}.{k}" if at else k, v) for k, v in value.items())
    for path, v in items:
        why = _not_strict(v, path)
        if why:
            return why
    return None


def parse_json(text: str | bytes) -> Any:
    """Parse JSON as RFC 8259 has it: invalid JSON raises :class:`json.JSONDecodeError`; NaN, Infinity
    and lone surrogates raise :class:`ValueError` saying where they are (e.g. ``at inputs.x[2]``)."""
    value = json.loads(text, parse_constant=_Constant)
    why = _not_strict(value, "")
    if why:
        raise ValueError(why)
    return value


def _strict_key(key: Any) -> str:
    """A dict key as json writes it (str, and null/true/false/numbers as their JSON text), made strict."""
    if isinstance(key, str):
        return strict(str(key))
    if key is None or isinstance(key, bool):
        return json.dumps(key)
    if isinstance(key, float) and not math.isfinite(key):
        return repr(float(key))
    if isinstance(key, (int, float)):
        return json.dumps(key)
    return strict(str(key))


@overload
def strict(value: str, default: Callable[[Any], Any] = ..., _path: frozenset[int] = ...) -> str: ...
@overload
def strict(value: Any, default: Callable[[Any], Any] = ..., _path: frozenset[int] = ...) -> Any: ...
def strict(value: Any, default: Callable[[Any], Any] = str, _path: frozenset[int] = frozenset()) -> Any:
    """*value* as strict JSON can hold it: NaN and infinities as ``{"repr": "nan"}``, a lone surrogate
    in a string as its escape (``\\udcff``, as text), other values that are not JSON through *default*."""
    if isinstance(value, str):
        return utf8_text(str(value))
    if value is None or isinstance(value, (bool, int)):
        return value if value is None or isinstance(value, bool) else int(value)
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else {"repr": repr(float(value))}
    if id(value) in _path:
        return {"repr": "<a reference to itself>"}
    inner = _path | {id(value)}
    if isinstance(value, dict):
        return {_strict_key(k): strict(v, default, inner) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict(v, default, inner) for v in value]
    return strict(default(value), default, inner)


@functools.lru_cache(maxsize=16)
def _encoder(indent: int | None, default: Callable[[Any], Any]) -> Callable[[Any], str]:
    return json.JSONEncoder(ensure_ascii=False, allow_nan=False, indent=indent, default=default).encode


def dumps(value: Any, *, indent: int | None = None, default: Callable[[Any], Any] = str) -> str:
    """*value* as strict JSON text, valid UTF-8 whatever it holds (see :func:`strict`): every JSON nbflow
    writes out (``-o json``, REST bodies, events' data) goes through here."""
    encode = _encoder(indent, default)
    try:
        text = encode(value)
        if not has_lone_surrogate(text):
            return text
    except ValueError:  # NaN or an infinity (or a structure holding itself)
        pass
    return encode(strict(value, default))


def process_started_at(pid: int) -> float | None:
    """When process *pid* started (epoch seconds, to the second), or None where /proc cannot say."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()  # after "pid (command)"
        with open("/proc/stat", "rb") as fh:
            boot = next(float(line.split()[1]) for line in fh if line.startswith(b"btime "))
        return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22 of stat: start time in ticks
    except (OSError, IndexError, ValueError, StopIteration):
        return None


def pid_alive(pid: int) -> bool:
    """Whether process *pid* exists and can still run: a killed process its parent has not reaped
    yet (a zombie) is dead, though ``kill(pid, 0)`` still succeeds for it."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return process_state(pid) not in ("Z", "X")


def process_state(pid: int) -> str | None:
    """The state letter of process *pid* in /proc (``R``, ``S``, ``T``, ``Z`` zombie, ...), or None where
    /proc cannot say."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[0].decode()  # after "pid (command)"
    except (OSError, IndexError, UnicodeDecodeError):
        return None
