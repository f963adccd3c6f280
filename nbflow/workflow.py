"""``Workflow``: the user's front door for defining and running workflows. Steps come from plain
functions (``@wf.step``, ``@wf.foreach``, ``wf.approval``, ``wf.wait``); the definitions themselves
(steps, dependencies, validation, the version hash) live in :mod:`nbflow.definition`, below the
engine, and ``wf.run()``/``wf.attach()`` hand the engine a definition and wrap the run id it returns
in a :class:`~nbflow.run.Run`. ``wf.breakpoints`` are the workflow-scoped breakpoints."""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import replace
from typing import Any, TypeVar

from .breakpoints import Breakpoint, check_action, key_text, parse_when, validate
from .commands import add_breakpoint, remove_breakpoints
from .definition import (
    CTX,
    ITEM,
    STEP_NAME_MAX,
    WORKFLOW_NAME_MAX,
    Backoff,
    Binding,
    Plan,
    StepSpec,
    WorkflowDef,
    check_step_name,
    version_of,
)
from .definition import check_options as _check_options
from .definition import signature as _signature
from .definition import source_of as _source_of
from .engine.backends import check as check_executor
from .engine.backends import check_workers
from .engine.lifecycle import attach_run, redefined, start_run
from .errors import DefinitionError
from .run import Run
from .states import StepKind
from .store import Store

_F = TypeVar("_F", bound=Callable[..., Any])


class Workflow(WorkflowDef):
    """A named DAG of steps. ``store`` is a SQLAlchemy URL, a Store, or None (NBFLOW_DB, else ./.nbflow/nbflow.db).
    ``executor`` runs the step bodies: ``"threads"`` (default), ``"processes"``, ``"dask"`` or
    ``nbflow.DaskExecutor(client)``; ``max_workers`` bounds how many run at once per run.

    The definition (``steps``, ``plan()``, ``check_params``, ``definition(plan)``, ``version_of``) is a
    :class:`nbflow.definition.WorkflowDef`; this adds the store, the decorators and the run verbs."""

    def __init__(
        self, name: str, store: str | Store | None = None, *, max_workers: int | None = None, executor: Any = None
    ) -> None:
        super().__init__(name)
        self._store_arg = store
        self._store: Store | None = store if isinstance(store, Store) else None
        self.max_workers = check_workers(max_workers)
        self.executor = executor
        check_executor(executor)
        self._breakpoints: Breakpoints | None = None

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = Store.open(self._store_arg)
        return self._store

    # -- definition ------------------------------------------------------------------------------
    def step(self, fn: Callable[..., Any] | None = None, /, **options: Any) -> Any:
        """Decorator: ``@wf.step`` or ``@wf.step(name=..., retries=..., after=[...], timeout=...)``."""
        if fn is not None:
            return self._define(fn, StepKind.TASK, **options)
        return lambda f: self._define(f, StepKind.TASK, **options)

    def foreach(
        self, upstream: str, /, *, key: Callable[[Any], Any] | None = None, **options: Any
    ) -> Callable[[_F], _F]:
        """Decorator: run the function once per element of *upstream*'s output; ``item`` receives the element."""
        if not isinstance(upstream, str) or not upstream:
            raise DefinitionError("foreach needs the name of the upstream step, e.g. @wf.foreach('load')")
        return lambda f: self._define(f, StepKind.FOREACH, foreach=upstream, key=key, **options)

    def add_step(self, spec: StepSpec) -> StepSpec:
        """Add or replace a fully built step (the magics use this for cell steps)."""
        check_step_name(spec.name)
        old = self.steps.get(spec.name)
        if old is not None and old.kind != spec.kind:
            raise DefinitionError(
                f"duplicate step {spec.name!r}: it is already a {old.kind} step and cannot also be a {spec.kind} "
                f"step; rename one of them"
            )
        self.steps[spec.name] = spec
        if old is not None:  # a hot fix: the runs this process drives with live code adopt it now
            redefined(self)
        return spec

    def _define(
        self,
        fn: _F,
        kind: StepKind,
        *,
        name: str | None = None,
        foreach: str | None = None,
        key: Callable[[Any], Any] | None = None,
        after: Iterable[str] = (),
        retries: int = 0,
        backoff: Backoff | float | None = None,
        retry_on: Iterable[type[BaseException]] | type[BaseException] | None = None,
        timeout: float | None = None,
        on_item_error: str = "fail",
        max_parallel: int | None = None,
    ) -> _F:
        if not callable(fn):
            raise DefinitionError(f"a step must be a function, got {type(fn).__name__}")
        step_name = fn.__name__ if name is None else name
        check_step_name(step_name)
        if step_name in (CTX, ITEM):
            raise DefinitionError(
                f"a step cannot be named {step_name!r}: a parameter named {CTX!r} receives the step context and one "
                f"named {ITEM!r} a foreach body's element; rename the function or pass name='...'"
            )
        _check_options(step_name, timeout, on_item_error, max_parallel, kind)
        if isinstance(after, str):
            after = [after]
        if not isinstance(retries, int) or retries < 0:
            raise DefinitionError(f"step {step_name!r}: retries must be a whole number >= 0, got {retries!r}")
        if isinstance(backoff, (int, float)):
            backoff = Backoff(base=float(backoff))
        if isinstance(retry_on, type):
            retry_on = (retry_on,)
        params, defaults = _signature(fn)
        spec = StepSpec(
            name=step_name,
            kind=kind,
            fn=fn,
            params=params,
            defaults=defaults,
            foreach=foreach,
            key=key,
            after=tuple(after),
            retries=retries,
            backoff=backoff or Backoff(),
            retry_on=tuple(retry_on) if retry_on else (Exception,),
            timeout=timeout,
            on_item_error=on_item_error,
            max_parallel=max_parallel,
            source=_source_of(fn),
            key_source=_source_of(key) if key is not None else "",
        )
        self.add_step(spec)
        return fn

    def approval(
        self, name: str, *, after: Iterable[str] = (), timeout: float | None = None, on_timeout: str = "reject"
    ) -> StepSpec:
        """A human gate: waits until approved or rejected (``run.approve``/``run.reject``, the widget, the
        CLI). An approval's optional JSON payload becomes its output; a rejection fails it."""
        check_step_name(name, "approval")
        if on_timeout not in ("reject", "approve"):
            raise DefinitionError(f"approval {name!r}: on_timeout must be 'reject' or 'approve', got {on_timeout!r}")
        _check_options(name, timeout, "fail", None, StepKind.APPROVAL)
        after = [after] if isinstance(after, str) else list(after)
        return self.add_step(StepSpec(
            name=name, kind=StepKind.APPROVAL, fn=None, after=tuple(after), timeout=timeout, on_timeout=on_timeout,
            source=f"approval {name} after={after} timeout={timeout} on_timeout={on_timeout}",
        ))

    def wait(self, name: str, *, after: Iterable[str] = (), timeout: float | None = None) -> StepSpec:
        """A step that waits for an external signal; the signal's payload becomes its output. Its
        correlation token is on the instance (``run.instance(name).token``) and in the ``waiting`` event."""
        check_step_name(name, "wait step")
        _check_options(name, timeout, "fail", None, StepKind.WAIT)
        after = [after] if isinstance(after, str) else list(after)
        return self.add_step(StepSpec(
            name=name, kind=StepKind.WAIT, fn=None, after=tuple(after), timeout=timeout,
            source=f"wait {name} after={after} timeout={timeout}",
        ))

    # -- running ----------------------------------------------------------------------------------
    def run(
        self,
        params: Mapping[str, Any] | None = None,
        breakpoints: Iterable[Any] = (),
        break_on_error: bool = False,
        *,
        max_workers: int | None = None,
        deadline: float | None = None,
        executor: Any = None,
    ) -> Run:
        """Start a run in the background and return its handle at once. ``deadline``: seconds after
        which the run fails and its unfinished instances are cancelled (paused time counts)."""
        if deadline is not None and (not isinstance(deadline, (int, float)) or deadline <= 0):
            raise DefinitionError(f"deadline must be a number of seconds > 0, got {deadline!r}")
        if executor is not None:
            check_executor(executor)
        store = self.store
        run_id = start_run(
            self, store, dict(params or {}), list(breakpoints), break_on_error,
            check_workers(max_workers) or self.max_workers,
            deadline=deadline, executor=executor if executor is not None else self.executor,
        )
        return Run(store, run_id, self)

    def attach(self, run_id: str, *, max_workers: int | None = None, executor: Any = None) -> Run:
        """Take over an interrupted or paused run with today's code (a finished one is returned read-only).
        The run keeps the executor it recorded unless *executor* (or the workflow's) says otherwise."""
        if executor is not None:
            check_executor(executor)
        store = self.store
        taken = attach_run(self, store, run_id, check_workers(max_workers) or self.max_workers,
                           executor if executor is not None else self.executor)
        return Run(store, taken.run_id, taken.workflow)

    @property
    def breakpoints(self) -> Breakpoints:
        if self._breakpoints is None:
            self._breakpoints = Breakpoints(self)
        return self._breakpoints

    def with_steps(self, steps: Mapping[str, StepSpec]) -> Workflow:
        """A copy of this workflow with other step definitions (used to rebuild pinned code)."""
        clone = Workflow(self.name, self._store or self._store_arg, max_workers=self.max_workers,
                         executor=self.executor)
        clone.steps = {k: replace(v) for k, v in steps.items()}
        return clone


class Breakpoints:
    """``wf.breakpoints``: workflow-scoped breakpoints, persisted and applied to live runs."""

    def __init__(self, wf: Workflow) -> None:
        self._wf = wf

    def add(
        self, step: str, key: Any = None, when: str = "before", condition: str | None = None, *,
        action: str = "pause", expression: str | None = None, hit_count: int | None = None,
    ) -> Breakpoint:
        """A breakpoint on every run of the workflow, live ones included. ``action="log"`` with an
        ``expression`` makes a logpoint (it records, never pauses); ``hit_count=N`` acts from the Nth
        instance of a run that reaches it (and matches *condition*) on."""
        act, expression, hit_count = check_action(action, expression, hit_count)
        bp = Breakpoint(step, key_text(key), parse_when(when), condition, workflow=self._wf.name, action=act,
                        expression=expression, hit_count=hit_count)
        validate(bp, self._wf.steps)
        return add_breakpoint(self._wf.store, self._wf.name, bp)

    def remove(self, step: str, key: Any = None) -> int:
        """Delete the workflow-scoped breakpoints on *step* (and *key*); returns how many went."""
        return remove_breakpoints(self._wf.store, self._wf.name, step, key_text(key))

    def list(self) -> list[Breakpoint]:
        return [Breakpoint.from_row(r) for r in self._wf.store.breakpoint_rows(self._wf.name)]

    def __iter__(self) -> Iterator[Breakpoint]:
        return iter(self.list())

    def __len__(self) -> int:
        return len(self.list())


__all__ = [
    "CTX", "ITEM", "STEP_NAME_MAX", "WORKFLOW_NAME_MAX", "Backoff", "Binding", "Breakpoints", "Plan", "StepSpec",
    "Workflow", "_check_options", "check_step_name", "version_of",
]
"""``Workflow`` and ``Breakpoints`` live here; the rest is re-exported from :mod:`nbflow.definition` for
the code that imports it from here (the magics, user code written before it moved)."""
