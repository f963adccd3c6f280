"""Executors run step bodies and hand results back; they never touch instance state."""
from __future__ import annotations

import itertools
import queue
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

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
    spec: Any = None  # the StepSpec, for executors that ship the step's pinned code elsewhere

    @property
    def label(self) -> str:
        """The attempt's step in messages, e.g. "step 'load' (key 3)"."""
        return self.what.removeprefix("output of ")


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
        except Exception as exc:  # noqa: BLE001 - e.g. the artifact folder is full: the attempt fails, the worker lives
            res = Result(task.ident, task.attempt, False, exc=exc,
                         error=error_triple(
                             SerializationError(f"cannot store the {task.what}: {type(exc).__name__}: {exc}"), 0))
        else:
            res = Result(task.ident, task.attempt, True, enc=enc, value=value)
    finally:
        capture.stop(token)
    res.logs = buf.getvalue()
    res.started_at = started
    res.finished_at = time.time()
    return res


@dataclass(slots=True)
class Hooks:
    """How an executor reaches the scheduler of one run (called from executor threads)."""

    sink: Callable[[Result], None]  # an attempt finished (or its worker died)
    started: Callable[[tuple[str, int], int, float], None]  # a timed attempt's body began
    checkpoint: Callable[[tuple[str, int], int, Encoded], None]  # commit a remote ctx.checkpoint, then return


class Executor(Protocol):
    """What a run's scheduler submits attempts to. One per run; results go to its :class:`Hooks`."""

    capacity: int  # how many attempts it runs at once
    max_inflight: int  # how many the scheduler hands it before waiting for results

    def submit(self, task: Task) -> None: ...

    def flush(self) -> None:
        """The scheduler's turn is over: send what :meth:`submit` buffered (Dask maps a turn at once)."""

    def cancel(self, ident: tuple[str, int], attempt: int) -> None:
        """The attempt timed out or was cancelled: stop it if the executor can, and drop its result."""

    def shutdown(self) -> None: ...


class ThreadExecutor:
    """A pool of up to ``max_workers`` daemon threads; results go to ``sink``. Idle threads cost nothing
    but a stack. A thread is added only when every thread is busy: a chain of quick steps runs on one
    thread, which finds the next task it dispatched itself (``Scheduler._sink``) instead of another
    idle thread being woken for it (B1 in bench/)."""

    def __init__(self, max_workers: int, sink: Callable[[Result], None], name: str = "nbflow-worker") -> None:
        self.max_workers = max_workers
        self.capacity = max_workers
        self.max_inflight = 2 * max_workers  # a short queue keeps the threads busy
        self._sink = sink
        self._tasks: queue.SimpleQueue[Task | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._name = name
        self._submitted = 0  # written by one thread at a time: whoever holds the scheduler's turn lock
        self._finished = itertools.count(1)
        self._done = 0  # the last value taken from _finished; a stale (lower) value only adds a thread
        self._cancelled: set[tuple[tuple[str, int], int]] = set()
        self._running: set[tuple[tuple[str, int], int]] = set()
        self._owed = 0  # threads to add for running attempts that were cancelled

    def cancel(self, ident: tuple[str, int], attempt: int) -> None:
        """A queued attempt is dropped. A running one cannot be stopped: it keeps its thread until its
        body returns, so another thread takes its place (tasks queued behind it must not wait for it)."""
        key = (ident, attempt)
        self._cancelled.add(key)
        if key in self._running:
            self.max_workers += 1
            self._owed += 1  # added at flush(), once every attempt of this turn is marked: a new thread
            # must not pick up a queued attempt that the same turn is about to cancel

    def flush(self) -> None:
        while self._owed:
            self._owed -= 1
            if len(self._threads) < self.max_workers:
                self._add_thread()

    def submit(self, task: Task) -> None:
        n = len(self._threads)
        if n < self.max_workers and self._submitted - self._done >= n:  # no thread is idle
            self._add_thread()
        self._submitted += 1
        self._tasks.put(task)

    def _add_thread(self) -> None:
        t = threading.Thread(target=self._work, name=f"{self._name}-{len(self._threads)}", daemon=True)
        self._threads.append(t)
        t.start()

    def _work(self) -> None:
        get, sink, finished = self._tasks.get, self._sink, self._finished
        running, cancelled = self._running, self._cancelled
        while True:
            task = get()
            if task is None:
                return
            key = (task.ident, task.attempt)
            running.add(key)
            if key in cancelled:  # cancelled while queued: its body never runs
                running.discard(key)
                cancelled.discard(key)
                self._done = next(finished)
                continue
            res = execute(task)
            running.discard(key)
            cancelled.discard(key)
            # Idle from here on: a task the sink submits (it may run the scheduler's turn) is for this thread.
            self._done = next(finished)
            sink(res)

    def shutdown(self) -> None:
        for _ in self._threads:
            self._tasks.put(None)
