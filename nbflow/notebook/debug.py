"""Debug an instance in a cell: ``%nbflow debug STEP[:KEY]`` (and the widget's "Debug in a cell")
binds one instance's inputs as notebook variables (its ``item``, the upstream steps it reads, its
run parameters, operator edits included) with ``ctx`` as a read-only stand-in, and gives the step's
body as a cell to run and edit on that real data.

The cell of a ``%%step`` step is its cell source with its ``%%step`` line; while that step is being
debugged, running the cell again redefines the step as always (a live run adopts it: a hot fix)
*and* runs the new body on the bound inputs, showing its value (an exception is an ordinary cell
error, so ``%debug`` works post-mortem). A decorated function's cell is its body, dedented, with a
final ``return X`` turned into the expression ``X`` (a body that returns elsewhere, or yields,
stays a ``def`` plus a call).

A debug session is one instance at a time: it lasts until ``%nbflow debug --end``, or until
another instance is debugged (which replaces it). Ending it changes nothing in the run.
"""
from __future__ import annotations

import ast
import builtins
import inspect
import logging
import sys
import textwrap
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .._compat import get_ipython
from ..breakpoints import key_text
from ..definition import CTX, StepSpec, StoredStep, WorkflowDef
from ..engine.lifecycle import live, pinned_workflow
from ..errors import NbflowError
from ..run import InstanceView, Run
from ..states import StepKind, label


# ---------------------------------------------------------------------------------- records
@dataclass
class DebugCell:
    """What :func:`prepare` made: the instance (``"enrich:3"``), the cell text, the names it bound
    in the notebook and the instance's inputs (by parameter name)."""

    target: str
    code: str
    bound: list[str]
    inputs: dict[str, Any]


class _CellLog(logging.Handler):
    """Writes a debug cell's ``ctx.log`` records to the cell's output (the stdout of the moment)."""

    def emit(self, record: logging.LogRecord) -> None:
        print(self.format(record), file=sys.stdout)


def _debug_logger(workflow: str, step: str) -> logging.Logger:
    logger = logging.getLogger(f"nbflow.debug.{workflow}.{step}")
    if not any(isinstance(h, _CellLog) for h in logger.handlers):
        handler = _CellLog()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    return logger


@dataclass(frozen=True)
class DebugContext:
    """``ctx`` in a debug cell: what the instance's step context would say (``attempt`` is the attempt it
    last ran, 1 if none), read-only. ``checkpoint`` writes nothing and says so; a signal cannot be
    waited for. ``log`` writes to the cell."""

    run_id: str
    step: str
    key: Any
    item_index: int | None
    attempt: int
    idempotency_key: str
    log: logging.Logger
    saved: Any = None
    target: str = field(default="", repr=False)

    def checkpoint(self, value: Any) -> None:
        """Nothing is saved from a debug cell: the run's checkpoints stay as they are."""
        print(f"ctx.checkpoint({_short(value)}) in a debug cell of {self.target}: not saved "
              "(the run's checkpoints are unchanged)")

    def signal_token(self, name: str) -> str:
        raise NbflowError(f"ctx.signal_token({name!r}) is not available in a debug cell of {self.target}: "
                          "the cell is not the run's attempt; debug the body after the wait, with the payload "
                          "as a variable")

    def wait_for_signal(self, name: str, timeout: float | None = None) -> Any:
        raise NbflowError(f"ctx.wait_for_signal({name!r}) cannot wait in a debug cell of {self.target}: a cell "
                          "does not suspend; set the payload as a variable and debug the body after the wait")


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass
class Session:
    """The instance being debugged: its run, workflow, step and key, its inputs and ``ctx`` stand-in."""

    run: Run
    workflow: str
    step: str
    key: str | None
    target: str
    inputs: dict[str, Any]
    ctx: DebugContext


_session: list[Session] = []  # the one debug session of this process (a list: set without a global statement)


def session() -> Session | None:
    """The debug session, if an instance is being debugged."""
    return _session[0] if _session else None


def end() -> Session | None:
    """End the debug session (the run is not touched); the session that ended, if any."""
    ended = session()
    _session.clear()
    return ended


def debugging(workflow: str, step: str) -> Session | None:
    """The session when *step* of *workflow* is the one being debugged."""
    s = session()
    return s if s is not None and s.workflow == workflow and s.step == step else None


# ---------------------------------------------------------------------------------- the step's code
@dataclass(frozen=True)
class _Code:
    """A step's code as this process knows it: today's definition, the run's pinned one, or only its
    stored source (``fn`` None)."""

    source: str
    cell: bool  # a ``%%step`` cell (its source is the cell body)
    fn: Callable[..., Any] | None
    kind: StepKind
    foreach: str | None
    key_source: str
    after: tuple[str, ...]
    retries: int
    timeout: float | None
    params: tuple[str, ...]

    @classmethod
    def of_spec(cls, spec: StepSpec) -> _Code:
        return cls(spec.source, spec.line_offset > 0, spec.fn, spec.kind, spec.foreach, spec.key_source,
                   spec.after, spec.retries, spec.timeout, spec.params)

    @classmethod
    def of_stored(cls, step: StoredStep) -> _Code:
        opts = step.options
        return cls(step.source, _function_of(step.source, step.name) is None, None, step.kind, step.foreach,
                   step.key_source, step.after, int(opts.get("retries") or 0), opts.get("timeout"), step.params)


def _code(run: Run, step: str, stored: StoredStep, workflow: WorkflowDef | None) -> _Code:
    """Today's code of *step* here (the given workflow's, or that of the scheduler driving the run in
    this process), else the run's pinned code, else its stored source."""
    for wf in (workflow, getattr(live(run.id), "wf", None)):
        if isinstance(wf, WorkflowDef) and wf.name == run.workflow_name and step in wf.steps:
            return _Code.of_spec(wf.steps[step])
    try:
        return _Code.of_spec(pinned_workflow(run.store, run.workflow_name, run.version).steps[step])
    except Exception:  # noqa: BLE001 - the pinned code may not load here (an import, a notebook object)
        return _Code.of_stored(stored)


def _function_of(source: str, name: str) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
    """The (decorated) function definition a step's source is, or None (a cell body)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    defs = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    return defs[0] if len(defs) == 1 and len(tree.body) == 1 else None


def step_line(name: str, code: _Code) -> str:
    """The ``%%step`` line that defines *name* with *code*'s options again."""
    words = ["%%step", name]
    if code.kind == StepKind.FOREACH and code.foreach:
        words += ["--foreach", code.foreach]
        if code.key_source:
            key = code.key_source.strip()
            words += ["--key", repr(key) if any(c.isspace() for c in key) else key]
    if code.after:
        words += ["--after", ",".join(code.after)]
    if code.retries:
        words += ["--retries", str(code.retries)]
    if code.timeout:
        words += ["--timeout", f"{code.timeout:g}"]
    return " ".join(words)


class _Returns(ast.NodeVisitor):
    """Counts the ``return`` and ``yield`` of a function body, not of the functions nested in it."""

    def __init__(self) -> None:
        self.returns = 0
        self.yields = False

    def visit_Return(self, node: ast.Return) -> None:
        self.returns += 1
        self.generic_visit(node)

    def visit_Yield(self, node: ast.Yield) -> None:
        self.yields = True

    def visit_YieldFrom(self, node: ast.YieldFrom) -> None:
        self.yields = True

    def visit_Await(self, node: ast.Await) -> None:
        self.yields = True  # an await needs the coroutine: keep the def

    # a nested function's or class's returns are its own
    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        return None

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        return None

    def visit_Lambda(self, node: ast.Lambda) -> None:
        return None

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        return None


def _body_cell(source: str, fdef: ast.FunctionDef | ast.AsyncFunctionDef, defaults: Mapping[str, str],
               call: str) -> str:
    """A decorated function's cell: its body dedented, ``return X`` at its end as ``X``; else the def
    (without its decorators) and *call*. *defaults*: lines binding parameters to their defaults."""
    lines = source.splitlines(True)
    body = list(fdef.body)
    if len(body) > 1 and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str):
        body = body[1:]  # the docstring
    seen = _Returns()
    for stmt in body:
        seen.visit(stmt)
    last = body[-1]
    final = isinstance(last, ast.Return)
    bound = "".join(f"{n} = {v}\n" for n, v in defaults.items())
    whole = bound + textwrap.dedent("".join(lines[fdef.lineno - 1: fdef.end_lineno])).rstrip("\n") + "\n" + call
    if isinstance(fdef, ast.AsyncFunctionDef) or seen.yields or seen.returns > (1 if final else 0):
        return whole
    start = body[0].lineno
    shared = len(body) > 1 and body[-2].end_lineno == last.lineno  # `x = 1; return x`: one line, two statements
    if start == fdef.lineno or (final and shared):
        return whole  # `def f(n): return n`: no body lines of its own
    while start - 1 > fdef.lineno and lines[start - 2].strip().startswith("#"):
        start -= 1  # the comments right above the first statement
    text = textwrap.dedent("".join(lines[start - 1: fdef.end_lineno]))
    try:
        tree = ast.parse(text)
    except SyntaxError:  # a multi-line string less indented than the body: it does not dedent
        return whole
    ret = tree.body[-1] if tree.body else None
    if final and isinstance(ret, ast.Return):
        out = text.splitlines(True)
        value = ast.get_source_segment(text, ret.value) if ret.value is not None else None
        out[ret.lineno - 1: ret.end_lineno] = [value + "\n"] if value else []
        text = "".join(out)
    return bound + text.rstrip("\n")


def _default_texts(fdef: ast.FunctionDef | ast.AsyncFunctionDef, source: str) -> dict[str, str]:
    """Each parameter's default as written in *source*."""
    args = fdef.args
    positional = [*args.posonlyargs, *args.args]
    out: dict[str, str] = {}
    for a, d in zip(positional[len(positional) - len(args.defaults):], args.defaults):
        out[a.arg] = ast.get_source_segment(source, d) or "None"
    for a, kd in zip(args.kwonlyargs, args.kw_defaults):
        if kd is not None:
            out[a.arg] = ast.get_source_segment(source, kd) or "None"
    return out


# ---------------------------------------------------------------------------------- preparing
def _instance(run: Run, step: str, key: Any) -> tuple[InstanceView, StoredStep]:
    definition = run.store.definition(run.workflow_name, run.version)
    stored = definition.steps.get(step)
    if stored is None:
        raise NbflowError(definition.no_step(run.id, step))
    if stored.kind not in (StepKind.TASK, StepKind.FOREACH):
        raise NbflowError(f"step {step!r} is a{'n' if stored.kind == StepKind.APPROVAL else ''} {stored.kind} "
                          "step: it has no body to debug")
    if stored.kind == StepKind.FOREACH and key is None:
        keys = [i.key_text for i in run.instances(step)][:5]
        some = f" (its keys: {', '.join(str(k) for k in keys)}{', ...' if len(keys) == 5 else ''})" if keys else ""
        raise NbflowError(f"step {step!r} is a foreach: name one of its items, e.g. %nbflow debug {step}:KEY{some}")
    if stored.kind == StepKind.TASK and key is not None:
        raise NbflowError(f"step {step!r} has a single instance: name it without a key, e.g. %nbflow debug {step}")
    inst = run.instance(step, key)
    if "<unavailable>" in inst.inputs:
        raise NbflowError(f"the inputs of {inst.label} cannot be read here: {inst.inputs['<unavailable>']}")
    return inst, stored


def _context(run: Run, inst: InstanceView, target: str) -> DebugContext:
    return DebugContext(
        run_id=run.id, step=inst.step, key=inst.key, item_index=inst.item, attempt=max(inst.attempts, 1),
        idempotency_key=f"{run.id}/{inst.step}/{inst.key_text or ''}",
        log=_debug_logger(run.workflow_name, inst.step), saved=inst.saved, target=target,
    )


def _shell(shell: Any) -> Any:
    if shell is None:
        shell = get_ipython()
    if shell is None:
        raise NbflowError("debugging an instance in a cell needs IPython (a notebook); from a terminal, "
                          "`nbflow show RUN STEP:KEY --inputs-only -o json` gives the inputs")
    return shell


def prepare(run: Run, step: str, key: Any = None, shell: Any = None, *,
            workflow: WorkflowDef | None = None) -> DebugCell:
    """Bind the inputs of *step*'s instance *key* of *run* (and ``ctx``, a read-only stand-in) in
    *shell*'s namespace, start debugging it, and return the cell to run: see the module's text.
    *workflow*: today's definition to take the code from (else the live run's, else its pinned code)."""
    return _prepare(run, step, key, _shell(shell), workflow)[0]


def _prepare(run: Run, step: str, key: Any, shell: Any, workflow: WorkflowDef | None) -> tuple[DebugCell, _Code]:
    inst, stored = _instance(run, step, key_text(key))
    target = label(step, inst.key_text)
    code = _code(run, step, stored, workflow)
    ctx = _context(run, inst, target)
    inputs = dict(inst.inputs)
    bind: dict[str, Any] = dict(inputs)
    if code.cell:
        text = step_line(step, code) + "\n" + code.source.rstrip("\n")
    else:
        fdef = _function_of(code.source, step)
        if fdef is None:
            raise NbflowError(f"the source of step {step!r} is not a function definition ({code.source[:60]!r}); "
                              "nothing to put in a cell")
        unbound = {p: d for p, d in _default_texts(fdef, code.source).items() if p not in inputs and p != CTX}
        if code.fn is not None:  # the defaults themselves, bound like the inputs
            sig = inspect.signature(code.fn).parameters
            bind.update({p: sig[p].default for p in unbound if p in sig})
            unbound = {}
        passed = [p for p in code.params if p in bind or p == CTX]
        call = f"{fdef.name}({', '.join(f'{p}={p}' for p in passed)})"
        text = _body_cell(code.source, fdef, unbound, call)
    bind[CTX] = ctx
    shell.user_ns.update(bind)
    _session[:] = [Session(run, run.workflow_name, step, inst.key_text, target, inputs, ctx)]
    return DebugCell(target=target, code=text, bound=list(bind), inputs=inputs), code


def arguments(sess: Session, params: tuple[str, ...], user_ns: Mapping[str, Any], what: str) -> dict[str, Any]:
    """The arguments of a body with *params* on the session's bound inputs: the notebook's variables of
    those names (edited or not), else the instance's inputs; ``ctx`` is the stand-in."""
    kwargs: dict[str, Any] = {}
    missing: list[str] = []
    for p in params:
        if p == CTX:
            kwargs[p] = sess.ctx
        elif p in user_ns:
            kwargs[p] = user_ns[p]
        elif p in sess.inputs:
            kwargs[p] = sess.inputs[p]
        elif not hasattr(builtins, p):
            missing.append(p)
    if missing:
        raise NbflowError(f"debugging {sess.target}: {what} reads {', '.join(missing)}, which is neither an input "
                          f"of the instance nor a notebook variable; define it in a cell first")
    return kwargs


def rerun(sess: Session, spec: StepSpec, user_ns: Mapping[str, Any]) -> Any:
    """Run the new body of a redefined ``%%step`` step on the debugged instance's bound inputs; its
    exception propagates (a cell error, for ``%debug``)."""
    assert spec.fn is not None
    return spec.fn(**arguments(sess, spec.params, user_ns, "the new body"))


def run_pdb(run: Run, step: str, key: Any = None, shell: Any = None, *,
            workflow: WorkflowDef | None = None) -> DebugCell:
    """:func:`prepare`, then run the body on those inputs; on its error, IPython's debugger opens
    post-mortem at the failing line. Prints what happened; returns the cell."""
    shell = _shell(shell)
    cell, code = _prepare(run, step, key, shell, workflow)
    sess = session()
    assert sess is not None
    if code.fn is None:
        raise NbflowError(f"the code of step {step!r} cannot be loaded here; run the cell %nbflow debug "
                          f"{cell.target} gives, then %debug on its error")
    kwargs = arguments(sess, code.params, shell.user_ns, "the body")
    try:
        value = code.fn(**kwargs)
    except Exception as exc:  # noqa: BLE001 - the body's own error is what the user debugs
        print(f"{cell.target} raised {type(exc).__name__}: {exc}\n"
              "post-mortem debugger at the failing line (q to quit)")
        tb = exc.__traceback__
        debugger = shell.debugger_cls()
        debugger.reset()
        debugger.interaction(None, tb.tb_next if tb is not None and tb.tb_next is not None else tb)
        return cell
    print(f"{cell.target} ran without an error on its inputs; its value: {_short(value, 200)}")
    return cell


__all__ = ["DebugCell", "DebugContext", "Session", "debugging", "end", "prepare", "rerun", "run_pdb", "session",
           "step_line"]
