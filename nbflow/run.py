"""``Run``: a handle on one run, live in this process or stored by another. It reads the store;
its operator verbs write commands (``nbflow.commands``) that the run's owner applies."""
from __future__ import annotations

import inspect
import json
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import views
from ._util import DISPLAY
from .breakpoints import Breakpoint, key_text, key_value
from .commands import CommandResult, submit
from .definition import StoredStep, WorkflowDef
from .engine.lifecycle import fork_pinned as fork_pinned_run
from .engine.lifecycle import fork_run, live, owner_alive, stopped_error, take_over_pinned
from .errors import NbflowError
from .states import TASK_ITEM, InstanceStatus, RunStatus, StepKind, label, status_filter
from .store import Store
from .store.reader import ValueReader
from .timetravel import RunAt

if TYPE_CHECKING:
    import pandas as pd

Display = Callable[["Run", Any, Any], "tuple[dict[str, Any], dict[str, Any]]"]
"""How a run shows itself in a notebook: ``(run, include, exclude) -> (data, metadata)``."""
_display: list[Display] = DISPLAY  # the one installed (a list: set without a global statement)


def use_display(display: Display) -> None:
    """Install the rich display of runs. The package wires in the notebook widget's, so this front
    door stays below the surfaces (the widget imports ``Run``, not the other way round)."""
    _display[:] = [display]


@dataclass
class ErrorInfo:
    type: str
    message: str
    traceback: str

    def __str__(self) -> str:
        return f"{self.type}: {self.message}"


@dataclass
class InstanceView:
    """One step instance as stored: a snapshot, not live. ``key`` is what the key function returned (the
    index without one), with its type; ``key_text`` is its text, what addresses use (``"enrich:17"``)."""

    step: str
    item: int | None
    key: Any
    status: InstanceStatus
    attempts: int
    inputs: dict[str, Any]
    output: Any
    error: ErrorInfo | None
    pause_reason: str | None
    logs: str
    saved: Any = None
    held_by: list[int] = field(default_factory=list)
    started_at: float | None = None
    finished_at: float | None = None
    next_attempt_at: float | None = None
    token: str | None = None  # the correlation token of a waiting instance (signals)
    deadline: float | None = None
    key_text: str | None = None

    @property
    def attempt(self) -> int:
        return self.attempts

    @property
    def label(self) -> str:
        return label(self.step, self.key_text)


@dataclass
class ErrorGroup:
    """Failed, error-paused and retrying instances of one step whose errors share a cause: the same
    exception type, message once values are masked, and failing line (``signature``). ``n`` numbers
    the step's groups from 1, largest first; ``id`` is stable (both are what ``--group`` takes)."""

    n: int
    id: str
    step: str
    type: str
    message: str  # the first example's, as raised
    signature: str
    line: str
    count: int
    statuses: dict[str, int]
    first_key: Any
    traceback: str
    keys: list[Any]  # every key of the group, as the key function returned them

    def __repr__(self) -> str:
        return f"<ErrorGroup {self.n} of {self.step}: {self.count} x {self.signature}>"

    def __iter__(self) -> Iterator[Any]:
        """Its keys: a group is a selection (``run.retry("parse", keys=group)``)."""
        return iter(self.keys)

    def __len__(self) -> int:
        return len(self.keys)


@dataclass
class Event:
    """One entry of the run's history; ``key`` is the instance's key with its type, ``key_text`` its text."""

    id: int
    ts: float
    kind: str
    step: str | None
    key: Any
    actor: str | None
    data: dict[str, Any]
    key_text: str | None = None


class _Reader(ValueReader):
    """A :class:`~nbflow.store.reader.ValueReader` over every instance of the run (``rows``, in
    (step, item) order), that shows them as :class:`InstanceView`."""

    def __init__(self, store: Store, row: Mapping[str, Any]) -> None:
        self.rows = store.instance_rows(row["id"])
        by_step: dict[str, list[Mapping[str, Any]]] = {}
        for r in self.rows:
            by_step.setdefault(r["step"], []).append(r)
        super().__init__(store, row, by_step)

    def view(self, r: Mapping[str, Any]) -> InstanceView:
        return _instance_view(self, r)


def _instance_view(reader: ValueReader, r: Mapping[str, Any]) -> InstanceView:
    """An instance row as an :class:`InstanceView`, its values read by *reader* (``run.at`` shows rows of the
    past with it)."""
    return InstanceView(
        step=r["step"],
        item=None if r["item"] == TASK_ITEM else r["item"],
        key=key_value(r["key"], r["key_codec"], r["key_value"]),
        status=InstanceStatus(r["status"]),
        attempts=r["attempt"],
        inputs=reader.shown_inputs(r),
        output=reader.value(r),
        error=(ErrorInfo(r["error_type"], r["error_message"] or "", r["error_traceback"] or "")
               if r["error_type"] else None),
        pause_reason=r["pause_reason"],
        logs=r["logs"] or "",
        saved=reader.store.decode(r["saved_codec"], r["saved"]),
        held_by=json.loads(r["held_by"]) if r["held_by"] else [],
        started_at=r["started_at"],
        finished_at=r["finished_at"],
        next_attempt_at=r["next_attempt_at"],
        token=r["token"],
        deadline=r["deadline"],
        key_text=r["key"],
    )


class Run:
    """A handle on a run. ``run.status`` and the views read the store; verbs go through commands.
    *workflow* is the definition the run is driven with here (today's code, or its pinned code), which
    ``fork`` runs; None for a handle that only reads the run and sends verbs to its owner."""

    def __init__(self, store: Store, run_id: str, workflow: WorkflowDef | None = None) -> None:
        self.store = store
        self.id = run_id
        self._wf = workflow
        self._row_cache = store.run_row(run_id)
        self.workflow_name: str = self._row_cache["workflow"]

    def __repr__(self) -> str:
        return f"<nbflow.Run {self.id} of {self.workflow_name!r}: {self.status}>"

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> tuple[dict[str, Any], dict[str, Any]]:
        """The rich display: the live widget in a kernel, plus a static SVG/summary and text (what
        :func:`use_display` installed; ``import nbflow`` installs the notebook's)."""
        if not _display:
            return {"text/plain": repr(self)}, {}
        return _display[0](self, include, exclude)

    # -- state ---------------------------------------------------------------------------------
    def _row(self) -> Mapping[str, Any]:
        self._row_cache = self.store.run_row(self.id)
        return self._row_cache

    @property
    def status(self) -> RunStatus:
        sched = live(self.id)
        if sched is not None:
            return sched.published_status()
        return RunStatus(self._row()["status"])

    @property
    def interrupted(self) -> bool:
        """True when the run is not finished and no live process drives it."""
        row = self._row()
        return not RunStatus(row["status"]).terminal and not owner_alive(row)

    @property
    def params(self) -> dict[str, Any]:
        row = self._row_cache
        return self.store.decode(row["params_codec"], row["params"]) or {}

    @property
    def version(self) -> str:
        return str(self._row()["version"])

    def wait(self, timeout: float | None = None) -> RunStatus:
        """Block until the run is finished or paused (nothing can move without a person); return its status."""
        deadline = None if timeout is None else time.monotonic() + timeout
        sched = live(self.id)
        if sched is not None:
            sched.settle(deadline)
            if sched.error is not None and not sched.published_status().terminal:
                raise _stopped(self.id, sched.error)
            return self.status
        while True:
            row = self._row()
            status = RunStatus(row["status"])
            if status != RunStatus.RUNNING or self.interrupted:
                # Its scheduler here stopped on an error (maybe before this wait began) and handed the
                # run back; nobody has taken it over since.
                error = stopped_error(self.id)
                if error is not None and status == RunStatus.RUNNING and row["owner_id"] is None:
                    raise _stopped(self.id, error)
                return status
            if deadline is not None and time.monotonic() >= deadline:
                return status
            time.sleep(0.1)

    # -- reading -------------------------------------------------------------------------------
    def instances(self, step: str | None = None, status: str | Iterable[str] | None = None) -> list[InstanceView]:
        reader = _Reader(self.store, self._row())
        if step is not None and step not in reader.definition.steps:
            raise NbflowError(reader.definition.no_step(self.id, step))
        names = status_filter(status, InstanceStatus)
        wanted = None if names is None else set(names)
        order = {s: n for n, s in enumerate(reader.definition.order)}
        rows = sorted(reader.rows, key=lambda r: (order.get(r["step"], 0), r["item"]))
        return [
            reader.view(r) for r in rows
            if (step is None or r["step"] == step) and (wanted is None or r["status"] in wanted)
        ]

    def instance(self, step: str, key: Any = None) -> InstanceView:
        """The instance of *step* whose key has the text of *key* (``key=17`` and ``key="17"`` both address it)."""
        reader = _Reader(self.store, self._row())
        if step not in reader.definition.steps:
            raise NbflowError(reader.definition.no_step(self.id, step))
        k = key_text(key)
        for r in reader.by_step.get(step, []):
            if r["key"] == k:
                return reader.view(r)
        raise NbflowError(f"step {step!r} of run {self.id} has no instance with key {k}")

    def output(self, step: str) -> Any:
        """A task's output, or a foreach's outputs as a list in item order; refuses until it exists."""
        reader = _Reader(self.store, self._row())
        if step not in reader.definition.steps:
            raise NbflowError(reader.definition.no_step(self.id, step))
        rows = reader.by_step.get(step, [])
        not_done = [r for r in rows if not InstanceStatus(r["status"]).done_ok]
        if not rows and reader.definition.steps[step].kind == StepKind.FOREACH and any(
            e["kind"] == "expanded" and e["step"] == step for e in self.store.event_rows(self.id)
        ):
            return []  # a foreach over an empty list: expanded, no instances, output []
        if not rows or not_done:
            state = ", ".join(sorted({r["status"] for r in not_done})) or "not started"
            raise NbflowError(f"step {step!r} of run {self.id} has no output yet ({state})")
        return reader.step_output(step)

    def frame(self, step: str | None = None, *, values: str = "ref") -> pd.DataFrame:
        """The run as a pandas DataFrame, one row per instance of *step* (of every step, with a ``step``
        column, when None): key, status, attempts, times, error, output and one column per input. Values
        stored as files stay :class:`nbflow.ValueRef` unless ``values="load"``. Reads the store only."""
        from . import frames  # pandas' side of a run: imported for its first frame

        return frames.frame(self.store, self.id, step, values=values)

    def diff(self, other: Run | str) -> dict[str, list[dict[str, Any]]]:
        """What differs between this run's outputs (``before``) and *other*'s (``after``), instance by
        instance: ``{"changed": [...], "added": [...], "removed": [...]}``, each ``{"step", "key",
        "before", "after"}``. Both runs must be of this workflow. Reads the store only."""
        from . import diffs

        if isinstance(other, Run):
            return diffs.diff(self.store, self.id, other.id, other.store)
        return diffs.diff(self.store, self.id, other)

    def history(self) -> list[Event]:
        rows = self.store.event_rows(self.id)
        stored: Mapping[tuple[Any, Any], tuple[str, bytes]] = (
            self.store.key_values(self.id) if any(r["key"] is not None for r in rows) else {}
        )
        typed: dict[tuple[Any, Any], Any] = {}  # each key decoded once

        def key_of(r: Mapping[str, Any]) -> Any:
            where = (r["step"], r["key"])
            if where not in stored:
                return r["key"]
            if where not in typed:
                typed[where] = key_value(r["key"], *stored[where])
            return typed[where]

        return [
            Event(r["id"], r["ts"], r["kind"], r["step"], key_of(r), r["actor"],
                  json.loads(r["data"]) if r["data"] else {}, r["key"])
            for r in rows
        ]

    def at(self, event: int | Event) -> RunAt:
        """A read-only view of the run as it was right after *event*: an event id (``run.history()[i].id``),
        its 1-based position in the history, or an :class:`Event`. An unknown one is refused, naming the
        range. See :class:`nbflow.timetravel.RunAt`."""
        return RunAt(self.store, self.id, event, _instance_view, _event_of)

    def breakpoints(self) -> list[Breakpoint]:
        """Breakpoints that apply to this run: the workflow's and its own."""
        return [Breakpoint.from_row(r) for r in self.store.breakpoint_rows(self.workflow_name, self.id)]

    # -- operator verbs ------------------------------------------------------------------------
    def _command(
        self, verb: str, step: str | None = None, key: Any = None, keys: Iterable[Any] | None = None,
        payload: Mapping[str, Any] | None = None, reason: str | None = None,
    ) -> CommandResult:
        if key is not None and keys is not None:
            raise NbflowError("pass key= or keys=, not both")
        key_list = [key] if key is not None else (list(keys) if keys is not None else None)
        return submit(self.store, self.id, verb, step, key_list, payload, reason)

    def resume(self, step: str | None = None, key: Any = None, *, keys: Iterable[Any] | None = None,
               reason: str | None = None) -> CommandResult:
        """Resume paused instances: all of them, a step's, or chosen keys."""
        return self._command("resume", step, key, keys, reason=reason)

    def step_over(self, step: str, key: Any = None, *, reason: str | None = None) -> CommandResult:
        """Resume one paused instance and pause, before their body, the instances that consume its output
        when they become ready (a foreach item's: the matching item of a foreach over it). A one-shot,
        run-scoped breakpoint per consuming step, removed once it fired; the answer names them."""
        return self._command("step_over", step, key, reason=reason)

    def skip(self, step: str, key: Any = None, *, output: Any = None, keys: Iterable[Any] | None = None,
             reason: str | None = None) -> CommandResult:
        return self._command("skip", step, key, keys, {"output": output}, reason)

    def retry(self, step: str, key: Any = None, *, keys: Iterable[Any] | None = None,
              reason: str | None = None) -> CommandResult:
        return self._command("retry", step, key, keys, reason=reason)

    def set_inputs(self, step: str, key: Any = None, *, reason: str | None = None,
                   keys: Iterable[Any] | None = None, fn: Callable[..., Any] | None = None, into: str | None = None,
                   **inputs: Any) -> CommandResult:
        """Change inputs of paused or failed instances, by name (``item={...}``), the same for each; or
        with *fn*, a value of its own for each: *fn* is called per instance with the instance's inputs it
        names as parameters (as a step is) and returns the new value of input *into* (``"item"`` by default on
        a foreach step). One command either way; the history records each instance's old and new values::

            g = run.error_groups("parse")[0]
            run.set_inputs("parse", keys=g.keys, fn=lambda item: {**item, "amount": item["amount"].replace(",", ".")})
            run.retry("parse", keys=g.keys)
        """
        if fn is None:
            if into is not None:
                raise NbflowError("into= names the input fn= computes; pass fn= too, or the inputs by name")
            return self._command("set_inputs", step, key, keys, {"inputs": inputs}, reason)
        if inputs:
            raise NbflowError(f"pass fn= or inputs by name ({', '.join(inputs)}), not both")
        if key is not None and keys is not None:
            raise NbflowError("pass key= or keys=, not both")
        name = into or self._default_input(step)
        task = self._spec(step).kind != StepKind.FOREACH
        if task and (key is not None or keys is not None):
            raise NbflowError(f"step {step!r} has a single instance; name it without a key: "
                              f"set_inputs({step!r}, fn=...)")
        if task or key is not None or keys is not None:
            texts = [None] if task else [key_text(k) for k in ([key] if key is not None else list(keys or ()))]
        else:  # every instance whose state takes an edit, as set_inputs by name does
            texts = views.accepting_keys(self.store, self.id, step, "set_inputs")
            if not texts:
                raise NbflowError(f"nothing to set_inputs: no instance of {step!r} is paused before its body, "
                                  "paused on an error, or failed")
        found = views.edits(self.store, self.id, step, texts, name, _by_names(fn))
        failed = [e for e in found if e.error is not None]
        if failed:
            raise NbflowError(f"fn failed for {len(failed)} of {len(found)} instances, nothing was changed; first: "
                              f"{label(step, failed[0].key)}: {failed[0].error}")
        if task:
            return self._command("set_inputs", step, None, None, {"inputs": {name: found[0].new}}, reason)
        payload = {"inputs": {e.key: {name: e.new} for e in found}, "by_key": True}
        return self._command("set_inputs", step, None, texts, payload, reason)

    def _spec(self, step: str) -> StoredStep:
        definition = self.store.definition(self.workflow_name, self.version)
        spec = definition.steps.get(step)
        if spec is None:
            raise NbflowError(definition.no_step(self.id, step))
        return spec

    def _default_input(self, step: str) -> str:
        spec = self._spec(step)
        if spec.kind == StepKind.FOREACH and "item" in spec.inputs:
            return "item"
        raise NbflowError(f"name the input fn computes: set_inputs({step!r}, ..., fn=..., into=NAME); "
                          f"its inputs are: {', '.join(spec.inputs) or 'none'}")

    def error_groups(self, step: str | None = None) -> list[ErrorGroup]:
        """The errors of a step (or of every step) grouped by cause, the largest group first: see
        :class:`ErrorGroup`. Grouping and counting happen in the store."""
        definition = self.store.definition(self.workflow_name, self.version)
        steps = list(definition.order) if step is None else [step]
        typed = _KeyTypes(self.store, self.id)
        out = []
        for s in steps:
            for g in views.error_groups(self.store, self.id, s, limit=None, keys=None)["groups"]:
                keys = g["keys"]
                out.append(ErrorGroup(
                    n=g["n"], id=g["id"], step=s, type=g["type"], message=g["message"], signature=g["signature"],
                    line=g["line"], count=g["count"], statuses=g["statuses"],
                    first_key=typed(s, keys[0] if keys else None), traceback=g["traceback"],
                    keys=[typed(s, k) for k in keys],
                ))
        return out

    def keys(self, step: str, *, status: str | Iterable[str] | None = None, text: str | None = None,
             group: int | str | None = None) -> list[Any]:
        """The keys of *step*'s instances that a filter matches, in item order: a *status* (or
        ``"problems"``: paused, failed, waiting or retrying), a *text* found in the key, error or pause
        reason, an error *group* (its number or id). What "all matching the filter" acts on."""
        texts = views.filter_keys(self.store, self.id, step, status=status, text=text,
                                  group=None if group is None else str(group))
        typed = _KeyTypes(self.store, self.id)
        return [typed(step, k) for k in texts]

    def set_output(self, step: str, key: Any = None, value: Any = None, *, reason: str | None = None,
                   keys: Iterable[Any] | None = None) -> CommandResult:
        return self._command("set_output", step, key, keys, {"value": value}, reason)

    def approve(self, step: str, *, comment: str | None = None, payload: Any = None,
                reason: str | None = None) -> CommandResult:
        """Approve a waiting gate; *payload* (if given) becomes its output."""
        return self._command("approve", step, payload={"comment": comment, "payload": payload}, reason=reason)

    def reject(self, step: str, *, comment: str | None = None, reason: str | None = None) -> CommandResult:
        """Reject a waiting gate: it fails, and what depends on it is cancelled."""
        return self._command("reject", step, payload={"comment": comment}, reason=reason)

    def dead_letters(self, step: str | None = None) -> list[InstanceView]:
        """Items of foreach steps with on_item_error='continue' that exhausted their retries."""
        reader = _Reader(self.store, self._row())
        if step is not None and step not in reader.definition.steps:
            raise NbflowError(reader.definition.no_step(self.id, step))
        continuing = {s for s, d in reader.definition.steps.items()
                      if d.continues_on_item_error and (step is None or s == step)}
        return [reader.view(r) for r in reader.rows
                if r["step"] in continuing and r["status"] == InstanceStatus.FAILED and r["item"] != TASK_ITEM]

    def cancel(self, reason: str | None = None) -> CommandResult:
        return self._command("cancel", reason=reason)

    def fork(self, from_step: str, keys: Iterable[Any] | None = None) -> Run:
        """A new run with today's code that reuses every checkpoint not downstream of *from_step*; with
        *keys*, every checkpoint but those items of *from_step* (a foreach), the items made from them
        in each foreach over it, and what needs their whole list (``engine.forks``)."""
        if self._wf is None:
            raise NbflowError("fork needs the workflow's code: use wf.attach(run_id).fork(...) from a Workflow, "
                              "or `nbflow fork` with the code the run was pinned to")
        chosen = None if keys is None else list(keys)
        return Run(self.store, fork_run(self._wf, self.store, self.id, from_step, chosen), self._wf)


def _event_of(r: Mapping[str, Any], key: Any) -> Event:
    """An event row as an :class:`Event`, *key* its instance's key as the key function returned it."""
    return Event(r["id"], r["ts"], r["kind"], r["step"], key, r["actor"], json.loads(r["data"]) if r["data"] else {},
                 r["key"])


class _KeyTypes:
    """Key texts back to the keys the key function returned (an int stays an int)."""

    def __init__(self, store: Store, run_id: str) -> None:
        self._values = store.key_values(run_id)

    def __call__(self, step: str, text: str | None) -> Any:
        enc = self._values.get((step, text)) if text is not None else None
        return text if enc is None else key_value(text, *enc)


def _by_names(fn: Callable[..., Any]) -> Callable[[Mapping[str, Any]], Any]:
    """*fn* called with the inputs it names as parameters (all of them when it takes ``**kwargs``)."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        raise NbflowError(f"fn must be a function of the step's inputs by name, got {fn!r}") from None
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return lambda names: fn(**names)
    wanted = [n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]

    def call(names: Mapping[str, Any]) -> Any:
        missing = [n for n in wanted if n not in names and params[n].default is inspect.Parameter.empty]
        if missing:
            raise NbflowError(f"fn takes {', '.join(missing)}, which the instance has no input named; "
                              f"its inputs are: {', '.join(names) or 'none'}")
        return fn(**{n: names[n] for n in wanted if n in names})

    return call


def _stopped(run_id: str, error: BaseException) -> NbflowError:
    """What ``wait`` raises when the run's scheduler in this process stopped on *error*."""
    exc = NbflowError(f"the scheduler of run {run_id} stopped: {error}")
    exc.__cause__ = error
    return exc


def resume_pinned(store: Store, run_id: str, max_workers: int | None = None, executor: Any = None) -> Run:
    """Take over *run_id* with the code it was pinned to (what `nbflow resume RUN` does) and return its
    handle, which forks with that code. The run keeps the executor it recorded unless *executor* says
    otherwise; a finished run is returned to read."""
    taken = take_over_pinned(store, run_id, max_workers, executor)
    return Run(store, taken.run_id, taken.workflow)


def fork_pinned(store: Store, run_id: str, from_step: str, keys: Iterable[Any] | None = None,
                max_workers: int | None = None) -> Run:
    """:meth:`Run.fork` with the code *run_id* was pinned to (what ``nbflow fork`` does from a terminal);
    the new run is driven in this process."""
    taken = fork_pinned_run(store, run_id, from_step, None if keys is None else list(keys), max_workers)
    return Run(store, taken.run_id, taken.workflow)


def runs(store: str | Store | None = None, workflow: str | None = None, status: str | Iterable[str] | None = None,
         limit: int | None = None) -> list[Run]:
    """Runs in the store, newest first."""
    st = Store.open(store)
    return [Run(st, r["id"]) for r in st.run_rows(workflow=workflow, status=status, limit=limit)]
