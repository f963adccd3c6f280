"""Executors run step bodies and hand results back; they never touch instance state."""
from __future__ import annotations

import itertools
import queue
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import SerializationError
from ..store.codec import Encoded
from . import capture


@dataclass(slots=True)
class Task:
    """One attempt of one instance, ready to call."""

    ident: tuple[str, int]
    attempt: int
    fn: Callable[..., Any]
    kwargs: dict[str, Any]
    what: str  # names the value in a serialization error, e.g. "output of step 'load'"
    encode: Callable[[Any, str], Encoded]
    on_start: Callable[[float], None] | None = None  # told when the body really starts (for timeouts)


@dataclass(slots=True)
class Result:
    ident: tuple[str, int]
    attempt: int
    ok: bool
    enc: Encoded | None = None
    value: Any = None
    exc: BaseException | None = None
    error: tuple[str, str, str] | None = None  # type, message, traceback
    logs: str = ""
    started_at: float = 0.0
    finished_at: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def error_triple(exc: BaseException, skip_frames: int = 1) -> tuple[str, str, str]:
    """(type, message, traceback) with nbflow's own calling frames left out."""
    tb = exc.__traceback__
    for _ in range(skip_frames):
        if tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
    text = "".join(traceback.format_exception(type(exc), exc, tb))
    return f"{type(exc).__module__}.{type(exc).__qualname__}".removeprefix("builtins."), str(exc), text


def execute(task: Task) -> Result:
    """Call the step body with its output captured and its result encoded (in the worker, off the scheduler)."""
    capture.install()
    buf, token = capture.start()
    started = time.time()
    if task.on_start is not None:
        task.on_start(started)
    try:
        value = task.fn(**task.kwargs)
    except BaseException as exc:  # noqa: BLE001 - a step may raise anything; KeyboardInterrupt too
        res = Result(task.ident, task.attempt, False, exc=exc, error=error_triple(exc))
    else:
        try:
            enc = task.encode(value, task.what)
        except SerializationError as exc:
            res = Result(task.ident, task.attempt, False, exc=exc, error=(type(exc).__name__, str(exc), str(exc)))
        else:
            res = Result(task.ident, task.attempt, True, enc=enc, value=value)
    finally:
        capture.stop(token)
    res.logs = buf.getvalue()
    res.started_at = started
    res.finished_at = time.time()
    return res


class ThreadExecutor:
    """A pool of up to ``max_workers`` daemon threads; results go to ``sink``. Idle threads cost nothing
    but a stack. A thread is added only when every thread is busy: a chain of quick steps runs on one
    thread, which finds the next task it dispatched itself (``Scheduler._sink``) instead of another
    idle thread being woken for it (B1 in bench/)."""

    def __init__(self, max_workers: int, sink: Callable[[Result], None], name: str = "nbflow-worker") -> None:
        self.max_workers = max_workers
        self._sink = sink
        self._tasks: queue.SimpleQueue[Task | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._name = name
        self._submitted = 0  # written by one thread at a time: whoever holds the scheduler's turn lock
        self._finished = itertools.count(1)
        self._done = 0  # the last value taken from _finished; a stale (lower) value only adds a thread

    def abandon(self) -> None:
        """A timed-out attempt keeps its thread busy until its body returns: add one to replace it."""
        self.max_workers += 1

    def submit(self, task: Task) -> None:
        n = len(self._threads)
        if n < self.max_workers and self._submitted - self._done >= n:  # no thread is idle
            t = threading.Thread(target=self._work, name=f"{self._name}-{n}", daemon=True)
            self._threads.append(t)
            t.start()
        self._submitted += 1
        self._tasks.put(task)

    def _work(self) -> None:
        get, sink, finished = self._tasks.get, self._sink, self._finished
        while True:
            task = get()
            if task is None:
                return
            res = execute(task)
            # Idle from here on: a task the sink submits (it may run the scheduler's turn) is for this thread.
            self._done = next(finished)
            sink(res)

    def shutdown(self) -> None:
        for _ in self._threads:
            self._tasks.put(None)
