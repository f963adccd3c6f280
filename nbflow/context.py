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

    def checkpoint(self, value: Any) -> None:
        """Save progress durably; returns once it is committed. A later attempt reads it as ``ctx.saved``."""
        if self._checkpoint is None:
            raise RuntimeError("ctx.checkpoint is only available while the step runs")
        self._checkpoint(value)
        self.saved = value
