"""The one command path. Every operator action, from any surface, is written here as a command
row (actor, reason, time) and applied by the run's owner, which validates it against the
instances' states and records what changed (old and new values) in the history."""
from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from . import verbs
from ._util import current_actor, jsonable, now
from .breakpoints import Breakpoint, compile_condition, key_text
from .errors import CommandRefused, DefinitionError
from .signals import read_token
from .states import InstanceStatus as S
from .states import PauseReason, RunStatus, StepKind, When
from .store import Store, codec
from .store import schema as t

if TYPE_CHECKING:
    from .engine.scheduler import Inst, Scheduler

VERBS = ("resume", "skip", "retry", "set_inputs", "set_output", "cancel", "breakpoint", "approve", "reject", "signal")
_JUDGED_ON_STATE = frozenset({"resume", "skip", "retry", "set_inputs", "set_output", "approve", "reject"})
"""Verbs the owner accepts or refuses by the instance's state when it applies them."""
_CHANGE_STATE = frozenset({"resume", "skip", "retry", "approve", "reject", "cancel"})
"""Verbs that change the state of the instances they name (cancel: of every instance)."""
APPLY_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class CommandResult:
    """What became of a command: ``applied`` False means it is queued for an owner that is not running."""

    id: int
    verb: str
    applied: bool
    result: str | None
    message: str | None


# ---------------------------------------------------------------------------------- writing
def _new_id(result: sa.CursorResult[Any]) -> int:
    """The id the database gave the one row an INSERT wrote (SQLAlchemy types it as absent for other statements)."""
    pk = result.inserted_primary_key
    assert pk is not None
    new_id: int = pk[0]
    return new_id


def submit(
    store: Store,
    run_id: str,
    verb: str,
    step: str | None = None,
    keys: Iterable[Any] | None = None,
    payload: Mapping[str, Any] | None = None,
    reason: str | None = None,
    actor: str | None = None,
    wait: bool = True,
) -> CommandResult:
    """Validate what can be checked without the owner, write the command, and (in the owner's
    process) wait until it is applied, raising :class:`CommandRefused` if it was refused."""
    from .engine.lifecycle import live

    if verb not in VERBS:
        raise CommandRefused(f"unknown verb {verb!r}; verbs are: {', '.join(VERBS)}")
    row = store.run_row(run_id)
    status = RunStatus(row["status"])
    if status.terminal:
        raise CommandRefused(
            f"run {run_id} is {status}; a finished run cannot be changed. Start a new run from it with run.fork()"
        )
    key_list = None if keys is None else [key_text(k) for k in keys]
    if verb not in ("cancel", "breakpoint", "signal"):
        _prevalidate(store, row, verb, step, key_list, payload)
    enc = codec.encode(dict(payload or {}), f"payload of {verb}")
    with store.begin() as conn:  # a large payload's file goes again if the command is not written
        enc = store.write_value(conn, enc)
        cid = _new_id(conn.execute(
            t.commands.insert().values(
                run_id=run_id, verb=verb, target=json.dumps({"step": step, "keys": key_list}),
                payload_codec=enc.codec, payload=enc.data, actor=actor or current_actor(), reason=reason,
                created_at=now(),
            )
        ))
    sched = live(run_id)
    if sched is None or not wait:
        return CommandResult(cid, verb, False, None, None)
    ev = threading.Event()
    sched.cmd_waiters[cid] = ev
    if cid not in sched.cmd_results:
        sched.wake()
        while not ev.wait(0.1):
            if cid in sched.cmd_results:
                break
            if not sched.alive():
                return CommandResult(cid, verb, False, None, "the run's scheduler stopped before applying it")
    result, message = sched.cmd_results.pop(cid)
    if result != "ok":
        raise CommandRefused(message)
    return CommandResult(cid, verb, True, result, message)


def _prevalidate(
    store: Store, row: Mapping[str, Any], verb: str, step: str | None, keys: list[str | None] | None,
    payload: Mapping[str, Any] | None,
) -> None:
    """Refuse unknown steps, keys and input names before anything is written."""
    definition = store.definition(row["workflow"], row["version"])
    steps = definition["steps"]
    if step is None:
        if verb != "resume":
            raise CommandRefused(f"{verb} needs a step; steps are: {', '.join(definition['order'])}")
        return
    if step not in steps:
        raise CommandRefused(f"run {row['id']} has no step {step!r}; steps are: {', '.join(definition['order'])}")
    if keys is not None:
        have = {r["key"] for r in store.instance_rows(row["id"], step=step)}
        missing = [k for k in keys if k not in have]
        if missing:
            raise CommandRefused(
                f"step {step!r} of run {row['id']} has no instance with key {', '.join(map(str, missing))}"
                + (f" (it has {len(have)} instances)" if have else " (it has no instances yet)")
            )
    if verb == "set_inputs":
        names = {b[0] for b in steps[step]["bindings"] if b[1] != "ctx"}
        bad = sorted(set((payload or {}).get("inputs", {})) - names)
        if bad:
            raise CommandRefused(
                f"step {step!r} takes no input named {', '.join(map(repr, bad))}; its inputs are: "
                f"{', '.join(sorted(names)) or 'none'}"
            )
        if not (payload or {}).get("inputs"):
            raise CommandRefused("set_inputs needs at least one input, e.g. set_inputs('enrich', key=5, item={...})")
    check_pending(store, row, verb, step, keys)


def check_pending(
    store: Store, row: Mapping[str, Any], verb: str, step: str | None, keys: Sequence[str | None] | None
) -> None:
    """Refuse a command on instances that a command queued earlier, not yet applied, will change
    first: the owner applies that one before, so this one would meet another state than it was
    checked against, and be refused after it was reported queued. A second resume is no conflict."""
    if verb not in _JUDGED_ON_STATE or step is None:
        return
    with store.engine.connect() as conn:
        pending = store.pending_commands(row["id"], conn)
    for cmd in pending:
        if cmd["verb"] not in _CHANGE_STATE or cmd["verb"] == verb == "resume":
            continue
        target = json.loads(cmd["target"] or "null") or {}
        pstep, pkeys = target.get("step"), target.get("keys")
        if pstep is not None and pstep != step:
            continue
        if pstep is not None and pkeys is not None and keys is not None:
            common = [k for k in keys if k in pkeys]
            if not common:
                continue
            label = ", ".join(f"{step}:{k}" for k in common)
        else:
            label = step if keys is None else ", ".join(f"{step}:{k}" for k in keys)
        from .engine.lifecycle import owner_alive, owner_text

        queued_for = ("the whole run" if pstep is None else pstep if pkeys is None
                      else ", ".join(f"{pstep}:{k}" for k in pkeys))
        then = (f" by the run's owner ({owner_text(row)})" if owner_alive(row)
                else f" (`nbflow resume {row['id']}` takes the run over and applies it)")
        raise CommandRefused(
            f"cannot {verb} {label} in run {row['id']} now: command {cmd['id']} ({cmd['verb']} {queued_for}, by "
            f"{cmd['actor']}) is queued for it and not applied yet; {verb} would meet the state it leaves, so wait "
            f"until it is applied{then}, then try again"
        )


def submit_signal(
    store: Store, token: str, run_id: str, step: str, item: int, name: str, payload: Any, actor: str | None = None
) -> CommandResult:
    """Write a signal delivery as a command. A delivery to a finished run is judged here, as the
    owner would have, and recorded in the commands and the history."""
    from .signals import SignalRefused

    if not RunStatus(store.run_row(run_id)["status"]).terminal:
        try:
            return submit(store, run_id, "signal", step, None, {"token": token, "item": item, "name": name,
                                                                 "payload": payload}, actor=actor)
        except CommandRefused as exc:
            status = RunStatus(store.run_row(run_id)["status"])
            if not status.terminal:  # the owner's refusal: it recorded it already
                raise SignalRefused(str(exc)) from None
    return _signal_to_finished_run(store, token, run_id, step, item, name, actor)


def signal(
    token: str, payload: Any = None, store: str | Store | None = None, *, actor: str | None = None
) -> CommandResult:
    """Deliver *payload* to the instance waiting on *token* (``nbflow.signal``). Returns the command result;
    raises SignalRefused for a forged token, a finished run, or a wait that timed out."""
    st = Store.open(store)
    run_id, step, item, name = read_token(st.secret, token)
    return submit_signal(st, token, run_id, step, item, name, payload, actor=actor)


def _signal_to_finished_run(
    store: Store, token: str, run_id: str, step: str, item: int, name: str, actor: str | None
) -> CommandResult:
    """No owner will answer: a duplicate is acknowledged, anything else refused; both are recorded."""
    from .signals import SignalRefused

    who = actor or current_actor()
    status = RunStatus(store.run_row(run_id)["status"])
    result = "refused"
    with store.begin() as conn:
        inst = conn.execute(sa.select(t.instances).where(
            t.instances.c.run_id == run_id, t.instances.c.step == step, t.instances.c.item == item,
        )).mappings().first()
        label = step if inst is None or inst["key"] is None else f"{step}:{inst['key']}"
        kind, why = "signal_refused", "run finished"
        if conn.execute(sa.select(t.signals.c.token).where(t.signals.c.token == token)).first():
            message, result, kind = "duplicate delivery: already received, ignored", "ok", "signal_duplicate"
        elif inst is not None and inst["status"] == S.FAILED and inst["error_type"] == "TimeoutError":
            message, why = (f"the wait of {label} for signal {name!r} timed out; the delivery was recorded "
                            "and refused"), "timed out"
        else:
            message = (f"run {run_id} is {status}, a finished run cannot be changed; {label} no longer waits "
                       f"for signal {name!r}" + (f" (it is {inst['status']})" if inst is not None else "")
                       + "; the delivery was recorded and refused")
        enc = store.write_value(conn, codec.encode({"token": token, "name": name}, "signal"))
        cid = _new_id(conn.execute(t.commands.insert().values(
            run_id=run_id, verb="signal", target=json.dumps({"step": step, "keys": None}),
            payload_codec=enc.codec, payload=enc.data, actor=who, created_at=now(),
            applied_at=now(), result=result, message=message,
        )))
        data = {"name": name} if result == "ok" else {"name": name, "reason": why}
        store.add_event(conn, run_id, kind, step=step, key=inst["key"] if inst is not None else None, actor=who,
                        data=data, ts=now())
    if result == "ok":
        return CommandResult(cid, "signal", True, result, message)
    raise SignalRefused(message)


def add_breakpoint(store: Store, workflow: str, bp: Breakpoint, run_id: str | None = None) -> Breakpoint:
    """Persist a breakpoint and tell the affected live runs (they apply it to instances not yet past it)."""
    compile_condition(bp.condition)
    actor = current_actor()
    with store.engine.begin() as conn:
        bid = _new_id(conn.execute(
            t.breakpoints.insert().values(
                workflow=workflow, run_id=run_id, step=bp.step, key=bp.key, when=str(bp.when),
                condition=bp.condition, created_by=actor, created_at=now(),
            )
        ))
    _notify(store, workflow, run_id, "add", {"id": bid, "step": bp.step, "key": bp.key, "when": str(bp.when),
                                                "condition": bp.condition})
    return Breakpoint(bp.step, bp.key, bp.when, bp.condition, id=bid, run_id=run_id, workflow=workflow,
                      created_by=actor)


def remove_breakpoints(store: Store, workflow: str, step: str, key: str | None, run_id: str | None = None) -> int:
    """Delete breakpoints on *step* (only *key*'s when given); instances they alone held resume."""
    c = t.breakpoints.c
    where = [c.workflow == workflow, c.step == step, c.run_id.is_(None) if run_id is None else c.run_id == run_id]
    if key is not None:
        where.append(c.key == key)
    with store.engine.begin() as conn:
        ids = [r[0] for r in conn.execute(sa.select(c.id).where(*where))]
        if not ids:
            scope = f"run {run_id}" if run_id else f"workflow {workflow!r}"
            raise DefinitionError(
                f"no breakpoint on {step}{':' + key if key is not None else ''} in {scope}; "
                "list them with wf.breakpoints.list() or `nbflow breakpoint list`"
            )
        conn.execute(t.breakpoints.delete().where(c.id.in_(ids)))
    _notify(store, workflow, run_id, "remove", {"ids": ids, "step": step, "key": key})
    return len(ids)


def _notify(store: Store, workflow: str, run_id: str | None, action: str, data: dict[str, Any]) -> None:
    if run_id is not None:
        targets = [run_id]
    else:
        live_statuses = [RunStatus.RUNNING, RunStatus.PAUSED]
        targets = [r["id"] for r in store.run_rows(workflow=workflow, status=live_statuses)]
    for rid in targets:
        try:
            submit(store, rid, "breakpoint", payload={"action": action, **data})
        except CommandRefused:
            pass  # the run finished meanwhile


# ---------------------------------------------------------------------------------- applying
def apply_command(sched: Scheduler, row: Mapping[str, Any]) -> str:
    """Apply one command in the owner's scheduler thread; raise CommandRefused to refuse it."""
    target = json.loads(row["target"] or "null") or {}
    payload = sched.store.decode(row["payload_codec"], row["payload"]) or {}
    verb = row["verb"]
    ctx = _Apply(sched, row, payload)
    if verb == "cancel":
        return ctx.cancel()
    if verb == "breakpoint":
        return ctx.breakpoints_changed()
    if verb == "signal":
        return ctx.signal(target.get("step"))
    insts = ctx.targets(target.get("step"), target.get("keys"), verb)
    sched._hydrate(insts)  # values first, so a change never writes over what was not loaded
    message: str = getattr(ctx, verb)(insts)
    return message


def _when(inst: Inst) -> str:
    return PauseReason.parse(inst.pause_reason).when


def allowed_verbs(inst: Inst) -> list[str]:
    """The verbs that fit the instance's state now (used in refusals and by the widget)."""
    return verbs.allowed_verbs(inst.status, inst.pause_reason)


def _nothing_allowed(inst: Inst) -> str:
    if inst.status.terminal:
        return f"nothing, it is finished ({inst.status})"
    return "nothing until it pauses or finishes (or cancel the run)"


class _Apply:
    def __init__(self, sched: Scheduler, row: Mapping[str, Any], payload: Mapping[str, Any]) -> None:
        self.s = sched
        self.row = row
        self.payload = payload
        self.actor = row["actor"]
        self.reason = row["reason"]

    def refuse(self, inst: Inst, verb: str, needs: str) -> CommandRefused:
        state = f"{inst.status}" + (f" ({_when(inst)})" if inst.status == S.PAUSED else "")
        allowed = allowed_verbs(inst)
        return CommandRefused(
            f"cannot {verb} {inst.label}: it is {state}, and {verb} needs {needs}; "
            f"allowed now: {', '.join(allowed) if allowed else _nothing_allowed(inst)}"
        )

    def targets(self, step: str | None, keys: list[str] | None, verb: str) -> list[Inst]:
        s = self.s
        if step is None:
            return [i for st in s.plan.order for i in s.by_step[st]]
        if step not in s.by_step:
            raise CommandRefused(f"run {s.run_id} has no step {step!r}; steps are: {', '.join(s.plan.order)}")
        insts = s.by_step[step]
        if keys is None:
            if not insts:
                raise CommandRefused(f"step {step!r} has no instances yet (it has not started)")
            return list(insts)
        by_key = {i.key: i for i in insts}
        out = []
        for k in keys:
            if k not in by_key:
                raise CommandRefused(f"step {step!r} has no instance with key {k}")
            out.append(by_key[k])
        return out

    def _explicit(self) -> bool:
        target = json.loads(self.row["target"] or "null") or {}
        return target.get("keys") is not None or (
            target.get("step") is not None and self.s.specs[target["step"]].kind != StepKind.FOREACH
        )

    def _select(self, insts: list[Inst], verb: str, ok: Any, needs: str) -> list[Inst]:
        """Keep the instances that fit; with explicit targets, one that does not fit refuses the whole command."""
        chosen = [i for i in insts if ok(i)]
        if self._explicit():
            for i in insts:
                if not ok(i):
                    raise self.refuse(i, verb, needs)
        if not chosen:
            one_step = bool(insts) and len({i.step for i in insts}) == 1
            where = f" among {len(insts)} instance(s) of {insts[0].step}" if one_step else ""
            raise CommandRefused(f"nothing to {verb}: no instance {needs.removeprefix('an instance ')}{where}")
        return chosen

    def _event(self, kind: str, inst: Inst, **data: Any) -> None:
        self.s._event(kind, inst, actor=self.actor, reason=self.reason, **data)

    # -- verbs ---------------------------------------------------------------------------------
    def resume(self, insts: list[Inst]) -> str:
        chosen = self._select(insts, "resume", lambda i: i.status == S.PAUSED, "an instance that is paused")
        for inst in chosen:
            self.release(inst, inst.held_by)
        return f"resumed {len(chosen)} instance(s)"

    def release(self, inst: Inst, ids: Iterable[int]) -> None:
        """Let a paused instance go on past the breakpoints *ids* (they will not catch it again)."""
        s = self.s
        when = _when(inst)
        inst.released |= set(ids)
        self._event("resumed", inst, when=when)
        if when == When.AFTER:
            s._succeed(inst)
        elif when == When.ERROR:
            res = inst.pending_error
            inst.pending_error = None
            s._fail_or_retry(inst, res)
        else:
            s._set(inst, S.PENDING, held_by=[], pause_reason=None)
            s._make_ready(inst)

    def skip(self, insts: list[Inst]) -> str:
        if "output" not in self.payload:
            raise CommandRefused(
                "skip needs the output the skipped instance stands for, e.g. skip('enrich', key=3, output={...})"
            )
        chosen = self._select(
            insts, "skip", lambda i: i.status in (S.PAUSED, S.FAILED, S.RETRYING, S.WAITING),
            "an instance that is paused, failed, waiting, or waiting to retry",
        )
        value = self.payload["output"]
        for inst in chosen:
            enc = self.s.encode(value, f"output given to skip {inst.label}")
            inst.out, inst.value, inst.pending_error = enc, value, None
            self.s._set(inst, S.SKIPPED, finished_at=now(), held_by=[], pause_reason=None, next_attempt_at=None)
            self._event("skipped", inst, output=value)
        return f"skipped {len(chosen)} instance(s)"

    def retry(self, insts: list[Inst]) -> str:
        chosen = self._select(
            insts, "retry", lambda i: i.status in (S.PAUSED, S.FAILED, S.RETRYING),
            "an instance that is failed, paused or waiting to retry",
        )
        for inst in chosen:
            inst.released |= set(inst.held_by)
            inst.pending_error = None
            self._event("retry_requested", inst, previous_status=str(inst.status), attempt=inst.attempt)
            self.s._set(inst, S.PENDING, held_by=[], pause_reason=None, next_attempt_at=None, finished_at=None)
            self.s._make_ready(inst)
        return f"retrying {len(chosen)} instance(s)"

    def set_inputs(self, insts: list[Inst]) -> str:
        new = dict(self.payload.get("inputs") or {})
        names = {b.param for b in self.s.plan.bindings[insts[0].step] if b.source != "ctx"}
        bad = sorted(set(new) - names)
        if bad:
            raise CommandRefused(f"step {insts[0].step!r} takes no input named {', '.join(map(repr, bad))}")
        chosen = self._select(
            insts, "set_inputs",
            lambda i: (i.status == S.PAUSED and _when(i) in ("before", "error")) or i.status == S.FAILED,
            "an instance paused before its body, paused on an error, or failed",
        )
        for inst in chosen:
            current = self.s.inputs(inst)
            old = {k: current.get(k) for k in new}
            merged = {**self.s._overrides(inst), **new}
            enc = self.s.encode(merged, f"inputs of {inst.label}")
            inst.inputs, inst.overrides = enc, merged
            self.s.dirty[inst.ident] = inst
            self._event("inputs_changed", inst, old=old, new=new)
        return f"changed the inputs of {len(chosen)} instance(s)"

    def set_output(self, insts: list[Inst]) -> str:
        if "value" not in self.payload:
            raise CommandRefused("set_output needs a value")
        chosen = self._select(
            insts, "set_output", lambda i: i.status == S.PAUSED and _when(i) == "after",
            "an instance paused after its body (a breakpoint with when='after')",
        )
        value = self.payload["value"]
        for inst in chosen:
            old = self.s._value(inst)
            enc = self.s.encode(value, f"output of {inst.label}")
            inst.out, inst.value = enc, value
            self.s.dirty[inst.ident] = inst
            self._event("output_changed", inst, old=old, new=value)
        return f"changed the output of {len(chosen)} instance(s)"

    def cancel(self) -> str:
        s = self.s
        n = s._cancel_all(self.actor, self.reason)
        s.final = RunStatus.CANCELLED
        s._event("run_cancel_requested", None, actor=self.actor, reason=self.reason)
        return f"cancelled the run ({n} unfinished instance(s))"

    def approve(self, insts: list[Inst]) -> str:
        return self._decide(insts, True)

    def reject(self, insts: list[Inst]) -> str:
        return self._decide(insts, False)

    def _decide(self, insts: list[Inst], approved: bool) -> str:
        verb = "approve" if approved else "reject"
        for inst in insts:
            if self.s.specs[inst.step].kind != StepKind.APPROVAL:
                raise CommandRefused(f"{inst.step!r} is not an approval gate; {verb} applies to wf.approval(...) steps")
        chosen = self._select(insts, verb, lambda i: i.status == S.WAITING, "a gate that is waiting for a decision")
        for inst in chosen:
            self.s._decide(inst, approved, self.actor, self.payload.get("comment") or self.reason,
                           self.payload.get("payload"))
        return f"{'approved' if approved else 'rejected'} {', '.join(i.label for i in chosen)}"

    def signal(self, step: str | None) -> str:
        from .signals import read_token

        token = str(self.payload.get("token", ""))
        run_id, tstep, item, name = read_token(self.s.store.secret, token)
        if run_id != self.s.run_id or tstep != step:
            raise CommandRefused("the signal token does not belong to this run and step")
        inst = self.s.insts.get((tstep, item))
        if inst is None:
            raise CommandRefused(f"step {tstep!r} has no instance {item} (yet); the signal was not delivered")
        self.s._hydrate([inst])
        if inst.status == S.WAITING and inst.deadline is not None and self.row["created_at"] > inst.deadline:
            self.s._wait_timed_out(inst)  # sent after the deadline while no owner ran: it is late, not in time
        return self.s.deliver(inst, token, name, self.payload.get("payload"), self.actor)

    def breakpoints_changed(self) -> str:
        s = self.s
        s.reload_breakpoints()
        present = {bp.id for bp in s.bps} | {0}
        freed = 0
        for inst in list(s.insts.values()):
            if inst.status != S.PAUSED or not inst.held_by:
                continue
            still = [b for b in inst.held_by if b in present]
            if len(still) == len(inst.held_by):
                continue
            if still:
                s._set(inst, inst.status, held_by=still)  # via _set: loads its values before they are written back
                continue
            self.release(inst, [])
            freed += 1
        self._event_run("breakpoints_changed", change=jsonable(dict(self.payload)), resumed=freed)
        return f"breakpoints reloaded; {freed} instance(s) resumed"

    def _event_run(self, kind: str, **data: Any) -> None:
        self.s._event(kind, None, actor=self.actor, **data)
