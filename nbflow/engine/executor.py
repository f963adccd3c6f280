"""Executors run step bodies and hand results back; they never touch instance state."""
from __future__ import annotations

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
    """A fixed pool of daemon threads; results go to ``sink``. Idle threads cost nothing but a stack."""

    def __init__(self, max_workers: int, sink: Callable[[Result], None], name: str = "nbflow-worker") -> None:
        self.max_workers = max_workers
        self._sink = sink
        self._tasks: queue.SimpleQueue[Task | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._name = name

    def abandon(self) -> None:
        """A timed-out attempt keeps its thread busy until its body returns: add one to replace it."""
        self.max_workers += 1

    def submit(self, task: Task) -> None:
        if len(self._threads) < self.max_workers:
            t = threading.Thread(target=self._work, name=f"{self._name}-{len(self._threads)}", daemon=True)
            self._threads.append(t)
            t.start()
        self._tasks.put(task)

    def _work(self) -> None:
        while True:
            task = self._tasks.get()
            if task is None:
                return
            self._sink(execute(task))

    def shutdown(self) -> None:
        for _ in self._threads:
            self._tasks.put(None)
