"""``nbflow run NOTEBOOK`` and ``nbflow resume RUN --notebook NB``: the papermill commands, over
:mod:`nbflow.batch` (which executes the notebook and finds the runs it drove). Exit codes:
:data:`~nbflow.batch.EXIT_SUCCEEDED` 0, :data:`~nbflow.batch.EXIT_PAUSED` 3,
:data:`~nbflow.batch.EXIT_FAILED` 4 (1 refused, 2 usage, as everywhere in the CLI)."""
from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import click
from rich import box
from rich.table import Table
from rich.text import Text

from .._util import dumps
from ..batch import PARAM_RESUME, BatchResult, execute, parse_value, result_view
from ..breakpoints import parse_target
from ..errors import CommandRefused, NbflowError, OwnershipError
from ..run import Run
from ..states import RunStatus, label
from ..store import Store
from ._common import State, confirm, console


def _print_result(store: Store, result: BatchResult, view: Mapping[str, Any], notebook_arg: str) -> None:
    con = console()
    click.echo(f"executed {result.notebook} -> {result.output}")
    if result.error is not None:
        where = f" in cell [{result.error['cell']}]" if result.error.get("cell") is not None else ""
        click.echo(f"the notebook stopped{where}: {result.error['ename']}: {result.error['evalue']}", err=True)
    if not view["runs"]:
        click.echo(f"the notebook started no nbflow run in {store.display_url}")
    else:
        table = Table(box=box.SIMPLE_HEAD)
        for col in ("RUN", "WORKFLOW", "STATUS", "PROGRESS", "PAUSED AT"):
            table.add_column(col)
        for r in view["runs"]:
            labels = [p["step"] if p["key"] is None else f"{p['step']}:{p['key']}" for p in r["paused_instances"]]
            status = r["status"] + (" (interrupted)" if r["interrupted"] and r["status"] == "running" else "")
            table.add_row(Text(r["id"]), Text(r["workflow"]), Text(status),
                          f"{r['progress']['done']}/{r['progress']['total']}",
                          Text(", ".join(labels[:6]) + (" …" if len(labels) > 6 else "") or "-"))
        con.print(table)
        for r in view["runs"]:
            if r["status"] not in ("succeeded", "failed", "cancelled"):
                click.echo(f"continue run {r['id']}: `nbflow resume {r['id']}` (pinned code) or "
                           f"`nbflow resume {r['id']} --notebook {notebook_arg}`")
    click.echo(f"outcome: {result.outcome} (exit {result.exit_code})")


def _report(obj: State, fmt: str | None, result: BatchResult, notebook_arg: str) -> None:
    store = obj.store
    view = result_view(store, result)
    if obj.format(fmt) == "json":
        click.echo(dumps(view, indent=2))
    else:
        _print_result(store, result, view, notebook_arg)
    sys.exit(result.exit_code)


def _param_pairs(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in pairs:
        if not name.isidentifier():
            raise click.BadParameter(f"{name!r} is not a Python name", param_hint="'-p'")
        if name.startswith("nbflow_"):
            raise click.BadParameter(
                f"{name} is set by nbflow itself (use --break, --fail-on-pause, or `nbflow resume RUN --notebook`)",
                param_hint="'-p'",
            )
        out[name] = parse_value(value)
    return out


def _check_targets(breaks: Iterable[str]) -> list[str]:
    out = []
    for text in breaks:
        try:
            step, key = parse_target(text)
        except NbflowError as exc:
            raise click.BadParameter(str(exc), param_hint="'--break'") from None
        out.append(label(step, key))
    return out


_NB = click.Path(exists=True, dir_okay=False, path_type=Path)


@click.command("run")
@click.argument("notebook", metavar="NOTEBOOK", type=_NB)
@click.option("-p", "--parameter", "parameters", nargs=2, multiple=True, metavar="NAME VALUE",
              help="A papermill parameter (repeatable); VALUE is a Python literal, else a string.")
@click.option("--output", "output", default=None, type=click.Path(dir_okay=False, path_type=Path), metavar="OUT",
              help="The executed notebook (default: NOTEBOOK's name with .out.ipynb, beside it).")
@click.option("--break", "breaks", multiple=True, metavar="STEP[:KEY]",
              help="A run-scoped breakpoint for the runs the notebook starts (repeatable); injected as "
                   "nbflow_breakpoints, honoured by %nbflow run and nbflow.batch.run_or_resume.")
@click.option("--fail-on-pause", is_flag=True,
              help="Inject nbflow_fail_on_pause=True: the notebook stops with RunPaused at a paused run "
                   "(the cells below do not run).")
@click.option("--kernel", default=None, metavar="NAME", help="The kernel (default: the notebook's).")
@click.option("-o", "--format", "fmt", type=click.Choice(["text", "json"]), default=None,
              help="text (the default) or json.")
@click.pass_obj
def run_cmd(obj: State, notebook: Path, parameters: tuple[tuple[str, str], ...], output: Path | None,
            breaks: tuple[str, ...], fail_on_pause: bool, kernel: str | None, fmt: str | None) -> None:
    """Execute NOTEBOOK with papermill against this store and report the runs it started.

    Exit codes: 0 every run succeeded, 3 a run is left paused (or interrupted) and can be resumed,
    4 a run failed or the notebook failed, 1 refused, 2 usage.
    """
    params = _param_pairs(parameters)
    bps = _check_targets(breaks)
    result = execute(notebook, output, params, store=obj.store, breakpoints=bps, fail_on_pause=fail_on_pause,
                     kernel=kernel)
    steps: set[str] = set()
    for run_id in result.runs:
        row = obj.store.run_row(run_id)
        steps |= set(obj.store.definition(row["workflow"], row["version"]).steps)
    for text in bps:
        if result.runs and parse_target(text)[0] not in steps:
            click.echo(f"warning: --break {text} names no step of the runs the notebook started", err=True)
    _report(obj, fmt, result, str(notebook))


def resume_notebook(obj: State, run_id: str, targets: Sequence[str], notebook: Path, output: Path | None,
                    parameters: Iterable[tuple[str, str]], force: bool, fmt: str | None,
                    kernel: str | None = None) -> None:
    """``nbflow resume RUN --notebook NB``: re-execute NB with ``nbflow_resume=RUN``; its workflow
    attaches to the stored run with today's code, and resumes every paused instance."""
    from ..engine.owners import owner_alive, owner_text

    if targets:
        raise click.UsageError("--notebook resumes every paused instance; name no STEP[:KEY] with it")
    params = _param_pairs(parameters)
    store = obj.store
    row = store.run_row(run_id)
    status = RunStatus(row["status"])
    if status.terminal:
        raise CommandRefused(f"run {run_id} is {status}; a finished run cannot be resumed (nothing to do)")
    if owner_alive(row):
        raise OwnershipError(
            f"run {run_id} is owned by a live process ({owner_text(row)}); resume it there, or with "
            f"`nbflow resume {run_id}` (its owner applies it)"
        )
    confirm(force, f"re-execute {notebook} to resume run {run_id} (workflow {row['workflow']}) with the "
                    f"notebook's code?", f"refusing to resume run {run_id} with {notebook}")
    result = execute(notebook, output, params, store=store, resume=run_id, kernel=kernel)
    if not any(e.kind == "taken_over" and e.actor == result.actor for e in Run(store, run_id).history()):
        click.echo(f"warning: the notebook did not attach to run {run_id}: it must start its run with "
                   f"`%nbflow run` or nbflow.batch.run_or_resume(wf, ...), which honour {PARAM_RESUME}", err=True)
    _report(obj, fmt, result, str(notebook))


COMMANDS = (run_cmd,)
