"""``nbflow breakpoint list|add|rm``."""
from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import click
from rich import box
from rich.table import Table
from rich.text import Text

from .. import views
from ..breakpoints import Breakpoint, parse_target, validate
from ..commands import add_breakpoint, remove_breakpoints
from ..errors import CommandRefused
from ..states import RunStatus, StepKind, When
from ..store import Store
from ._common import Group, State, console, emit_json, fmt_option, target_text


@click.group("breakpoint", cls=Group)
def breakpoint_grp() -> None:
    """List, add and remove breakpoints (workflow-scoped: every run; run-scoped: one run)."""


def _scope(store: Store, workflow: str | None, run_id: str | None) -> tuple[str, Mapping[str, Any] | None]:
    if (workflow is None) == (run_id is None):
        raise click.UsageError("pass exactly one of --workflow W or --run RUN")
    if run_id is not None:
        row = store.run_row(run_id)
        return row["workflow"], row
    return str(workflow), None


@breakpoint_grp.command("list")
@click.option("--workflow", default=None, help="The workflow-scoped breakpoints of W.")
@click.option("--run", "run_id", default=None, metavar="RUN",
              help="The breakpoints that apply to RUN (its workflow's and its own).")
@fmt_option
@click.pass_obj
def breakpoint_list(obj: State, workflow: str | None, run_id: str | None, fmt: str | None) -> None:
    """List breakpoints; with neither option, those of every workflow with runs in the store."""
    if workflow is not None and run_id is not None:
        raise click.UsageError("pass at most one of --workflow W or --run RUN")
    items = views.breakpoints_list(obj.store, workflow, run_id)
    if obj.format(fmt) == "json":
        emit_json(items)
        return
    if not items:
        click.echo("no breakpoints")
        return
    table = Table(box=box.SIMPLE_HEAD)
    for col in ("ID", "WORKFLOW", "SCOPE", "TARGET", "WHEN", "IF", "BY"):
        table.add_column(col)
    for b in items:
        scope = "workflow" if b["scope"] == "workflow" else f"run {b['run_id']}"
        table.add_row(
            str(b["id"]), Text(b["workflow"]), Text(scope), Text(target_text(b["step"], b["key"])), b["when"],
            Text(b["condition"] or "-"), Text(b["created_by"] or "-"),
        )
    console().print(table)


def _definition_for(store: Store, workflow: str, row: Mapping[str, Any] | None) -> dict[str, Any]:
    """The stored definition a breakpoint is checked against: the run's version, or the workflow's newest run's."""
    if row is not None:
        return store.definition(row["workflow"], row["version"])
    newest = store.run_rows(workflow=workflow, limit=1)
    if not newest:
        raise CommandRefused(
            f"workflow {workflow!r} has no runs in {store.display_url}, so its steps are unknown here; "
            f"check the name with `nbflow runs`, or add the breakpoint from Python with wf.breakpoints.add(...)"
        )
    return store.definition(workflow, newest[0]["version"])


@breakpoint_grp.command("add")
@click.option("--workflow", default=None, help="Workflow-scoped: every run of W, now and later.")
@click.option("--run", "run_id", default=None, metavar="RUN", help="Run-scoped: only RUN (deleted when it ends).")
@click.argument("target", metavar="STEP[:KEY]")
@click.option("--when", type=click.Choice([w.value for w in When]), default="before", show_default=True,
              help="before the body, after it (output not yet visible downstream), or on error.")
@click.option("--if", "condition", default=None, metavar="EXPR",
              help="Only when this Python expression over the instance's inputs is true, e.g. \"item['x'] > 3\".")
@fmt_option
@click.pass_obj
def breakpoint_add(
    obj: State, workflow: str | None, run_id: str | None, target: str, when: str, condition: str | None,
    fmt: str | None,
) -> None:
    """Add a breakpoint on STEP (or one foreach item, STEP:KEY); live runs apply it at once."""
    store = obj.store
    name, row = _scope(store, workflow, run_id)
    if row is not None and RunStatus(row["status"]).terminal:
        raise CommandRefused(
            f"run {row['id']} is {row['status']}; a run-scoped breakpoint only applies to an unfinished run "
            f"(use --workflow {row['workflow']} for later runs)"
        )
    definition = _definition_for(store, name, row)
    step, key = parse_target(target)
    bp = Breakpoint(step, key, When(when), condition, workflow=name)
    validate(bp, definition["steps"])
    kind = definition["steps"][step]["kind"]
    if key is not None and kind != StepKind.FOREACH:
        raise CommandRefused(
            f"step {step!r} is a {kind} step with a single instance; a key only narrows a foreach step: write {step}"
        )
    if key is not None and row is not None:
        have = {r["key"] for r in store.instance_rows(row["id"], step=step)}
        if have and key not in have:
            raise CommandRefused(
                f"step {step!r} of run {row['id']} has no instance with key {key} (it has {len(have)})"
            )
    created = add_breakpoint(store, name, bp, run_id)
    stored = [b for b in store.breakpoint_rows(name, run_id) if b["id"] == created.id]
    result = views.breakpoint_view(stored[0] if stored else {  # removed again meanwhile: describe what was added
        "id": created.id, "workflow": name, "run_id": run_id, "step": created.step, "key": created.key,
        "when": str(created.when), "condition": created.condition, "created_by": created.created_by,
        "created_at": time.time(),
    })
    if obj.format(fmt) == "json":
        emit_json(result)
        return
    scope = f"run {run_id}" if run_id else f"workflow {name!r}"
    cond = f", if {condition}" if condition else ""
    click.echo(f"breakpoint {created.id} added on {target_text(step, key)} ({when}{cond}) for {scope}")


@breakpoint_grp.command("rm")
@click.option("--workflow", default=None, help="Remove from the workflow-scoped breakpoints of W.")
@click.option("--run", "run_id", default=None, metavar="RUN", help="Remove from RUN's own breakpoints.")
@click.argument("target", metavar="STEP[:KEY]")
@fmt_option
@click.pass_obj
def breakpoint_rm(obj: State, workflow: str | None, run_id: str | None, target: str, fmt: str | None) -> None:
    """Remove the breakpoints on STEP (every one, keyed ones included) or on STEP:KEY only.

    Instances that they alone held resume."""
    store = obj.store
    name, _row = _scope(store, workflow, run_id)
    step, key = parse_target(target)
    n = remove_breakpoints(store, name, step, key, run_id)
    if obj.format(fmt) == "json":
        emit_json({"removed": n, "workflow": name, "run_id": run_id, "step": step, "key": key})
        return
    scope = f"run {run_id}" if run_id else f"workflow {name!r}"
    click.echo(f"removed {n} breakpoint(s) on {target_text(step, key)} from {scope}")

