"""Running a step body away from its owner (another process, a Dask worker).

The owner ships one pickled call: the step's pinned code, its inputs and its ``ctx``. The worker
runs it with the same capture and encoding as a thread would and ships back a pickled
:class:`Result`. ``ctx.checkpoint`` and the start of a timed attempt travel back over a
:class:`Channel` the executor provides, so the owner stays the one writer of the store.
"""
from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Protocol, cast

import cloudpickle

from ..errors import RemoteError
from ..store import codec
from . import capture, pinning, source_lines
from .executor import Result, Task, execute
from .source_lines import Origin

_CACHE_SIZE = 64
_specs: OrderedDict[str, Any] = OrderedDict()  # worker side: unpickled step code by digest


class Channel(Protocol):
    """The way back from a worker to the owner of the run."""

    def started(self, ident: tuple[str, int], attempt: int, at: float) -> None: ...

    def checkpoint(self, ident: tuple[str, int], attempt: int, codec_name: str, data: bytes) -> None:
        """Returns once the owner has committed the checkpoint; raises if it refused it."""


@dataclass(slots=True)
class Call:
    """What is shipped to a worker for one attempt."""

    ident: tuple[str, int]
    attempt: int
    digest: str
    code: bytes
    kwargs: dict[str, Any]
    what: str
    timed: bool
    origins: tuple[Origin, ...] = ()  # the step's file names and lines, for the worker's tracebacks


class Packer:
    """Owner side: pickles each step's code once per definition, then one call per attempt."""

    def __init__(self) -> None:
        self._code: dict[int, tuple[Any, str, bytes, tuple[Origin, ...]]] = {}

    def pack(self, task: Task) -> bytes | Result:
        """The pickled call, or a failed Result naming what could not be pickled (its inputs, its ctx)."""
        try:
            return self._pack(task)
        except Exception as exc:  # noqa: BLE001 - e.g. an input a step upstream returned that cloudpickle cannot ship
            return failed(task.ident, task.attempt, f"the {task.label} cannot be sent to "
                          f"a worker: {type(exc).__name__}: {exc}")

    def _pack(self, task: Task) -> bytes:
        spec = task.spec
        held = self._code.get(id(spec))
        if held is None or held[0] is not spec:
            code, _uses = pinning.pickle_step(spec)
            held = (spec, hashlib.sha256(code).hexdigest(), code, source_lines.origins(spec))
            self._code[id(spec)] = held
        call = Call(task.ident, task.attempt, held[1], held[2], task.kwargs, task.what, task.on_start is not None,
                    held[3])
        pickled: bytes = cloudpickle.dumps(call)  # cloudpickle ships no types
        return pickled


def _step_code(digest: str, code: bytes, origins: tuple[Origin, ...]) -> Any:
    spec = _specs.get(digest)
    if spec is None:
        spec = pinning.loads(code)
        source_lines.restore(spec, origins)
        _specs[digest] = spec
        if len(_specs) > _CACHE_SIZE:
            _specs.popitem(last=False)
    else:
        _specs.move_to_end(digest)
        for origin in origins:  # linecache may have been cleared since
            source_lines.register(origin)
    return spec


def run_call(payload: bytes, channel: Channel) -> bytes:
    """Worker side: run one shipped attempt and return the pickled :class:`Result`."""
    try:
        call: Call = cloudpickle.loads(payload)
        spec = _step_code(call.digest, call.code, call.origins)
    except BaseException as exc:  # noqa: BLE001 - e.g. a module the worker cannot import
        from .executor import error_triple

        res = Result(("?", -1), 0, False, error=error_triple(exc, 0))
        res.exc = RemoteError(f"the worker could not load the step: {type(exc).__name__}: {exc}")
        pickled: bytes = cloudpickle.dumps(res)  # cloudpickle ships no types
        return pickled
    ctx = call.kwargs.get("ctx")
    if ctx is not None:
        ctx.log = capture.adopt(ctx.log)

        def checkpoint(value: Any, ident: tuple[str, int] = call.ident, attempt: int = call.attempt) -> None:
            enc = codec.encode(value, f"checkpoint of step {ident[0]!r}")
            channel.checkpoint(ident, attempt, enc.codec, enc.data)

        ctx._checkpoint = checkpoint
    on_start = None
    if call.timed:
        def on_start(at: float) -> None:
            channel.started(call.ident, call.attempt, at)

    res = execute(Task(call.ident, call.attempt, spec.fn, call.kwargs, call.what, codec.encode, on_start))
    res.value = None  # the owner decodes the encoded output when it needs the value
    if res.exc is not None:
        try:  # a round trip: an exception whose __init__ takes other arguments pickles but cannot unpickle
            cloudpickle.loads(cloudpickle.dumps(res.exc))
        except Exception:  # noqa: BLE001 - an exception that cannot travel: keep its text
            res.exc = RemoteError(f"{res.error[0]}: {res.error[1]}" if res.error else repr(res.exc))
    return cast(bytes, cloudpickle.dumps(res))  # cloudpickle has no types


def unpack(data: bytes) -> Result:
    """Owner side: the Result a worker sent back (its value is decoded from the output on demand)."""
    res: Result = cloudpickle.loads(data)
    res.value = REMOTE_VALUE
    return res


REMOTE_VALUE = object()
"""Marks a Result whose value was not shipped back; the scheduler decodes ``enc`` on first use."""


def failed(ident: tuple[str, int], attempt: int, message: str, started: float | None = None) -> Result:
    """A Result for an attempt whose worker died or whose task the cluster gave up on."""
    exc = RemoteError(message)
    t = time.time()
    return Result(ident, attempt, False, exc=exc, error=("RemoteError", message, message),
                  started_at=started or t, finished_at=t)


__all__ = ["REMOTE_VALUE", "Call", "Channel", "Packer", "failed", "run_call", "unpack"]
