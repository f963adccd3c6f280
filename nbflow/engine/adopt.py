"""Live code: a run started from a notebook adopts the workflow's redefinitions as they happen (a
cell run again). Running attempts keep the code they started with; the next attempt of a step runs
today's body, pinned as a new version and recorded as ``code_changed``. A redefinition that changes
the graph is ignored (recorded as ``code_change_ignored``). Part of the
:class:`~nbflow.engine.scheduler.Scheduler`."""
from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..definition import Plan, StepSpec
from ..definition import WorkflowDef as Workflow
from ..errors import DefinitionError
from .instances import Inst

PinCode = Callable[[Workflow, Plan], str]
"""Pins the code of a plan (its definition, sources and pickled steps) in the store; returns its version."""


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
            s: "".join(
                difflib.unified_diff(
                    old_specs[s].source.splitlines(True), plan.steps[s].source.splitlines(True),
                    f"{s} ({self.version})", f"{s} ({version})",
                )
            )
            for s in plan.order
            if old_specs[s].source != plan.steps[s].source or old_specs[s].options() != plan.steps[s].options()
        }
        self.specs = dict(plan.steps)
        self.plan = Plan(plan.steps, self.plan.order, self.plan.bindings, self.plan.upstream, self.plan.downstream)
        self._event("code_changed", None, old_version=self.version, new_version=version, diffs=diffs)
        self.version = version
        self.run_dirty = True

    def _ignore_live(self, why: str) -> None:
        for s in self.wf.steps.values():
            self._ignored_specs.add(id(s))
        self._event("code_change_ignored", None, reason=why)


__all__ = ["LiveCode", "PinCode"]
