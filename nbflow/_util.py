"""Tiny shared helpers: clock, actor identity, JSON-safe rendering, process liveness."""
from __future__ import annotations

import contextvars
import getpass
import json
import os
import socket
import time
from typing import Any

from .store.codec import to_json_text

HOST = socket.gethostname()

_actor: contextvars.ContextVar[str | None] = contextvars.ContextVar("nbflow_actor", default=None)


def now() -> float:
    return time.time()


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
    except Exception:
        return f"uid:{os.getuid()}" if hasattr(os, "getuid") else "unknown"


def set_actor(actor: str | None) -> contextvars.Token[str | None]:
    """Make *actor* the author of commands written from this context (the server extension uses it)."""
    return _actor.set(actor)


def jsonable(value: Any) -> Any:
    """The value itself when it is JSON, else its repr (for events and the CLI's JSON)."""
    text = to_json_text(value)
    return json.loads(text) if text is not None else {"repr": repr(value)[:2000]}


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
