"""IPython magics: ``%%step`` turns a cell into a step of the current workflow; ``%nbflow`` selects
the workflow, starts runs and operates on them (thin wrappers over the Python API).

A cell step is compiled from the cell's own AST: its body becomes the body of a function whose
parameters are the cell's free names that are steps, run parameters, ``ctx`` or ``item``; the
value of its last expression is returned. The function is compiled under the filename IPython
gave the cell, with the cell's line numbers, and with the user namespace as its globals, so a
failing step's traceback points at the cell's own lines and imports/helpers of the notebook are
read at run time.
"""
from __future__ import annotations

import argparse
import ast
import builtins
import html
import json
import keyword
import linecache
import symtable
import sys
import traceback
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class, no_var_expand

from .._compat import display
from .._util import parse_json
from ..breakpoints import parse_target
from ..errors import DefinitionError, NbflowError
from ..run import Run
from ..states import StepKind, label
from ..views import run_summaries
from ..workflow import CTX, ITEM, StepSpec, Workflow, _check_options, check_step_name
from . import debug

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell

DEFAULT_WORKFLOW = "notebook"
"""The workflow a ``%%step`` cell joins when no ``%nbflow workflow NAME`` selected one."""

RUN_VAR = "nbflow_run"
"""The user-namespace name of the current run (set by ``%nbflow run`` and ``%nbflow attach``)."""


# ---------------------------------------------------------------------------------- state
@dataclass
class CellStep:
    """What a ``%%step`` cell defined: enough to rebuild the step when its inputs must be re-derived."""

    name: str
    text: str  # the cell body, as written
    filename: str  # the cell's filename in linecache
    offset: int  # lines of the cell above the body (the ``%%step`` line): body line k is cell line k + offset
    user_ns: dict[str, Any]
    kind: StepKind
    foreach: str | None
    key_source: str | None
    after: tuple[str, ...]
    retries: int
    timeout: float | None
    free: tuple[str, ...] = ()
    spec: StepSpec | None = None


@dataclass
class _State:
    workflows: dict[tuple[str, str | None], Workflow] = field(default_factory=dict)
    workflow: Workflow | None = None
    run: Run | None = None
    cells: dict[tuple[int, str], CellStep] = field(default_factory=dict)


_state = _State()


def select_workflow(name: str, db: str | None = None) -> Workflow:
    """Select (or create) the current workflow; the same name and store give back the same object,
    so cells run again redefine its steps and live runs see the new code."""
    wf = _state.workflows.get((name, db))
    if wf is None:
        wf = Workflow(name, db)
        _ = wf.store  # open (and migrate) now, so a bad URL is reported by this cell
        _state.workflows[(name, db)] = wf
    _state.workflow = wf
    return wf


def current_workflow() -> Workflow:
    """The workflow that ``%%step`` cells define steps of (``%nbflow workflow NAME``; else ``notebook``)."""
    if _state.workflow is None:
        return select_workflow(DEFAULT_WORKFLOW)
    return _state.workflow


def current_run(user_ns: Mapping[str, Any] | None = None) -> Run | None:
    """The run the magics act on: ``nbflow_run`` in the user namespace if it is a Run, else the last one started."""
    if user_ns is not None and isinstance(user_ns.get(RUN_VAR), Run):
        return user_ns[RUN_VAR]  # type: ignore[no-any-return]
    return _state.run


# ---------------------------------------------------------------------------------- cell steps
def _type_params() -> dict[str, Any]:
    """``type_params=[]`` for ``ast.FunctionDef`` where it has that field (Python 3.12+), else nothing."""
    return {"type_params": []} if "type_params" in ast.FunctionDef._fields else {}


def free_names(tree: ast.Module) -> list[str]:
    """Names the cell reads without binding them (in any nested scope), in order of first use."""
    fn = ast.FunctionDef(
        name="_cell", args=_arguments([]), body=tree.body or [ast.Pass()], decorator_list=[], returns=None,
        type_comment=None, **_type_params(),
    )
    src = ast.unparse(ast.fix_missing_locations(ast.Module(body=[fn], type_ignores=[])))
    table = symtable.symtable(src, "<cell>", "exec").get_children()[0]
    found: set[str] = set()

    def walk(tab: symtable.SymbolTable) -> None:
        for sym in tab.get_symbols():
            if sym.is_global() and not sym.is_declared_global() and sym.is_referenced():
                found.add(sym.get_name())
        for child in tab.get_children():
            walk(child)

    walk(table)
    first: dict[str, tuple[int, int]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id in found:
            pos = (node.lineno, node.col_offset)
            if node.id not in first or pos < first[node.id]:
                first[node.id] = pos
    return sorted(found, key=lambda n: first.get(n, (0, 0)))


def classify(free: Sequence[str], *, own: str, kind: StepKind, steps: Sequence[str],
             user_ns: Mapping[str, Any], run_params: Collection[str] = ()) -> tuple[str, ...]:
    """The free names that become parameters: steps, given run parameters, ``ctx``, ``item``
    (foreach), and names that are neither defined in the user namespace nor builtins (run
    parameters, or steps defined later). Other names stay globals, read when the step runs."""
    params: list[str] = []
    for name in free:
        if name == own:
            continue
        wired = name in steps or name in run_params or name == CTX or (name == ITEM and kind == StepKind.FOREACH)
        unknown = name not in user_ns and not hasattr(builtins, name)
        if wired or unknown:
            params.append(name)
    return tuple(params)


def _arguments(names: Sequence[str]) -> ast.arguments:
    return ast.arguments(
        posonlyargs=[], args=[ast.arg(arg=n) for n in names], vararg=None, kwonlyargs=[], kw_defaults=[],
        kwarg=None, defaults=[],
    )


def _parse(cell: CellStep) -> ast.Module:
    """The body parsed with the cell's own line numbers (a syntax error names the cell's line)."""
    return ast.parse("\n" * cell.offset + cell.text, cell.filename, "exec")


def _function(cell: CellStep, params: Sequence[str]) -> Callable[..., Any]:
    """Compile the cell body as ``def NAME(params): ...`` returning its last expression."""
    tree = _parse(cell)
    body = tree.body or [ast.Pass(lineno=cell.offset + 1, col_offset=0)]
    last = body[-1]
    if isinstance(last, ast.Expr):
        body[-1] = ast.copy_location(ast.Return(value=last.value), last)
    fdef = ast.FunctionDef(
        name=cell.name, args=_arguments(params), body=body, decorator_list=[], returns=None, type_comment=None,
        **_type_params(),
    )
    ast.copy_location(fdef, body[0])
    module = ast.fix_missing_locations(ast.Module(body=[fdef], type_ignores=[]))
    code = compile(module, cell.filename, "exec", dont_inherit=True)
    local: dict[str, Any] = {}
    exec(code, cell.user_ns, local)  # noqa: S102 - the user's own cell, with the user's namespace
    return local[cell.name]  # type: ignore[no-any-return]


def _key_function(cell: CellStep) -> Callable[[Any], Any] | None:
    if cell.key_source is None:
        return None
    try:
        ast.parse(cell.key_source.strip(), mode="eval")
        code = compile(f"lambda item: ({cell.key_source.strip()})", f"<key of step {cell.name}>", "eval",
                       dont_inherit=True)
    except SyntaxError as exc:
        raise DefinitionError(
            f"step {cell.name!r}: --key {cell.key_source!r} is not a Python expression ({exc.msg}); "
            "write an expression over item, e.g. --key item['id']"
        ) from None
    return eval(code, cell.user_ns)  # type: ignore[no-any-return]  # noqa: S307 - the user's own --key, in their namespace


def build(cell: CellStep, wf: Workflow, run_params: Collection[str] = ()) -> StepSpec:
    """Compile *cell* into a step spec, deriving its parameters from today's steps and namespace."""
    check_step_name(cell.name)
    try:
        cell.free = tuple(free_names(_parse(cell)))
    except SyntaxError:
        _function(cell, ())  # raises the same error located at the cell's own line
        raise
    params = classify(cell.free, own=cell.name, kind=cell.kind, steps=list(wf.steps), user_ns=cell.user_ns,
                      run_params=run_params)
    fn = _function(cell, params)
    _check_options(cell.name, cell.timeout, "fail", None, cell.kind)
    return StepSpec(
        name=cell.name,
        kind=cell.kind,
        fn=fn,
        params=params,
        foreach=cell.foreach,
        key=_key_function(cell),
        after=cell.after,
        retries=cell.retries,
        timeout=cell.timeout,
        source=cell.text,
        key_source=cell.key_source or "",
        line_offset=cell.offset,
    )


def define(cell: CellStep, wf: Workflow, run_params: Collection[str] = ()) -> StepSpec:
    """Define or redefine the step of *cell* in *wf* (the same name and kind replaces it)."""
    spec = build(cell, wf, run_params)
    wf.add_step(spec)
    cell.spec = spec
    _state.cells[(id(wf), cell.name)] = cell
    return spec


def refresh(wf: Workflow, run_params: Collection[str] = ()) -> None:
    """Re-derive the inputs of *wf*'s cell steps before a run: a step defined after a cell that
    reads its name, a run parameter named like a notebook variable, or a helper defined after the
    cell changes which free names are parameters (bindings resolve at run time)."""
    steps = list(wf.steps)
    for (wid, name), cell in list(_state.cells.items()):
        if wid != id(wf) or cell.spec is None or wf.steps.get(name) is not cell.spec:
            continue
        params = classify(cell.free, own=name, kind=cell.kind, steps=steps, user_ns=cell.user_ns,
                          run_params=run_params)
        if params != cell.spec.params:
            define(cell, wf, run_params)


def _cell_location(shell: Any, line: str, body: str) -> tuple[str, int]:
    """The filename IPython registered the running cell under, with the raw cell's text in
    linecache (IPython caches the transformed one-line magic call), and the body's first line."""
    raw = None
    hist = getattr(shell, "history_manager", None)
    if hist is not None and hist.input_hist_raw:
        last = hist.input_hist_raw[-1]
        if last.rstrip().endswith(body.rstrip()) and "%%step" in last:
            raw = last
    if raw is None:
        raw = f"%%step {line}\n{body}"
    head = raw.rstrip()
    head = head[: len(head) - len(body.rstrip())]
    offset = head.count("\n")
    compiler = getattr(shell, "compile", None)
    if compiler is not None and hasattr(compiler, "cache"):
        filename = compiler.cache(raw, shell.execution_count, raw_code=raw)
    else:  # not IPython's compiler: register the cell ourselves
        filename = f"<nbflow-cell-{abs(hash(raw)):x}>"
        linecache.cache[filename] = (len(raw), None, [ln + "\n" for ln in raw.splitlines()], filename)
    return filename, offset


# ---------------------------------------------------------------------------------- arguments
class _Exit(Exception):
    """argparse asked to exit (``-h``): the help was printed, nothing else to do."""


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad arguments as an IPython UsageError (a message, no traceback)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}\n{self.format_usage().rstrip()}\n(see {self.prog} -h)")

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if message:
            print(message, file=sys.stderr)
        raise _Exit()


def split_args(line: str) -> list[str]:
    """Split a magic line on spaces outside quotes and brackets, so Python expressions and JSON can
    be written as they are (``--key item['id']``, ``-p rows=[1, 2]``); a word that is wholly
    quoted loses its quotes (``--if "item['x'] > 3"``)."""
    words: list[str] = []
    cur: list[str] = []
    quote: str | None = None
    depth = 0
    it: Iterator[str] = iter(line)
    for ch in it:
        if quote:
            cur.append(ch)
            if ch == "\\":
                cur.append(next(it, ""))
            elif ch == quote:
                quote = None
            continue
        if ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}" and depth:
            depth -= 1
        elif ch.isspace() and depth == 0:
            if cur:
                words.append("".join(cur))
                cur = []
            continue
        cur.append(ch)
    if quote:
        raise UsageError(f"unbalanced {quote} in: {line}")
    if cur:
        words.append("".join(cur))
    out = []
    for w in words:
        if len(w) >= 2 and w[0] in "'\"" and w[-1] == w[0]:
            try:
                value = ast.literal_eval(w)
            except (ValueError, SyntaxError):
                value = None
            w = value if isinstance(value, str) else w[1:-1]  # noqa: PLW2901 - the word, unquoted
        out.append(w)
    return out


def parse_value(text: str) -> Any:
    """A run parameter's value: a Python literal (``5``, ``[1, 2]``, ``'x'``), else the text itself."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text


def _param(text: str) -> tuple[str, Any]:
    name, sep, value = text.partition("=")
    name = name.strip()
    if not sep or not name.isidentifier():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, parse_value(value)


def _target(text: str) -> tuple[str, str | None]:
    try:
        return parse_target(text)
    except DefinitionError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _nonneg_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = -1
    if n < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return n


def _positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return n


def _seconds(text: str) -> float:
    try:
        s = float(text)
    except ValueError:
        s = -1
    if s <= 0:
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0, got {text!r}")
    return s


def _json(text: str) -> Any:
    try:
        return parse_json(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON ({exc.msg} at column {exc.colno}): {text}") from None
    except ValueError as exc:  # NaN, Infinity or a lone surrogate
        raise argparse.ArgumentTypeError(f"{exc}: {text}") from None


def _step_parser() -> _Parser:
    p = _Parser(prog="%%step", description="Turn the cell into a step of the current workflow "
                "(the value of its last expression is the step's output).", add_help=True)
    p.add_argument("name", metavar="NAME", help="the step's name (other steps receive its output as a parameter NAME)")
    p.add_argument("--foreach", metavar="UPSTREAM", help="run once per element of UPSTREAM's output (as item)")
    p.add_argument("--key", metavar="EXPR", help="a foreach item's key: an expression over item, e.g. item['id']")
    p.add_argument("--after", metavar="A,B", action="append", default=[], help="run after these steps too")
    p.add_argument("--retries", metavar="N", type=_nonneg_int, default=0, help="retry a failed attempt N times")
    p.add_argument("--timeout", metavar="S", type=_seconds, default=None, help="fail an attempt after S seconds")
    return p


def _nbflow_parser() -> _Parser:
    p = _Parser(prog="%nbflow", description="Run and debug the current nbflow workflow.")
    sub = p.add_subparsers(dest="verb", metavar="VERB", parser_class=_Parser)
    sub.required = True

    s = sub.add_parser("workflow", help="select or create the current workflow")
    s.add_argument("name", metavar="NAME")
    s.add_argument("--db", metavar="URL", default=None, help="SQLAlchemy URL of the store (default: NBFLOW_DB)")

    s = sub.add_parser("run", help="start a run (returns at once; the run is also nbflow_run)")
    s.add_argument("-p", "--param", metavar="NAME=VALUE", type=_param, action="append", default=[],
                   help="a run parameter; VALUE is a Python literal or else a plain string")
    s.add_argument("--break", dest="breaks", metavar="STEP[:KEY]", action="append", default=[],
                   help="a breakpoint for this run only")
    s.add_argument("--break-on-error", action="store_true", help="pause a failed attempt instead of failing")
    s.add_argument("--wait", action="store_true", help="block until the run is finished or paused (batch)")

    s = sub.add_parser("resume", help="resume paused instances of the current run (all when no target)")
    s.add_argument("targets", metavar="STEP[:KEY]", nargs="*", type=_target)
    s.add_argument("--run", metavar="RUN", default=None, help="another run than the current one")
    s.add_argument("--reason", default=None)

    s = sub.add_parser("break", help="add a breakpoint to the workflow (every run, persisted)")
    s.add_argument("target", metavar="STEP[:KEY]", type=_target)
    s.add_argument("--when", choices=("before", "after", "error"), default="before")
    s.add_argument("--if", dest="condition", metavar="EXPR", default=None,
                   help="only when this expression over the step's inputs is true")
    s.add_argument("--log", dest="expression", metavar="EXPR", default=None,
                   help="a logpoint: never pauses, records this expression's value for each instance")
    s.add_argument("--hit-count", metavar="N", type=_positive_int, default=None,
                   help="act from the Nth instance that reaches it (and matches --if) on")

    s = sub.add_parser("unbreak", help="remove the workflow's breakpoints on a step (what they hold resumes)")
    s.add_argument("target", metavar="STEP[:KEY]", type=_target)

    s = sub.add_parser("step", help="step over a paused instance: resume it, pause what consumes its output")
    s.add_argument("target", metavar="STEP[:KEY]", type=_target)
    s.add_argument("--run", metavar="RUN", default=None)
    s.add_argument("--reason", default=None)

    s = sub.add_parser("debug", help="bind an instance's inputs in the notebook and put its body in a new cell")
    s.add_argument("target", metavar="STEP[:KEY]", type=_target, nargs="?", default=None)
    s.add_argument("--pdb", action="store_true",
                   help="run the body on those inputs instead, post-mortem in the debugger on its error")
    s.add_argument("--end", action="store_true", help="end the debug session (the run is not touched)")
    s.add_argument("--run", metavar="RUN", default=None)

    s = sub.add_parser("skip", help="skip paused or failed instances, giving their output")
    s.add_argument("targets", metavar="STEP[:KEY]", nargs="+", type=_target)
    s.add_argument("--output", metavar="JSON", type=_json, required=True)
    s.add_argument("--run", metavar="RUN", default=None)
    s.add_argument("--reason", default=None)

    s = sub.add_parser("retry", help="re-run failed or paused instances with today's code")
    s.add_argument("targets", metavar="STEP[:KEY]", nargs="+", type=_target)
    s.add_argument("--run", metavar="RUN", default=None)
    s.add_argument("--reason", default=None)

    s = sub.add_parser("cancel", help="cancel the current run")
    s.add_argument("--run", metavar="RUN", default=None)
    s.add_argument("--reason", default=None)

    s = sub.add_parser("runs", help="runs of the current workflow, newest first")
    s.add_argument("--all", action="store_true", help="runs of every workflow in the store")
    s.add_argument("--limit", metavar="N", type=_nonneg_int, default=20)

    s = sub.add_parser("show", help="display a run (the current one by default)")
    s.add_argument("run", metavar="RUN", nargs="?", default=None)

    s = sub.add_parser("attach", help="take over an interrupted or paused run with today's code")
    s.add_argument("run", metavar="RUN")
    return p


# ---------------------------------------------------------------------------------- display
class RunsTable:
    """``%nbflow runs``: one row per run, as text and as an HTML table."""

    COLUMNS = ("id", "workflow", "status", "paused", "progress", "created")

    def __init__(self, rows: list[dict[str, Any]], where: str) -> None:
        self.rows = rows
        self.where = where

    def _cells(self) -> list[list[str]]:
        return [
            [r["id"], r["workflow"], r["status"] + (" (interrupted)" if r["interrupted"] else ""), str(r["paused"]),
             f"{r['progress']['done']}/{r['progress']['total']}", (r["created"] or "")[:19].replace("T", " ")]
            for r in self.rows
        ]

    def __repr__(self) -> str:
        if not self.rows:
            return f"no runs in {self.where}"
        cells = [list(self.COLUMNS), *self._cells()]
        widths = [max(len(c[i]) for c in cells) for i in range(len(self.COLUMNS))]
        return "\n".join("  ".join(c[i].ljust(widths[i]) for i in range(len(widths))).rstrip() for c in cells)

    def _repr_html_(self) -> str:
        if not self.rows:
            return f"<p>no runs in {html.escape(self.where)}</p>"
        head = "".join(f"<th>{c}</th>" for c in self.COLUMNS)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in row) + "</tr>" for row in self._cells()
        )
        return f'<table class="nbflow-runs"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _quiet(exc: BaseException) -> BaseException:
    """Make IPython show *exc* as one line (``Type: message``) instead of a traceback."""
    text = f"{type(exc).__name__}: {exc}"
    exc._render_traceback_ = lambda: [text]  # type: ignore[attr-defined]
    return exc


# ---------------------------------------------------------------------------------- magics
_F = TypeVar("_F", bound=Callable[..., Any])


def _named(marker: Callable[[str], Any], name: str) -> Callable[[_F], _F]:
    """``@marker(name)`` for IPython's ``cell_magic``/``line_magic``, typed: IPython 8 leaves them
    unannotated, and IPython 9 types a marker's bare and named uses as one union."""
    mark: Callable[[_F], _F] = marker(name)
    return mark


def _no_var_expand(fn: _F) -> _F:
    """IPython's ``@no_var_expand``, typed (IPython 8 leaves it unannotated)."""
    mark: Callable[[_F], _F] = no_var_expand
    return mark(fn)


@magics_class
class NbflowMagics(Magics):
    """``%%step`` and ``%nbflow``."""

    @property
    def _shell(self) -> InteractiveShell:
        """The shell IPython registered these magics with (``Magics.shell`` is typed as optional)."""
        assert self.shell is not None
        shell: InteractiveShell = self.shell
        return shell

    @_named(cell_magic, "step")
    @_no_var_expand
    def step(self, line: str, cell: str) -> Any:
        """%%step NAME [--foreach UPSTREAM] [--key EXPR] [--after A,B] [--retries N] [--timeout S]

        While NAME is being debugged (``%nbflow debug NAME:KEY``), the cell also runs the new body on
        that instance's bound inputs and shows its value."""
        try:
            args = _step_parser().parse_args(split_args(line))
        except _Exit:
            return None
        name = args.name
        if not name.isidentifier() or keyword.iskeyword(name):
            raise UsageError(f"%%step: step name {name!r} is not a Python identifier (other steps receive its "
                             "output through a parameter of that name)\n" + _step_parser().format_usage().rstrip())
        if args.key is not None and args.foreach is None:
            raise UsageError("%%step: --key needs --foreach UPSTREAM (only foreach items have keys)\n"
                             + _step_parser().format_usage().rstrip())
        after = tuple(a.strip() for group in args.after for a in group.split(",") if a.strip())
        filename, offset = _cell_location(self.shell, line, cell)
        cell_step = CellStep(
            name=name, text=cell, filename=filename, offset=offset, user_ns=self._shell.user_ns,
            kind=StepKind.FOREACH if args.foreach else StepKind.TASK, foreach=args.foreach, key_source=args.key,
            after=after, retries=args.retries, timeout=args.timeout,
        )
        wf = current_workflow()
        try:
            spec = define(cell_step, wf, self._live_params(wf))
        except NbflowError as exc:
            raise _quiet(exc) from None
        except SyntaxError as exc:  # shown like IPython shows a cell's syntax error, without our frames
            err = DefinitionError(f"step {name!r}: {exc.msg} (line {exc.lineno} of the cell)")
            if exc.text is None and exc.lineno:  # compiled from an AST: take the line from the cell
                exc.text = linecache.getline(filename, exc.lineno) or None
            lines = traceback.format_exception_only(type(exc), exc)
            err._render_traceback_ = lambda: [ln.rstrip("\n") for ln in lines]  # type: ignore[attr-defined]
            raise err from None
        sess = debug.debugging(wf.name, name)
        if sess is None:
            return None
        print(f"{sess.target}: the new body on its bound inputs (end debugging with %nbflow debug --end)")
        try:
            kwargs = debug.arguments(sess, spec.params, self._shell.user_ns, "the new body")
        except NbflowError as exc:
            raise _quiet(exc) from None
        assert spec.fn is not None
        return spec.fn(**kwargs)  # its error is the cell's: %debug opens post-mortem in the body

    @_named(line_magic, "nbflow")
    @_no_var_expand
    def nbflow(self, line: str) -> Any:
        """%nbflow VERB: workflow, run, resume, step, debug, break, unbreak, skip, retry, cancel, runs, show, attach
        (-h for help)"""
        try:
            args = _nbflow_parser().parse_args(split_args(line))
        except _Exit:
            return None
        try:
            return getattr(self, f"_do_{args.verb}")(args)
        except NbflowError as exc:
            raise _quiet(exc) from None

    def _live_params(self, wf: Workflow) -> set[str]:
        """The run parameters of the current run and of the debugged one, when they are runs of *wf*: a
        redefined cell reads them as parameters even where the notebook has (or debugging bound) a
        variable of that name, so the run it redefines keeps its graph and adopts the new body."""
        names: set[str] = set()
        sess = debug.session()
        for run in (current_run(self._shell.user_ns), sess.run if sess is not None else None):
            if run is not None and run.workflow_name == wf.name:
                names.update(run.params)
        return names

    # -- verbs ---------------------------------------------------------------------------------
    def _run_arg(self, run_id: str | None) -> Run:
        if run_id is not None:
            return Run(current_workflow().store, run_id)
        run = current_run(self._shell.user_ns)
        if run is None:
            raise NbflowError(
                "there is no current run: start one with %nbflow run, or pick one with %nbflow attach RUN"
            )
        return run

    def _set_run(self, run: Run) -> Run:
        _state.run = run
        self._shell.user_ns[RUN_VAR] = run
        return run

    def _do_workflow(self, args: argparse.Namespace) -> None:
        wf = select_workflow(args.name, args.db)
        print(f"workflow {wf.name!r} ({len(wf.steps)} steps) in {wf.store.display_url}")

    def _do_run(self, args: argparse.Namespace) -> Run:
        from .. import batch  # papermill's nbflow_resume / nbflow_breakpoints / nbflow_fail_on_pause

        wf = current_workflow()
        params = dict(args.param)
        ns = self._shell.user_ns
        resume_id = batch.resume_target(wf, ns)
        refresh(wf, Run(wf.store, resume_id).params if resume_id else params)
        run = batch.run_or_resume(wf, params, args.breaks, args.break_on_error, resume=resume_id or (), namespace=ns)
        self._set_run(run)
        if args.wait:
            batch.finish(run, display=False, report="unfinished", namespace=ns)
        return run

    @staticmethod
    def _groups(targets: Sequence[tuple[str, str | None]]) -> dict[str, list[str] | None]:
        """STEP[:KEY] targets by step; a bare STEP means all of its instances."""
        groups: dict[str, list[str] | None] = {}
        for step, key in targets:
            if key is None or (step in groups and groups[step] is None):
                groups[step] = None
            else:
                groups.setdefault(step, []).append(key)  # type: ignore[union-attr]
        return groups

    @staticmethod
    def _report(results: Sequence[Any]) -> None:
        for res in results:
            print(res.message if res.applied and res.message else
                  f"{res.verb} queued (command {res.id}); the run's owner applies it")

    def _do_resume(self, args: argparse.Namespace) -> None:
        run = self._run_arg(args.run)
        if not args.targets:
            self._report([run.resume(reason=args.reason)])
            return
        self._report([run.resume(step, keys=keys, reason=args.reason)
                      for step, keys in self._groups(args.targets).items()])

    def _do_skip(self, args: argparse.Namespace) -> None:
        run = self._run_arg(args.run)
        self._report([run.skip(step, keys=keys, output=args.output, reason=args.reason)
                      for step, keys in self._groups(args.targets).items()])

    def _do_retry(self, args: argparse.Namespace) -> None:
        run = self._run_arg(args.run)
        self._report([run.retry(step, keys=keys, reason=args.reason)
                      for step, keys in self._groups(args.targets).items()])

    def _do_cancel(self, args: argparse.Namespace) -> None:
        self._report([self._run_arg(args.run).cancel(reason=args.reason)])

    def _do_break(self, args: argparse.Namespace) -> None:
        step, key = args.target
        log = args.expression is not None
        bp = current_workflow().breakpoints.add(
            step, key, when=args.when, condition=args.condition, action="log" if log else "pause",
            expression=args.expression, hit_count=args.hit_count,
        )
        where = label(step, key)
        print(("logpoint" if log else "breakpoint") + f" {bp.id} on {where} ({bp.when})"
              + (f" if {bp.condition}" if bp.condition else "")
              + (f" logs {bp.expression}" if log else "")
              + (f", from hit {bp.hit_count} on" if bp.hit_count else ""))

    def _do_step(self, args: argparse.Namespace) -> None:
        step, key = args.target
        self._report([self._run_arg(args.run).step_over(step, key=key, reason=args.reason)])

    def _do_debug(self, args: argparse.Namespace) -> Any:
        if args.end:
            if args.target is not None or args.pdb:
                raise UsageError("%nbflow debug --end takes no target and no --pdb")
            ended = debug.end()
            print(f"debug session of {ended.target} ended" if ended else "no instance is being debugged")
            return None
        if args.target is None:
            sess = debug.session()
            print(f"debugging {sess.target} of run {sess.run.id} (end with %nbflow debug --end)" if sess else
                  "no instance is being debugged: %nbflow debug STEP[:KEY] starts")
            return None
        step, key = args.target
        run = self._run_arg(args.run)
        wf = current_workflow()
        today = wf if wf.name == run.workflow_name else None
        if args.pdb:
            debug.run_pdb(run, step, key, self._shell, workflow=today)
            return None
        cell = debug.prepare(run, step, key, self._shell, workflow=today)
        self._shell.set_next_input(cell.code)
        print(f"inputs of {cell.target} bound: {', '.join(cell.bound)}; its body is in the cell below "
              "(end debugging with %nbflow debug --end)")
        return None

    def _do_unbreak(self, args: argparse.Namespace) -> None:
        step, key = args.target
        n = current_workflow().breakpoints.remove(step, key)
        where = label(step, key)
        print(f"removed {n} breakpoint(s) on {where}" if n else f"no breakpoint on {where}")

    def _do_runs(self, args: argparse.Namespace) -> RunsTable:
        wf = current_workflow()
        store = wf.store
        rows = store.run_rows(workflow=None if args.all else wf.name, limit=args.limit or None)
        where = store.display_url + ("" if args.all else f" for workflow {wf.name!r}")
        return RunsTable(run_summaries(store, rows), where)

    def _do_show(self, args: argparse.Namespace) -> None:
        display(self._run_arg(args.run))

    def _do_attach(self, args: argparse.Namespace) -> Run:
        wf = current_workflow()
        refresh(wf, Run(wf.store, args.run).params)
        return self._set_run(wf.attach(args.run))


def load_ipython_extension(ip: Any) -> None:
    """``%load_ext nbflow``: register ``%%step`` and ``%nbflow``."""
    ip.register_magics(NbflowMagics)


__all__ = [
    "CellStep",
    "NbflowMagics",
    "RunsTable",
    "current_run",
    "current_workflow",
    "load_ipython_extension",
    "select_workflow",
]
