"""Workflow definition: steps from plain functions, dependencies from parameter names,
validation (cycles, unknown inputs), and the version hash that pins a run's code."""
from __future__ import annotations

import hashlib
import inspect
import json
import marshal
import textwrap
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, TypeVar

from .engine.backends import check as check_executor
from .engine.backends import check_workers
from .errors import CycleError, DefinitionError
from .states import StepKind
from .store import Store
from .store.schema import instances, workflows

if TYPE_CHECKING:
    from .breakpoints import Breakpoints
    from .run import Run

_F = TypeVar("_F", bound=Callable[..., Any])

CTX = "ctx"
ITEM = "item"

STEP_NAME_MAX: int = instances.c.step.type.length  # type: ignore[attr-defined]
"""The longest step name the store's columns hold (characters)."""

WORKFLOW_NAME_MAX: int = workflows.c.name.type.length  # type: ignore[attr-defined]
"""The longest workflow name the store's columns hold (characters)."""


@dataclass(frozen=True)
class Backoff:
    """Delay before retry n (1-based): full jitter over min(cap, base * factor**(n-1)) seconds."""

    base: float = 0.5
    factor: float = 2.0
    cap: float = 60.0
    jitter: bool = True


@dataclass
class StepSpec:
    """One step: its callable and options. ``params`` are the callable's parameter names."""

    name: str
    kind: StepKind
    fn: Callable[..., Any] | None
    params: tuple[str, ...] = ()
    defaults: frozenset[str] = frozenset()
    foreach: str | None = None
    key: Callable[[Any], Any] | None = None
    after: tuple[str, ...] = ()
    retries: int = 0
    backoff: Backoff = field(default_factory=Backoff)
    retry_on: tuple[type[BaseException], ...] = (Exception,)
    timeout: float | None = None
    on_item_error: str = "fail"  # foreach: "continue" dead-letters items that exhaust their retries
    max_parallel: int | None = None  # at most this many instances of the step at once
    on_timeout: str = "reject"  # approval gates: what a timeout decides
    source: str = ""
    key_source: str = ""
    line_offset: int = 0  # for cell steps: where the cell's first line is in the compiled source

    def options(self) -> dict[str, Any]:
        """The JSON-able options that take part in the version hash and the stored definition."""
        return {
            "retries": self.retries,
            "backoff": [self.backoff.base, self.backoff.factor, self.backoff.cap, self.backoff.jitter],
            "retry_on": [f"{t.__module__}.{t.__qualname__}" for t in self.retry_on],
            "timeout": self.timeout,
            "on_item_error": self.on_item_error,
            "max_parallel": self.max_parallel,
            "on_timeout": self.on_timeout,
        }


def _source_of(fn: Callable[..., Any] | None) -> str:
    if fn is None:
        return ""
    try:
        return textwrap.dedent(inspect.getsource(fn))
    except (OSError, TypeError):
        code = getattr(fn, "__code__", None)
        if not code:
            return repr(fn)
        return f"# source unavailable; code hash {hashlib.sha256(marshal.dumps(code)).hexdigest()[:16]}"


def _signature(fn: Callable[..., Any]) -> tuple[tuple[str, ...], frozenset[str]]:
    params: list[str] = []
    defaults: set[str] = set()
    for p in inspect.signature(fn).parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise DefinitionError(
                f"step {fn.__name__!r}: *{p.name} / **{p.name} parameters are not supported; "
                "name each input (a step's name, a run parameter, ctx or item)"
            )
        params.append(p.name)
        if p.default is not p.empty:
            defaults.add(p.name)
    return tuple(params), frozenset(defaults)


def check_step_name(name: Any, what: str = "step") -> None:
    """Refuse a name that could be stored but not addressed: ``step:key`` targets split at ``:``, and
    the store's columns hold at most :data:`STEP_NAME_MAX` characters."""
    if not isinstance(name, str):
        raise DefinitionError(f"a {what} name must be a string, got {type(name).__name__} {name!r}")
    if not name.strip():
        raise DefinitionError(f"a {what} name cannot be empty or blank, got {name!r}; give it a name, e.g. 'load'")
    if ":" in name:
        raise DefinitionError(
            f"{what} name {name!r} contains ':', which separates a step from a key in targets such as "
            f"'step:key'; rename it without ':'"
        )
    if len(name) > STEP_NAME_MAX:
        raise DefinitionError(
            f"{what} name {name[:40]!r}... is {len(name)} characters long; the store holds at most "
            f"{STEP_NAME_MAX}: shorten it"
        )


def _check_options(
    name: str, timeout: float | None, on_item_error: str, max_parallel: int | None, kind: StepKind
) -> None:
    if timeout is not None and (not isinstance(timeout, (int, float)) or timeout <= 0):
        raise DefinitionError(f"step {name!r}: timeout must be a number of seconds > 0, got {timeout!r}")
    if on_item_error not in ("fail", "continue"):
        raise DefinitionError(f"step {name!r}: on_item_error must be 'fail' or 'continue', got {on_item_error!r}")
    if on_item_error == "continue" and kind != StepKind.FOREACH:
        raise DefinitionError(f"step {name!r}: on_item_error applies to foreach steps only")
    if max_parallel is not None and (not isinstance(max_parallel, int) or max_parallel < 1):
        raise DefinitionError(f"step {name!r}: max_parallel must be a whole number >= 1, got {max_parallel!r}")


@dataclass(frozen=True)
class Binding:
    """Where a parameter's value comes from: ``step``, ``item``, ``ctx``, ``param`` or ``default``."""

    param: str
    source: str
    name: str


@dataclass(frozen=True)
class Plan:
    """A validated DAG: steps in topological order, each with its bindings and upstream steps."""

    steps: dict[str, StepSpec]
    order: tuple[str, ...]
    bindings: dict[str, tuple[Binding, ...]]
    upstream: dict[str, tuple[str, ...]]
    downstream: dict[str, tuple[str, ...]]

    def edges(self) -> list[list[str]]:
        return [[u, s] for s in self.order for u in self.upstream[s]]


class Workflow:
    """A named DAG of steps. ``store`` is a SQLAlchemy URL, a Store, or None (NBFLOW_DB, else ./.nbflow/nbflow.db).
    ``executor`` runs the step bodies: ``"threads"`` (default), ``"processes"``, ``"dask"`` or
    ``nbflow.DaskExecutor(client)``; ``max_workers`` bounds how many run at once per run."""

    def __init__(
        self, name: str, store: str | Store | None = None, *, max_workers: int | None = None, executor: Any = None
    ) -> None:
        if not name or not isinstance(name, str):
            raise DefinitionError("a workflow needs a non-empty name, e.g. Workflow('etl')")
        if len(name) > WORKFLOW_NAME_MAX:
            raise DefinitionError(
                f"workflow name {name[:40]!r}... is {len(name)} characters long; the store holds at most "
                f"{WORKFLOW_NAME_MAX}: shorten it"
            )
        self.name = name
        self._store_arg = store
        self._store: Store | None = store if isinstance(store, Store) else None
        self.max_workers = check_workers(max_workers)
        self.executor = executor
        check_executor(executor)
        self.steps: dict[str, StepSpec] = {}
        self._breakpoints: Breakpoints | None = None

    def __repr__(self) -> str:
        return f"Workflow({self.name!r}, steps={list(self.steps)})"

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

    # -- validation ------------------------------------------------------------------------------
    def plan(self) -> Plan:
        """Check the DAG (unknown names, foreach sources, cycles) and return it in topological order."""
        steps = dict(self.steps)  # a snapshot: a notebook cell may redefine a step meanwhile
        if not steps:
            raise DefinitionError(f"workflow {self.name!r} has no steps; define some with @wf.step")
        bindings: dict[str, tuple[Binding, ...]] = {}
        upstream: dict[str, tuple[str, ...]] = {}
        for name, spec in steps.items():
            deps: list[str] = []
            binds: list[Binding] = []
            if spec.kind == StepKind.FOREACH:
                if spec.foreach not in steps:
                    raise DefinitionError(
                        f"foreach step {name!r} iterates over {spec.foreach!r}, which is not a step of workflow "
                        f"{self.name!r} (steps: {', '.join(sorted(steps))})"
                    )
                deps.append(spec.foreach)
            for p in spec.params:
                if p in steps and p != name:
                    binds.append(Binding(p, "step", p))
                    deps.append(p)
                elif p == CTX:
                    binds.append(Binding(p, "ctx", p))
                elif p == ITEM and spec.kind == StepKind.FOREACH:
                    binds.append(Binding(p, "item", p))
                else:
                    binds.append(Binding(p, "param", p))
            for a in spec.after:
                if a not in steps:
                    raise DefinitionError(
                        f"step {name!r} has after={a!r}, which is not a step of workflow {self.name!r}"
                    )
                deps.append(a)
            bindings[name] = tuple(binds)
            upstream[name] = tuple(dict.fromkeys(deps))
        order = self._toposort(upstream, steps)
        downstream: dict[str, list[str]] = {s: [] for s in steps}
        for s in order:
            for u in upstream[s]:
                downstream[u].append(s)
        return Plan(
            steps=dict(steps),
            order=order,
            bindings=bindings,
            upstream=upstream,
            downstream={k: tuple(v) for k, v in downstream.items()},
        )

    def check_params(self, plan: Plan, params: Mapping[str, Any]) -> None:
        """Every parameter that is not a step, ctx or item must be a run parameter or have a default;
        no run parameter may be named after a step or ctx (no step could receive it)."""
        for p in params:
            if p in plan.steps or p == CTX:
                receives = f"the output of step {p!r}" if p in plan.steps else "the step context"
                raise DefinitionError(
                    f"run parameter {p!r} would never be used: a step parameter named {p!r} receives {receives}; "
                    f"rename the run parameter"
                )
        for name in plan.order:
            spec = plan.steps[name]
            for b in plan.bindings[name]:
                if b.source == "param" and b.param not in params and b.param not in spec.defaults:
                    known = sorted(set(self.steps) - {name})
                    raise DefinitionError(
                        f"step {name!r} takes a parameter {b.param!r} that is neither a step nor a run parameter "
                        f"(steps: {', '.join(known) or 'none'}; "
                        f"run parameters: {', '.join(sorted(params)) or 'none'}); "
                        f"pass it with params={{{b.param!r}: ...}}, give it a default, or rename it after a step"
                    )

    def _toposort(self, upstream: Mapping[str, tuple[str, ...]], steps: Mapping[str, StepSpec]) -> tuple[str, ...]:
        order: list[str] = []
        state: dict[str, int] = {}  # 1 visiting, 2 done
        for root in steps:
            if state.get(root) == 2:
                continue
            stack: list[tuple[str, int]] = [(root, 0)]
            path: list[str] = []
            while stack:
                node, i = stack.pop()
                if i == 0:
                    if state.get(node) == 2:
                        continue
                    state[node] = 1
                    path.append(node)
                deps = upstream[node]
                if i < len(deps):
                    stack.append((node, i + 1))
                    dep = deps[i]
                    if state.get(dep) == 1:
                        cycle = [*path[path.index(dep):], dep]
                        raise CycleError(
                            f"workflow {self.name!r} has a cycle: {' -> '.join(cycle)}; steps "
                            f"{', '.join(sorted(set(cycle)))} depend on each other, so none can start. "
                            "Break the cycle by renaming a parameter or removing an after= edge"
                        )
                    if state.get(dep) != 2:
                        stack.append((dep, 0))
                    continue
                state[node] = 2
                path.pop()
                order.append(node)
        return tuple(order)

    # -- version --------------------------------------------------------------------------------
    def definition(self, plan: Plan) -> dict[str, Any]:
        """The JSON definition stored with each version: steps, edges, options."""
        return {
            "name": self.name,
            "order": list(plan.order),
            "edges": plan.edges(),
            "steps": {
                s: {
                    "kind": str(spec.kind),
                    "params": list(spec.params),
                    "defaults": sorted(spec.defaults),
                    "bindings": [[b.param, b.source, b.name] for b in plan.bindings[s]],
                    "foreach": spec.foreach,
                    "after": list(spec.after),
                    "upstream": list(plan.upstream[s]),
                    "options": spec.options(),
                    "source": spec.source,
                    "key_source": spec.key_source,
                }
                for s, spec in ((s, plan.steps[s]) for s in plan.order)
            },
        }

    @staticmethod
    def version_of(definition: Mapping[str, Any]) -> str:
        text = json.dumps(definition, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

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
        from .engine.lifecycle import start_run

        if deadline is not None and (not isinstance(deadline, (int, float)) or deadline <= 0):
            raise DefinitionError(f"deadline must be a number of seconds > 0, got {deadline!r}")
        if executor is not None:
            check_executor(executor)
        return start_run(
            self, dict(params or {}), list(breakpoints), break_on_error, check_workers(max_workers) or self.max_workers,
            deadline=deadline, executor=executor if executor is not None else self.executor,
        )

    def attach(self, run_id: str, *, max_workers: int | None = None, executor: Any = None) -> Run:
        """Take over an interrupted or paused run with today's code (a finished one is returned read-only).
        The run keeps the executor it recorded unless *executor* (or the workflow's) says otherwise."""
        from .engine.lifecycle import attach_run

        if executor is not None:
            check_executor(executor)
        return attach_run(self, run_id, check_workers(max_workers) or self.max_workers,
                          executor if executor is not None else self.executor)

    @property
    def breakpoints(self) -> Breakpoints:
        from .breakpoints import Breakpoints

        if self._breakpoints is None:
            self._breakpoints = Breakpoints(self)
        return self._breakpoints

    def with_steps(self, steps: Mapping[str, StepSpec]) -> Workflow:
        """A copy of this workflow with other step definitions (used to rebuild pinned code)."""
        clone = Workflow(self.name, self._store or self._store_arg, max_workers=self.max_workers,
                         executor=self.executor)
        clone.steps = {k: replace(v) for k, v in steps.items()}
        return clone
