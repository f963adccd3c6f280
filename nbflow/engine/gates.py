"""Gates: approval steps and signal waits. A gate holds its instance as a row (``waiting``, no worker,
an optional deadline) until a decision, a signal or the deadline closes it. Part of the
:class:`~nbflow.engine.scheduler.Scheduler`, whose state-machine methods it calls."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._util import now
from ..definition import StepSpec
from ..errors import CommandRefused
from ..signals import make_token
from ..states import InstanceStatus as S
from ..states import PauseReason, StepKind
from ..store import Store
from ..store.codec import Encoded
from ..verbs import SIGNAL_MESSAGES, Refusal, SignalOutcome
from .instances import Inst

APPROVAL = "approval"
"""The pause reason of an approval gate waiting for a decision."""
SIGNAL = "signal"
"""The ``when`` of a wait's pause reason: ``signal: NAME``."""


def waiting_for(name: str) -> str:
    """The pause reason of an instance waiting for signal *name*, as stored (``signal: NAME``; an empty
    name keeps its separator, as it always has)."""
    return str(PauseReason(SIGNAL, name)) if name else f"{SIGNAL}: "


class Gates:
    """The scheduler's approval and signal waits (a mixin of :class:`Scheduler`)."""

    store: Store
    run_id: str
    specs: dict[str, StepSpec]
    must_flush: bool
    signals: dict[tuple[str, int], dict[str, Any]]  # received payloads by instance and name
    signal_tokens: set[str]
    signal_rows: list[dict[str, Any]]  # received this turn: written by the next flush

    if TYPE_CHECKING:  # the state machine's, in scheduler.py
        def _set(self, inst: Inst, status: S, **fields: Any) -> None: ...
        def _event(self, kind: str, inst: Inst | None, actor: str | None = None, step: str | None = None,
                   **data: Any) -> None: ...
        def _make_ready(self, inst: Inst) -> None: ...
        def _arm_timer(self, inst: Inst | None, at: float, kind: str = "retry", attempt: int = 0) -> None: ...
        def encode(self, value: Any, what: str) -> Encoded: ...

    def _load_signals(self) -> None:
        """The signals the run received before this scheduler: what a step asking for them finds."""
        for r in self.store.signal_rows(self.run_id):
            self.signal_tokens.add(r["token"])
            self.signals.setdefault((r["step"], r["item"]), {})[r["name"]] = self.store.decode(
                r["payload_codec"], r["payload"]
            )

    def _wait(self, inst: Inst, name: str, timeout: float | None) -> None:
        """Hold *inst* as a row until a decision or a signal arrives; no worker is used."""
        deadline = now() + timeout if timeout else None
        token = make_token(self.store.secret, self.run_id, inst.step, inst.item, name)
        approval = self.specs[inst.step].kind == StepKind.APPROVAL
        reason = APPROVAL if approval else waiting_for(name)
        self._set(inst, S.WAITING, token=token, deadline=deadline, pause_reason=reason)
        self.must_flush = True
        self._event("waiting", inst, name=name, token=token, deadline=deadline, attempt=inst.attempt)
        if deadline is not None:
            self._arm_timer(inst, deadline, "deadline")

    def _wait_timed_out(self, inst: Inst) -> None:
        spec = self.specs[inst.step]
        if spec.kind == StepKind.APPROVAL and spec.on_timeout == "approve":
            self.decide(inst, True, "timeout", f"no decision within {spec.timeout:g} s", None)
            return
        reason = PauseReason.parse(inst.pause_reason)
        name = reason.detail if reason.detail is not None else reason.when
        message = f"no {'decision' if spec.kind == StepKind.APPROVAL else 'signal ' + repr(name)} within the timeout"
        self._set(inst, S.FAILED, error=("TimeoutError", message, message), finished_at=now(), pause_reason=None)
        self._event("timed_out", inst, name=name)
        self._event("failed", inst, error=f"TimeoutError: {message}")

    def decide(self, inst: Inst, approved: bool, actor: str | None, comment: str | None, payload: Any) -> None:
        """Close an approval gate: approved -> succeeded with the payload (or a decision record), else failed."""
        if approved:
            value = payload if payload is not None else {"approved": True, "by": actor, "comment": comment}
            enc = self.encode(value, f"approval payload of {inst.label}")
            inst.out, inst.value = enc, value
            self._set(inst, S.SUCCEEDED, finished_at=now(), pause_reason=None)
            self._event("approved", inst, actor=actor, comment=comment, payload=payload)
        else:
            message = f"rejected by {actor}" + (f": {comment}" if comment else "")
            self._set(inst, S.FAILED, error=("Rejected", message, message), finished_at=now(), pause_reason=None)
            self._event("rejected", inst, actor=actor, comment=comment)

    def deliver(self, inst: Inst, token: str, name: str, payload: Any, actor: str | None,
                sent_at: float | None = None) -> str:
        """Apply a signal sent at *sent_at*: record it once; wake what waits on it. One sent after the
        wait's deadline (while no owner ran) finds the wait timed out."""
        if inst.status == S.WAITING and inst.deadline is not None and sent_at is not None and sent_at > inst.deadline:
            self._wait_timed_out(inst)  # late, not in time
        if token in self.signal_tokens:
            self._event("signal_duplicate", inst, actor=actor, name=name)
            return SIGNAL_MESSAGES[SignalOutcome.DUPLICATE]
        if inst.status == S.FAILED and inst.error and inst.error[0] == "TimeoutError":
            self._event("signal_refused", inst, actor=actor, name=name, reason="timed out")
            raise CommandRefused(
                f"the wait of {inst.label} for signal {name!r} timed out; the delivery was recorded and refused",
                Refusal.STATE,
            )
        if inst.status.terminal:
            self._event("signal_refused", inst, actor=actor, name=name, reason=str(inst.status))
            raise CommandRefused(
                f"{inst.label} is {inst.status}; it no longer waits for signal {name!r}", Refusal.STATE
            )
        enc = self.encode(payload, f"signal payload for {inst.label}")  # the signal row's; a wait step's output
        self.signal_tokens.add(token)
        self.signals.setdefault(inst.ident, {})[name] = payload
        self.signal_rows.append({
            "token": token, "run_id": self.run_id, "step": inst.step, "item": inst.item, "name": name,
            "payload_codec": enc.codec, "payload": enc.data, "actor": actor, "received_at": now(),
        })
        self._event("signal_received", inst, actor=actor, name=name, payload=payload)
        if inst.status == S.WAITING and inst.pause_reason == waiting_for(name):
            if self.specs[inst.step].kind == StepKind.WAIT:
                inst.out, inst.value = enc, payload
                self._set(inst, S.SUCCEEDED, finished_at=now(), pause_reason=None)
                self._event("succeeded", inst)
            else:  # a step suspended in ctx.wait_for_signal: run it again; the call now returns
                self._set(inst, S.PENDING, pause_reason=None, deadline=None)
                self._make_ready(inst)
            return "delivered"
        return SIGNAL_MESSAGES[SignalOutcome.RECEIVED]


__all__ = ["APPROVAL", "SIGNAL", "Gates", "waiting_for"]
