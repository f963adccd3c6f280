"""Reading a stored run's values: each instance's output, and its inputs as the step received them
(the operator's edits over the upstream outputs, the foreach item and the run's parameters). Below
both ``Run`` (which reads every instance) and the live views (which read one instance and the steps
it reads)."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..states import TASK_ITEM, InstanceStatus, StepKind
from .store import Store

_Row = Mapping[str, Any]
_FINISHED = frozenset({InstanceStatus.SUCCEEDED.value, InstanceStatus.SKIPPED.value})


class ValueReader:
    """Resolves outputs and inputs of one stored run (one snapshot: each value decoded once).

    *by_step* holds the run's instance rows by step, in item order; without it, each step's rows are
    read from the store the first time an input needs them (only the steps an instance reads)."""

    def __init__(self, store: Store, row: _Row, by_step: dict[str, list[_Row]] | None = None) -> None:
        self.store = store
        self.row = row
        self.definition = store.definition(row["workflow"], row["version"])
        self.params = store.decode(row["params_codec"], row["params"]) or {}
        self._lazy = by_step is None
        self.by_step: dict[str, list[_Row]] = {} if by_step is None else by_step
        self._values: dict[tuple[str, int], Any] = {}
        self._step_out: dict[str, Any] = {}

    def step_rows(self, step: str) -> list[_Row]:
        """The instance rows of *step*, in item order."""
        if self._lazy and step not in self.by_step:
            self.by_step[step] = list(self.store.instance_rows(self.row["id"], step=step))
        return self.by_step.get(step, [])

    def value(self, r: _Row) -> Any:
        """The instance's output (None when it has none)."""
        ident = (r["step"], r["item"])
        if ident not in self._values:
            self._values[ident] = self.store.decode(r["output_codec"], r["output"])
        return self._values[ident]

    def step_output(self, step: str) -> Any:
        """A task's output, or a foreach's outputs as a list in item order."""
        if step not in self._step_out:
            spec = self.definition.steps[step]
            rows = self.step_rows(step)
            if spec.kind == StepKind.FOREACH:  # as the scheduler hands it on: a dead letter is left out
                self._step_out[step] = [self.value(r) for r in rows
                                        if r["item"] != TASK_ITEM and r["status"] in _FINISHED]
            else:
                self._step_out[step] = self.value(rows[0]) if rows else None
        return self._step_out[step]

    def inputs(self, r: _Row) -> dict[str, Any]:
        """The instance's inputs by parameter name; raises when a value cannot be decoded here."""
        spec = self.definition.steps[r["step"]]
        over = self.store.decode(r["inputs_codec"], r["inputs"]) or {}
        out: dict[str, Any] = {}
        for b in spec.bindings:
            if b.param in over:
                out[b.param] = over[b.param]
            elif b.source == "step":
                out[b.param] = self.step_output(b.name)
            elif b.source == "item" and r["item"] != TASK_ITEM and spec.foreach is not None:
                items = self.step_output(spec.foreach)
                out[b.param] = items[r["item"]] if r["item"] < len(items) else None
            elif b.source == "param" and b.param in self.params:
                out[b.param] = self.params[b.param]
        return out

    def shown_inputs(self, r: _Row) -> dict[str, Any]:
        """:meth:`inputs`, or ``{"<unavailable>": "Type: message"}`` when an upstream value cannot be
        decoded here (a pickled value whose class this process cannot import)."""
        try:
            return self.inputs(r)
        except Exception as exc:  # noqa: BLE001 - an upstream value that cannot be decoded here
            return {"<unavailable>": f"{type(exc).__name__}: {exc}"}


__all__ = ["ValueReader"]
