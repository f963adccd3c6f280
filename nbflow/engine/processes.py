"""``executor="processes"``: step bodies in a pool of local worker processes (CPU-bound steps).

One pool per kernel, shared by its runs. Workers are fresh interpreters (``python -m
nbflow.engine.processes``), not forks: forking a process that holds a scheduler thread and database
connections is unsafe, and multiprocessing's ``spawn`` would re-import the caller's script. Each
worker talks to its own feeder thread over two pipes, so an attempt that times out or is cancelled
is stopped by killing its worker, which is then replaced.
"""
from __future__ import annotations

import atexit
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from ..store.codec import Encoded
from .executor import Hooks, Result, Task
from .remote import Packer, failed, run_call, unpack

_pools: dict[int, _Pool] = {}
_pools_lock = threading.Lock()


def pool(size: int | None = None) -> _Pool:
    """The shared pool with *size* workers (default: one per CPU)."""
    n = size or os.cpu_count() or 2
    with _pools_lock:
        p = _pools.get(n)
        if p is None:
            p = _pools[n] = _Pool(n)
        return p


@atexit.register
def _close_all() -> None:
    for p in list(_pools.values()):
        p.close()


@dataclass(eq=False)
class _Job:
    port: ProcessExecutor
    task: Task
    payload: bytes
    cancelled: bool = False


@dataclass(eq=False)
class _Slot:
    """One worker process and the thread that feeds it."""

    pool: _Pool
    index: int
    proc: subprocess.Popen[bytes] | None = None
    conn: _Pipes | None = None
    job: _Job | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def ensure(self) -> _Pipes:
        if self.proc is None or self.proc.poll() is not None:
            if self.conn is not None:
                self.conn.close()
            to_r, to_w = os.pipe()
            from_r, from_w = os.pipe()
            env = {**os.environ, "PYTHONPATH": os.pathsep.join(p or os.getcwd() for p in sys.path)}
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "nbflow.engine.processes", str(to_r), str(from_w)],
                pass_fds=(to_r, from_w), stdin=subprocess.DEVNULL, env=env,
                start_new_session=True,  # Jupyter's Interrupt signals the kernel's process group, not its workers
            )
            os.close(to_r)
            os.close(from_w)
            self.conn = _Pipes(Connection(from_r, writable=False), Connection(to_w, readable=False))
        assert self.conn is not None
        return self.conn

    def kill(self, job: _Job | None = None) -> None:
        """Kill the worker and anything it started (its own session), only if it still runs *job* when
        given; the next job starts a new one."""
        with self.lock:
            if (job is None or self.job is job) and self.proc is not None and self.proc.poll() is None:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def loop(self) -> None:
        while True:
            job = self.pool.jobs.get()
            if job is None:
                return
            with self.lock:
                if job.cancelled:  # checked under the lock a cancel takes: it cannot slip in between
                    job.port.forget(job)
                    continue
                self.job = job
            try:
                self._run(job)
            except Exception as exc:  # noqa: BLE001 - this thread serves every run of the kernel: it must live
                if not job.cancelled:
                    job.port.hooks.sink(failed(job.task.ident, job.task.attempt,
                                               f"nbflow could not handle the result of the {job.task.label}: "
                                               f"{type(exc).__name__}: {exc}"))
            finally:
                with self.lock:
                    self.job = None
                job.port.forget(job)

    def _run(self, job: _Job) -> None:
        task = job.task
        started = time.time()
        try:
            conn = self.ensure()
            if job.cancelled:  # cancelled while its worker was being (re)started
                return
            conn.send_bytes(job.payload)
            while True:
                # A child the step forked may hold the pipe open after the worker died: watch the worker too.
                while not conn.incoming.poll(0.5):
                    if self.proc is None or self.proc.poll() is not None:
                        raise EOFError
                msg = conn.recv()
                if msg[0] == "result":
                    res = unpack(msg[1])
                    res.ident, res.attempt = task.ident, task.attempt  # also when the worker could not load the call
                    break
                if msg[0] == "started":
                    started = msg[3]
                    job.port.hooks.started(msg[1], msg[2], msg[3])
                elif msg[0] == "checkpoint":
                    try:
                        job.port.hooks.checkpoint(msg[1], msg[2], Encoded(msg[3], msg[4]))
                    except Exception as exc:  # noqa: BLE001 - tell the step why its checkpoint failed
                        conn.send(("error", f"{type(exc).__name__}: {exc}"))
                    else:
                        conn.send(("ok", None))
        except (EOFError, OSError):
            code = self.proc.wait() if self.proc is not None else None
            if job.cancelled:
                return
            self.proc = None
            res = failed(task.ident, task.attempt,
                         f"the worker process running the {task.label} died (exit code {code})", started)
        if not job.cancelled:
            job.port.hooks.sink(res)


class _Pool:
    def __init__(self, size: int) -> None:
        self.size = size
        self.jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self.slots = [_Slot(self, i) for i in range(size)]
        for slot in self.slots:
            threading.Thread(target=slot.loop, name=f"nbflow-proc-feed-{slot.index}", daemon=True).start()

    def cancel(self, port: ProcessExecutor, ident: tuple[str, int], attempt: int) -> None:
        for slot in self.slots:
            job = slot.job
            if job is not None and job.port is port and job.task.ident == ident and job.task.attempt == attempt:
                job.cancelled = True
                slot.kill(job)
                return
        queued = port.job(ident, attempt)
        if queued is not None:
            queued.cancelled = True

    def close(self) -> None:
        for slot in self.slots:
            self.jobs.put(None)
            slot.kill()


class ProcessExecutor:
    """One run's view of the shared process pool."""

    def __init__(self, hooks: Hooks, size: int | None = None) -> None:
        self.hooks = hooks
        self.pool = pool(size)
        self.capacity = self.pool.size
        self.max_inflight = 2 * self.capacity
        self._packer = Packer()
        self._jobs: dict[tuple[tuple[str, int], int], _Job] = {}

    def submit(self, task: Task) -> None:
        payload = self._packer.pack(task)
        if isinstance(payload, Result):
            self.hooks.sink(payload)
            return
        job = _Job(self, task, payload)
        self._jobs[(task.ident, task.attempt)] = job
        self.pool.jobs.put(job)

    def flush(self) -> None:
        pass

    def job(self, ident: tuple[str, int], attempt: int) -> _Job | None:
        return self._jobs.get((ident, attempt))

    def forget(self, job: _Job) -> None:
        self._jobs.pop((job.task.ident, job.task.attempt), None)

    def cancel(self, ident: tuple[str, int], attempt: int) -> None:
        self.pool.cancel(self, ident, attempt)

    def shutdown(self) -> None:
        for job in list(self._jobs.values()):
            job.cancelled = True  # queued work of a finished run is dropped
        self._jobs.clear()


class _Pipes:
    """One end of a worker's two pipes, used like a duplex :class:`Connection`."""

    def __init__(self, incoming: Connection, outgoing: Connection) -> None:
        self.incoming, self.outgoing = incoming, outgoing

    def send(self, obj: Any) -> None:
        self.outgoing.send(obj)

    def send_bytes(self, data: bytes) -> None:
        self.outgoing.send_bytes(data)

    def recv(self) -> Any:
        return self.incoming.recv()

    def recv_bytes(self) -> bytes:
        return self.incoming.recv_bytes()

    def close(self) -> None:
        self.incoming.close()
        self.outgoing.close()


class _PipeChannel:
    def __init__(self, conn: _Pipes) -> None:
        self.conn = conn

    def started(self, ident: tuple[str, int], attempt: int, at: float) -> None:
        self.conn.send(("started", ident, attempt, at))

    def checkpoint(self, ident: tuple[str, int], attempt: int, codec_name: str, data: bytes) -> None:
        self.conn.send(("checkpoint", ident, attempt, codec_name, data))
        status, message = self.conn.recv()
        if status != "ok":
            raise RuntimeError(f"the checkpoint was not saved: {message}")


def _worker_main(conn: _Pipes) -> None:
    channel = _PipeChannel(conn)
    while True:
        try:
            payload = conn.recv_bytes()
        except (EOFError, OSError):
            return
        conn.send(("result", run_call(payload, channel)))


if __name__ == "__main__":
    _worker_main(_Pipes(Connection(int(sys.argv[1]), writable=False), Connection(int(sys.argv[2]), readable=False)))
