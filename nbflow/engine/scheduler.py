"""The scheduler: the one writer of instance state for a run it owns.

It runs on a background thread. Each turn it takes worker results and operator commands,
moves instances through their states (section 3 of DESIGN.md), dispatches ready instances to
the executor, and commits everything of the turn in one transaction *before* anything it
wrote becomes visible: an output is durable before a downstream instance can read it.

This module is the state machine. Its other jobs live beside it, as parts of the one class:
:mod:`.instances` (the instance record), :mod:`.gates` (approval and signal waits),
:mod:`.adopt` (live code), :mod:`.lease` (threads and lease), :mod:`.apply` (the owner side of
the command path, through the public methods below); its writes go through
:class:`nbflow.store.journal.Journal`.
"""
from __future__ import annotations

import dataclasses
import functools
import heapq
import itertools
import json
import logging
import operator
import random
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import CodeType
from typing import Any

from .. import breakpoints as bpmod
from .._jsontext import to_json_text
from .._util import HOST, dumps, jsonable, now, strict
from ..breakpoints import Action, Breakpoint
from ..context import StepContext
from ..definition import Plan, StepSpec
from ..definition import WorkflowDef as Workflow  # the definition it drives: the engine sees no nbflow.Workflow
from ..errors import CommandRefused, DefinitionError, NbflowError, SerializationError, StoreError
from ..signals import WaitForSignal, make_token
from ..states import BREAK_ON_ERROR, STEPPED_OVER, TASK_ITEM, PauseReason, RunStatus, StepKind, When
from ..states import InstanceStatus as S
from ..store import Store, logpoints
from ..store import commands as command_rows
from ..store.codec import JSON, Encoded
from ..store.journal import EVENT_ID_SPAN, Journal, LostOwnership
from . import capture, forks
from .adopt import LiveCode, PinCode
from .apply import apply_command
from .backends import Backend, Threads
from .executor import Hooks, Result, Task, error_triple
from .gates import Gates
from .instances import MISSING, Inst, gc_paused
from .lease import HEARTBEAT_S, OwnerThreads, new_owner_id
from .remote import REMOTE_VALUE

log = logging.getLogger("nbflow.scheduler")

COMMAND_POLL_S = 0.05
GROUP_COMMIT_S = 0.02
"""Writes that nothing waits on (an attempt started, an item succeeded) are grouped for at most this long."""
_MISSING = MISSING
_NO_BREAK: tuple[list[int], None] = ([], None)
# Hot-path aliases: reading a member off the enum class costs ~150 ns on Python 3.11, a global ~15.
_PENDING, _READY, _RUNNING, _RETRYING = S.PENDING, S.READY, S.RUNNING, S.RETRYING
_PAUSED, _WAITING, _SUCCEEDED, _FAILED = S.PAUSED, S.WAITING, S.SUCCEEDED, S.FAILED
_DONE_OK = frozenset(m for m in S if m.done_ok)
_RUN_RUNNING = RunStatus.RUNNING
_RUN_TERMINAL = frozenset(m for m in RunStatus if m.terminal)
_BEFORE, _ERROR = When.BEFORE, When.ERROR
_HELD_AS_ROWS = frozenset({StepKind.APPROVAL, StepKind.WAIT})
_FOREACH = StepKind.FOREACH
_get_status = operator.attrgetter("status")
_NO_KEY_VALUE = (None, None)
_STEP_OVER = "step over "  # a one-shot breakpoint's origin: "step over enrich:3"


class Scheduler(Gates, LiveCode, OwnerThreads):
    """Drives one run: build it, :meth:`load` it, ``start()`` launches its thread.

    Its public methods below (``release``, ``skip``, ``retry``, ``set_inputs``, ``set_output``,
    ``decide``, ``deliver``, ``cancel_all``, ``hold``, ``record``, ``hydrate``) are what
    :mod:`.apply` applies operator commands with, in the scheduler's turn."""

    def __init__(
        self,
        store: Store,
        wf: Workflow,
        plan: Plan,
        run_row: Mapping[str, Any],
        params: dict[str, Any],
        owner_id: str,
        max_workers: int | None,
        live_code: bool,
        backend: Backend | None = None,
        *,
        pin_code: PinCode,
        on_stop: Callable[[Scheduler], None],
    ) -> None:
        """*pin_code* pins a redefinition that live code adopts; *on_stop* is told once the loop is over."""
        self.store = store
        self.wf = wf
        self.live_code = live_code  # True: adopt the workflow's redefinitions as they happen
        self._pin_code = pin_code
        self.plan = plan
        self.specs: dict[str, StepSpec] = dict(plan.steps)
        self.run_id: str = run_row["id"]
        self.version: str = run_row["version"]
        self._lineage: tuple[str | None, float] = (run_row.get("parent_run_id"), float(run_row["created_at"]))
        self.options: dict[str, Any] = json.loads(run_row["options"] or "{}")
        self.params = params
        self.owner_id = owner_id
        self.status = RunStatus(run_row["status"])
        # What waiters see: only a status this scheduler has stored. Until its first write it is
        # "running", so a wait() right after a takeover sees the effect of commands queued before it.
        self.committed_status = RunStatus.RUNNING
        self.committing = False
        self._init_threads(on_stop)
        self.backend = backend or Threads()
        # Threads hand results to _sink (which may run the turn on the worker: a chain's fast path);
        # processes and Dask hand them to _remote_result, from their feeder or collector thread.
        hooks = Hooks(self._sink if isinstance(self.backend, Threads) else self._remote_result,
                      self._started,
                      self._commit_checkpoint)
        self.executor = self.backend.for_run(hooks, max_workers, f"nbflow-{self.run_id[:6]}")
        self.journal = Journal(store, self.run_id, owner_id)

        self.insts: dict[tuple[str, int], Inst] = {}
        self.by_step: dict[str, list[Inst]] = {s: [] for s in plan.order}
        self.counts: Counter[S] = Counter()
        self.expanded: dict[str, bool] = {s: plan.steps[s].kind != StepKind.FOREACH for s in plan.order}
        self.remaining: dict[str, int] = dict.fromkeys(plan.order, 0)
        self.blocked: dict[str, int] = {s: len(plan.upstream[s]) for s in plan.order}
        self.complete: set[str] = set()
        self.items_cache: dict[str, list[Any]] = {}
        self.output_cache: dict[str, Any] = {}
        self.ready: deque[Inst] = deque()
        self.unblocked: list[str] = []
        self.timers: list[tuple[float, int, str, Inst | None, int]] = []  # (at, seq, kind, inst, attempt)
        self.final: RunStatus | None = None  # set by cancel (cancelled) or the run deadline (failed)
        self.step_inflight: Counter[str] = Counter()
        self.held_back: dict[str, deque[Inst]] = {}
        self.signals = {}  # these three: the gates' (gates.py)
        self.signal_tokens = set()
        self.signal_rows = []
        self._seq = itertools.count()
        self.inflight: dict[tuple[str, int], int] = {}  # ident -> attempt running
        self.starting: list[Task] = []  # attempts started this turn, submitted once their start is committed
        self.bps: list[Breakpoint] = []
        self._bp_at: dict[str, tuple[When, ...]] = {}  # per step, the whens of its breakpoints: what _matching skips
        self._bp_code: dict[int, Any] = {}
        self._bp_expr: dict[int, Any] = {}  # a logpoint's compiled expression (or the error compiling it)
        self._bp_origin: dict[int, tuple[str, str | None, bool]] = {}  # a step over's: (step, key, per item)
        self._item_sources: dict[str, list[str | None]] = {}  # a foreach's items: the key of the item each came from
        self.bp_hits: dict[int, int] = {}  # per breakpoint: instances of this run that reached it and matched
        self._hits_dirty: set[int] = set()
        self._fired: dict[int, list[str | None]] = {}  # one-shot breakpoints that caught instances: their keys
        self._retired: list[int] = []  # one-shot breakpoints the next flush deletes
        self.fork: forks.KeyedFork | None = None  # a fork of chosen items: what its foreach steps reuse

        self.dirty: dict[tuple[str, int], Inst] = {}
        self.events: list[tuple[Any, ...]] = []  # rows in journal.EVENT_KEYS order
        self._event_id = 0  # the id of the run's newest event (see load and journal.EVENT_ID_SPAN)
        self._event_high = 0  # the first id past the run's range
        self.blobs: list[Encoded] = []  # values moved to files, whose blob rows the next flush writes
        self.cmd_done: list[dict[str, Any]] = []
        self.after_flush: list[threading.Event] = []
        self.cmd_waiters: dict[int, threading.Event] = {}
        self.cmd_results: dict[int, tuple[str, str]] = {}
        self.cmd_codes: dict[int, str] = {}  # the Refusal code of each command refused (an in-process submit takes it)
        self.run_dirty = True
        self.must_flush = True  # something waits on durability: a downstream input, a command, a status
        self._last_flush = 0.0
        self._last_poll = 0.0
        self._last_hb = 0.0
        self._ignored_specs = set()  # live code's (adopt.py)
        self._status_changed = False

    # ------------------------------------------------------------------ loading
    def load(self) -> None:
        """Build the in-memory state from the store (a new run's rows, or one being taken over).

        Finished instances load without their values; those load per step on first use, so a
        takeover of a 10,000-instance run starts work at once (B3 in bench/)."""
        self._event_id = self.journal.last_event_id()
        self._event_high = (self._event_id // EVENT_ID_SPAN + 1) * EVENT_ID_SPAN
        self.bp_hits = self.store.breakpoint_hits(self.run_id)
        self.fork = self._keyed_fork()
        with gc_paused():
            self._load()

    def _load(self) -> None:
        # One pass over the rows (in step, item order), then one per step: no per-row method calls.
        by_step, insts, light = self.by_step, self.insts, Inst.light
        for r in self.store.instance_state_rows(self.run_id):
            rows = by_step.get(r[0])
            if rows is not None:
                inst = light(r)
                rows.append(inst)
                insts[(inst.step, inst.item)] = inst
        interrupted: list[Inst] = []
        active: dict[str, list[Inst]] = {}  # what may need re-arming: all but the succeeded, in item order
        for s in self.plan.order:
            rows = by_step[s]
            if not rows:
                continue
            active[s] = todo = [i for i in rows if i.status is not _SUCCEEDED]
            for inst in todo:
                if inst.status is _RUNNING:
                    inst.status = _READY
                    interrupted.append(inst)
                    self.dirty[(s, inst.item)] = inst
            counts = Counter(map(_get_status, rows))
            self.counts.update(counts)
            self.remaining[s] = len(rows) - sum(counts[st] for st in _DONE_OK) - (
                sum(1 for i in todo if i.status is _FAILED and self.dead_letter(i)) if counts[_FAILED] else 0
            )
            if self.plan.steps[s].kind == StepKind.FOREACH:
                self.expanded[s] = True
        # They are written back (running -> ready): load their values first, or the flush would
        # erase their ctx.checkpoint progress, operator-edited inputs and logs.
        self.hydrate(interrupted)
        for s in self.plan.order:
            if self.expanded[s] and self.remaining[s] == 0 and self._step_has_rows_or_empty(s):
                self.complete.add(s)
        for s in self.plan.order:
            self.blocked[s] = sum(1 for u in self.plan.upstream[s] if u not in self.complete)
        for inst in interrupted:
            self._event("interrupted", inst, attempt=inst.attempt)
        self.reload_breakpoints()
        self._load_signals()
        if self.options.get("deadline"):
            self._arm_timer(None, float(self.options["deadline"]), "run_deadline")
        # Re-arm everything that can progress, in DAG order.
        ready = self.ready
        for inst in itertools.chain.from_iterable(active[s] for s in self.plan.order if s in active):
            status = inst.status
            if status is _READY:
                ready.append(inst)
            elif status is _RETRYING:
                self._arm_timer(inst, inst.next_attempt_at or now())
            elif status is _WAITING and inst.deadline is not None:
                self._arm_timer(inst, inst.deadline, "deadline")
            elif status is _PENDING and self.blocked[inst.step] == 0:
                self._make_ready(inst)
        for st in self.plan.order:
            if self.blocked[st] == 0 and not self.expanded[st]:
                self._expand(st)

    def _keyed_fork(self) -> forks.KeyedFork | None:
        """What this run's ``run_created`` event says of the fork it is, when it is one of chosen items."""
        parent, since = self._lineage
        if not parent:
            return None
        created = self.store.event_rows(self.run_id, kinds=["run_created"], limit=1)
        fork = json.loads(created[0]["data"] or "{}").get("fork") if created else None
        if not isinstance(fork, dict) or fork.get("keys") is None or fork.get("from_step") not in self.specs:
            return None
        return forks.KeyedFork(parent, fork["from_step"], frozenset(fork["keys"]),
                               forks.chain(self.plan, fork["from_step"]), since)

    def _step_has_rows_or_empty(self, step: str) -> bool:
        return bool(self.by_step[step]) or self.plan.steps[step].kind != StepKind.FOREACH

    def hydrate(self, insts: Iterable[Inst]) -> None:
        """Load the values of instances loaded light (one query per step), before a change is written over them."""
        todo: dict[str, dict[int, Inst]] = {}
        for inst in insts:
            if not inst.hydrated:
                todo.setdefault(inst.step, {})[inst.item] = inst
        for step, by_item in todo.items():
            few = len(by_item) <= 500  # a takeover's interrupted attempts: not the whole fan-out
            rows = self.store.instance_rows(self.run_id, step=step, items=by_item if few else None)
            for r in rows:
                target = by_item.get(r["item"])
                if target is not None:
                    target.hydrate(r)

    def _index(self, inst: Inst) -> None:
        self.insts[inst.ident] = inst
        self.by_step[inst.step].append(inst)
        self.counts[inst.status] += 1

    def add_instance(self, inst: Inst) -> None:
        self._index(inst)
        self.dirty[inst.ident] = inst
        if not self._done(inst, inst.status):
            self.remaining[inst.step] += 1

    # ------------------------------------------------------------------ state changes (the one place)
    def _set(self, inst: Inst, status: S, **fields: Any) -> None:
        if not inst.hydrated:
            self.hydrate([inst])
        old = inst.status
        for k, v in fields.items():
            setattr(inst, k, v)
        step = inst.step
        self.dirty[(step, inst.item)] = inst
        if old is status:
            return
        if step in self.output_cache:  # a dead letter retried or skipped after its step completed
            del self.output_cache[step]
        counts = self.counts
        counts[old] -= 1
        counts[status] += 1
        inst.status = status
        was = old in _DONE_OK or (old is _FAILED and self.dead_letter(inst))
        now_done = status in _DONE_OK or (status is _FAILED and self.dead_letter(inst))
        if was is not now_done:
            self.remaining[step] += -1 if now_done else 1
            if now_done:
                self._maybe_complete(step)

    def _done(self, inst: Inst, status: S) -> bool:
        """Finished as far as downstream is concerned: succeeded, skipped, or dead-lettered."""
        return status in _DONE_OK or (status is _FAILED and self.dead_letter(inst))

    def dead_letter(self, inst: Inst) -> bool:
        """A failed item of a foreach with on_item_error='continue' is a dead letter, not a failure."""
        return inst.item != TASK_ITEM and self.specs[inst.step].on_item_error == "continue"

    def _maybe_complete(self, step: str) -> None:
        if self.remaining[step] or not self.expanded[step] or step in self.complete:
            return
        self.complete.add(step)
        self.must_flush = True
        for d in self.plan.downstream[step]:
            self.blocked[d] -= 1
            if self.blocked[d] == 0:
                self.unblocked.append(d)  # started after the next flush makes this output durable

    def _unblock(self, step: str) -> None:
        if not self.expanded[step]:  # a foreach not yet expanded
            self._expand(step)
            return
        for inst in self.by_step[step]:
            if inst.status is _PENDING:
                self._make_ready(inst)

    def _expand(self, step: str) -> None:
        """Create one instance per element of the foreach's upstream output."""
        spec = self.specs[step]
        assert spec.foreach is not None
        try:
            items = self._items(step)
            keys: list[str] = []
            encs: list[tuple[str, bytes] | None]  # each key's value (bpmod.encode_key)
            if spec.key is None:
                keys = [str(i) for i in range(len(items))]
                encs = [(JSON, k.encode()) for k in keys]
            else:
                encs = []
                encode_key = bpmod.encode_key
                for i, item in enumerate(items):
                    try:
                        k, enc = encode_key(spec.key(item))
                    except Exception as exc:
                        raise DefinitionError(
                            f"the key function of foreach step {step!r} raised {type(exc).__name__}: {exc} "
                            f"on item {i}"
                        ) from exc
                    keys.append(k)
                    encs.append(enc)
                seen: dict[str, int] = {}
                for i, k in enumerate(keys):
                    if k in seen:
                        raise DefinitionError(
                            f"foreach step {step!r}: items {seen[k]} and {i} have the same key {k!r}; "
                            "keys must be unique, change the key function"
                        )
                    seen[k] = i
        except Exception as exc:  # noqa: BLE001 - the items or the key function may raise anything: the step fails
            inst = Inst(step, TASK_ITEM, None, S.PENDING)
            self.add_instance(inst)
            self.expanded[step] = True
            self._set(inst, S.FAILED, error=error_triple(exc, 0), finished_at=now())
            self._event("failed", inst, error=inst.error[1] if inst.error else None)
            return
        self.expanded[step] = True
        reused = self._reused(step, keys, encs)
        if reused:
            self._event("expanded", None, step=step, items=len(items), reused=len(reused))
        else:
            self._event("expanded", None, step=step, items=len(items))
        before = [bp for bp in self.bps if bp.step == step and bp.when is _BEFORE]
        if reused:  # a fork of chosen items: the parent's items whose source was not run again
            for i, k in enumerate(keys):
                copy = reused.get(i)
                if copy is not None:
                    self.add_instance(copy)
                    continue
                inst = Inst(step, i, k, S.PENDING)
                inst.key_enc = encs[i]
                self.add_instance(inst)
                self._make_ready(inst)
            self._maybe_complete(step)
        elif spec.kind not in _HELD_AS_ROWS and all(bp.action is Action.LOG for bp in before):
            # No before-breakpoint can hold them: what add_instance and _make_ready do, in bulk.
            insts, dirty, rows, ready = self.insts, self.dirty, self.by_step[step], self.ready
            first = len(rows)
            for i, k in enumerate(keys):
                inst = Inst(step, i, k, _READY)
                inst.key_enc = encs[i]
                insts[(step, i)] = dirty[(step, i)] = inst
                rows.append(inst)
                ready.append(inst)
            self.counts[_READY] += len(keys)
            self.remaining[step] += len(keys)
            for bp in before:
                self._log_items(bp, rows[first:], items)
        else:
            for i, k in enumerate(keys):
                inst = Inst(step, i, k, S.PENDING)
                inst.key_enc = encs[i]
                self.add_instance(inst)
                self._make_ready(inst)
        if not items:
            self._maybe_complete(step)

    def _reused(self, step: str, keys: list[str], encs: list[tuple[str, bytes] | None]) -> dict[int, Inst]:
        """A fork's foreach over its chosen items, item by item: the new items the parent's stand in for."""
        fork = self.fork
        if fork is None or step not in fork.chain:
            return {}
        up = self.specs[step].foreach
        source = [i for i in self.by_step[up] if i.status.done_ok] if up is not None else []

        def items_of(s: str) -> list[tuple[int, str | None, bool]]:
            return sorted((i.item, i.key, i.status.done_ok) for i in self.by_step[s])

        return forks.reused_items(self.store, self.plan, fork, step, source, keys, encs, self.run_id, items_of)

    def _items(self, step: str) -> list[Any]:
        """The elements a foreach iterates over (its upstream's output), cached."""
        cached = self.items_cache.get(step)
        if cached is not None:
            return cached
        up = self.specs[step].foreach
        assert up is not None
        value = self.step_output(up)
        if isinstance(value, (str, bytes, bytearray, Mapping)) or not (
            hasattr(value, "__len__") and hasattr(value, "__getitem__")
        ):
            raise TypeError(
                f"foreach step {step!r} iterates over the output of {up!r}, which is a "
                f"{type(value).__name__}, not a sequence; make {up!r} return a list"
            )
        items = list(value)
        self.items_cache[step] = items
        return items

    def step_output(self, step: str) -> Any:
        """A task's output, or a foreach's outputs as a list in item order."""
        if step in self.output_cache:
            return self.output_cache[step]
        insts = self.by_step[step]
        if self.specs[step].kind is _FOREACH:
            value = [self._value(i) for i in insts if i.status.done_ok]
        else:
            value = self._value(insts[0])
        if step in self.complete:
            self.output_cache[step] = value
        return value

    def _value(self, inst: Inst) -> Any:
        if not inst.hydrated:
            self.hydrate([i for i in self.by_step[inst.step] if not i.hydrated])
        if inst.value is _MISSING:
            inst.value = self.store.decode(inst.out.codec, inst.out.data) if inst.out else None
        return inst.value

    def _overrides(self, inst: Inst) -> dict[str, Any]:
        if not inst.hydrated:
            self.hydrate([inst])
        if inst.overrides is _MISSING:
            inst.overrides = self.store.decode(inst.inputs.codec, inst.inputs.data) if inst.inputs else {}
        return inst.overrides  # type: ignore[no-any-return]

    def inputs(self, inst: Inst) -> dict[str, Any]:
        """The instance's inputs by parameter name (ctx excluded), operator edits applied."""
        result: dict[str, Any] = {}
        over = self._overrides(inst)
        for b in self.plan.bindings[inst.step]:
            if b.param in over:
                result[b.param] = over[b.param]
            elif b.source == "step":
                result[b.param] = self.step_output(b.name)
            elif b.source == "item":
                result[b.param] = self._items(inst.step)[inst.item]
            elif b.source == "param" and b.param in self.params:
                result[b.param] = self.params[b.param]
            # ctx is not an input; defaults apply when the function is called
        return result

    # ------------------------------------------------------------------ breakpoints
    def reload_breakpoints(self) -> None:
        self.bps = [Breakpoint.from_row(r) for r in self.store.breakpoint_rows(self.wf.name, self.run_id)]
        self._bp_at = _whens(self.bps)
        self._bp_code, self._bp_expr, self._bp_origin = {}, {}, {}
        for bp in self.bps:
            self._arm(bp)

    def _arm(self, bp: Breakpoint) -> None:
        """Compile what a breakpoint evaluates (an error compiling it is kept: the breakpoint holds, saying so)."""
        bid = _bid(bp)
        try:
            self._bp_code[bid] = bpmod.compile_condition(bp.condition)
        except DefinitionError as exc:
            self._bp_code[bid] = exc
        if bp.action is Action.LOG:
            try:
                self._bp_expr[bid] = bpmod.compile_expression(bp.expression)
            except DefinitionError as exc:
                self._bp_expr[bid] = exc
        if bp.one_shot and bp.origin:
            source, key = bpmod.parse_target(bp.origin.removeprefix(_STEP_OVER))
            self._bp_origin[bid] = (source, key, self._per_item(bp.step, source, key))

    def _names(self, inst: Inst, when: When) -> dict[str, Any]:
        """What a condition or a logpoint's expression sees: the inputs, the output after the body, the error on one."""
        names = self.inputs(inst)
        if when is not _BEFORE and inst.out is not None:
            names["output"] = self._value(inst)
        if when is _ERROR and inst.error is not None:
            names["error"] = f"{inst.error[0]}: {inst.error[1]}"
        return names

    def _matching(self, inst: Inst, when: When) -> tuple[list[int], str | None]:
        """Breakpoint ids that catch *inst* at *when*, and a pause reason if a condition failed. Each
        breakpoint the instance reaches and whose condition it matches counts a hit (once per instance);
        one with a hit count lets the first hits pass, a logpoint records and lets it go."""
        whens = self._bp_at.get(inst.step)
        if (whens is None or when not in whens) and (when is not _ERROR or not self.options.get("break_on_error")):
            return _NO_BREAK
        held: list[int] = []
        reason: str | None = None
        names: dict[str, Any] | None = None
        for bp in self.bps:
            bid = _bid(bp)
            if bid in inst.released or not bp.matches(inst.step, inst.key, when):
                continue
            if bp.one_shot and not self._consumes(inst, bid):
                continue
            code = self._bp_code.get(bid)
            failed: str | None = None
            if code is not None:
                if names is None:
                    names = self._names(inst, when)
                matches, failed = _condition(bp, code, names)
                if not matches:
                    continue
            hits = self.bp_hits[bid] = self.bp_hits.get(bid, 0) + 1
            self._hits_dirty.add(bid)
            if hits == 1 and bp.action is Action.LOG:
                self._armed(bp)
            if bp.hit_count is not None and hits < bp.hit_count:
                inst.released = inst.released | {bid}  # passed: counted once, not caught on its retries
                continue
            if bp.action is Action.LOG:
                if names is None:
                    names = self._names(inst, when)
                self._log(inst, bp, when, bpmod.namespace(names), failed)
                inst.released = inst.released | {bid}
                continue
            if bp.one_shot:  # its breakpoint goes once it fired: the instance is held by the step over itself
                self._fired.setdefault(bid, []).append(inst.key)
                bid = STEPPED_OVER
                reason = failed or reason or bp.origin
            else:
                reason = failed or reason
            if bid not in held:
                held.append(bid)
        if self.options.get("break_on_error") and when == When.ERROR and BREAK_ON_ERROR not in inst.released:
            held.append(BREAK_ON_ERROR)
        return held, reason

    def _log(self, inst: Inst, bp: Breakpoint, when: When, names: dict[str, Any], failed: str | None) -> None:
        """A logpoint's event: its expression's value (JSON, else its repr), or the error evaluating it."""
        text = logpoints.stored_head(_bid(bp), inst.attempt + (when is _BEFORE)) + _log_tail(
            self._bp_expr.get(_bid(bp)), names, failed)
        eid = self._event_id = self._event_id + 1
        self.events.append((eid, self.run_id, inst.step, inst.key, "logpoint", None, text, time.time()))

    def _armed(self, bp: Breakpoint) -> None:
        """The ``logpoint_armed`` event of a logpoint's first hit in this run: its definition, stored once
        for the ``logpoint`` events that refer to it by id (``store.logpoints``). The first hit is
        committed with it (``breakpoint_hits``), so a new owner of the run does not write it again."""
        text = logpoints.armed_data(_bid(bp), bp.step, bp.key, str(bp.when), bp.expression, bp.condition,
                                    bp.hit_count)
        eid = self._event_id = self._event_id + 1
        self.events.append((eid, self.run_id, bp.step, None, logpoints.LOGPOINT_ARMED, None, text, time.time()))

    def _log_items(self, bp: Breakpoint, insts: list[Inst], items: list[Any]) -> None:
        """A before-logpoint over a foreach's new items, in bulk (what :meth:`_matching` does for one, without
        an instance's inputs built per item: they differ only by the item)."""
        if not insts:
            return
        bid = _bid(bp)
        cond, code = self._bp_code.get(bid), self._bp_expr.get(bid)
        item_param = next((b.param for b in self.plan.bindings[insts[0].step] if b.source == "item"), None)
        base = self.inputs(insts[0])
        mark = frozenset((bid,))
        head = logpoints.stored_head(bid, 1)
        hits = self.bp_hits.get(bid, 0)
        events, run_id, ts = self.events, self.run_id, time.time()
        names = bpmod.namespace(base)  # one namespace for every item: only the item changes
        for inst in insts:
            if bp.key is not None and bp.key != inst.key:
                continue
            if item_param is not None:
                names[item_param] = items[inst.item]
            failed = None
            if cond is not None:
                matches, failed = _condition(bp, cond, names)
                if not matches:
                    continue
            hits += 1
            if hits == 1:
                self._armed(bp)
            inst.released = mark if not inst.released else inst.released | mark
            if bp.hit_count is not None and hits < bp.hit_count:
                continue
            text = head + _log_tail(code, names, failed)
            eid = self._event_id = self._event_id + 1
            events.append((eid, run_id, inst.step, inst.key, "logpoint", None, text, ts))
        if hits != self.bp_hits.get(bid, 0):
            self.bp_hits[bid] = hits
            self._hits_dirty.add(bid)

    # ------------------------------------------------------------------ step over
    def _per_item(self, step: str, source: str, key: str | None) -> bool:
        """Does a step over of *source* (*key*) pause only the item of *step* made from it (a foreach over
        a foreach)?"""
        spec = self.specs.get(step)
        takes_whole = any(b.source == "step" and b.name == source for b in self.plan.bindings.get(step, ()))
        return (spec is not None and spec.foreach == source and key is not None and not takes_whole
                and self.specs[source].kind is _FOREACH)

    def _consumes(self, inst: Inst, bid: int) -> bool:
        """Is *inst* what the one-shot breakpoint *bid* of a step over waits for?"""
        origin = self._bp_origin.get(bid)
        if origin is None or not origin[2]:
            return True
        step = inst.step
        sources = self._item_sources.get(step)
        if sources is None:
            up = self.specs[step].foreach
            assert up is not None
            sources = self._item_sources[step] = [i.key for i in self.by_step[up] if i.status.done_ok]
        return 0 <= inst.item < len(sources) and sources[inst.item] == origin[1]

    def consumers(self, step: str) -> list[str]:
        """The steps that read *step*'s output: those that take it as an input, and the foreach steps over it."""
        return [d for d in self.plan.order if self.specs[d].foreach == step
                or any(b.source == "step" and b.name == step for b in self.plan.bindings[d])]

    def step_over(self, inst: Inst, actor: str | None, reason: str | None) -> tuple[list[str], list[str]]:
        """Resume *inst* and pause, before their body, the instances that consume its output when they become
        ready, with one run-scoped one-shot breakpoint per consuming step; returns what they will pause, and
        the consumers that started already (nothing of them will wait)."""
        origin = f"{_STEP_OVER}{inst.label}"
        targets: list[str] = []
        started: list[str] = []
        key = None if inst.item == TASK_ITEM else inst.key
        for step in self.consumers(inst.step):
            per_item = self._per_item(step, inst.step, key)
            if self.expanded[step] and (per_item or not any(i.status is _PENDING for i in self.by_step[step])):
                started.append(step)  # made and started already (a dead letter retried late): nothing will wait
                continue
            bp = Breakpoint(step, None, When.BEFORE, None, run_id=self.run_id, workflow=self.wf.name,
                            created_by=actor, one_shot=True, origin=origin)
            bid = command_rows.insert_breakpoint(self.store, self.wf.name, self.run_id, bp.row(), actor or "", now())
            bp = dataclasses.replace(bp, id=bid)
            self.bps.append(bp)
            self._bp_at[step] = (*self._bp_at.get(step, ()), bp.when)
            self._arm(bp)
            targets.append(f"{step} (the item made from {inst.label})" if per_item else step)
        self._event("stepped_over", inst, actor=actor, reason=reason, pausing=targets)
        self.release(inst, inst.held_by, actor, reason)
        return targets, started

    def _retire_fired(self) -> None:
        """One-shot breakpoints that caught what they were for go (their instances stay paused)."""
        fired, self._fired = self._fired, {}
        gone = set(fired)
        for bp in self.bps:
            if bp.id in gone:
                keys = fired[_bid(bp)]
                self._event("breakpoint_fired", None, step=bp.step, id=bp.id, origin=bp.origin, count=len(keys),
                            keys=keys[:100])
        self.bps = [bp for bp in self.bps if bp.id not in gone]
        self._bp_at = _whens(self.bps)
        self._retired.extend(gone)

    def _pause(self, inst: Inst, when: When, held: list[int], reason: str | None, **fields: Any) -> None:
        self.must_flush = True
        self._set(inst, S.PAUSED, held_by=held, pause_reason=str(PauseReason(str(when), reason)), **fields)
        self._event("paused", inst, when=str(when), breakpoints=held, reason=inst.pause_reason)

    # ------------------------------------------------------------------ readiness and dispatch
    def _make_ready(self, inst: Inst) -> None:
        held, reason = self._matching(inst, _BEFORE)
        if held:
            self._pause(inst, _BEFORE, held, reason)
            return
        spec = self.specs[inst.step]
        if spec.kind in _HELD_AS_ROWS:
            self._wait(inst, inst.step, spec.timeout)
            return
        self._set(inst, _READY)
        self.ready.append(inst)

    def _dispatch(self) -> None:
        """Start what is ready, up to the executor's limit; the bodies are submitted by :meth:`_submit`."""
        while self.ready and len(self.inflight) < self.executor.max_inflight:
            inst = self.ready.popleft()
            if inst.status is not _READY:
                continue
            limit = self.specs[inst.step].max_parallel
            if limit is not None and self.step_inflight[inst.step] >= limit:
                self.held_back.setdefault(inst.step, deque()).append(inst)
                continue
            self._start(inst)

    def _submit(self) -> None:
        """Hand the attempts started this turn to the executor. Called after the flush that committed
        their starts: an owner that dies in a body leaves that attempt's number in the store, and the
        process that takes over runs the instance as a higher attempt."""
        if self.starting:
            submit = self.executor.submit
            for task in self.starting:
                submit(task)
            self.starting.clear()
        self.executor.flush()

    def _start(self, inst: Inst) -> None:
        spec = self.code(inst.step)
        try:
            kwargs = self.inputs(inst)
            if "ctx" in spec.params:
                kwargs["ctx"] = self._ctx(inst, inst.attempt + 1)
        except Exception as exc:  # noqa: BLE001 - decoding the inputs may raise anything: the attempt fails
            inst.attempt += 1
            self._set(inst, S.FAILED, error=error_triple(exc, 0), finished_at=now())
            self._event("failed", inst, attempt=inst.attempt, error=f"inputs could not be resolved: {exc}")
            return
        inst.attempt = attempt = inst.attempt + 1
        inst.started_at, inst.next_attempt_at, inst.pause_reason, inst.held_by = now(), None, None, ()
        self._set(inst, _RUNNING)
        self._event("started", inst, attempt=attempt)
        self.inflight[inst.ident] = attempt
        self.step_inflight[inst.step] += 1
        label = f"step {inst.step!r}" if inst.key is None else f"step {inst.step!r} (key {inst.key})"
        assert spec.fn is not None
        on_start = functools.partial(self._started, inst.ident, attempt) if spec.timeout else None
        self.starting.append(
            Task(inst.ident, attempt, spec.fn, kwargs, f"output of {label}", self.store.encode, on_start, spec)
        )

    def _started(self, ident: tuple[str, int], attempt: int, at: float) -> None:
        """A timed attempt's body began (told by its worker thread, process or Dask task): arm its timeout."""
        self.q.put(("started", (ident, attempt, at)))

    def _remote_result(self, res: Result) -> None:
        """A result from a process or Dask worker: large outputs go to the artifact folder here, off the scheduler."""
        if res.enc is not None:
            res.enc = self.store.keep(res.enc)
        self.q.put(("result", res))

    def _commit_checkpoint(self, ident: tuple[str, int], attempt: int, enc: Encoded) -> None:
        """``ctx.checkpoint`` (in a worker thread, process or Dask task): committed by this scheduler;
        returns once durable."""
        enc = self.store.keep(enc)
        done = threading.Event()
        self.q.put(("checkpoint", (ident, attempt, enc, done)))
        while not done.wait(0.5):
            if not self.alive():
                raise NbflowError(f"the owner of run {self.run_id} stopped before the checkpoint was committed")

    def _ctx(self, inst: Inst, attempt: int) -> StepContext:
        ident = inst.ident

        def checkpoint(value: Any) -> None:
            self._commit_checkpoint(ident, attempt, self.store.encode(value, f"checkpoint of {inst.label}"))

        return StepContext(
            run_id=self.run_id,
            step=inst.step,
            key=bpmod.key_value(inst.key, *inst.key_enc) if inst.key_enc else inst.key,
            item_index=None if inst.item == TASK_ITEM else inst.item,
            attempt=attempt,
            idempotency_key=f"{self.run_id}/{inst.step}/{inst.key or ''}",
            log=capture.step_logger(self.wf.name, inst.step),
            saved=self.store.decode(inst.saved.codec, inst.saved.data) if inst.saved else None,
            _checkpoint=checkpoint,
            _signals=dict(self.signals.get(ident, {})),
            _token=functools.partial(make_token, self.store.secret, self.run_id, ident[0], ident[1]),
        )

    # ------------------------------------------------------------------ results
    def _on_result(self, res: Result) -> None:
        if self.inflight.get(res.ident) != res.attempt:
            return  # a late result of a cancelled, timed-out or superseded attempt
        self._forget_inflight(res.ident)
        inst = self.insts[res.ident]
        if inst.status is not _RUNNING:
            return
        inst.started_at = res.started_at  # when the body really began (it may have queued)
        if res.error is not None:  # text columns hold UTF-8: a lone surrogate (an undecodable file name) as its escape
            res.error = (strict(res.error[0]), strict(res.error[1]), strict(res.error[2]))
        header = f"--- attempt {res.attempt} ---\n" if (inst.logs or res.attempt > 1) and res.logs else ""
        if res.logs:
            inst.logs = (inst.logs or "") + header + strict(res.logs)
        if res.ok:
            assert res.enc is not None
            if res.enc.blob:
                self.blobs.append(res.enc)
            inst.out, inst.value, inst.error = res.enc, _MISSING if res.value is REMOTE_VALUE else res.value, None
            held, reason = self._matching(inst, When.AFTER)
            if held:
                self._pause(inst, When.AFTER, held, reason, finished_at=res.finished_at)
                return
            self._succeed(inst, res.finished_at)
        elif isinstance(res.exc, WaitForSignal):
            inst.attempt -= 1  # the attempt is suspended, not spent: it runs again when the signal arrives
            self._wait(inst, res.exc.name, res.exc.timeout)
        else:
            self._failed_attempt(inst, res)

    def _failed_attempt(self, inst: Inst, res: Result) -> None:
        """A failed attempt: pause on an error breakpoint, else retry or fail."""
        inst.error = res.error
        held, reason = self._matching(inst, When.ERROR)
        if held:
            inst.pending_error = res
            self._event("attempt_failed", inst, attempt=res.attempt, error=_err(res), **_traceback(res))
            self._pause(inst, When.ERROR, held, reason, finished_at=res.finished_at)
            return
        self._fail_or_retry(inst, res)

    def _succeed(self, inst: Inst, finished_at: float | None = None) -> None:
        inst.finished_at, inst.pause_reason, inst.held_by = finished_at or now(), None, ()
        self._set(inst, _SUCCEEDED)
        self._event("succeeded", inst, attempt=inst.attempt)

    def _fail_or_retry(self, inst: Inst, res: Result | None) -> None:
        spec = self.specs[inst.step]
        exc = res.exc if res is not None else None
        retryable = exc is None or (isinstance(exc, spec.retry_on) and not isinstance(exc, SerializationError))
        if retryable and inst.attempt <= spec.retries:
            b = spec.backoff
            ceiling = min(b.cap, b.base * b.factor ** (inst.attempt - 1))
            delay = random.uniform(0, ceiling) if b.jitter else ceiling  # noqa: S311 - jitter, not a secret
            at = now() + delay
            self._set(inst, S.RETRYING, next_attempt_at=at, pause_reason=None, held_by=[])
            self._event("retrying", inst, attempt=inst.attempt, error=_err(res) if res else None, delay=round(delay, 4),
                        **_traceback(res))
            self._arm_timer(inst, at)
            return
        self._set(inst, S.FAILED, finished_at=now(), pause_reason=None, held_by=[])
        self._event("failed", inst, attempt=inst.attempt,
                    error=_err(res) if res else (inst.error[1] if inst.error else None))

    def _arm_timer(self, inst: Inst | None, at: float, kind: str = "retry", attempt: int = 0) -> None:
        heapq.heappush(self.timers, (at, next(self._seq), kind, inst, attempt))

    def _fire_timers(self) -> None:
        t0 = now()
        while self.timers and self.timers[0][0] <= t0:
            _, _, kind, inst, attempt = heapq.heappop(self.timers)
            if kind == "run_deadline":
                if not self.status.terminal and self.final is None:
                    self.cancel_all(None, "the run's deadline passed", RunStatus.FAILED)
                    self._event("deadline_exceeded", None, deadline=self.options.get("deadline"))
                continue
            assert inst is not None
            if kind == "retry":
                if inst.status == S.RETRYING and (inst.next_attempt_at or 0) <= t0:
                    self._make_ready(inst)
            elif kind == "deadline":
                if inst.status == S.WAITING and inst.deadline is not None and inst.deadline <= t0:
                    self._wait_timed_out(inst)
            elif kind == "step_timeout" and self.inflight.get(inst.ident) == attempt:
                spec = self.specs[inst.step]
                self._forget_inflight(inst.ident)
                self.executor.cancel(inst.ident, attempt)
                exc = StepTimeout(f"step {inst.label!r} timed out after {spec.timeout:g} s (attempt {attempt})")
                res = Result(inst.ident, attempt, False, exc=exc, error=(type(exc).__name__, str(exc), str(exc)),
                             finished_at=t0)
                self._event("timed_out", inst, attempt=attempt, timeout=spec.timeout)
                self._failed_attempt(inst, res)

    def _forget_inflight(self, ident: tuple[str, int]) -> None:
        """An attempt left the executor (result, timeout or cancel): free its step's slot."""
        if self.inflight.pop(ident, None) is None:
            return
        step = ident[0]
        self.step_inflight[step] -= 1
        held = self.held_back.get(step)
        if held:
            self.ready.appendleft(held.popleft())

    def encode(self, value: Any, what: str) -> Encoded:
        """*value* as the store keeps it, a large one's blob row queued for the flush that writes the row
        referencing it (every value the scheduler stores, but results and checkpoints, encoded elsewhere)."""
        enc = self.store.encode(value, what)
        if enc.blob:
            self.blobs.append(enc)
        return enc

    def _checkpoint(self, ident: tuple[str, int], attempt: int, enc: Encoded, done: threading.Event) -> None:
        inst = self.insts[ident]
        if self.inflight.get(ident) == attempt:
            if enc.blob:
                self.blobs.append(enc)
            inst.saved = enc
            self.dirty[ident] = inst
            self._event("checkpoint", inst, attempt=attempt)
        self.after_flush.append(done)
        self.must_flush = True

    # ------------------------------------------------------------------ commands
    def _poll_commands(self, force: bool = False) -> None:
        t0 = time.monotonic()
        if not force and t0 - self._last_poll < COMMAND_POLL_S:
            return
        self._last_poll = t0
        rows = self.journal.pending_commands()
        if rows:
            self.must_flush = True
        for row in rows:
            try:
                message = apply_command(self, row)
                result = "ok"
            except CommandRefused as exc:
                message, result = str(exc), "refused"
                self.cmd_codes[row["id"]] = exc.code
            except Exception as exc:  # a bug or a bad payload must not kill the run
                log.exception("command %s failed", row["id"])
                message, result = f"{type(exc).__name__}: {exc}", "refused"
            self.cmd_done.append({"b_id": row["id"], "applied_at": now(), "result": result, "message": message})
            self._event(
                "command", None, actor=row["actor"], verb=row["verb"], target=json.loads(row["target"] or "null"),
                reason=row["reason"], result=result, message=message, command_id=row["id"],
            )

    # ------------------------------------------------------------------ operator commands (applied by engine/apply.py)
    def release(self, inst: Inst, ids: Iterable[int], actor: str | None, reason: str | None) -> None:
        """Let a paused instance go on past the breakpoints *ids* (they will not catch it again)."""
        when = PauseReason.parse(inst.pause_reason).when
        inst.released |= set(ids)
        self._event("resumed", inst, actor=actor, reason=reason, when=when)
        if when == When.AFTER:
            self._succeed(inst)
        elif when == When.ERROR:
            res = inst.pending_error
            inst.pending_error = None
            self._fail_or_retry(inst, res)
        else:
            self._set(inst, S.PENDING, held_by=[], pause_reason=None)
            self._make_ready(inst)

    def hold(self, inst: Inst, ids: Sequence[int]) -> None:
        """Narrow the breakpoints that hold a paused instance to *ids* (some of them were removed)."""
        self._set(inst, inst.status, held_by=ids)  # via _set: loads its values before they are written back

    def skip(self, inst: Inst, value: Any, actor: str | None, reason: str | None) -> None:
        """Mark an instance skipped, *value* standing for its output."""
        enc = self.encode(value, f"output given to skip {inst.label}")
        inst.out, inst.value, inst.pending_error = enc, value, None
        self._set(inst, S.SKIPPED, finished_at=now(), held_by=[], pause_reason=None, next_attempt_at=None)
        self._event("skipped", inst, actor=actor, reason=reason, output=value)

    def retry(self, inst: Inst, actor: str | None, reason: str | None) -> None:
        """Run an instance again from its current inputs, past the breakpoints that held it before or
        after its body. One that held a failure (on error, or break_on_error) stays armed: if the new
        attempt fails too, it pauses again, for another look."""
        if PauseReason.parse(inst.pause_reason).when != When.ERROR:
            inst.released |= set(inst.held_by)
        if inst.released:  # a fresh attempt: the breakpoints on its failure are armed again
            on_error = {BREAK_ON_ERROR} | {bp.id for bp in self.bps if bp.when == When.ERROR}
            inst.released = frozenset(i for i in inst.released if i not in on_error)
        inst.pending_error = None
        self._event("retry_requested", inst, actor=actor, reason=reason, previous_status=str(inst.status),
                    attempt=inst.attempt)
        self._set(inst, S.PENDING, held_by=[], pause_reason=None, next_attempt_at=None, finished_at=None)
        self._make_ready(inst)

    def set_inputs(self, inst: Inst, new: Mapping[str, Any], actor: str | None, reason: str | None) -> None:
        """Override some of an instance's inputs (by parameter name), recording the old values."""
        current = self.inputs(inst)
        old = {k: current.get(k) for k in new}
        merged = {**self._overrides(inst), **new}
        enc = self.encode(merged, f"inputs of {inst.label}")
        inst.inputs, inst.overrides = enc, merged
        self.dirty[inst.ident] = inst
        self._event("inputs_changed", inst, actor=actor, reason=reason, old=old, new=new)

    def set_output(self, inst: Inst, value: Any, actor: str | None, reason: str | None) -> None:
        """Replace the output of an instance (paused after its body), recording the old one."""
        old = self._value(inst)
        enc = self.encode(value, f"output of {inst.label}")
        inst.out, inst.value = enc, value
        self.dirty[inst.ident] = inst
        self._event("output_changed", inst, actor=actor, reason=reason, old=old, new=value)

    def record(self, kind: str, actor: str | None, **data: Any) -> None:
        """Record a run-level event in the history (written by the next flush)."""
        self._event(kind, None, actor=actor, **data)

    # ------------------------------------------------------------------ run status
    def _compute_status(self) -> RunStatus:
        if self.final is not None:
            return self.final
        c = self.counts
        if self.inflight or self.unblocked or c[_READY] or c[_RUNNING] or c[_RETRYING]:
            return _RUN_RUNNING
        if c[_PAUSED] or c[_WAITING]:
            return RunStatus.PAUSED
        if c[S.FAILED] and any(i.status == S.FAILED and not self.dead_letter(i) for i in self.insts.values()):
            return RunStatus.FAILED
        if len(self.complete) == len(self.plan.order):
            return RunStatus.SUCCEEDED
        if any(i.status == S.PENDING for i in self.insts.values()) or not all(self.expanded.values()):
            # Nothing can move: an upstream failed and was not retried.
            return RunStatus.FAILED
        return RunStatus.RUNNING

    def cancel_all(self, actor: str | None, reason: str | None, final: RunStatus = RunStatus.CANCELLED) -> int:
        """Cancel every unfinished instance and end the run as *final*; returns how many were cancelled."""
        n = 0
        for inst in list(self.insts.values()):
            if not inst.status.terminal:
                self._set(inst, S.CANCELLED, finished_at=now(), held_by=[], pause_reason=None)
                self._event("cancelled", inst, actor=actor, reason=reason)
                n += 1
        for ident, attempt in self.inflight.items():
            self.executor.cancel(ident, attempt)
        self.inflight.clear()
        self.step_inflight.clear()
        self.held_back.clear()
        self.ready.clear()
        self.run_dirty = self.must_flush = True
        self.final = final
        return n

    def _finish(self, status: RunStatus) -> None:
        for inst in list(self.insts.values()):
            if not inst.status.terminal:
                self._set(inst, S.CANCELLED, finished_at=now())
                self._event("cancelled", inst)

    # ------------------------------------------------------------------ events and flush
    def _event(
        self, kind: str, inst: Inst | None, actor: str | None = None, step: str | None = None, **data: Any
    ) -> None:
        # A row in journal.EVENT_KEYS order, its data serialized now: no dict lives until the flush.
        text = _data_text(data) if data else None
        eid = self._event_id = self._event_id + 1
        if inst is not None:
            self.events.append((eid, self.run_id, inst.step, inst.key, kind, actor, text, time.time()))
        else:
            self.events.append((eid, self.run_id, step, None, kind, actor, text, time.time()))

    def _flush(self, final: bool = False) -> None:
        t0 = now()
        hb = t0 - self._last_hb >= HEARTBEAT_S
        if self._fired:
            self._retire_fired()
        if not (self.dirty or self.events or self.cmd_done or self.run_dirty or self.blobs or self.signal_rows
                or hb or final or self._hits_dirty or self._retired):
            self._release_waiters()
            return
        run_id = self.run_id
        inserts: list[tuple[Any, ...]] = []
        updates: list[tuple[Any, ...]] = []
        for inst in self.dirty.values():
            v = inst.values(run_id)
            if inst.new:
                inserts.append(v + (inst.key_enc or _NO_KEY_VALUE))
            else:
                updates.append(v[3:] + v[:3])  # journal.UPDATE_KEYS order
        run_update = self.run_dirty or hb or final or self.status in _RUN_TERMINAL
        if self.events and self.events[-1][0] >= self._event_high:
            raise StoreError(f"run {run_id} has {EVENT_ID_SPAN - 1} events, as many as one run can record")
        run = (str(self.status), self.version, t0, self.status.terminal, final) if run_update else None
        bps = None
        if self._hits_dirty or self._retired:
            bps = ([(run_id, b, self.bp_hits[b]) for b in sorted(self._hits_dirty)], list(self._retired))
        journal = self.journal
        self.committing = True  # until the status this flush commits is published (published_status)
        try:
            for tries_left in reversed(range(3)):
                try:
                    journal.write(inserts, updates, self.blobs, self.signal_rows, self.events, self.cmd_done, run,
                                  bps)
                    break
                except LostOwnership:
                    self.store.discard(self.blobs)
                    raise
                except Exception:
                    journal.close()
                    if not tries_left or not self._events_overtaken():
                        self.store.discard(self.blobs)  # nothing of this flush committed: its new files go too
                        raise
        except BaseException:
            self.committing = False
            raise
        if run is not None:
            self._last_hb = t0
        if final:
            journal.close()
        for inst in self.dirty.values():
            inst.new = False
        for done in self.cmd_done:
            self.cmd_results[done["b_id"]] = (done["result"], done["message"])
            waiter = self.cmd_waiters.pop(done["b_id"], None)
            if waiter is not None:
                self.after_flush.append(waiter)
        self.dirty.clear()
        self.events.clear()
        self.signal_rows.clear()
        self.blobs.clear()
        self.cmd_done.clear()
        if bps is not None:
            self._hits_dirty.clear()
            self._retired.clear()
        self.run_dirty = False
        self.must_flush = False
        self._last_flush = time.monotonic()
        if self.committed_status != self.status:
            self.committed_status = self.status
            self._status_changed = True
        self.committing = False
        self._release_waiters()

    def _events_overtaken(self) -> bool:
        """After a failed write: did another writer take the ids of the events being written (an old
        owner that was still running after a takeover)? Then number them after its events, to retry."""
        if not self.events:
            return False
        first = self.events[0]
        try:
            last, there = self.journal.event_at(first[0])
        except Exception:  # noqa: BLE001 - the store is unreachable: the write's own error is the one to report
            return False
        if last < first[0] or there is None or there == (first[4], first[7]):
            return False  # not taken, or taken by this very write (committed, then the connection broke)
        if last + len(self.events) >= self._event_high:
            return False
        self.events[:] = [(last + n, *row[1:]) for n, row in enumerate(self.events, 1)]
        self._event_id = last + len(self.events)
        return True

    def _release_waiters(self) -> None:
        for ev in self.after_flush:
            ev.set()
        self.after_flush.clear()
        if self._status_changed:  # run.wait() waits on the status only: wake it only when it changed
            self._status_changed = False
            with self.cond:
                self.cond.notify_all()

    def _turn(self) -> bool:
        """Timers, status, newly unblocked steps, dispatch, flush, submit. True when the run is over
        (the final flush is done). Called with the turn lock held."""
        self._fire_timers()
        if self._update_status():
            return True
        unblocked = self.unblocked
        if unblocked and (len(unblocked) > 1 or not self.expanded[unblocked[0]]):
            # A foreach expands: every instance, row and event this makes outlives the turn or dies at its
            # flush, so a collection meanwhile would only walk them (see gc_paused).
            with gc_paused():
                self._start_and_commit()
        else:
            self._start_and_commit()
        self._submit()
        if self._update_status():
            return True
        if self.must_flush or not self.inflight:
            self._flush()
        return False

    def _start_and_commit(self) -> None:
        while self.unblocked:
            self._unblock(self.unblocked.pop(0))
        self._dispatch()
        if self.starting or self.must_flush or time.monotonic() - self._last_flush >= GROUP_COMMIT_S:
            # One transaction commits the outputs that unblocked instances and those instances'
            # starts, before any of their bodies runs (a chain: one transaction per step).
            self._flush()

    def _timeout(self) -> float:
        """How long the scheduler thread may wait for a message: the command poll, the group commit, timers."""
        timeout = COMMAND_POLL_S
        if self.dirty or self.events:
            timeout = max(0.0, min(timeout, GROUP_COMMIT_S - (time.monotonic() - self._last_flush)))
        if self.timers:
            timeout = max(0.0, min(timeout, self.timers[0][0] - now()))
        return timeout

    def _update_status(self) -> bool:
        """Recompute the run status (so no flush commits a stale one); True when the loop must end."""
        status = self._compute_status()
        if status is not self.status:
            if status in _RUN_TERMINAL and self.status not in _RUN_TERMINAL:
                self._finish(status)
            self.status = status
            self.run_dirty = self.must_flush = True
            self._event("run_" + str(status), None)
        if self.stop_requested or self.status in _RUN_TERMINAL:
            self._flush(final=True)
            self._ended = True
            return True
        return False

    def _handle(self, kind: str, payload: Any) -> bool:
        if kind == "result":
            self._on_result(payload)
        elif kind == "checkpoint":
            self._checkpoint(*payload)
        elif kind == "started":
            ident, attempt, started = payload
            timeout = self.specs[ident[0]].timeout
            if self.inflight.get(ident) == attempt and timeout:
                self._arm_timer(self.insts[ident], started + timeout, "step_timeout", attempt)
        elif kind == "wake":
            return True
        elif kind == "adopt":
            self._adopt_offered(payload)
        elif kind == "stop":
            self.stop_requested = True
        return False

def _whens(bps: Iterable[Breakpoint]) -> dict[str, tuple[When, ...]]:
    """Per step, the whens its breakpoints catch at (members, compared by identity: no hashing per check)."""
    out: dict[str, tuple[When, ...]] = {}
    for bp in bps:
        out[bp.step] = (*out.get(bp.step, ()), When(bp.when))
    return out


def _condition(bp: Breakpoint, code: Any, names: dict[str, Any]) -> tuple[bool, str | None]:
    """Does an instance with *names* match the breakpoint's compiled condition *code* (or the error compiling
    it)? A condition that raises matches, with the error as the pause reason or the logpoint's error."""
    try:
        if isinstance(code, Exception):
            raise code
        return bpmod.evaluate(code, names), None
    except Exception as exc:  # noqa: BLE001 - a condition may raise anything: the breakpoint acts
        return True, f"breakpoint condition {bp.condition!r} raised {type(exc).__name__}: {exc}"


def _log_tail(code: Any, ns: dict[str, Any], failed: str | None) -> str:
    """The rest of a logpoint event's data: the expression's value in *ns* (JSON when it is JSON and reads
    back the same, else its repr), or null and the error (the condition's, or the expression's)."""
    try:
        if failed is not None:
            raise NbflowError(failed)
        if not isinstance(code, CodeType):
            raise code if isinstance(code, Exception) else NbflowError("the logpoint has no expression")
        value = bpmod.value_of(code, ns)
        text = to_json_text(value)
        return (text if text is not None else dumps(repr(value)[:2000])) + "}"
    except Exception as exc:  # noqa: BLE001 - an expression may raise anything: the instance goes on
        return f'null,"error":{dumps(f"{type(exc).__name__}: {exc}")}}}'


def _bid(bp: Breakpoint) -> int:
    """The id of a breakpoint the store holds (every breakpoint a scheduler loads or writes has one)."""
    assert bp.id is not None
    return bp.id


def _data_text(data: dict[str, Any]) -> str:
    """An event's data as JSON text; the commonest, ``{"attempt": n}``, without the encoder."""
    if len(data) == 1:
        attempt = data.get("attempt")
        if type(attempt) is int:
            return f'{{"attempt": {attempt}}}'
    return dumps(data, default=jsonable)


class StepTimeout(NbflowError, TimeoutError):
    """An attempt ran longer than its step's ``timeout``; its late result is discarded."""


def _err(res: Result | None) -> str | None:
    if res is None or res.error is None:
        return None
    return f"{res.error[0]}: {res.error[1]}"


def _traceback(res: Result | None) -> dict[str, str]:
    """A failed attempt's traceback for its event: the instance keeps only its last error, and a
    retried attempt's would otherwise be lost once a later one succeeds."""
    return {"traceback": res.error[2]} if res is not None and res.error is not None and res.error[2] else {}



__all__ = ["HOST", "TASK_ITEM", "Inst", "Scheduler", "new_owner_id"]
