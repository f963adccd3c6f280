"""Batch runs with papermill: a notebook that starts a workflow and waits finishes when the run is
finished or paused (nothing can move without a person), leaving a paused run in the store to be
resumed later; the CLI's ``nbflow run NOTEBOOK`` and ``nbflow resume RUN --notebook NOTEBOOK``
(:mod:`nbflow.cli.notebooks`) are commands over it.

In the notebook (the kernel side), papermill parameters steer the run:

- ``nbflow_breakpoints = ["step", "step:key", ...]``: extra run-scoped breakpoints for every run
  the notebook starts whose workflow has that step (``nbflow run --break``);
- ``nbflow_resume = "RUN"``: instead of starting a run of RUN's workflow, attach to the stored run
  (today's code, ``wf.attach``) and resume its paused instances; completed instances are in the
  store and never run again (``nbflow resume RUN --notebook``);
- ``nbflow_fail_on_pause = True``: when the run the notebook waits on is paused, raise
  :class:`RunPaused`, so the cells below do not run and papermill exits non-zero
  (``nbflow run --fail-on-pause``).

``%nbflow run [--wait]`` honours them; from Python, :func:`run_or_resume` starts (or attaches) and
:func:`finish` waits, shows the run and applies the fail-on-pause option.

On the executing side, :func:`execute` runs a notebook with papermill, giving the kernel the CLI's store
(``NBFLOW_DB``) and an actor name unique to this execution (``NBFLOW_ACTOR``), so the runs the
notebook created or took over are found afterwards by the actor of their ``run_created`` /
``taken_over`` events. Exit codes: :data:`EXIT_SUCCEEDED` 0, :data:`EXIT_PAUSED` 3,
:data:`EXIT_FAILED` 4 (1 refused, 2 usage, as everywhere in the CLI).
"""
from __future__ import annotations

import ast
import contextlib
import logging
import os
import sys
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._compat import display, get_ipython
from ._util import current_actor
from .breakpoints import parse_target
from .errors import CommandRefused, NbflowError
from .run import Run
from .states import InstanceStatus, RunStatus, label
from .store.queries import runs_of

if TYPE_CHECKING:
    from .store import Store
    from .workflow import Workflow

PARAM_RESUME = "nbflow_resume"
PARAM_BREAKPOINTS = "nbflow_breakpoints"
PARAM_FAIL_ON_PAUSE = "nbflow_fail_on_pause"

EXIT_SUCCEEDED = 0
"""Every run the notebook started (or resumed) succeeded, or it started none; the notebook ran cleanly."""
EXIT_PAUSED = 3
"""The notebook ran cleanly (or stopped on :class:`RunPaused`) and a run is left unfinished: paused, or
interrupted; ``nbflow resume RUN`` continues it."""
EXIT_FAILED = 4
"""A run failed or was cancelled, or the notebook itself failed (a cell raised, the kernel died)."""

OUTCOMES = {EXIT_SUCCEEDED: "succeeded", EXIT_PAUSED: "paused", EXIT_FAILED: "failed"}


class RunPaused(NbflowError):
    """Raised by :func:`finish` (and ``%nbflow run --wait``) when the run is paused and the
    fail-on-pause option is set: the notebook stops there, and papermill exits non-zero."""

    def __init__(self, run: Run, labels: Sequence[str] = ()) -> None:
        self.run = run
        self.run_id = run.id
        where = ", ".join(labels[:5]) + (f" (+{len(labels) - 5} more)" if len(labels) > 5 else "")
        super().__init__(
            f"run {run.id} of workflow {run.workflow_name!r} is paused"
            + (f" at {where}" if where else "")
            + f"; {PARAM_FAIL_ON_PAUSE} is set, so the notebook stops here. The run is saved: "
            f"`nbflow resume {run.id}` continues it"
        )


# ---------------------------------------------------------------------------------- kernel side
@dataclass(frozen=True)
class BatchOptions:
    """What papermill injected into the notebook (or nothing, at an ordinary notebook)."""

    resume: tuple[str, ...] = ()
    breakpoints: tuple[str, ...] = ()
    fail_on_pause: bool = False


def _namespace(namespace: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """The notebook's variables: *namespace*, else the IPython user namespace, else ``__main__``'s."""
    if namespace is not None:
        return namespace
    try:
        ip = get_ipython()
    except ImportError:
        ip = None
    if ip is not None:
        return ip.user_ns  # type: ignore[no-any-return]
    main = sys.modules.get("__main__")
    return vars(main) if main is not None else {}


def _texts(value: Any, name: str) -> tuple[str, ...]:
    if value is None or value in ("", []):
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise NbflowError(f"papermill parameter {name} must be a string or a list of strings, got {value!r}")


def _flag(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def batch_options(namespace: Mapping[str, Any] | None = None) -> BatchOptions:
    """Read ``nbflow_resume``, ``nbflow_breakpoints`` and ``nbflow_fail_on_pause`` from the notebook."""
    ns = _namespace(namespace)
    bps = _texts(ns.get(PARAM_BREAKPOINTS), PARAM_BREAKPOINTS)
    for text in bps:
        parse_target(text)  # a bad target is reported here, naming the parameter's value
    return BatchOptions(
        resume=_texts(ns.get(PARAM_RESUME), PARAM_RESUME),
        breakpoints=bps,
        fail_on_pause=_flag(ns.get(PARAM_FAIL_ON_PAUSE)),
    )


def resume_target(wf: Workflow, namespace: Mapping[str, Any] | None = None,
                  resume: str | Iterable[str] | None = None) -> str | None:
    """The stored run of *wf* to attach to instead of starting one: *resume* if given, else the
    ``nbflow_resume`` parameter; a named run of another workflow is left to that workflow."""
    if resume is None:
        ids = batch_options(namespace).resume
    else:
        ids = (resume,) if isinstance(resume, str) else tuple(resume)
    others = []
    for run_id in ids:
        row = wf.store.run_row(run_id)  # an unknown run id is an error, not a silent new run
        if row["workflow"] == wf.name:
            return run_id
        others.append(f"{run_id} (workflow {row['workflow']!r})")
    if others:
        print(f"nbflow: {PARAM_RESUME} names {', '.join(others)}, not a run of workflow {wf.name!r}: "
              f"starting a new run of {wf.name!r}", file=sys.stderr)
    return None


def _extra_breakpoints(wf: Workflow, texts: Iterable[str]) -> list[str]:
    """The injected breakpoints that name a step of *wf* (a notebook may run several workflows)."""
    return [t for t in texts if parse_target(t)[0] in wf.steps]


def attach_and_resume(wf: Workflow, run_id: str, params: Mapping[str, Any] | None = None) -> Run:
    """Take the stored run over with today's code and resume its paused instances (after the
    commands operators queued while no process drove it, which the new owner applies first)."""
    stored = Run(wf.store, run_id)
    if params and dict(params) != stored.params:
        print(f"nbflow: run {run_id} keeps its stored parameters {stored.params!r}; the parameters given "
              f"here ({dict(params)!r}) are not used", file=sys.stderr)
    run = wf.attach(run_id)
    if run.status.terminal:
        return run
    if run.store.instance_rows(run_id, status=InstanceStatus.PAUSED):
        try:
            run.resume(reason=f"resumed by a batch re-execution ({PARAM_RESUME})")
        except CommandRefused:
            pass  # a queued operator command (skip, set, breakpoint rm) already moved them on
    return run


def run_or_resume(
    wf: Workflow,
    params: Mapping[str, Any] | None = None,
    breakpoints: Iterable[Any] = (),
    break_on_error: bool = False,
    *,
    resume: str | Iterable[str] | None = None,
    namespace: Mapping[str, Any] | None = None,
    **run_options: Any,
) -> Run:
    """``wf.run(...)`` for batch notebooks: adds the injected ``nbflow_breakpoints``; or, when
    ``nbflow_resume`` (or *resume*) names a run of *wf*, attaches to it instead and resumes its
    paused instances (the stored run keeps its own parameters and breakpoints; *params* and
    *breakpoints* are then not used). Returns the :class:`~nbflow.Run` at once."""
    run_id = resume_target(wf, namespace, resume)
    if run_id is not None:
        return attach_and_resume(wf, run_id, params)
    extra = _extra_breakpoints(wf, batch_options(namespace).breakpoints)
    return wf.run(params, [*breakpoints, *extra], break_on_error, **run_options)


def paused_labels(run: Run) -> list[str]:
    return [label(r["step"], r["key"])
            for r in run.store.instance_rows(run.id, status=InstanceStatus.PAUSED)]


def report_text(run: Run, status: RunStatus | None = None, limit: int = 20) -> str:
    """The lines a batch notebook prints after its wait: status, progress, paused instances, how to go on."""
    from . import views

    row = run.store.run_row(run.id)
    status = RunStatus(row["status"]) if status is None else status
    summary = views.run_summary(run.store, row)
    prog = summary["progress"]
    extra = " (interrupted: no process drives it)" if summary["interrupted"] and status == RunStatus.RUNNING else ""
    head = f"nbflow run {run.id} of workflow {run.workflow_name!r}: {status}{extra}, "
    lines = [head + f"{prog['done']}/{prog['total']} instances finished"]
    paused = run.store.instance_rows(run.id, status=InstanceStatus.PAUSED)
    if paused:
        lines.append(f"paused instances ({len(paused)}):")
        for r in paused[:limit]:
            where = label(r["step"], r["key"])
            why = r["pause_reason"] or ""
            if r["error_type"]:
                why += f" ({r['error_type']}: {r['error_message']})"
            lines.append(f"  {where}  {why}".rstrip())
        if len(paused) > limit:
            lines.append(f"  ... and {len(paused) - limit} more (`nbflow show {run.id} --status paused`)")
    if not status.terminal:
        lines.append(
            f"the run is saved in {run.store.display_url}; continue it with `nbflow resume {run.id}` (its pinned "
            f"code), `nbflow resume {run.id} --notebook NOTEBOOK` (this notebook again), or debug it from "
            f"another notebook with nbflow.attach({run.id!r})"
        )
    return "\n".join(lines)


def show(run: Run) -> None:
    """Display the run: its rich display in a notebook (widget + static DAG), else its text."""
    try:
        shell = get_ipython()
    except ImportError:
        shell = None
    if shell is not None:
        try:
            display(run)
            return
        except Exception as exc:  # noqa: BLE001 - a broken rich display must not lose the summary
            print(f"nbflow: the run's rich display failed ({type(exc).__name__}: {exc})", file=sys.stderr)
    print(repr(run))


def finish(run: Run, *, fail_on_pause: bool | None = None, display: bool = True, report: str = "always",
           namespace: Mapping[str, Any] | None = None, timeout: float | None = None) -> RunStatus:
    """Block until *run* is finished or paused (nothing can move without a person), show it (run
    id, status, static DAG) and print its paused instances; return its status. Raises
    :class:`RunPaused` when it is paused and *fail_on_pause* (default: the ``nbflow_fail_on_pause``
    parameter) is true. *display* False leaves the rich display to the caller (a magic that returns
    the run), unless it raises; *report* ``"always"``, ``"unfinished"`` (not when it succeeded) or
    ``"never"`` says when to print the text report."""
    status = run.wait(timeout)
    if fail_on_pause is None:
        fail_on_pause = batch_options(namespace).fail_on_pause
    raising = bool(fail_on_pause) and status == RunStatus.PAUSED
    if display or raising:
        show(run)
    if report == "always" or (report == "unfinished" and status != RunStatus.SUCCEEDED) or raising:
        print(report_text(run, status))
    if raising:
        raise RunPaused(run, paused_labels(run))
    return status


# ---------------------------------------------------------------------------------- executing side
@dataclass
class BatchResult:
    """One papermill execution: where it wrote, what the notebook raised, which runs it drove."""

    notebook: str
    output: str
    actor: str
    runs: list[str] = field(default_factory=list)
    error: dict[str, Any] | None = None
    exit_code: int = EXIT_SUCCEEDED

    @property
    def outcome(self) -> str:
        return OUTCOMES.get(self.exit_code, "failed")


def parse_value(text: str) -> Any:
    """A ``-p NAME VALUE`` value: a Python literal (``5``, ``True``, ``[1, 2]``, ``'x'``), else the text."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text


class _QuietOwnParameters(logging.Filter):
    """papermill warns about parameters the notebook does not declare; ours never are."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Passed unknown parameter: nbflow_")


@contextlib.contextmanager
def _environ(values: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for the kernel papermill starts (it inherits this process's)."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def exit_code_for(store: Store, run_ids: Iterable[str], error: Mapping[str, Any] | None) -> int:
    """Failed (a run failed or was cancelled, or the notebook failed other than by RunPaused) >
    paused (a run is unfinished) > succeeded."""
    if error is not None and error.get("ename") != RunPaused.__name__:
        return EXIT_FAILED
    statuses = [RunStatus(store.run_row(r)["status"]) for r in run_ids]
    if any(s in (RunStatus.FAILED, RunStatus.CANCELLED) for s in statuses):
        return EXIT_FAILED
    if any(not s.terminal for s in statuses) or error is not None:
        return EXIT_PAUSED
    return EXIT_SUCCEEDED


def default_output(notebook: Path, run_id: str | None = None) -> Path:
    """``NAME.out.ipynb`` (or ``NAME.RUN.out.ipynb`` for a resume) beside the notebook."""
    stem = notebook.name.removesuffix(".ipynb")
    return notebook.with_name(f"{stem}.{run_id}.out.ipynb" if run_id else f"{stem}.out.ipynb")


def execute(
    notebook: str | Path,
    output: str | Path | None = None,
    parameters: Mapping[str, Any] | None = None,
    *,
    store: Store | str | None = None,
    breakpoints: Sequence[str] = (),
    fail_on_pause: bool = False,
    resume: str | None = None,
    kernel: str | None = None,
    cwd: str | Path | None = None,
    progress: bool = False,
) -> BatchResult:
    """Execute *notebook* with papermill against *store* (the kernel gets ``NBFLOW_DB``), injecting
    the nbflow parameters; return the runs it created or took over and the exit code they mean.
    The kernel runs in the notebook's folder unless *cwd* is given."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    from .store import Store as _Store

    st = _Store.open(store)
    for text in breakpoints:
        parse_target(text)
    nb = Path(notebook).resolve()
    out = Path(output).resolve() if output is not None else default_output(nb, resume)
    actor = f"{current_actor()} (batch {uuid.uuid4().hex[:8]})"
    params: dict[str, Any] = dict(parameters or {})
    if breakpoints:
        params[PARAM_BREAKPOINTS] = list(breakpoints)
    if fail_on_pause:
        params[PARAM_FAIL_ON_PAUSE] = True
    if resume:
        params[PARAM_RESUME] = resume
    env = {"NBFLOW_DB": st.url, "NBFLOW_ACTOR": actor}
    if not st.is_sqlite:
        env["NBFLOW_ARTIFACTS"] = str(st.artifacts.root)
    result = BatchResult(notebook=str(nb), output=str(out), actor=actor)
    since = time.time() - 1.0
    quiet = _QuietOwnParameters()
    pm_log = logging.getLogger("papermill")
    pm_log.addFilter(quiet)
    try:
        with _environ(env):
            papermill.execute_notebook(
                str(nb), str(out), parameters=params, kernel_name=kernel, cwd=str(cwd or nb.parent),
                progress_bar=progress, request_save_on_cell_execute=True,
            )
    except PapermillExecutionError as exc:
        result.error = {"ename": exc.ename, "evalue": exc.evalue, "cell": exc.exec_count}
    except Exception as exc:  # noqa: BLE001 - the kernel died, a bad kernel name, ...: the notebook failed
        result.error = {"ename": type(exc).__name__, "evalue": str(exc), "cell": None}
    finally:
        pm_log.removeFilter(quiet)
    result.runs = runs_of(st, actor, since)
    if resume and resume not in result.runs:
        result.runs.insert(0, resume)
    result.exit_code = exit_code_for(st, result.runs, result.error)
    return result


def result_view(store: Store, result: BatchResult) -> dict[str, Any]:
    """``nbflow run -o json``: the execution and each run's summary with its paused instances."""
    from . import views

    runs = []
    for run_id in result.runs:
        item = views.run_summary(store, store.run_row(run_id))
        item["paused_instances"] = views.paused_instances(Run(store, run_id))
        runs.append(item)
    return {
        "notebook": result.notebook,
        "output": result.output,
        "actor": result.actor,
        "outcome": result.outcome,
        "exit_code": result.exit_code,
        "error": result.error,
        "runs": runs,
    }


__all__ = [
    "EXIT_FAILED",
    "EXIT_PAUSED",
    "EXIT_SUCCEEDED",
    "PARAM_BREAKPOINTS",
    "PARAM_FAIL_ON_PAUSE",
    "PARAM_RESUME",
    "BatchOptions",
    "BatchResult",
    "RunPaused",
    "attach_and_resume",
    "batch_options",
    "execute",
    "finish",
    "report_text",
    "result_view",
    "resume_target",
    "run_or_resume",
    "runs_of",
    "show",
]
