"""The operator verbs against a model (issue 15): Hypothesis drives every verb of the table
(``nbflow.verbs.VERBS``) that names instances, a gate or the run, through the Python API, and the
breakpoint verbs, at random instances of a small run in every state, and after each step compares
what the store shows with a plain model of the state machine of DESIGN.md section 3. A verb the model
refuses must raise and change nothing (sections 4 and 9)."""
from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from unchanged import snapshot

import nbflow
from nbflow import CommandRefused, DefinitionError, Workflow
from nbflow.commands import CommandResult
from nbflow.engine.lifecycle import stop_all
from nbflow.engine.owners import _live
from nbflow.verbs import VERBS, CommandState
from nbflow.verbs import Target as Names

WAIT_S = 60
BREAK_ON_ERROR = 0
"""The id that stands for the run's break_on_error flag in an instance's ``held_by``."""
STEPPED_OVER = -1
"""The id in ``held_by`` of an instance a step over paused (its one-shot breakpoint is gone once it fired)."""
UNKNOWN = "<not predicted>"
"""An output the model does not predict (an approval's decision record)."""
DONE_OK = ("succeeded", "skipped")
FINAL = ("succeeded", "skipped", "cancelled")
"""States no verb leaves (a failed instance can still be retried)."""

Target = tuple[str, int | None]
KEYS = (0, 1, 2, 3)  # a run has 3 or 4 items: key 3 is sometimes no instance at all
TARGETS: list[Target] = [("load", None), ("enrich", None), *(("enrich", k) for k in KEYS), ("gate", None),
                         ("report", None), ("nope", None)]
"""Where a verb can point: a task, a whole foreach step (``key=None``), one item, the gate, no step at all."""
STEPS = ("load", "enrich", "gate", "report")
BREAK_PLACES: list[Target] = [("enrich", None), *(("enrich", k) for k in KEYS), ("report", None)]
"""Where a breakpoint can sit at launch; the breakpoint verbs also try load (done before any verb) and no step."""
WHENS = ("before", "after", "error")
VALUES = (-50, 0, 7)
"""Outputs an operator supplies; a negative total makes ``report`` fail."""

SETTINGS = settings(
    max_examples=200, stateful_step_count=30, deadline=None, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.too_slow],
    # Shrinking a failure replays thousands of runs (minutes, past the test timeout): a failure is reported
    # with all its steps. Add Phase.shrink here to get the shortest sequence while debugging one.
    phases=[Phase.generate],
)
ITEMS = st.lists(st.sampled_from([1, 2, -1]), min_size=3, max_size=4)
"""A run's items: a negative one fails enrich."""
LAUNCH_BREAKPOINTS = st.lists(st.tuples(st.sampled_from(BREAK_PLACES), st.sampled_from(WHENS)), max_size=3)
_names = itertools.count()


# ------------------------------------------------------------------ the model
@dataclass
class Expected:
    """What the model knows of one instance."""

    status: str
    when: str | None = None  # of a paused instance
    detail: str | None = None  # of a paused instance: the step over that paused it
    held: set[int] = field(default_factory=set)
    released: set[int] = field(default_factory=set)  # breakpoints it was let go from: they never catch it again
    inputs: dict[str, Any] = field(default_factory=dict)  # operator edits (set_inputs)
    output: Any = None
    attempts: int = 0


class Refused(Exception):
    """The model refuses the verb."""


class Model:
    """A plain model of the section-3 state machine for ``load -> enrich (foreach) -> report``, with an
    approval ``gate`` that ``report`` waits for. Each verb method changes the model or raises Refused."""

    def __init__(self, items: list[int], breakpoints: dict[int, tuple[str, int | None, str]],
                 break_on_error: bool) -> None:
        self.items = items
        self.breakpoints = breakpoints
        self.break_on_error = break_on_error
        self.run_status = "running"
        self.insts: dict[Target, Expected] = {("load", None): Expected("succeeded", output=items, attempts=1)}
        for k in range(len(items)):
            self.insts[("enrich", k)] = Expected("pending")
        self.insts[("gate", None)] = Expected("waiting")
        self.insts[("report", None)] = Expected("pending")
        self.step_overs: list[str] = []  # step overs whose one-shot breakpoint waits for report, in order
        for k in range(len(items)):
            self.start(("enrich", k))
        self.settle()

    @property
    def finished(self) -> bool:
        return self.run_status in ("succeeded", "failed", "cancelled")

    # -- how an instance moves by itself
    def holding(self, at: Target, when: str) -> set[int]:
        """The breakpoints that catch the instance at *when*: matching, and not ones it was released from."""
        step, key = at
        inst = self.insts[at]
        held = {bid for bid, (s, k, w) in self.breakpoints.items()
                if s == step and w == when and (k is None or k == key) and bid not in inst.released}
        if when == "error" and self.break_on_error and BREAK_ON_ERROR not in inst.released:
            held.add(BREAK_ON_ERROR)
        return held

    def pause(self, at: Target, when: str, held: set[int], detail: str | None = None) -> None:
        inst = self.insts[at]
        inst.status, inst.when, inst.held, inst.detail = "paused", when, held, detail

    def start(self, at: Target) -> None:
        """pending -> ready: pause before the body if a breakpoint says so, else run it; the gate (a
        retried rejection) waits for a decision again."""
        held = self.holding(at, "before")
        if at[0] == "report" and self.step_overs:  # a one-shot breakpoint catches it, and goes
            held.add(STEPPED_OVER)
            detail = f"step over {self.step_overs[0]}"
            self.step_overs = []
            self.pause(at, "before", held, detail)
        elif held:
            self.pause(at, "before", held)
        elif at[0] == "gate":
            self.insts[at].status = "waiting"
        else:
            self.body(at)

    def body(self, at: Target) -> None:
        """running -> succeeded, or paused after it; a failure -> paused (error) or failed (no retries)."""
        step, key = at
        inst = self.insts[at]
        inst.attempts += 1
        inst.when, inst.held, inst.detail = None, set(), None
        if step == "enrich":
            assert key is not None
            item = inst.inputs.get("item", self.items[key])
            ok, out = item >= 0, item * 10
        else:
            total = sum(inst.inputs.get("enrich", self.outputs()))
            ok, out = total >= 0, total
        if ok:
            inst.output = out
            held = self.holding(at, "after")
            if held:
                self.pause(at, "after", held)
            else:
                inst.status = "succeeded"
            return
        held = self.holding(at, "error")
        if held:
            self.pause(at, "error", held)
        else:
            inst.status = "failed"

    def release(self, at: Target, let_go: set[int]) -> None:
        """A paused instance goes on from where it stopped; the breakpoints *let_go* never catch it again."""
        inst = self.insts[at]
        when = inst.when
        inst.released |= let_go
        inst.when, inst.held, inst.detail = None, set(), None
        if when == "before":
            self.start(at)
        elif when == "after":
            inst.status = "succeeded"
        else:
            inst.status = "failed"  # the attempt's error stands, and no retries are left

    def outputs(self) -> list[Any]:
        return [self.insts[("enrich", k)].output for k in range(len(self.items))]

    def settle(self) -> None:
        """Start ``report`` once everything it depends on is done, then derive the run status."""
        report = self.insts[("report", None)]
        upstream = [i for at, i in self.insts.items() if at[0] in ("enrich", "gate")]
        if report.status == "pending" and all(i.status in DONE_OK for i in upstream):
            self.start(("report", None))
        if self.run_status == "cancelled":
            return
        statuses = [i.status for i in self.insts.values()]
        if "paused" in statuses or "waiting" in statuses:
            self.run_status = "paused"
            return
        self.run_status = "succeeded" if all(s in DONE_OK for s in statuses) else "failed"
        for inst in self.insts.values():
            if inst.status == "pending":  # an upstream failed: it can never run
                inst.status = "cancelled"

    # -- the verbs
    def chosen(self, at: Target, verb: str, fits: Any) -> list[Target]:
        """The instances a verb acts on. One named instance must fit; a whole foreach step acts on
        those that fit, and is refused when none does."""
        if self.finished:
            raise Refused(f"the run is {self.run_status}")
        step, key = at
        if step == "enrich" and key is None:
            chosen = [a for a in self.insts if a[0] == step and fits(self.insts[a])]
            if not chosen:
                raise Refused(f"no instance of {step} fits {verb}")
            return chosen
        if at not in self.insts:
            raise Refused(f"no instance {at}")
        if not fits(self.insts[at]):
            raise Refused(f"{at} is {self.insts[at].status}")
        return [at]

    def resume(self, at: Target | None) -> None:
        """paused -> where it stopped (*at* None: every paused instance)."""
        if at is None:
            if self.finished:
                raise Refused("the run is finished")
            targets = [a for a, i in self.insts.items() if i.status == "paused"]
            if not targets:
                raise Refused("nothing is paused")
        else:
            targets = self.chosen(at, "resume", lambda i: i.status == "paused")
        for a in targets:
            self.release(a, self.insts[a].held)
        self.settle()

    def step_over(self, at: Target) -> None:
        """One paused instance goes on, as resumed; what consumes its output (report takes enrich's, nothing
        takes report's) pauses before its body when it is ready. A whole foreach is refused: it names one."""
        if at == ("enrich", None):
            raise Refused("step over names one instance")
        (target,) = self.chosen(at, "step_over", lambda i: i.status == "paused")
        if target[0] == "enrich":
            self.step_overs.append(f"enrich:{target[1]}")
        self.release(target, self.insts[target].held)
        self.settle()

    def skip(self, at: Target, output: Any) -> None:
        """paused, failed, retrying or waiting -> skipped, with the output the operator gives."""
        for a in self.chosen(at, "skip", lambda i: i.status in ("paused", "failed", "retrying", "waiting")):
            inst = self.insts[a]
            inst.status, inst.output, inst.when, inst.held, inst.detail = "skipped", output, None, set(), None
        self.settle()

    def retry(self, at: Target) -> None:
        """paused, failed or retrying -> pending -> ready, released from what held it before or after its
        body; the breakpoints on an error are armed again (a new failure pauses for another look)."""
        on_error = {BREAK_ON_ERROR} | {bid for bid, (_, _, w) in self.breakpoints.items() if w == "error"}
        for a in self.chosen(at, "retry", lambda i: i.status in ("paused", "failed", "retrying")):
            inst = self.insts[a]
            if inst.when != "error":
                inst.released |= inst.held
            inst.released -= on_error
            inst.status = "pending"
            self.start(a)
        self.settle()

    def set_inputs(self, at: Target, name: str, value: Any) -> None:
        """An edit of a paused (before, error) or failed instance's inputs; its state stays."""
        takes = {"enrich": "item", "report": "enrich"}
        if takes.get(at[0]) != name:
            raise Refused(f"{at[0]} takes no input {name}")
        for a in self.chosen(at, "set_inputs", lambda i: i.status == "failed" or (
                i.status == "paused" and i.when in ("before", "error"))):
            self.insts[a].inputs[name] = value

    def set_output(self, at: Target, value: Any) -> None:
        """An edit of the output of an instance paused after its body; its state stays."""
        for a in self.chosen(at, "set_output", lambda i: i.status == "paused" and i.when == "after"):
            self.insts[a].output = value

    def decide(self, step: str, approved: bool, payload: Any) -> None:
        """waiting (approval) -> succeeded (approve) or failed (reject)."""
        if step != "gate":
            raise Refused(f"{step} is not an approval gate")
        for a in self.chosen((step, None), "approve", lambda i: i.status == "waiting"):
            inst = self.insts[a]
            inst.status = "succeeded" if approved else "failed"
            inst.output = (UNKNOWN if payload is None else payload) if approved else None
        self.settle()

    def cancel(self) -> None:
        """Every unfinished instance -> cancelled, and the run."""
        if self.finished:
            raise Refused("the run is finished")
        for inst in self.insts.values():
            if inst.status not in ("succeeded", "skipped", "failed", "cancelled"):
                inst.status, inst.when, inst.held, inst.detail = "cancelled", None, set(), None
        self.run_status = "cancelled"

    def add_breakpoint(self, bid: int, step: str, key: int | None, when: str) -> None:
        """A new breakpoint catches only instances that reach its point later (in a finished run, none)."""
        if step not in STEPS:
            raise Refused(f"no step {step}")
        self.breakpoints[bid] = (step, key, when)

    def remove_breakpoints(self, step: str, key: int | None) -> None:
        """Every breakpoint on the step (or on the key) goes; what they alone held goes on."""
        gone = {b for b, (s, k, _) in self.breakpoints.items() if s == step and (key is None or k == key)}
        if not gone:
            raise Refused(f"no breakpoint on {step}:{key}")
        for b in gone:
            del self.breakpoints[b]
        if self.finished:
            return
        for at, inst in self.insts.items():
            if inst.status == "paused" and inst.held & gone:
                inst.held -= gone
                if not inst.held:
                    self.release(at, set())
        self.settle()


# ------------------------------------------------------------------ the run
def shop(db_url: str) -> Workflow:
    """load -> enrich (one instance per item; a negative item fails) -> report (fails on a negative
    total), and report also waits for the approval gate."""
    wf = Workflow(f"model{next(_names)}", store=db_url)

    @wf.step
    def load(items):
        return list(items)

    @wf.foreach("load")
    def enrich(item):
        if item < 0:
            raise ValueError(f"negative item {item}")
        return item * 10

    wf.approval("gate", after=["load"])

    @wf.step(after=["gate"])
    def report(enrich):
        if sum(enrich) < 0:
            raise ValueError(f"negative total {sum(enrich)}")
        return sum(enrich)

    return wf


def owner_state(run: nbflow.Run) -> dict[str, Any]:
    """What a failed expectation about the owner reports: the run's status, its scheduler, its last events
    (a verb left queued in this process means the scheduler had stopped: these say why)."""
    sched = _live.get(run.id)
    return {"status": run.store.run_row(run.id)["status"], "scheduler": None if sched is None else {
        "alive": sched.alive(), "stop_requested": sched.stop_requested, "error": repr(sched.error),
        "status": str(sched.status)}, "last_events": [(e.kind, e.step, e.key) for e in run.history()[-12:]]}


def settle(run: nbflow.Run) -> str:
    """``run.wait()``: it returns once nothing can move without an operator, and what it returns is what
    the store shows (no status read before the scheduler published a change)."""
    status = str(run.wait(timeout=WAIT_S))
    assert run.store.run_row(run.id)["status"] == status, "run.wait() and the store disagree"
    moving = [i.label for i in run.instances() if i.status in ("ready", "running", "retrying")]
    assert status == "running" or not moving, f"run.wait() returned {status} while {moving} move"
    return status


INSTANCE_VERBS = [v.name for v in VERBS.values() if v.target in (Names.INSTANCES, Names.STEP, Names.RUN)]
"""The verbs of the table that name instances (a step's, one item, a gate, the run's): each rule draws from them."""


@dataclass(frozen=True)
class Args:
    """What one drawn verb is given: a target (None: no step at all, for resume), and values for payloads."""

    at: Target | None
    value: int
    item: int
    total: list[int]
    payload: Any


def _on(a: Args) -> Target:
    """The target of a verb that needs a step (no step at all: one that does not exist)."""
    return a.at or ("nope", None)


def _inputs(a: Args) -> tuple[str, Any]:
    return ("enrich", a.total) if _on(a)[0] == "report" else ("item", a.item)


def _set_inputs(run: nbflow.Run, a: Args) -> Any:
    name, value = _inputs(a)
    return run.set_inputs(_on(a)[0], key=_on(a)[1], **{name: value})


def _expect_set_inputs(m: Model, a: Args) -> None:
    m.set_inputs(_on(a), *_inputs(a))


CALLS: dict[str, tuple[Any, Any]] = {
    # verb: (what the Python API does, what the model expects)
    "resume": (lambda run, a: run.resume() if a.at is None else run.resume(a.at[0], key=a.at[1]),
               lambda m, a: m.resume(a.at)),
    "approve": (lambda run, a: run.approve(_on(a)[0], payload=a.payload),
                lambda m, a: m.decide(_on(a)[0], True, a.payload)),
    "reject": (lambda run, a: run.reject(_on(a)[0], comment="no"), lambda m, a: m.decide(_on(a)[0], False, None)),
    "step_over": (lambda run, a: run.step_over(_on(a)[0], key=_on(a)[1]), lambda m, a: m.step_over(_on(a))),
    "retry": (lambda run, a: run.retry(_on(a)[0], key=_on(a)[1]), lambda m, a: m.retry(_on(a))),
    "skip": (lambda run, a: run.skip(_on(a)[0], key=_on(a)[1], output=a.value), lambda m, a: m.skip(_on(a), a.value)),
    "set_inputs": (_set_inputs, _expect_set_inputs),
    "set_output": (lambda run, a: run.set_output(_on(a)[0], key=_on(a)[1], value=a.value),
                   lambda m, a: m.set_output(_on(a), a.value)),
    "cancel": (lambda run, a: run.cancel(), lambda m, a: m.cancel()),
}
"""Every instance verb of the table, as Python calls it and as the model expects it (a verb added to the
table fails this test until it is here)."""

ARGS = st.builds(
    Args, at=st.sampled_from([*TARGETS, None]), value=st.sampled_from(VALUES), item=st.sampled_from([-2, 4]),
    total=st.sampled_from([[1, 2], [-5]]), payload=st.sampled_from([None, {"go": True}]),
)


def test_the_model_knows_every_instance_verb_of_the_table() -> None:
    assert set(CALLS) == set(INSTANCE_VERBS)


class VerbsAgainstTheModel(RuleBasedStateMachine):
    """Each rule is one operator verb; the model decides whether the owner accepts it and what follows."""

    def __init__(self, db_url: str) -> None:
        super().__init__()
        self.db_url = db_url
        self.seen: dict[Target, tuple[str, Any]] = {}

    @initialize(items=ITEMS, breakpoints=LAUNCH_BREAKPOINTS, break_on_error=st.booleans())
    def start_run(self, items: list[int], breakpoints: list[tuple[Target, str]], break_on_error: bool) -> None:
        """A run with workflow breakpoints set before it starts: its items land paused before, after or
        on an error, failed or succeeded, and the gate waits."""
        self.wf = shop(self.db_url)
        placed = {}
        for (step, key), when in breakpoints:
            placed[self.wf.breakpoints.add(step, key=key, when=when).id] = (step, key, when)
        self.model = Model(items, placed, break_on_error)
        self.run = self.wf.run(params={"items": items}, break_on_error=break_on_error)
        self.seen = {}
        self.check()

    @precondition(lambda self: self.model.finished)
    @rule(items=ITEMS, breakpoints=LAUNCH_BREAKPOINTS, break_on_error=st.booleans())
    def start_another_run(self, items: list[int], breakpoints: list[tuple[Target, str]], break_on_error: bool) -> None:
        """Once a run is finished, the next steps drive a new one (of a new workflow: its own breakpoints)."""
        self.start_run(items, breakpoints, break_on_error)

    def teardown(self) -> None:
        """Stop this example's schedulers, so the next one starts with none."""
        stop_all(timeout=10)

    # -- driving one verb
    def verb(self, act: Any, expect: Any, name: str | None = None) -> None:
        """Apply *act* to the run and *expect* to a copy of the model (with what *act* returned, None when
        refused); they must agree on accepting it. For a verb of the table (*name*), an accepted command
        is applied at once (the owner is in this process) and a refused one has a code the table lists."""
        model = copy.deepcopy(self.model)
        before = snapshot(self.run)
        code = None
        try:
            result = act()
            applied = True
        except CommandRefused as exc:
            result, applied, code = None, False, exc.code
        except DefinitionError:
            result, applied = None, False
        if name is not None and not applied:
            assert code in VERBS[name].refusals, (name, code)
        if name is not None and applied:
            done = isinstance(result, CommandResult) and (result.state, result.applied) == (CommandState.APPLIED, True)
            assert done, (result, owner_state(self.run))
        try:
            expect(model, result)
            accepted = True
        except Refused:
            accepted = False
        assert applied == accepted, "the owner accepted what the model refuses" if applied else (
            "the owner refused what the model accepts")
        if accepted:
            self.model = model
        settle(self.run)
        if not accepted:
            assert snapshot(self.run) == before, "a refused verb changed the run"
        self.check()

    def check(self) -> None:
        """The store shows what the model expects: statuses, pauses and what holds them, outputs, attempts."""
        assert settle(self.run) == self.model.run_status
        shown = {(i.step, i.key): i for i in self.run.instances()}
        assert set(shown) == set(self.model.insts)
        for at, want in self.model.insts.items():
            got = shown[at]
            assert (at, got.status) == (at, want.status)
            if want.status == "paused":
                reason = want.when if want.detail is None else f"{want.when}: {want.detail}"
                assert (at, got.pause_reason, set(got.held_by)) == (at, reason, want.held)
            shows_output = want.status in DONE_OK or (want.status == "paused" and want.when == "after")
            if shows_output and want.output != UNKNOWN:
                assert (at, got.output) == (at, want.output)
            if at[0] == "enrich":
                assert (at, got.inputs) == (at, {"item": want.inputs.get("item", self.model.items[at[1]])})
            assert (at, got.attempts) == (at, want.attempts)
        assert {b.id: (b.step, None if b.key is None else int(b.key), str(b.when))
                for b in self.wf.breakpoints.list()} == self.model.breakpoints

    @invariant()
    def finished_instances_stay_finished(self) -> None:
        """Succeeded, skipped and cancelled are final: no verb moves an instance out of them or changes its output."""
        now = {(i.step, i.key): (str(i.status), i.output) for i in self.run.instances()}
        for at, (status, output) in self.seen.items():
            if status in FINAL:
                assert now[at] == (status, output)
        self.seen = now

    # -- the rules: the table's instance verbs, on a run that is not finished, then on a finished one
    def operator_verb(self, name: str, args: Args) -> None:
        act, expect = CALLS[name]
        self.verb(lambda: act(self.run, args), lambda m, _: expect(m, args), name)

    @precondition(lambda self: not self.model.finished)
    @rule(name=st.sampled_from(INSTANCE_VERBS), args=ARGS)
    def verb_on_a_run(self, name: str, args: Args) -> None:
        """One verb of the table at a random target: a task, a whole foreach step, one item (maybe none),
        the gate, a step that does not exist, or (resume) none; the model says what the owner does."""
        self.operator_verb(name, args)

    @precondition(lambda self: self.model.finished)
    @rule(name=st.sampled_from(INSTANCE_VERBS), args=ARGS)
    def verb_on_a_finished_run(self, name: str, args: Args) -> None:
        """A finished run refuses every verb, at any instance, and stays as it is."""
        self.operator_verb(name, args)

    # -- workflow breakpoints: on a finished run too (they are the workflow's)
    @rule(place=st.sampled_from([*BREAK_PLACES, ("load", None), ("nope", None)]), when=st.sampled_from(WHENS))
    def add_breakpoint(self, place: Target, when: str) -> None:
        """wf.breakpoints.add: catches instances that reach its point from now on (load, done, never)."""
        self.verb(lambda: self.wf.breakpoints.add(place[0], key=place[1], when=when),
                  lambda m, bp: m.add_breakpoint(bp and bp.id, place[0], place[1], when))

    @rule(place=st.sampled_from([*BREAK_PLACES, ("load", None), ("nope", None)]))
    def remove_breakpoints(self, place: Target) -> None:
        """wf.breakpoints.remove: the step's (or the key's) breakpoints go; an instance they alone held
        goes on as if resumed; removing none is refused."""
        self.verb(lambda: self.wf.breakpoints.remove(place[0], key=place[1]),
                  lambda m, _: m.remove_breakpoints(*place))


def test_every_verb_does_what_the_state_machine_says_and_a_refused_one_changes_nothing(db_url: str) -> None:
    run_state_machine_as_test(lambda: VerbsAgainstTheModel(db_url), settings=SETTINGS)


