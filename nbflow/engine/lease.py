"""The owner's threads and lease. The scheduler runs on a thread of its own; a worker thread whose
result is the only one in flight may run the scheduler's turn itself, under the turn lock (a chain's
fast path, B1 in bench/). The owner keeps its lease on the run by heartbeats in its flushes
(``HEARTBEAT_S``) and gives it back when it stops on an error. Part of the
:class:`~nbflow.engine.scheduler.Scheduler`."""
from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..states import RunStatus
from ..store import Store
from ..store.journal import Journal, LostOwnership
from .executor import Executor, Result

log = logging.getLogger("nbflow.scheduler")

HEARTBEAT_S = 2.0
"""How often the owner writes its heartbeat on the run row (at most this long between two)."""


def new_owner_id() -> str:
    """A fresh owner id: who holds a run's lease."""
    return uuid.uuid4().hex


class OwnerThreads:
    """The scheduler's loop, its worker-run turns and its lease (a mixin of :class:`Scheduler`)."""

    run_id: str
    q: queue.SimpleQueue[tuple[str, Any]]
    cond: threading.Condition  # notified when the committed status changes and when the loop ends
    thread: threading.Thread | None
    error: BaseException | None  # what stopped the loop, if anything did
    executor: Executor
    journal: Journal
    inflight: dict[tuple[str, int], int]
    stop_requested: bool
    # The scheduler's state is changed only under this lock: by its thread, or by a worker thread
    # running a turn itself (see _sink). Never held while a step body runs.
    _turn_lock: threading.Lock
    _ended: bool  # the loop is over (possibly ended by a worker's turn)
    _turn_error: BaseException | None  # raised by a worker's turn, re-raised by the loop
    _wake_at: float  # monotonic time the scheduler thread's current wait ends
    _turn_wanted: bool  # the scheduler thread waits for the turn lock
    _on_stop: Callable[[Any], None]  # told once the loop is over (the process's registry of live schedulers)
    committed_status: RunStatus  # the run status of the last committed flush
    committing: bool  # a flush is being written; its status is not published yet
    store: Store
    cmd_waiters: dict[int, threading.Event]  # set once the command of that id is committed
    cmd_results: dict[int, tuple[str, str]]  # (result, message) of each command committed
    cmd_codes: dict[int, str]  # the Refusal code of each command refused

    if TYPE_CHECKING:  # the state machine's, in scheduler.py
        def _turn(self) -> bool: ...
        def _timeout(self) -> float: ...
        def _handle(self, kind: str, payload: Any) -> bool: ...
        def _poll_commands(self, force: bool = False) -> None: ...
        def _on_result(self, res: Result) -> None: ...

    def _init_threads(self, on_stop: Callable[[Any], None]) -> None:
        self.q = queue.SimpleQueue()
        self.cond = threading.Condition()
        self.thread = None
        self.error = None
        self.stop_requested = False
        self._turn_lock = threading.Lock()
        self._ended = False
        self._turn_error = None
        self._wake_at = 0.0
        self._turn_wanted = False
        self._on_stop = on_stop

    def start(self) -> None:
        """Launch the scheduler's thread."""
        self.thread = threading.Thread(target=self._main, name=f"nbflow-scheduler-{self.run_id}", daemon=True)
        self.thread.start()

    def wake(self) -> None:
        """Ask for a turn now (a command was written in this process)."""
        self.q.put(("wake", None))

    def request_stop(self) -> None:
        """Stop after the current turn, giving up the lease (the run stays resumable)."""
        self.stop_requested = True
        self.q.put(("stop", None))

    def alive(self) -> bool:
        """Whether the scheduler's thread still runs."""
        return self.thread is not None and self.thread.is_alive()

    def published_status(self) -> RunStatus:
        """The run status of the last committed flush, as a reader that saw that commit in the store
        (a command's answer, an instance's new state) must see it. Never waits for a turn: while a
        flush is being written, its commit may or may not be visible yet, so the store says."""
        if not self.committing:
            return self.committed_status
        return RunStatus(self.store.run_row(self.run_id)["status"])

    def settle(self, deadline: float | None) -> RunStatus:
        """Block until the run is no longer running (paused or finished) and no flush is being
        written, the loop ends, or the monotonic *deadline* passes; return :meth:`published_status`."""
        while True:
            left = None if deadline is None else deadline - time.monotonic()
            with self.cond:  # notified under it once a flush published its status
                if not self.committing and (not self.alive() or self.committed_status != RunStatus.RUNNING):
                    break
                if left is not None and left <= 0:
                    break
                step = 0.05 if self.committing else 0.5
                self.cond.wait(step if left is None else min(left, step))
        return self.published_status()

    def answer(self, cid: int, deadline: float | None) -> tuple[str, str | None, str] | None:
        """``(result, message, refusal code)`` of command *cid* once this owner committed it; None if
        the loop ended first or the monotonic *deadline* passed."""
        ev = threading.Event()
        self.cmd_waiters[cid] = ev
        if cid not in self.cmd_results:
            self.wake()
            while not ev.wait(0.1):
                if cid in self.cmd_results:
                    break
                if not self.alive() or (deadline is not None and time.monotonic() >= deadline):
                    self.cmd_waiters.pop(cid, None)
                    break
        got = self.cmd_results.pop(cid, None)
        code = self.cmd_codes.pop(cid, "state")
        return None if got is None else (got[0], got[1], code)

    def forget_answer(self, cid: int) -> str | None:
        """Drop what is kept for command *cid* (its answer was read from the store); its refusal
        code, if this owner refused it (the store keeps the result and message, not the code)."""
        self.cmd_results.pop(cid, None)
        return self.cmd_codes.pop(cid, None)

    def _main(self) -> None:
        try:
            self._loop()
        except LostOwnership as exc:
            log.warning("%s", exc)
            self.error = exc
        except BaseException as exc:  # record, then let the run be taken over
            log.exception("nbflow scheduler for run %s stopped", self.run_id)
            self.error = exc
            self._hand_back(exc)
        finally:
            self.executor.shutdown()
            with self.cond:
                self.cond.notify_all()
            self._on_stop(self)

    def _hand_back(self, exc: BaseException) -> None:
        """The scheduler stopped on an error: record it and give up the lease (best effort: the store
        itself may be what failed), so every process sees the run as interrupted and can take it
        over once the cause is fixed, as after a crash of the owner process."""
        try:
            self.journal.hand_back(f"{type(exc).__name__}: {exc}")
        except Exception:
            log.exception("nbflow: run %s could not be handed back after its scheduler stopped", self.run_id)

    def _loop(self) -> None:
        lock = self._turn_lock
        self._acquire_turn()
        try:
            self._poll_commands(force=True)
        except BaseException:
            self._ended = True  # set before the lock is released: no worker may run a turn for a dead scheduler
            raise
        finally:
            lock.release()
        while True:
            self._acquire_turn()
            try:
                if self._turn_error is not None:
                    raise self._turn_error
                if self._ended or self._turn():
                    return
                timeout = self._timeout()
                self._wake_at = time.monotonic() + timeout
            except BaseException:
                self._ended = True
                raise
            finally:
                lock.release()
            try:
                kind, payload = self.q.get(timeout=timeout)
            except queue.Empty:
                kind = None
            self._acquire_turn()
            try:
                if self._turn_error is not None:
                    raise self._turn_error
                if self._ended:
                    return
                woke = kind is not None and self._handle(kind, payload)
                woke |= self._drain()
                self._poll_commands(force=woke)
            except BaseException:
                self._ended = True
                raise
            finally:
                lock.release()

    def _acquire_turn(self) -> None:
        """The scheduler thread takes the turn lock; while it waits, workers hand their results over
        instead of running turns, so a busy chain cannot keep it from commands and timers."""
        if not self._turn_lock.acquire(blocking=False):
            self._turn_wanted = True
            self._turn_lock.acquire()
            self._turn_wanted = False

    def _drain(self) -> bool:
        """Handle every queued message; True when one asked for a command poll."""
        woke = False
        q = self.q
        while not q.empty():
            try:
                kind, payload = q.get_nowait()
            except queue.Empty:  # the scheduler thread took it
                break
            woke |= self._handle(kind, payload)
        return woke

    def _sink(self, res: Result) -> None:
        """A worker thread's result. When its attempt is the only one in flight (a chain), the worker
        runs the scheduler's turn itself, under the turn lock: it commits the output, dispatches what
        is now ready and returns to its queue, where the next task waits for it. That saves waking
        the scheduler thread and then a worker (two thread hand-offs per step: B1 in bench/). Bodies
        never run under the lock, and the scheduler thread still takes commands and fires timers;
        it is woken when a turn moved its next deadline earlier or ended the run."""
        if len(self.inflight) == 1 and not self._turn_wanted and self._turn_lock.acquire(blocking=False):
            try:
                if not self._ended and self._turn_error is None and len(self.inflight) == 1:
                    self._worker_turn(res)
                    return
            finally:
                self._turn_lock.release()
        self.q.put(("result", res))

    def _worker_turn(self, res: Result) -> None:
        try:
            woke = self._drain()
            self._on_result(res)
            self._poll_commands(force=woke)
            if self._turn():
                self.q.put(("wake", None))  # the scheduler thread sees _ended and returns
            elif time.monotonic() + self._timeout() < self._wake_at:
                self.q.put(("tick", None))  # a timer or a group commit is due before it would wake
        except BaseException as exc:  # noqa: BLE001 - the scheduler thread raises it (and stops the run)
            self._turn_error = exc
            self.q.put(("wake", None))


__all__ = ["HEARTBEAT_S", "OwnerThreads", "new_owner_id"]
