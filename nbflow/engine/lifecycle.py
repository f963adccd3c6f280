"""Starting runs, taking them over, and the owner lease: who drives a run, and whether it is alive.

Below the front doors: it takes definitions (:class:`nbflow.definition.WorkflowDef`, a store, plain
options) and returns run ids; ``Workflow.run``/``attach``, ``run.fork`` and ``nbflow.attach`` wrap
them in a ``Run``. What it writes goes through :mod:`nbflow.store.runs`."""
from __future__ import annotations

import atexit
import functools
import hashlib
import json
import os
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .._util import HOST, current_actor, now
from ..breakpoints import Breakpoint, normalize, validate
from ..definition import Plan, StepSpec, StoredDefinition, StoredStep, WorkflowDef, version_of
from ..errors import DefinitionError, OwnershipError, StoreError
from ..states import TASK_ITEM, RunStatus, StepKind
from ..states import InstanceStatus as S
from ..store import Store, codec
from ..store import runs as run_rows
from . import forks, pinning, source_lines
from .adopt import ADOPT_WAIT_S, code_changed_data, step_diff
from .backends import resolve
from .owners import LEASE_S as LEASE_S  # re-exported: they were defined here
from .owners import _live, _live_lock
from .owners import live as live
from .owners import owner_alive as owner_alive
from .owners import owner_text as owner_text
from .pinning import Use
from .scheduler import Scheduler

_stopped: dict[str, BaseException] = {}
"""Runs whose scheduler in this process stopped on an error, and the error (until it drives them again)."""


@dataclass(frozen=True)
class Taken:
    """A run this process took over (or found finished, or already drove): its id and the definition
    it is driven with (the one given, its pinned code, or the one its scheduler here already has)."""

    run_id: str
    workflow: WorkflowDef


def redefined(wf: WorkflowDef) -> None:
    """*wf* redefined a step: each run this process drives with *wf*'s live code adopts it now (its
    ``code_changed`` event is committed when this returns, within :data:`ADOPT_WAIT_S`)."""
    with _live_lock:
        scheds = [s for s in _live.values() if s.wf is wf and s.live_code and s.alive()]
    if not scheds:
        return
    offered = [s.offer_code() for s in scheds]
    if any(s.thread is threading.current_thread() for s in scheds):
        return  # redefined from inside a scheduler's own turn: it cannot wait for itself
    deadline = time.monotonic() + ADOPT_WAIT_S
    for sched, done in zip(scheds, offered):
        while not done.wait(0.05) and sched.alive() and time.monotonic() < deadline:
            pass


def forget(sched: Scheduler) -> None:
    with _live_lock:
        if _live.get(sched.run_id) is sched:
            del _live[sched.run_id]
            if sched.error is not None:
                _stopped[sched.run_id] = sched.error


def stopped_error(run_id: str) -> BaseException | None:
    """The error that stopped this process's scheduler of *run_id*, if that is how it last ended here."""
    return _stopped.get(run_id)


@dataclass(frozen=True)
class Known:
    """A pinned version that today's code is compared with (the run's, in a takeover): a step whose
    fingerprint is the one stored keeps its pinned code and hash, without pickling it again."""

    version: str
    definition: StoredDefinition
    store: Store


def pin(wf: WorkflowDef, plan: Plan, known: Known | None = None) -> tuple[dict[str, Any], str, dict[str, bytes]]:
    """The definition, version and pickled steps of *plan*. The version hashes each step's
    pickled bytes too, so two runs whose steps read different captured values never share code.
    Each step's notebook uses (globals left out of its pickle), fingerprint and source origins are
    recorded in the definition after the version is taken: they say where the code came from, not
    what it is. With *known*, a step whose fingerprint is the stored one is not pickled: its stored
    hash stands, and when the version is *known*'s nothing else is made (the pickles are empty, the
    origins left out: there is nothing to save); else its stored bytes are copied into the new one."""
    definition = wf.definition(plan)
    pickles: dict[str, bytes] = {}
    uses: dict[str, list[Any]] = {}
    prints: dict[str, str | None] = {}
    reused: list[str] = []

    def pickle_one(name: str) -> None:
        try:
            pickles[name], found = pinning.pickle_step(plan.steps[name])
        except Exception as exc:  # noqa: BLE001 - pickling may raise anything: name the step and what to do
            raise DefinitionError(
                f"step {name!r} cannot be pickled to pin its code ({type(exc).__name__}: {exc}); "
                "a step must not close over open files, locks or connections"
            ) from None
        definition["steps"][name]["code_sha256"] = hashlib.sha256(pickles[name]).hexdigest()
        uses[name] = [u.as_json() for u in found]

    for name in plan.order:
        prints[name] = fp = pinning.fingerprint(plan.steps[name])
        old = known.definition.steps.get(name) if known is not None else None
        if fp is not None and old is not None and old.fingerprint == fp and old.code_sha256:
            definition["steps"][name]["code_sha256"], uses[name] = old.code_sha256, [dict(u) for u in old.uses]
            reused.append(name)
        else:
            pickle_one(name)
    version = version_of(definition)
    if reused and known is not None and version != known.version:
        # A new version: a reused step's pickle holds its options too, so it must be defined as stored.
        changed = [n for n in reused
                   if _described(definition["steps"][n]) != _described(known.definition.steps[n].as_json())]
        for name in changed:
            pickle_one(name)
            reused.remove(name)
        if changed:
            version = version_of(definition)
    for name in plan.order:
        definition["steps"][name]["uses"] = uses[name]
    if known is not None and version == known.version:
        return definition, version, {}
    if reused:
        assert known is not None
        stored = known.store.step_code(known.version)
        for name in reused:
            pickles[name] = stored[name][1]
    for name in plan.order:
        step = definition["steps"][name]
        step["origins"] = [o.as_json() for o in source_lines.origins(plan.steps[name])]
        if prints[name] is not None:
            step["fingerprint"] = prints[name]
    return definition, version, pickles


_PINNED_FACTS = ("code_sha256", "uses", "origins", "fingerprint")


def _described(step: Mapping[str, Any]) -> dict[str, Any]:
    """A step's JSON definition without what pinning adds to it (its code's hash, uses, origins, fingerprint)."""
    return {k: v for k, v in step.items() if k not in _PINNED_FACTS}


def stored_uses(step: StoredStep) -> list[Use]:
    """What *step* of a stored definition reads from the notebook that is not stored with its code."""
    return [Use.from_json(u) for u in step.uses]


def check_portable(definition: Mapping[str, Any], backend: Any) -> None:
    """Refuse a remote executor for a step whose notebook uses cannot travel with its code (*definition*:
    the JSON :func:`pin` made)."""
    where = backend.describe()
    if where == "threads":
        return
    for step, spec in StoredDefinition.from_json(definition).steps.items():
        uses = stored_uses(spec)
        if uses:
            kind = "processes" if where == "processes" else "dask"
            raise DefinitionError(
                f"step {step!r} uses {', '.join(u.describe() for u in uses)} from the notebook, which cannot be "
                f"sent to executor={kind!r} ({_why(uses)}); create or load it inside the step, or run with the "
                "thread executor"
            )


def _why(uses: list[Use]) -> str:
    reasons = {u.reason for u in uses}
    parts = (["it cannot be pickled"] if "unpicklable" in reasons else []) + (
        [f"it is larger than {pinning.LARGE_GLOBAL_BYTES >> 20} MiB"] if "large" in reasons else [])
    return " or ".join(parts)


def save_version(
    store: Store, wf: WorkflowDef, plan: Plan, definition: dict[str, Any], version: str, pickles: Mapping[str, bytes]
) -> None:
    """Pin the code of *version*: its definition and each step's source and pickled callable."""
    run_rows.save_version(store, wf.name, version, definition,
                          ((name, plan.steps[name].source, pickles[name]) for name in plan.order))


def _pin_code(store: Store, wf: WorkflowDef, plan: Plan) -> str:
    """Pin *plan*'s code (a redefinition a live run adopts); its version."""
    definition, version, pickles = pin(wf, plan)
    save_version(store, wf, plan, definition, version, pickles)
    return version


def pinned_workflow(store: Store, name: str, version: str) -> WorkflowDef:
    """The workflow exactly as pinned by *version* (used by `nbflow resume`)."""
    definition = store.definition(name, version)
    code = store.step_code(version)
    steps: dict[str, StepSpec] = {}
    for step in definition.order:
        try:
            steps[step] = pinning.loads(code[step][1])
        except Exception as exc:  # noqa: BLE001 - unpickling may raise anything: name the step and what to do
            raise StoreError(
                f"cannot load the pinned code of step {step!r} (version {version}): {type(exc).__name__}: {exc}; "
                "install what the step imports, or attach from a notebook with today's code"
            ) from None
        stored = definition.steps[step]
        source_lines.restore(steps[step], tuple(source_lines.Origin.from_json(o) for o in stored.origins))
        pinning.remember(steps[step], code[step][1], stored_uses(stored))
    return WorkflowDef(name, steps)


def check_supplied(store: Store, row: Mapping[str, Any], definition: StoredDefinition | None = None) -> None:
    """Refuse pinned code that lacks a notebook use a step still to run needs, naming both (a
    :class:`DefinitionError`): what ``nbflow resume RUN`` and the sidebar's "Resume here" check first."""
    if definition is None:
        definition = store.definition(row["workflow"], row["version"])
    done = {S.SUCCEEDED, S.SKIPPED, S.CANCELLED, S.FAILED}
    for step in definition.order:
        uses = stored_uses(definition.steps[step])
        if not uses:
            continue
        rows = store.instance_rows(row["id"], step=step)
        if rows and all(S(r["status"]) in done for r in rows):
            continue
        raise DefinitionError(
            f"step {step!r} of run {row['id']} uses {', '.join(u.describe() for u in uses)} from the notebook, "
            f"which is not stored with the run's code; resume it with `nbflow resume {row['id']} --notebook NB` "
            f"(runs the notebook's definitions first), or in that notebook with `wf.attach({row['id']!r})` (today's "
            "code and objects), or create the object inside the step"
        )


def _check_same_graph(wf: WorkflowDef, plan: Plan, definition: StoredDefinition, run_id: str) -> None:
    stored = {s: (d.upstream, d.bindings) for s, d in definition.steps.items()}
    today = {s: (plan.upstream[s], plan.bindings[s]) for s in plan.order}
    if stored != today:
        changed = sorted(s for s in set(stored) | set(today) if stored.get(s) != today.get(s))
        raise DefinitionError(
            f"the steps or dependencies of workflow {wf.name!r} changed since run {run_id} started "
            f"(changed: {', '.join(changed)}); continue it with its pinned code (`nbflow resume {run_id}`), "
            f"or start a new run with run.fork()"
        )


def _register(sched: Scheduler) -> None:
    with _live_lock:
        _live[sched.run_id] = sched
        _stopped.pop(sched.run_id, None)


def start_run(
    wf: WorkflowDef,
    store: Store,
    params: dict[str, Any],
    breakpoints: list[Any],
    break_on_error: bool,
    max_workers: int | None,
    *,
    seed: Seed | None = None,
    deadline: float | None = None,
    executor: Any = None,
) -> str:
    """Validate, write the run and its task instances in one transaction, start its scheduler in
    *store*; returns the new run's id."""
    plan = wf.plan()
    wf.check_params(plan, params)
    bps: list[Breakpoint] = []
    for spec in breakpoints:
        bp = normalize(spec)
        validate(bp, plan.steps)
        bps.append(bp)
    backend = resolve(executor)
    params_enc = codec.encode(params, "run parameters")  # refused here if it cannot be stored; its file comes later
    definition, version, pickles = pin(wf, plan)
    check_portable(definition, backend)
    save_version(store, wf, plan, definition, version, pickles)

    run_id = uuid.uuid4().hex[:12]
    owner_id = uuid.uuid4().hex
    ts = now()
    actor = current_actor()
    options = {"break_on_error": bool(break_on_error), "max_workers": max_workers,
               "deadline": ts + deadline if deadline else None, "executor": backend.describe()}
    run_row: dict[str, Any] = {
        "id": run_id, "workflow": wf.name, "version": version, "params_codec": None,
        "params": None, "options": json.dumps(options), "status": str(RunStatus.RUNNING),
        "owner_host": HOST, "owner_pid": os.getpid(), "owner_id": owner_id, "heartbeat_at": ts,
        "parent_run_id": seed.parent if seed else None, "created_at": ts, "updated_at": ts, "finished_at": None,
    }
    copied: list[dict[str, Any]] = []
    if seed is not None:
        parent_rows = store.instance_rows(seed.parent, status=[S.SUCCEEDED, S.SKIPPED])
        copied.extend({**r, "run_id": run_id} for r in parent_rows if r["step"] in seed.steps)
        if seed.keys is not None:
            copied.extend(forks.chosen_rows(store, seed.parent, seed.from_step, seed.keys, run_id))
    have = {(r["step"], r["item"]) for r in copied}
    fresh = [
        {"run_id": run_id, "step": s, "item": TASK_ITEM, "key": None, "status": str(S.PENDING), "attempt": 0}
        for s in plan.order
        if plan.steps[s].kind != StepKind.FOREACH and (s, TASK_ITEM) not in have
    ]
    bp_rows = [
        {"workflow": wf.name, "run_id": run_id, **bp.row(), "created_by": actor, "created_at": ts}
        for bp in bps
    ]
    run_row = run_rows.create_run(store, run_row, params_enc, (copied, fresh), bp_rows, actor=actor, event={
        "version": version, "forked_from": seed.parent if seed else None,
        "reused_steps": sorted(seed.steps) if seed else [],
        "fork": None if seed is None else {
            "from_step": seed.from_step, "keys": None if seed.keys is None else sorted(seed.keys),
        },
    })
    sched = Scheduler(store, wf, plan, run_row, params, owner_id, max_workers, live_code=True, backend=backend,
                      pin_code=functools.partial(_pin_code, store), on_stop=forget)
    sched.load()
    _register(sched)
    sched.start()
    return run_id


def take_over(
    store: Store, wf: WorkflowDef, run_id: str, max_workers: int | None, *, live_code: bool,
    force_code_check: bool = True, executor: Any = None,
) -> Taken:
    """Claim an interrupted or paused run whose owner is gone and drive it in this process."""
    with _live_lock:
        sched = live(run_id)
    if sched is not None:
        return Taken(run_id, sched.wf)
    row = store.run_row(run_id)
    if row["workflow"] != wf.name:
        raise DefinitionError(
            f"run {run_id} belongs to workflow {row['workflow']!r}, not {wf.name!r}; attach it from that workflow"
        )
    if RunStatus(row["status"]).terminal:
        return Taken(run_id, wf)
    if owner_alive(row):
        raise OwnershipError(
            f"run {run_id} is owned by a live process ({owner_text(row)}); act on it with run verbs or the CLI "
            "(its owner applies them), or stop that process first"
        )
    opts = json.loads(row["options"] or "{}")
    backend = resolve(executor if executor is not None else opts.get("executor"))
    stored_def = store.definition(row["workflow"], row["version"])
    plan = wf.plan()
    _check_same_graph(wf, plan, stored_def, run_id)
    definition, version, pickles = pin(wf, plan, Known(row["version"], stored_def, store))
    check_portable(definition, backend)
    diffs: dict[str, str] = {}
    if version != row["version"]:
        save_version(store, wf, plan, definition, version, pickles)
        for s in plan.order:
            old = stored_def.steps[s].source
            new = plan.steps[s].source
            if old != new or stored_def.steps[s].options != plan.steps[s].options():
                diffs[s] = step_diff(s, old, new, row["version"], version)
    params = store.decode(row["params_codec"], row["params"]) or {}
    owner_id = uuid.uuid4().hex
    ts = now()
    events: list[tuple[str, Mapping[str, Any]]] = [
        ("taken_over", {"previous_owner": owner_text(row), "pinned_code": not live_code})]
    if diffs:
        events.append(("code_changed", code_changed_data(row["version"], version, diffs)))
    claimed = run_rows.claim_run(
        store, run_id, row["owner_id"],
        {"owner_host": HOST, "owner_pid": os.getpid(), "owner_id": owner_id, "heartbeat_at": ts, "updated_at": ts,
         "version": version, "options": json.dumps({**opts, "executor": backend.describe()})},
        events, actor=current_actor(), ts=ts,
    )
    if not claimed:
        raise OwnershipError(f"run {run_id} was just taken over by another process; try again to see who owns it")
    row = {**row, "version": version, "owner_id": owner_id}
    sched = Scheduler(store, wf, plan, row, params, owner_id, max_workers or opts.get("max_workers"),
                      live_code=live_code, backend=backend, pin_code=functools.partial(_pin_code, store),
                      on_stop=forget)
    sched.load()
    _register(sched)
    sched.start()
    return Taken(run_id, wf)


def attach_run(wf: WorkflowDef, store: Store, run_id: str, max_workers: int | None, executor: Any = None) -> Taken:
    """Take over *run_id* with today's definition *wf* (what ``Workflow.attach`` does)."""
    return take_over(store, wf, run_id, max_workers, live_code=True, executor=executor)


def take_over_pinned(store: Store, run_id: str, max_workers: int | None = None, executor: Any = None) -> Taken:
    """Take over *run_id* with the code it was pinned to (what `nbflow resume RUN` does). The run
    keeps the executor it recorded unless *executor* says otherwise."""
    row = store.run_row(run_id)
    wf = pinned_workflow(store, row["workflow"], row["version"])
    if not RunStatus(row["status"]).terminal:
        check_supplied(store, row)
    return take_over(store, wf, run_id, max_workers, live_code=False, executor=executor)


@dataclass(frozen=True)
class Seed:
    """What a fork copies from its parent: every finished instance of *steps*; with *keys*, also the
    items of *from_step* but those (``engine.forks``)."""

    parent: str
    from_step: str
    steps: frozenset[str]
    keys: frozenset[str] | None = None


def fork_run(wf: WorkflowDef, store: Store, parent_id: str, from_step: str, keys: Sequence[Any] | None = None,
             max_workers: int | None = None) -> str:
    """A new run with the parent's params, reusing every checkpoint upstream of *from_step* (with *keys*:
    every checkpoint but those items of *from_step* and what depends on them, ``engine.forks``);
    returns its id."""
    row = store.run_row(parent_id)
    plan = wf.plan()
    if from_step not in plan.steps:
        raise DefinitionError(f"no step {from_step!r} to fork from; steps are: {', '.join(plan.order)}")
    chosen = None if keys is None else forks.check_keys(plan, store, parent_id, from_step, list(keys))
    reuse = frozenset(set(plan.order) - forks.below(plan, from_step))
    params = store.decode(row["params_codec"], row["params"]) or {}
    opts = json.loads(row["options"] or "{}")
    return start_run(
        wf, store, params, [], bool(opts.get("break_on_error")),
        max_workers if max_workers is not None else opts.get("max_workers"),
        seed=Seed(parent_id, from_step, reuse, chosen),
        executor=wf.executor if wf.executor is not None else opts.get("executor"),
    )


def fork_pinned(store: Store, parent_id: str, from_step: str, keys: Sequence[Any] | None = None,
                max_workers: int | None = None) -> Taken:
    """:func:`fork_run` with the code the parent was pinned to (what ``nbflow fork`` runs from a terminal,
    where today's code is not at hand); the new run is driven in this process, with that code."""
    row = store.run_row(parent_id)
    wf = pinned_workflow(store, row["workflow"], row["version"])
    check_supplied(store, row)
    return Taken(fork_run(wf, store, parent_id, from_step, keys, max_workers), wf)


def stop_all(timeout: float = 5.0) -> None:
    """Stop every scheduler of this process, giving up their leases (runs stay resumable)."""
    scheds = list(_live.values())
    for sched in scheds:
        sched.request_stop()
    for sched in scheds:
        if sched.thread is not None:
            sched.thread.join(timeout=timeout)


atexit.register(stop_all)
"""A process that exits normally hands its runs back: they can be taken over at once."""


__all__ = [
    "Seed", "Taken", "attach_run", "check_supplied", "fork_pinned", "fork_run", "live", "owner_alive", "start_run",
    "stop_all", "take_over",
    "take_over_pinned",
]
