"""``executor=nbflow.DaskExecutor(client_or_address)``: step bodies as tasks on a Dask cluster.

Only ready attempts become Dask tasks: a paused, waiting or backing-off instance is a row in the
store and holds nothing on the cluster. The scheduler, the commands and the checkpoints stay with
the owner; ``ctx.checkpoint`` and the start of a timed attempt come back over a Dask queue.
"""
from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from typing import Any

from ..errors import ExecutorError
from ..store.codec import Encoded
from .executor import Hooks, Task
from .remote import Packer, failed, run_call, unpack

log = logging.getLogger("nbflow.dask")

# distributed leaves Client, Queue, Variable and as_completed unannotated: calls to them say
# `type: ignore[no-untyped-call]`.

ACK_TIMEOUT_S = 120.0
"""How long a worker's ``ctx.checkpoint`` waits for the owner to commit it."""


class DaskExecutor:
    """Run step bodies on a Dask cluster. Pass a ``distributed.Client``, a scheduler address
    (``"tcp://host:8786"``), or nothing to use ``NBFLOW_DASK_ADDRESS`` (else Dask's own
    ``scheduler-address`` setting). The run records the address, so ``nbflow resume`` reconnects."""

    def __init__(self, client_or_address: Any = None) -> None:
        try:
            from distributed import Client
        except ImportError:
            raise ExecutorError(
                "the Dask executor needs the distributed package: pip install 'nbflow[dask]'"
            ) from None
        if client_or_address is None:
            import dask

            client_or_address = os.environ.get("NBFLOW_DASK_ADDRESS") or dask.config.get("scheduler-address", None)
            if not client_or_address:
                raise ExecutorError(
                    "executor='dask' needs a Dask scheduler address: set NBFLOW_DASK_ADDRESS=tcp://host:8786, "
                    "or pass executor=nbflow.DaskExecutor(client) with a distributed.Client"
                )
        if isinstance(client_or_address, str):
            try:
                self.client = _client(client_or_address)
            except (OSError, TimeoutError) as exc:
                raise ExecutorError(
                    f"cannot reach the Dask scheduler at {client_or_address} ({type(exc).__name__}: {exc}); "
                    "start the cluster, or choose another executor (executor='threads' runs here)"
                ) from None
        elif isinstance(client_or_address, Client):
            self.client = client_or_address
        else:
            raise ExecutorError(
                "DaskExecutor takes a distributed.Client or a scheduler address, "
                f"not {type(client_or_address).__name__}"
            )

    @property
    def address(self) -> str:
        return str(self.client.scheduler.address)

    def describe(self) -> dict[str, str]:
        return {"dask": self.address}

    def for_run(self, hooks: Hooks, max_workers: int | None, name: str) -> _DaskRun:
        return _DaskRun(self.client, hooks, name, max_workers)

    def __repr__(self) -> str:
        return f"DaskExecutor({self.address!r})"


_clients: dict[str, Any] = {}
_clients_lock = threading.Lock()


def _client(address: str) -> Any:
    """One client per scheduler address in this process, shared by the runs that name it."""
    from distributed import Client

    with _clients_lock:
        client = _clients.get(address)
        if client is None or client.status not in ("running", "connecting"):
            client = _clients[address] = Client(  # type: ignore[no-untyped-call]
                address, set_as_default=False, timeout=10
            )
        return client


class _Channel:
    """Worker side of the way back: a Dask queue to the owner, a Dask variable for each answer."""

    def __init__(self, queue_name: str) -> None:
        self.queue_name = queue_name

    def _put(self, msg: tuple[Any, ...]) -> None:
        from distributed import Queue

        Queue(self.queue_name).put(msg)  # type: ignore[no-untyped-call]

    def started(self, ident: tuple[str, int], attempt: int, at: float) -> None:
        self._put(("started", ident, attempt, at, None, None))

    def checkpoint(self, ident: tuple[str, int], attempt: int, codec_name: str, data: bytes) -> None:
        from distributed import Variable

        answer = f"{self.queue_name}-ack-{uuid.uuid4().hex}"
        self._put(("checkpoint", ident, attempt, codec_name, data, answer))
        var = Variable(answer)  # type: ignore[no-untyped-call]
        try:
            status = var.get(timeout=ACK_TIMEOUT_S)  # type: ignore[no-untyped-call]
        finally:
            var.delete()  # type: ignore[no-untyped-call]
        if status != "ok":
            raise RuntimeError(f"the checkpoint was not saved: {status}")


def _task(payloads: list[bytes], channel: _Channel) -> list[bytes]:
    """One Dask task runs a chunk of attempts one after the other (Dask's own cost per task is ~ms)."""
    return [run_call(payload, channel) for payload in payloads]


CHUNK_MAX = 32
"""At most this many attempts per Dask task; fewer when that would leave cluster threads idle."""


class _DaskRun:
    """One run's use of the cluster: its futures, and a listener for its workers' messages."""

    def __init__(self, client: Any, hooks: Hooks, name: str, max_workers: int | None) -> None:
        self.client = client
        self.hooks = hooks
        self.name = name
        self.capacity = max_workers or max(1, sum(client.nthreads().values()))
        # The cluster queues what it is given: max_workers bounds what runs at once, exactly.
        self.max_inflight = max_workers or max(1024, 64 * self.capacity)
        self._packer = Packer()
        self._futures: dict[tuple[tuple[str, int], int], Any] = {}
        self._cancelled: set[tuple[tuple[str, int], int]] = set()
        self._lock = threading.Lock()
        self._queue_name = f"nbflow-{name}-{uuid.uuid4().hex[:8]}"
        self._channel = _Channel(self._queue_name)
        self._listener: threading.Thread | None = None
        self._stopping = False
        self._buffer: list[Task] = []
        self._tasks: dict[str, tuple[list[Task], float]] = {}
        self._collector: threading.Thread | None = None
        self._more = threading.Event()
        self._done: Any = None  # a distributed.as_completed, made with the first futures

    def submit(self, task: Task) -> None:
        """Buffered: :meth:`flush` sends the scheduler's whole turn to the cluster in one map."""
        if self._listener is None and (task.on_start is not None or "ctx" in task.kwargs):
            self._listener = threading.Thread(target=self._listen, name=f"{self.name}-dask-listener", daemon=True)
            self._listener.start()
        self._buffer.append(task)

    def flush(self) -> None:
        if not self._buffer:
            return
        tasks, payloads = [], []
        for task in self._buffer:
            payload = self._packer.pack(task)
            if isinstance(payload, bytes):
                tasks.append(task)
                payloads.append(payload)
            else:
                self.hooks.sink(payload)
        self._buffer = []
        if not tasks:
            return
        size = max(1, min(CHUNK_MAX, -(-len(tasks) // (2 * self.capacity))))
        chunks = [tasks[i:i + size] for i in range(0, len(tasks), size)]
        keys = [
            f"nbflow-{self.name}-{c[0].ident[0]}-{c[0].ident[1]}-{c[0].attempt}-{uuid.uuid4().hex[:6]}" for c in chunks
        ]
        futures = self.client.map(_task, [payloads[i:i + size] for i in range(0, len(payloads), size)], key=keys,
                                  pure=False, channel=self._channel)
        submitted = time.time()
        with self._lock:
            for chunk, fut in zip(chunks, futures):
                for task in chunk:
                    self._futures[(task.ident, task.attempt)] = fut
                self._tasks[fut.key] = (chunk, submitted)
        if self._done is None:
            from distributed import as_completed

            self._done = as_completed(  # type: ignore[no-untyped-call]
                futures, loop=self.client.loop, with_results=True, raise_errors=False
            )
        else:
            self._done.update(futures)
        self._more.set()
        if self._collector is None:
            self._collector = threading.Thread(target=self._collect, name=f"{self.name}-dask-results", daemon=True)
            self._collector.start()

    def _collect(self) -> None:
        """Results in batches (one callback per future costs a round trip each on the client's loop)."""
        while not self._stopping:
            self._more.clear()
            for batch in self._done.batches():
                for fut, value in batch:
                    try:
                        self._finish(fut, value)
                    except Exception:  # this thread collects every result of the run: it must live
                        log.exception("nbflow: a Dask result could not be handled")
                del batch, fut, value  # hold no future while idle: the cluster forgets released tasks
            self._more.wait(1.0)  # as_completed ends when it runs dry: wait for the next flush

    def _finish(self, fut: Any, value: Any) -> None:
        with self._lock:
            chunk, submitted = self._tasks.pop(fut.key, ([], 0.0))
            live = []
            for i, task in enumerate(chunk):
                key = (task.ident, task.attempt)
                self._futures.pop(key, None)
                if key in self._cancelled:
                    self._cancelled.discard(key)
                else:
                    live.append((i, task))
        for i, task in live:
            what = task.label
            if fut.status == "finished":
                try:
                    res = unpack(value[i])
                    res.ident, res.attempt = task.ident, task.attempt  # also when the worker could not load the call
                except Exception as exc:  # noqa: BLE001 - e.g. a type the owner cannot import
                    res = failed(task.ident, task.attempt, f"the result of the {what} could not be read: "
                                 f"{type(exc).__name__}: {exc}", submitted)
            else:
                why = (f"{type(value).__name__}: {value}" if isinstance(value, BaseException)
                       else f"the task was {fut.status}")
                res = failed(task.ident, task.attempt, f"the Dask cluster lost the {what}: {why}", submitted)
            self.hooks.sink(res)

    def cancel(self, ident: tuple[str, int], attempt: int) -> None:
        """Dask drops a queued task once every attempt in it is cancelled; one already running finishes
        on its worker and its result is ignored."""
        self._buffer = [t for t in self._buffer if (t.ident, t.attempt) != (ident, attempt)]
        with self._lock:
            fut = self._futures.pop((ident, attempt), None)
            if fut is None:
                return
            self._cancelled.add((ident, attempt))
            chunk, _ = self._tasks.get(fut.key, ([], 0.0))
            if any((t.ident, t.attempt) not in self._cancelled for t in chunk):
                return
        fut.cancel()

    def _listen(self) -> None:
        from distributed import Queue, Variable

        queue = Queue(self._queue_name, client=self.client)  # type: ignore[no-untyped-call]
        while not self._stopping:
            try:
                # shutdown() puts a "stop" message: a timed get logs errors on the scheduler
                msg = queue.get()  # type: ignore[no-untyped-call]
            except Exception:  # noqa: BLE001 - the client closing
                return
            kind, ident, attempt, a, b, answer = msg
            if kind == "stop":
                return
            ident = tuple(ident)
            if kind == "started":
                self.hooks.started(ident, attempt, a)
                continue
            try:
                if self._stopping:
                    raise RuntimeError("the run's owner stopped")
                self.hooks.checkpoint(ident, attempt, Encoded(a, b))
            except Exception as exc:  # noqa: BLE001 - tell the step why its checkpoint failed
                status = f"{type(exc).__name__}: {exc}"
            else:
                status = "ok"
            try:
                Variable(answer, client=self.client).set(status)  # type: ignore[no-untyped-call]
            except Exception:  # noqa: BLE001 - the cluster is going away; the worker's wait times out
                log.warning("nbflow: could not answer a checkpoint of %s", ident)

    def shutdown(self) -> None:
        self._stopping = True
        self._more.set()
        self._buffer.clear()
        if self._listener is not None and self.client.status == "running":
            from distributed import Queue

            try:
                Queue(self._queue_name, client=self.client).put(  # type: ignore[no-untyped-call]
                    ("stop", None, None, None, None, None)
                )
            except Exception:  # noqa: BLE001, S110 - the cluster is gone; the listener thread is a daemon
                pass
        with self._lock:
            futures = list(self._futures.items())
            self._futures.clear()
            self._cancelled.update(k for k, _ in futures)
        for _, fut in futures:
            fut.cancel()
