"""The one command path. Every operator action, from any surface, is checked here (:func:`check`),
written as a command row (actor, reason, time) and applied by the run's owner, which validates it
against the instances' states and records what changed (old and new values) in the history;
:func:`await_applied` waits for its answer."""
from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from . import verbs
from ._util import current_actor, now
from .breakpoints import (
    Breakpoint,
    BreakpointRefused,
    check_action,
    compile_condition,
    key_text,
    parse_when,
    validate,
)
from .definition import StoredDefinition, StoredStep
from .engine.owners import live, owner_alive, owner_text
from .errors import CommandRefused
from .signals import SignalRefused, read_token
from .states import InstanceStatus as S
from .states import RunStatus, StepKind, label
from .store import Store, queries
from .store import commands as rows
from .verbs import SIGNAL_MESSAGES, CommandState, Refusal, SignalOutcome, Target, signal_outcome

APPLY_TIMEOUT_S = 30.0



@dataclass(frozen=True)
class CommandResult:
    """What became of a command: ``state`` says (:class:`nbflow.verbs.CommandState`); ``applied``
    False means it is queued for an owner that is not running, or sent to one in another process."""

    id: int
    verb: str
    applied: bool
    result: str | None
    message: str | None
    state: CommandState = CommandState.APPLIED


@dataclass(frozen=True)
class Answer:
    """The owner's answer to one command: ``result`` ``ok`` or ``refused``, and its message."""

    verb: str
    result: str
    message: str | None
    code: str = Refusal.STATE  # why it was refused (the owner in this process says; from the store: state)

    @property
    def state(self) -> CommandState:
        if self.result != "ok":
            return CommandState.REFUSED
        if self.verb == "signal" and signal_outcome(self.message) == "duplicate":
            return CommandState.DUPLICATE
        return CommandState.APPLIED


# ---------------------------------------------------------------------------------- checking
WHOLE_RUN = frozenset({"resume"})
"""Instance verbs that may name no step: the whole run's instances."""


def _verb(name: str) -> verbs.Verb:
    try:
        return verbs.verb(name)
    except KeyError:
        raise CommandRefused(f"unknown verb {name!r}; verbs are: {', '.join(verbs.VERBS)}", Refusal.INVALID) from None


def check(
    store: Store, row: Mapping[str, Any], verb: str, step: str | None = None,
    keys: Sequence[str | None] | None = None, payload: Mapping[str, Any] | None = None,
) -> None:
    """Refuse, before anything is written, a command that cannot be applied: an unknown verb, step,
    key or input name, a malformed payload, a finished run, a state that does not accept the verb
    (judged here only when no live owner answers for itself), or a conflicting queued command.
    Raises :class:`CommandRefused` with a :class:`nbflow.verbs.Refusal` code; *keys* are key texts."""
    v = _verb(verb)
    run_id = row["id"]
    status = RunStatus(row["status"])
    if status.terminal:
        raise CommandRefused(
            f"run {run_id} is {status}; a finished run cannot be changed (nothing to {verb}). Start a new run "
            "from it with run.fork()", Refusal.FINISHED,
        )
    if v.target in (Target.TOKEN, Target.BREAKPOINT):
        return  # judged by the owner (a signal's token) or no instance named (breakpoints changed)
    if v.target == Target.RUN:
        if step is not None or keys is not None:
            raise CommandRefused(f"{verb} applies to the whole run; name no step or key", Refusal.INVALID)
        return
    if keys is not None and not keys:
        raise CommandRefused(f"{verb} names no instance: the list of keys is empty", Refusal.INVALID)
    payload = payload or {}
    definition = store.definition(row["workflow"], row["version"])
    rows: list[Mapping[str, Any]] | None = None  # the step's instance rows, once read
    if step is None:
        if keys is not None:
            raise CommandRefused(f"keys need a step: {verb} STEP:KEY", Refusal.INVALID)
        if verb not in WHOLE_RUN:
            raise CommandRefused(f"{verb} needs a step; steps are: {definition.steps_text}", Refusal.INVALID)
    else:
        rows = _check_target(store, row, definition, v, step, keys)
        if verb == "step_over" and definition.steps[step].kind == StepKind.FOREACH and (keys is None or len(keys) != 1):
            some = "" if keys is None else f" ({len(keys)} named)"
            raise CommandRefused(
                f"step over names one instance{some}: {step!r} is a foreach step, give the key of one paused item, "
                f"e.g. step_over({step!r}, key=3) or `nbflow step {run_id} {step}:3`", Refusal.INVALID)
    _check_payload(definition, v, step, payload, keys)
    if v.judged_on_state and step is not None and not owner_alive(row):
        _check_states(row, verb, step, keys,
                      rows if rows is not None else queries.instance_states(store, row["id"], step))
    check_pending(store, row, verb, step, keys)


def check_target(store: Store, row: Mapping[str, Any], step: str, keys: Sequence[str | None] | None = None) -> None:
    """Refuse a step the run does not have (NOT_FOUND), keys on a step with a single instance (INVALID)
    or keys it has no instance with (NOT_FOUND): what :func:`check` says of a target, for readers too."""
    _check_target(store, row, store.definition(row["workflow"], row["version"]), None, step, keys)


def _check_target(store: Store, row: Mapping[str, Any], definition: StoredDefinition, v: verbs.Verb | None,
                  step: str, keys: Sequence[str | None] | None) -> list[Mapping[str, Any]] | None:
    """The step's instance rows when the keys were checked against them (None: not read)."""
    steps = definition.steps
    run_id = row["id"]
    if step not in steps:
        raise CommandRefused(definition.no_step(run_id, step), Refusal.NOT_FOUND)
    kind = steps[step].kind
    if v is not None and v.target == Target.STEP and kind != StepKind.APPROVAL:
        gates = [s for s in definition.order if steps[s].kind == StepKind.APPROVAL]
        raise CommandRefused(
            f"{step!r} is a {kind} step, not an approval gate; {v.name} applies to wf.approval(...) steps"
            + (f" (gates of this run: {', '.join(gates)})" if gates else " (this run has none)"), Refusal.INVALID,
        )
    if keys is None:
        return None
    if kind != StepKind.FOREACH:
        raise CommandRefused(
            f"step {step!r} is a {kind} step with a single instance; name it without a key: {step}", Refusal.INVALID
        )
    rows = queries.instance_states(store, run_id, step)
    have = [r["key"] for r in rows]
    known = set(have)
    missing = [k for k in keys if k not in known]
    if missing:
        sample = ", ".join(str(k) for k in have[:5]) + (", …" if len(have) > 5 else "")
        raise CommandRefused(
            f"step {step!r} of run {run_id} has no instance with key {', '.join(map(str, missing))}"
            + (f" (it has {len(have)} instances, keys {sample})" if have else " (it has no instances yet)"),
            Refusal.NOT_FOUND,
        )
    return rows


_NEEDS = {
    "skip": "skip needs the output the skipped instance stands for, e.g. skip('enrich', key=3, output={...})",
    "set_output": "set_output needs a value, e.g. set_output('enrich', key=3, value={...})",
    "set_inputs": "set_inputs needs at least one input, e.g. set_inputs('enrich', key=5, item={...})",
}


def _check_payload(definition: StoredDefinition, v: verbs.Verb, step: str | None,
                   payload: Mapping[str, Any], keys: Sequence[str | None] | None) -> None:
    for name in v.payload[:v.required]:
        if name not in payload:
            raise CommandRefused(_NEEDS.get(v.name, f"{v.name} needs {name!r} in its payload"), Refusal.INVALID)
    if v.name != "set_inputs" or step is None:
        return
    inputs = payload["inputs"]
    if not isinstance(inputs, Mapping) or not inputs:
        raise CommandRefused(_NEEDS["set_inputs"], Refusal.INVALID)
    by_key = payload.get("by_key", False)
    if not isinstance(by_key, bool):
        raise CommandRefused("set_inputs' by_key must be true or false", Refusal.INVALID)
    if by_key:
        if keys is None or set(inputs) != {key_text(k) for k in keys}:
            raise CommandRefused("set_inputs with by_key needs keys, and inputs for exactly those keys "
                                 "({key: {input: value}})", Refusal.INVALID)
        for new in inputs.values():
            if not isinstance(new, Mapping) or not new:
                raise CommandRefused(_NEEDS["set_inputs"], Refusal.INVALID)
            _check_input_names(definition, step, new)
        return
    _check_input_names(definition, step, inputs)


def _check_input_names(definition: StoredDefinition, step: str, inputs: Mapping[str, Any]) -> None:
    names = set(definition.steps[step].inputs)
    bad = sorted(set(inputs) - names)
    if bad:
        raise CommandRefused(
            f"step {step!r} takes no input named {', '.join(map(repr, bad))}; its inputs are: "
            f"{', '.join(sorted(names)) or 'none'}", Refusal.INVALID,
        )


def _check_states(row: Mapping[str, Any], verb: str, step: str, keys: Sequence[str | None] | None,
                  insts: Sequence[Mapping[str, Any]]) -> None:
    """With no live owner the stored states of the step's instances *insts* are current: refuse a
    verb that does not fit them now (a live owner answers for itself)."""
    if keys is not None:
        wanted = set(keys)
        named = [r for r in insts if r["key"] in wanted]
    else:  # a task step's single instance is named by the step alone
        named = [r for r in insts if r["key"] is None]
    for r in named:
        allowed = verbs.allowed_verbs(r["status"], r["pause_reason"])
        if verb not in allowed:
            state = r["status"] + (f" ({r['pause_reason']})" if r["pause_reason"] else "")
            raise CommandRefused(
                f"cannot {verb} {label(step, r['key'])} in run {row['id']}: it is {state}; "
                f"allowed now: {', '.join(allowed) if allowed else 'nothing'}", Refusal.STATE,
            )
    if not any(verb in verbs.allowed_verbs(r["status"], r["pause_reason"]) for r in insts):
        raise CommandRefused(
            f"nothing to {verb}: no instance of {step!r} in run {row['id']} accepts {verb} now "
            f"(see `nbflow show {row['id']}`)", Refusal.STATE,
        )


def check_pending(
    store: Store, row: Mapping[str, Any], verb: str, step: str | None, keys: Sequence[str | None] | None
) -> None:
    """Refuse a command on instances that a command queued earlier, not yet applied, will change
    first: the owner applies that one before, so this one would meet another state than it was
    checked against, and be refused after it was reported queued. A second resume is no conflict."""
    if not _verb(verb).judged_on_state or step is None:
        return
    with store.engine.connect() as conn:
        pending = store.pending_commands(row["id"], conn)
    for cmd in pending:
        queued = verbs.VERBS.get(cmd["verb"])  # a verb of another nbflow version: assume it changes state
        if (queued is not None and not queued.changes_state) or cmd["verb"] == verb == "resume":
            continue
        target = json.loads(cmd["target"] or "null") or {}
        pstep, pkeys = target.get("step"), target.get("keys")
        if pstep is not None and pstep != step:
            continue
        if pstep is not None and pkeys is not None and keys is not None:
            queued_keys = set(pkeys)
            common = [k for k in keys if k in queued_keys]
            if not common:
                continue
            named = ", ".join(label(step, k) for k in common)
        else:
            named = step if keys is None else ", ".join(label(step, k) for k in keys)
        queued_for = ("the whole run" if pstep is None else pstep if pkeys is None
                      else ", ".join(label(pstep, k) for k in pkeys))
        then = (f" by the run's owner ({owner_text(row)})" if owner_alive(row)
                else f" (`nbflow resume {row['id']}` takes the run over and applies it)")
        raise CommandRefused(
            f"cannot {verb} {named} in run {row['id']} now: command {cmd['id']} ({cmd['verb']} {queued_for}, by "
            f"{cmd['actor']}) is queued for it and not applied yet; {verb} would meet the state it leaves, so wait "
            f"until it is applied{then}, then try again", Refusal.QUEUED,
        )


# ---------------------------------------------------------------------------------- writing and waiting
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
    """:func:`check` the command, write it, and (in the owner's process, unless *wait* is False)
    wait until it is applied, raising :class:`CommandRefused` if it was refused."""
    row = store.run_row(run_id)
    key_list = None if keys is None else [key_text(k) for k in keys]
    check(store, row, verb, step, key_list, payload)
    cid = rows.insert_command(store, run_id, verb, step, key_list, payload or {}, actor or current_actor(), reason,
                              now())
    if not wait or live(run_id) is None:
        state = CommandState.SENT if owner_alive(row) else CommandState.QUEUED
        return CommandResult(cid, verb, False, None, None, state)
    answer = await_applied(store, [cid], None).get(cid)
    if answer is None:
        return CommandResult(cid, verb, False, None, "the run's scheduler stopped before applying it",
                             CommandState.QUEUED)
    if answer.result != "ok":
        raise CommandRefused(answer.message or f"{verb} was refused by the run's owner", answer.code)
    return CommandResult(cid, verb, True, answer.result, answer.message, answer.state)


def await_applied(store: Store, command_ids: Iterable[int], timeout: float | None = APPLY_TIMEOUT_S
                  ) -> dict[int, Answer]:
    """The owner's answers to the commands, by id, once it applied them. Those not applied within
    *timeout* seconds (None: while their owner lives), or whose run has no live owner to apply
    them, are left out. An owner in this process is waited for directly (it answers as it commits);
    one in another process through the store."""
    deadline = None if timeout is None else time.monotonic() + timeout
    done: dict[int, Answer] = {}
    waiting: dict[int, Mapping[str, Any]] = {}
    for cid in dict.fromkeys(command_ids):
        row = store.command_row(cid)
        if row["applied_at"] is not None:
            sched = live(row["run_id"])
            code = sched.forget_answer(cid) if sched is not None else None
            done[cid] = Answer(row["verb"], row["result"], row["message"], code or Refusal.STATE)
        else:
            waiting[cid] = row
    for cid, row in waiting.items():
        sched = live(row["run_id"])
        if sched is not None:
            got = sched.answer(cid, deadline)
            if got is not None:
                done[cid] = Answer(row["verb"], *got)
    left = [cid for cid in waiting if cid not in done]
    while left:
        for cid in list(left):
            row = store.command_row(cid)
            if row["applied_at"] is not None:
                done[cid] = Answer(row["verb"], row["result"], row["message"])
                left.remove(cid)
        if not left or (deadline is not None and time.monotonic() >= deadline):
            break
        if not any(owner_alive(store.run_row(r)) for r in {waiting[c]["run_id"] for c in left}):
            break  # nobody will apply them now
        time.sleep(0.02)
    return done


def submit_signal(
    store: Store, token: str, run_id: str, step: str, item: int, name: str, payload: Any, actor: str | None = None
) -> CommandResult:
    """Write a signal delivery as a command. A delivery to a finished run is judged here, as the
    owner would have, and recorded in the commands and the history."""
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
    status = RunStatus(store.run_row(run_id)["status"])

    def judge(inst: rows.SignalTarget) -> rows.SignalAnswer:
        where = label(step, inst.key)
        if inst.received:
            return "ok", SIGNAL_MESSAGES[SignalOutcome.DUPLICATE], "signal_duplicate", {"name": name}
        if inst.status == S.FAILED and inst.error_type == "TimeoutError":
            message = f"the wait of {where} for signal {name!r} timed out; the delivery was recorded and refused"
            return "refused", message, "signal_refused", {"name": name, "reason": "timed out"}
        message = (f"run {run_id} is {status}, a finished run cannot be changed; {where} no longer waits "
                   f"for signal {name!r}" + (f" (it is {inst.status})" if inst.status is not None else "")
                   + "; the delivery was recorded and refused")
        return "refused", message, "signal_refused", {"name": name, "reason": "run finished"}

    cid, _inst, result, message = rows.record_signal_answer(
        store, token, run_id, step, item, name, actor or current_actor(), judge, now())
    if result == "ok":
        return CommandResult(cid, "signal", True, result, message, CommandState.DUPLICATE)
    raise SignalRefused(message)


def breakpoint_scope(store: Store, workflow: Any, run_id: Any) -> tuple[str, Mapping[str, Any] | None]:
    """The workflow a breakpoint is for and, run-scoped, its run's row: exactly one of *workflow* and
    *run_id* is named (else ``invalid``); an unknown run raises :class:`~nbflow.errors.UnknownRunError`."""
    if (workflow is None) == (run_id is None):
        raise BreakpointRefused("name exactly one of a workflow or a run: a breakpoint is for every run of a "
                                "workflow or for one run", Refusal.INVALID)
    if not isinstance(workflow or run_id, str):
        raise BreakpointRefused("the workflow and the run are named by strings", Refusal.INVALID)
    if run_id is not None:
        row = store.run_row(run_id)
        return row["workflow"], row
    return str(workflow), None


def breakpoint_steps(store: Store, workflow: str, row: Mapping[str, Any] | None) -> Mapping[str, StoredStep]:
    """The steps a breakpoint is checked against: those of the run's stored version, or of the workflow's
    newest run's (a workflow with no runs in the store is ``not_found``: its steps are unknown here)."""
    if row is not None:
        return store.definition(row["workflow"], row["version"]).steps
    newest = store.run_rows(workflow=workflow, limit=1)
    if not newest:
        raise BreakpointRefused(
            f"workflow {workflow!r} has no runs in {store.display_url}, so its steps are unknown here; "
            f"check the name with `nbflow runs`, or add the breakpoint from Python with wf.breakpoints.add(...)",
            Refusal.NOT_FOUND,
        )
    return store.definition(workflow, newest[0]["version"]).steps


def check_breakpoint(
    store: Store, workflow: str, row: Mapping[str, Any] | None, step: str, key: Any = None, when: Any = "before",
    condition: Any = None, *, run_scoped: bool = True, action: Any = "pause", expression: Any = None,
    hit_count: Any = None,
) -> Breakpoint:
    """Check a breakpoint before :func:`add_breakpoint` writes it; every surface (the CLI, REST, the debugger
    view; the Python API through :func:`~nbflow.breakpoints.validate`) refuses the same way, with a
    :class:`~nbflow.breakpoints.BreakpointRefused` and its code: ``finished`` when *row* (the run it is
    for, or with ``run_scoped=False`` the run it is set from) is finished; ``not_found`` an unknown step,
    a workflow with no runs, or, run-scoped, a key the run's foreach has no instance for (once it has
    items); ``invalid`` a bad `when`, condition, action, logpoint expression or hit count, or a key on a
    step that is not a foreach. The steps
    are those of :func:`breakpoint_steps`. Returns the breakpoint to add (``run_id`` set when run-scoped)."""
    run_id = None if row is None else str(row["id"])
    if row is not None and RunStatus(row["status"]).terminal:
        if run_scoped:
            raise BreakpointRefused(
                f"run {run_id} is {row['status']}; a run-scoped breakpoint only applies to an unfinished run "
                f"(add it to workflow {workflow!r} for later runs)", Refusal.FINISHED)
        raise BreakpointRefused(f"run {run_id} is {row['status']}; the breakpoint would apply to later runs "
                                "only — add it with wf.breakpoints.add(...)", Refusal.FINISHED)
    steps = breakpoint_steps(store, workflow, row)
    act, expression, hit_count = check_action(action, expression, hit_count)
    bp = Breakpoint(step, key_text(key), parse_when(when), condition, workflow=workflow,
                    run_id=run_id if run_scoped else None, action=act, expression=expression, hit_count=hit_count)
    validate(bp, steps)
    if bp.key is not None and bp.run_id is not None:
        have = {r["key"] for r in queries.instance_states(store, bp.run_id, step)}
        if have and bp.key not in have:
            raise BreakpointRefused(
                f"step {step!r} of run {bp.run_id} has no instance with key {bp.key} (it has {len(have)})",
                Refusal.NOT_FOUND)
    return bp


def add_breakpoint(store: Store, workflow: str, bp: Breakpoint, run_id: str | None = None) -> Breakpoint:
    """Persist a breakpoint and tell the affected live runs (they apply it to instances not yet past it)."""
    compile_condition(bp.condition)
    actor = current_actor()
    bid = rows.insert_breakpoint(store, workflow, run_id, bp.row(), actor, now())
    _notify(store, workflow, run_id, "add", {"id": bid, "step": bp.step, "key": bp.key, "when": str(bp.when),
                                                "condition": bp.condition, "action": str(bp.action),
                                                "expression": bp.expression, "hit_count": bp.hit_count})
    return replace(bp, id=bid, run_id=run_id, workflow=workflow, created_by=actor)


def remove_breakpoints(store: Store, workflow: str, step: str, key: str | None, run_id: str | None = None) -> int:
    """Delete breakpoints on *step* (only *key*'s when given); instances they alone held resume. None
    there to delete is refused (``not_found``)."""
    ids = rows.delete_breakpoints(store, workflow, step, key, run_id)
    if not ids:
        scope = f"run {run_id}" if run_id else f"workflow {workflow!r}"
        raise BreakpointRefused(
            f"no breakpoint on {step}{':' + key if key is not None else ''} in {scope}; "
            "list them with wf.breakpoints.list() or `nbflow breakpoint list`", Refusal.NOT_FOUND
        )
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
