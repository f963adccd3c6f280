"""``ctx``: what a step body knows about itself, plus durable intra-step checkpoints."""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class StepContext:
    """Passed to a step that takes a ``ctx`` parameter.

    ``idempotency_key`` is the same for every attempt of one run x step x key, so a step can
    make a side effect safe to repeat (at-least-once execution after a crash)::

        if not payments.exists(ctx.idempotency_key):
            payments.charge(order, idempotency_key=ctx.idempotency_key)
    """

    run_id: str
    step: str
    key: str | None
    item_index: int | None
    attempt: int
    idempotency_key: str
    log: logging.Logger
    saved: Any = None
    _checkpoint: Callable[[Any], None] | None = field(default=None, repr=False)
    _signals: dict[str, Any] = field(default_factory=dict, repr=False)
    _token: Callable[[str], str] | None = field(default=None, repr=False)

    def __getstate__(self) -> dict[str, Any]:
        """Shipped to a process or Dask worker without its way back; the worker wires its own."""
        return {**self.__dict__, "_checkpoint": None}

    def checkpoint(self, value: Any) -> None:
        """Save progress durably; returns once it is committed. A later attempt reads it as ``ctx.saved``."""
        if self._checkpoint is None:
            raise RuntimeError("ctx.checkpoint is only available while the step runs")
        self._checkpoint(value)
        self.saved = value

    def signal_token(self, name: str) -> str:
        """The correlation token an external system passes to ``nbflow signal`` to deliver *name*.
        The same on every attempt, so it can be handed out before ``wait_for_signal``."""
        if self._token is None:
            raise RuntimeError("ctx.signal_token is only available while the step runs")
        return self._token(name)

    def wait_for_signal(self, name: str, timeout: float | None = None) -> Any:
        """The payload of signal *name*. If it has not arrived, the step is suspended (no worker is
        held) and runs again from the start when it does; use ``checkpoint`` for work before it."""
        if name in self._signals:
            return self._signals[name]
        from .signals import WaitForSignal

        raise WaitForSignal(name, timeout)
