"""Workflow definitions, below the engine: steps (``StepSpec``) and their options, name and option
checks, dependencies inferred from parameter names (``Binding``), the validated DAG in topological
order (``Plan``, cycle errors), the JSON definition stored with each version and its hash.

Pure: it imports only ``nbflow.states``, ``nbflow.errors`` and the standard library, so the engine,
the store's readers and the front doors (``Workflow``, ``Run``) can all stand on it."""
from __future__ import annotations

import hashlib
import inspect
import json
import marshal
import textwrap
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from .errors import CycleError, DefinitionError
from .states import StepKind

CTX = "ctx"
"""The parameter name that receives the step context."""
ITEM = "item"
"""The parameter name that receives a foreach body's element."""

STEP_NAME_MAX: int = 200
"""The longest step name the store's columns hold (characters; ``instances.step``, tests check they agree)."""

WORKFLOW_NAME_MAX: int = 200
"""The longest workflow name the store's columns hold (characters; ``workflows.name``, tests check they agree)."""


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


# ------------------------------------------------------------------------------------ step facts
def source_of(fn: Callable[..., Any] | None) -> str:
    """A callable's source text (dedented), or a stand-in naming its code's hash when it has none."""
    if fn is None:
        return ""
    try:
        return textwrap.dedent(inspect.getsource(fn))
    except (OSError, TypeError):
        code = getattr(fn, "__code__", None)
        if not code:
            return repr(fn)
        return f"# source unavailable; code hash {hashlib.sha256(marshal.dumps(code)).hexdigest()[:16]}"


def signature(fn: Callable[..., Any]) -> tuple[tuple[str, ...], frozenset[str]]:
    """A step function's parameter names and those with defaults; ``*args``/``**kwargs`` are refused."""
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


# ------------------------------------------------------------------------------------ checks
def check_workflow_name(name: Any) -> None:
    """Refuse an empty workflow name, or one longer than the store's columns hold."""
    if not name or not isinstance(name, str):
        raise DefinitionError("a workflow needs a non-empty name, e.g. Workflow('etl')")
    if len(name) > WORKFLOW_NAME_MAX:
        raise DefinitionError(
            f"workflow name {name[:40]!r}... is {len(name)} characters long; the store holds at most "
            f"{WORKFLOW_NAME_MAX}: shorten it"
        )


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


def check_options(
    name: str, timeout: float | None, on_item_error: str, max_parallel: int | None, kind: StepKind
) -> None:
    """Refuse a bad ``timeout``, ``on_item_error`` or ``max_parallel`` of step *name*."""
    if timeout is not None and (not isinstance(timeout, (int, float)) or timeout <= 0):
        raise DefinitionError(f"step {name!r}: timeout must be a number of seconds > 0, got {timeout!r}")
    if on_item_error not in ("fail", "continue"):
        raise DefinitionError(f"step {name!r}: on_item_error must be 'fail' or 'continue', got {on_item_error!r}")
    if on_item_error == "continue" and kind != StepKind.FOREACH:
        raise DefinitionError(f"step {name!r}: on_item_error applies to foreach steps only")
    if max_parallel is not None and (not isinstance(max_parallel, int) or max_parallel < 1):
        raise DefinitionError(f"step {name!r}: max_parallel must be a whole number >= 1, got {max_parallel!r}")


# ------------------------------------------------------------------------------------ the DAG
def plan_of(workflow: str, steps: Mapping[str, StepSpec]) -> Plan:
    """Check the DAG of *workflow*'s *steps* (unknown names, foreach sources, cycles): bind each
    parameter to a step's output, the foreach item, the context or a run parameter, and order it."""
    steps = dict(steps)  # a snapshot: a notebook cell may redefine a step meanwhile
    if not steps:
        raise DefinitionError(f"workflow {workflow!r} has no steps; define some with @wf.step")
    bindings: dict[str, tuple[Binding, ...]] = {}
    upstream: dict[str, tuple[str, ...]] = {}
    for name, spec in steps.items():
        deps: list[str] = []
        binds: list[Binding] = []
        if spec.kind == StepKind.FOREACH:
            if spec.foreach not in steps:
                raise DefinitionError(
                    f"foreach step {name!r} iterates over {spec.foreach!r}, which is not a step of workflow "
                    f"{workflow!r} (steps: {', '.join(sorted(steps))})"
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
                    f"step {name!r} has after={a!r}, which is not a step of workflow {workflow!r}"
                )
            deps.append(a)
        bindings[name] = tuple(binds)
        upstream[name] = tuple(dict.fromkeys(deps))
    order = toposort(workflow, upstream, steps)
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


def toposort(
    workflow: str, upstream: Mapping[str, tuple[str, ...]], steps: Mapping[str, StepSpec]
) -> tuple[str, ...]:
    """The steps in an order where each comes after its upstream steps; a cycle is a
    :class:`CycleError` that names every step in it."""
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
                        f"workflow {workflow!r} has a cycle: {' -> '.join(cycle)}; steps "
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


def check_params(plan: Plan, params: Mapping[str, Any], steps: Mapping[str, StepSpec] | None = None) -> None:
    """Every parameter that is not a step, ctx or item must be a run parameter or have a default;
    no run parameter may be named after a step or ctx (no step could receive it). *steps* (the
    plan's by default) are the step names an error lists as known."""
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
                known = sorted(set(plan.steps if steps is None else steps) - {name})
                raise DefinitionError(
                    f"step {name!r} takes a parameter {b.param!r} that is neither a step nor a run parameter "
                    f"(steps: {', '.join(known) or 'none'}; "
                    f"run parameters: {', '.join(sorted(params)) or 'none'}); "
                    f"pass it with params={{{b.param!r}: ...}}, give it a default, or rename it after a step"
                )


# ------------------------------------------------------------------------------------ the version
def definition_of(workflow: str, plan: Plan) -> dict[str, Any]:
    """The JSON definition stored with each version: steps, edges, options."""
    return {
        "name": workflow,
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


def version_of(definition: Mapping[str, Any]) -> str:
    """The version hash of a JSON definition (its canonical text's SHA-256, 16 hex digits)."""
    text = json.dumps(definition, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# ------------------------------------------------------------------------------------ the stored record
def _frozen(value: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(value))


@dataclass(frozen=True)
class StoredStep:
    """One step of a stored definition, as :func:`definition_of` (and the engine's pinning) wrote it:
    ``bindings`` say where each parameter's value comes from, ``upstream`` the steps it waits for,
    ``options`` the JSON of :meth:`StepSpec.options`. ``code_sha256`` (the pickled code's hash),
    ``uses`` (notebook globals the pickle left out, JSON of ``engine.pinning.Use``) and ``origins``
    (where the source came from, JSON of ``engine.source_lines.Origin``) are added by the engine when
    it pins the code; the engine converts them."""

    name: str
    kind: StepKind
    params: tuple[str, ...] = ()
    defaults: tuple[str, ...] = ()
    bindings: tuple[Binding, ...] = ()
    foreach: str | None = None
    after: tuple[str, ...] = ()
    upstream: tuple[str, ...] = ()
    options: Mapping[str, Any] = field(default_factory=lambda: _frozen({}))
    source: str = ""
    key_source: str = ""
    code_sha256: str | None = None
    uses: tuple[Mapping[str, Any], ...] = ()
    origins: tuple[Any, ...] = ()
    fingerprint: str | None = None  # what the pickle was made from (``engine.pinning.fingerprint``), when known

    @property
    def inputs(self) -> tuple[str, ...]:
        """The names of the inputs an operator may set (``set_inputs``): every parameter but ``ctx``."""
        return tuple(b.param for b in self.bindings if b.source != "ctx")

    @property
    def continues_on_item_error(self) -> bool:
        """Whether items that exhaust their retries are dead-lettered (``on_item_error='continue'``)."""
        return bool(self.options.get("on_item_error") == "continue")

    @classmethod
    def from_json(cls, name: str, data: Mapping[str, Any]) -> StoredStep:
        """The step *name* of a stored definition's JSON (keys a definition of an older nbflow lacks
        take their defaults)."""
        return cls(
            name=name,
            kind=StepKind(data["kind"]),
            params=tuple(data.get("params", ())),
            defaults=tuple(data.get("defaults", ())),
            bindings=tuple(Binding(str(p), str(src), str(n)) for p, src, n in data.get("bindings", ())),
            foreach=data.get("foreach"),
            after=tuple(data.get("after", ())),
            upstream=tuple(data.get("upstream", ())),
            options=_frozen(data.get("options") or {}),
            source=data.get("source", ""),
            key_source=data.get("key_source", ""),
            code_sha256=data.get("code_sha256"),
            uses=tuple(_frozen(u) for u in data.get("uses", ())),
            origins=tuple(data.get("origins", ())),
            fingerprint=data.get("fingerprint"),
        )

    def as_json(self) -> dict[str, Any]:
        """The step's JSON as stored (``code_sha256`` only when it has one)."""
        out: dict[str, Any] = {
            "kind": str(self.kind),
            "params": list(self.params),
            "defaults": list(self.defaults),
            "bindings": [[b.param, b.source, b.name] for b in self.bindings],
            "foreach": self.foreach,
            "after": list(self.after),
            "upstream": list(self.upstream),
            "options": dict(self.options),
            "source": self.source,
            "key_source": self.key_source,
        }
        if self.code_sha256 is not None:
            out["code_sha256"] = self.code_sha256
        out["uses"] = [dict(u) for u in self.uses]
        out["origins"] = list(self.origins)
        if self.fingerprint is not None:
            out["fingerprint"] = self.fingerprint
        return out


@dataclass(frozen=True)
class StoredDefinition:
    """A stored version's definition (what ``Store.definition(workflow, version)`` returns): the
    workflow's name, its steps in topological order, the DAG's edges ``(upstream, step)`` and each
    step's :class:`StoredStep`, parsed once from the JSON :func:`definition_of` made."""

    name: str
    order: tuple[str, ...]
    edges: tuple[tuple[str, str], ...]
    steps: Mapping[str, StoredStep]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> StoredDefinition:
        """The record of a stored definition's JSON."""
        steps = {name: StoredStep.from_json(name, d) for name, d in data["steps"].items()}
        return cls(
            name=str(data.get("name", "")),
            order=tuple(data.get("order", steps)),
            edges=tuple((str(u), str(s)) for u, s in data.get("edges", ())),
            steps=MappingProxyType(steps),
        )

    def as_json(self) -> dict[str, Any]:
        """The JSON as stored (for the rare caller that needs the dict)."""
        return {
            "name": self.name,
            "order": list(self.order),
            "edges": [list(e) for e in self.edges],
            "steps": {s: step.as_json() for s, step in self.steps.items()},
        }

    @property
    def steps_text(self) -> str:
        """The step names in order, comma-separated (what errors list as the steps there are)."""
        return ", ".join(self.order)

    def no_step(self, run_id: str, step: str) -> str:
        """The message that refuses *step*, which run *run_id* (of this version) does not have."""
        return f"run {run_id} has no step {step!r}; steps are: {self.steps_text}"


# ------------------------------------------------------------------------------------ the whole
class WorkflowDef:
    """A workflow as the engine drives it: a name, its steps (a live mapping: a notebook cell that
    defines a step again replaces it here, and a run with live code adopts it), and the run options
    a run falls back on (``max_workers``, ``executor``). :class:`nbflow.Workflow` is this plus the
    store and the decorators; a run's pinned code comes back from the store as one of these."""

    def __init__(
        self, name: str, steps: Mapping[str, StepSpec] | None = None, *, max_workers: int | None = None,
        executor: Any = None,
    ) -> None:
        check_workflow_name(name)
        self.name = name
        self.steps: dict[str, StepSpec] = dict(steps or {})
        self.max_workers = max_workers
        self.executor = executor

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, steps={list(self.steps)})"

    def plan(self) -> Plan:
        """Check the DAG (unknown names, foreach sources, cycles) and return it in topological order."""
        return plan_of(self.name, self.steps)

    def check_params(self, plan: Plan, params: Mapping[str, Any]) -> None:
        """Every parameter that is not a step, ctx or item must be a run parameter or have a default;
        no run parameter may be named after a step or ctx (no step could receive it)."""
        check_params(plan, params, self.steps)

    def definition(self, plan: Plan) -> dict[str, Any]:
        """The JSON definition stored with each version: steps, edges, options."""
        return definition_of(self.name, plan)

    version_of = staticmethod(version_of)


# A step's pinned code is its pickled StepSpec (with its Backoff): those bytes take part in the version
# hash, and other nbflow processes (older ones too) load them. They name the classes where they were
# defined before definitions moved here, so the same workflow keeps the same version and its pinned
# code loads anywhere; nbflow.workflow re-exports both under these names.
StepSpec.__module__ = Backoff.__module__ = "nbflow.workflow"

__all__ = [
    "CTX", "ITEM", "STEP_NAME_MAX", "WORKFLOW_NAME_MAX", "Backoff", "Binding", "Plan", "StepSpec", "StoredDefinition",
    "StoredStep", "WorkflowDef",
    "check_options", "check_params", "check_step_name", "check_workflow_name", "definition_of", "plan_of",
    "signature", "source_of", "toposort", "version_of",
]
