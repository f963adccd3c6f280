"""The owner side of the command path: a command row, applied in the run's scheduler turn.

Each verb is judged against the instances' states with the verb table (:mod:`nbflow.verbs`), then
carried out through the scheduler's public methods (:class:`Owner`); the scheduler alone writes
instance state. A command that does not fit raises :class:`CommandRefused` with a
:class:`~nbflow.verbs.Refusal` code, and changes nothing."""
from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from .._util import jsonable, plural
from ..breakpoints import Breakpoint
from ..definition import Plan, StepSpec
from ..errors import CommandRefused
from ..signals import read_token
from ..states import BREAK_ON_ERROR, STEPPED_OVER, PauseReason, RunStatus, StepKind
from ..states import InstanceStatus as S
from ..store import Store
from ..verbs import VERBS, Refusal, allowed_verbs, state_tag
from .instances import Inst


class Owner(Protocol):
    """What applying a command uses of the run's scheduler: its public API."""

    run_id: str
    store: Store
    plan: Plan
    specs: dict[str, StepSpec]
    by_step: dict[str, list[Inst]]
    insts: dict[tuple[str, int], Inst]
    bps: list[Breakpoint]

    def hydrate(self, insts: Iterable[Inst]) -> None: ...
    def release(self, inst: Inst, ids: Iterable[int], actor: str | None, reason: str | None) -> None: ...
    def hold(self, inst: Inst, ids: Sequence[int]) -> None: ...
    def skip(self, inst: Inst, value: Any, actor: str | None, reason: str | None) -> None: ...
    def retry(self, inst: Inst, actor: str | None, reason: str | None) -> None: ...
    def set_inputs(self, inst: Inst, new: Mapping[str, Any], actor: str | None, reason: str | None) -> None: ...
    def set_output(self, inst: Inst, value: Any, actor: str | None, reason: str | None) -> None: ...
    def decide(self, inst: Inst, approved: bool, actor: str | None, comment: str | None, payload: Any) -> None: ...
    def deliver(self, inst: Inst, token: str, name: str, payload: Any, actor: str | None,
                sent_at: float | None = None) -> str: ...
    def cancel_all(self, actor: str | None, reason: str | None, final: RunStatus = RunStatus.CANCELLED) -> int: ...
    def record(self, kind: str, actor: str | None, **data: Any) -> None: ...
    def step_over(self, inst: Inst, actor: str | None, reason: str | None) -> tuple[list[str], list[str]]: ...
    def reload_breakpoints(self) -> None: ...


# What each verb needs, as its refusals say it ("cannot skip enrich:3: it is running, and skip needs ...").
_NEEDS = {
    "resume": "an instance that is paused",
    "step_over": "an instance that is paused",
    "skip": "an instance that is paused, failed, waiting, or waiting to retry",
    "retry": "an instance that is failed, paused or waiting to retry",
    "set_inputs": "an instance paused before its body, paused on an error, or failed",
    "set_output": "an instance paused after its body (a breakpoint with when='after')",
    "approve": "a gate that is waiting for a decision",
    "reject": "a gate that is waiting for a decision",
}


def apply_command(sched: Owner, row: Mapping[str, Any]) -> str:
    """Apply one command in the owner's scheduler turn; raise CommandRefused to refuse it."""
    target = json.loads(row["target"] or "null") or {}
    payload = sched.store.decode(row["payload_codec"], row["payload"]) or {}
    verb = row["verb"]
    ctx = _Apply(sched, row, target, payload)
    if verb == "cancel":
        return ctx.cancel()
    if verb == "breakpoint":
        return ctx.breakpoints_changed()
    if verb == "signal":
        return ctx.signal(target.get("step"))
    handler = getattr(ctx, verb, None) if verb in _NEEDS else None
    if handler is None:
        raise CommandRefused(f"unknown verb {verb!r}; verbs are: {', '.join(VERBS)}", Refusal.INVALID)
    insts = ctx.targets(target.get("step"), target.get("keys"))
    sched.hydrate(insts)  # values first, so a change never writes over what was not loaded
    message: str = handler(insts)
    return message


def _nothing_allowed(inst: Inst) -> str:
    if inst.status.terminal:
        return f"nothing, it is finished ({inst.status})"
    return "nothing until it pauses or finishes (or cancel the run)"


def _count(insts: Sequence[Inst]) -> str:
    return plural(len(insts), "instance")


def _fits(inst: Inst, verb: str) -> bool:
    return state_tag(inst.status, inst.pause_reason) in VERBS[verb].accepts


class _Apply:
    def __init__(self, sched: Owner, row: Mapping[str, Any], target: Mapping[str, Any],
                 payload: Mapping[str, Any]) -> None:
        self.s = sched
        self.row = row
        self.target = target
        self.payload = payload
        self.actor: str | None = row["actor"]
        self.reason: str | None = row["reason"]

    def refuse(self, inst: Inst, verb: str) -> CommandRefused:
        when = PauseReason.parse(inst.pause_reason).when
        state = f"{inst.status}" + (f" ({when})" if inst.status == S.PAUSED else "")
        allowed = allowed_verbs(inst.status, inst.pause_reason)
        return CommandRefused(
            f"cannot {verb} {inst.label}: it is {state}, and {verb} needs {_NEEDS[verb]}; "
            f"allowed now: {', '.join(allowed) if allowed else _nothing_allowed(inst)}",
            Refusal.STATE,
        )

    def targets(self, step: str | None, keys: list[str] | None) -> list[Inst]:
        s = self.s
        if step is None:
            return [i for st in s.plan.order for i in s.by_step[st]]
        if step not in s.by_step:
            raise CommandRefused(f"run {s.run_id} has no step {step!r}; steps are: {', '.join(s.plan.order)}",
                                 Refusal.NOT_FOUND)
        insts = s.by_step[step]
        if keys is None:
            if not insts:
                raise CommandRefused(f"step {step!r} has no instances yet (it has not started)", Refusal.STATE)
            return list(insts)
        by_key = {i.key: i for i in insts}
        out = []
        for k in keys:
            if k not in by_key:
                raise CommandRefused(f"step {step!r} has no instance with key {k}", Refusal.NOT_FOUND)
            out.append(by_key[k])
        return out

    def _explicit(self) -> bool:
        target = self.target
        return target.get("keys") is not None or (
            target.get("step") is not None and self.s.specs[target["step"]].kind != StepKind.FOREACH
        )

    def _select(self, insts: list[Inst], verb: str) -> list[Inst]:
        """Keep the instances whose state accepts *verb*; with explicit targets, one that does not
        refuses the whole command."""
        chosen = [i for i in insts if _fits(i, verb)]
        if self._explicit():
            for i in insts:
                if not _fits(i, verb):
                    raise self.refuse(i, verb)
        if not chosen:
            one_step = bool(insts) and len({i.step for i in insts}) == 1
            where = f" among {plural(len(insts), 'instance')} of {insts[0].step}" if one_step else ""
            raise CommandRefused(
                f"nothing to {verb}: no instance {_NEEDS[verb].removeprefix('an instance ')}{where}", Refusal.STATE
            )
        return chosen

    # -- verbs ---------------------------------------------------------------------------------
    def resume(self, insts: list[Inst]) -> str:
        chosen = self._select(insts, "resume")
        for inst in chosen:
            self.s.release(inst, inst.held_by, self.actor, self.reason)
        return f"resumed {_count(chosen)}"

    def step_over(self, insts: list[Inst]) -> str:
        chosen = self._select(insts, "step_over")
        if len(insts) != 1:
            raise CommandRefused(f"step over names one paused instance; {_count(insts)} named: give its key, "
                                 f"e.g. {insts[0].step}:{insts[0].key}", Refusal.INVALID)
        inst = chosen[0]
        targets, started = self.s.step_over(inst, self.actor, self.reason)
        then = (f"pausing before: {', '.join(targets)}" if targets
                else f"nothing will pause: {', '.join(started)} started already" if started
                else "nothing consumes its output")
        return f"stepped over {inst.label}; {then}"

    def skip(self, insts: list[Inst]) -> str:
        if "output" not in self.payload:
            raise CommandRefused(
                "skip needs the output the skipped instance stands for, e.g. skip('enrich', key=3, output={...})",
                Refusal.INVALID,
            )
        chosen = self._select(insts, "skip")
        value = self.payload["output"]
        for inst in chosen:
            self.s.skip(inst, value, self.actor, self.reason)
        return f"skipped {_count(chosen)}"

    def retry(self, insts: list[Inst]) -> str:
        chosen = self._select(insts, "retry")
        for inst in chosen:
            self.s.retry(inst, self.actor, self.reason)
        return f"retrying {_count(chosen)}"

    def set_inputs(self, insts: list[Inst]) -> str:
        inputs = dict(self.payload.get("inputs") or {})
        per_key = self.payload.get("by_key") is True  # {key text: {name: value}}: a value per instance
        names = {b.param for b in self.s.plan.bindings[insts[0].step] if b.source != "ctx"}
        for new in (inputs.values() if per_key else [inputs]):
            bad = sorted(set(new) - names) if isinstance(new, dict) else ["<not an object>"]
            if bad:
                raise CommandRefused(f"step {insts[0].step!r} takes no input named {', '.join(map(repr, bad))}",
                                     Refusal.INVALID)
        chosen = self._select(insts, "set_inputs")
        for inst in chosen:
            new = inputs.get(inst.key) if per_key else inputs
            if new is None:
                raise CommandRefused(f"set_inputs by key names no inputs for {inst.label}", Refusal.INVALID)
            self.s.set_inputs(inst, new, self.actor, self.reason)
        return f"changed the inputs of {_count(chosen)}"

    def set_output(self, insts: list[Inst]) -> str:
        if "value" not in self.payload:
            raise CommandRefused("set_output needs a value", Refusal.INVALID)
        chosen = self._select(insts, "set_output")
        value = self.payload["value"]
        for inst in chosen:
            self.s.set_output(inst, value, self.actor, self.reason)
        return f"changed the output of {_count(chosen)}"

    def cancel(self) -> str:
        n = self.s.cancel_all(self.actor, self.reason)
        self.s.record("run_cancel_requested", self.actor, reason=self.reason)
        return f"cancelled the run ({plural(n, 'unfinished instance')})"

    def approve(self, insts: list[Inst]) -> str:
        return self._decide(insts, True)

    def reject(self, insts: list[Inst]) -> str:
        return self._decide(insts, False)

    def _decide(self, insts: list[Inst], approved: bool) -> str:
        verb = "approve" if approved else "reject"
        for inst in insts:
            if self.s.specs[inst.step].kind != StepKind.APPROVAL:
                raise CommandRefused(
                    f"{inst.step!r} is not an approval gate; {verb} applies to wf.approval(...) steps", Refusal.INVALID
                )
        chosen = self._select(insts, verb)
        for inst in chosen:
            self.s.decide(inst, approved, self.actor, self.payload.get("comment") or self.reason,
                          self.payload.get("payload"))
        return f"{'approved' if approved else 'rejected'} {', '.join(i.label for i in chosen)}"

    def signal(self, step: str | None) -> str:
        token = str(self.payload.get("token", ""))
        run_id, tstep, item, name = read_token(self.s.store.secret, token)
        if run_id != self.s.run_id or tstep != step:
            raise CommandRefused("the signal token does not belong to this run and step", Refusal.INVALID)
        inst = self.s.insts.get((tstep, item))
        if inst is None:
            raise CommandRefused(f"step {tstep!r} has no instance {item} (yet); the signal was not delivered",
                                 Refusal.NOT_FOUND)
        self.s.hydrate([inst])
        return self.s.deliver(inst, token, name, self.payload.get("payload"), self.actor, self.row["created_at"])

    def breakpoints_changed(self) -> str:
        s = self.s
        s.reload_breakpoints()
        present = {bp.id for bp in s.bps} | {BREAK_ON_ERROR, STEPPED_OVER}
        freed = 0
        for inst in list(s.insts.values()):
            if inst.status != S.PAUSED or not inst.held_by:
                continue
            still = [b for b in inst.held_by if b in present]
            if len(still) == len(inst.held_by):
                continue
            if still:
                s.hold(inst, still)
                continue
            s.release(inst, [], self.actor, self.reason)
            freed += 1
        s.record("breakpoints_changed", self.actor, change=jsonable(dict(self.payload)), resumed=freed)
        return f"breakpoints reloaded; {plural(freed, 'instance')} resumed"


__all__ = ["Owner", "apply_command"]
