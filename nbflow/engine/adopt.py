"""Live code: a run started from a notebook adopts the workflow's redefinitions as they happen (a
cell run again, ``@wf.step`` again). The workflow tells its live schedulers at once
(:meth:`LiveCode.offer_code`, in the scheduler's turn), so the ``code_changed`` event (with the
unified diff) is in the history while the run is still paused; a run also checks before it starts
an attempt. Running attempts keep the code they started with; the next attempt of a step runs
today's body, pinned as a new version. A redefinition that changes the graph is ignored (recorded
as ``code_change_ignored``). Part of the :class:`~nbflow.engine.scheduler.Scheduler`."""
from __future__ import annotations

import difflib
import queue
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ..definition import Plan, StepSpec
from ..definition import WorkflowDef as Workflow
from ..errors import DefinitionError
from .instances import Inst

PinCode = Callable[[Workflow, Plan], str]
"""Pins the code of a plan (its definition, sources and pickled steps) in the store; returns its version."""

ADOPT_WAIT_S = 5.0
"""How long a redefinition waits for a live run to record its adoption (a busy store may delay it)."""


def step_diff(step: str, old: str, new: str, old_version: str, new_version: str) -> str:
    """The unified diff of one step's source between two versions (file names ``step (version)``)."""
    return "".join(difflib.unified_diff(
        old.splitlines(True), new.splitlines(True), f"{step} ({old_version})", f"{step} ({new_version})",
    ))


def code_changed_data(old_version: str, new_version: str, diffs: Mapping[str, str]) -> dict[str, Any]:
    """The data of a ``code_changed`` event: the versions, each changed step's diff (``diffs``), the
    changed steps in order (``steps``) and every diff as one text (``diff``, what a person reads)."""
    return {"old_version": old_version, "new_version": new_version, "diffs": dict(diffs),
            "steps": list(diffs), "diff": "".join(d if not d or d.endswith("\n") else d + "\n" for d in diffs.values())}


class LiveCode:
    """The scheduler's adoption of redefined code (a mixin of :class:`Scheduler`)."""

    wf: Workflow
    plan: Plan
    specs: dict[str, StepSpec]
    version: str
    live_code: bool  # True: adopt the workflow's redefinitions as they happen
    run_dirty: bool
    _pin_code: PinCode
    _ignored_specs: set[int]  # ids of redefined steps whose adoption was refused
    q: queue.SimpleQueue[tuple[str, Any]]  # the scheduler's messages (lease.py)
    after_flush: list[threading.Event]  # set once the next flush committed
    must_flush: bool

    if TYPE_CHECKING:  # the state machine's, in scheduler.py
        def _event(self, kind: str, inst: Inst | None, actor: str | None = None, step: str | None = None,
                   **data: Any) -> None: ...

    def code(self, step: str) -> StepSpec:
        """Today's definition of *step* when running live code, recording a code change once."""
        if self.live_code:
            live = self.wf.steps.get(step)
            if live is not None and live is not self.specs[step] and id(live) not in self._ignored_specs:
                self._adopt_code()
        return self.specs[step]

    def offer_code(self) -> threading.Event:
        """The workflow redefined a step: adopt it in the scheduler's next turn (not only when an
        attempt starts). The event is set once that turn's flush committed what it recorded."""
        done = threading.Event()
        self.q.put(("adopt", done))
        return done

    def _adopt_offered(self, done: threading.Event) -> None:
        """In the scheduler's turn: adopt a redefinition the workflow offered, if there is one."""
        if self.live_code and any(
            self.wf.steps.get(s) is not spec and id(self.wf.steps.get(s)) not in self._ignored_specs
            for s, spec in self.specs.items()
        ):
            self._adopt_code()
        self.after_flush.append(done)
        self.must_flush = True

    def _adopt_code(self) -> None:
        """The workflow was redefined under a live run: take the new bodies, keep the run's graph."""
        try:
            plan = self.wf.plan()
        except DefinitionError as exc:
            self._ignore_live(f"the new definition is invalid: {exc}")
            return
        if set(plan.order) != set(self.plan.order) or any(
            plan.bindings[st] != self.plan.bindings[st] or plan.upstream[st] != self.plan.upstream[st]
            for st in self.plan.order
        ):
            self._ignore_live("its steps or dependencies changed; fork the run to use the new graph")
            return
        old_specs = self.specs
        version = self._pin_code(self.wf, plan)
        if version == self.version:  # the cell was run again unchanged: nothing to record
            self.specs = dict(plan.steps)
            self.plan = Plan(plan.steps, self.plan.order, self.plan.bindings, self.plan.upstream, self.plan.downstream)
            return
        diffs = {
            s: step_diff(s, old_specs[s].source, plan.steps[s].source, self.version, version)
            for s in plan.order
            if old_specs[s].source != plan.steps[s].source or old_specs[s].options() != plan.steps[s].options()
        }
        self.specs = dict(plan.steps)
        self.plan = Plan(plan.steps, self.plan.order, self.plan.bindings, self.plan.upstream, self.plan.downstream)
        self._event("code_changed", None, **code_changed_data(self.version, version, diffs))
        self.version = version
        self.run_dirty = True

    def _ignore_live(self, why: str) -> None:
        for s in self.wf.steps.values():
            self._ignored_specs.add(id(s))
        self._event("code_change_ignored", None, reason=why)


__all__ = ["ADOPT_WAIT_S", "LiveCode", "PinCode", "code_changed_data", "step_diff"]
