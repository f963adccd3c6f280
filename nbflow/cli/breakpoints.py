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
from ..breakpoints import parse_target
from ..commands import add_breakpoint, breakpoint_scope, check_breakpoint, remove_breakpoints
from ..errors import CommandRefused
from ..states import When
from ..store import Store
from ..verbs import Refusal
from ._common import Group, State, console, emit_json, fmt_option, target_text


@click.group("breakpoint", cls=Group)
def breakpoint_grp() -> None:
    """List, add and remove breakpoints (workflow-scoped: every run; run-scoped: one run)."""


def _scope(store: Store, workflow: str | None, run_id: str | None) -> tuple[str, Mapping[str, Any] | None]:
    """:func:`nbflow.commands.breakpoint_scope`; naming both or neither is a usage error (exit 2)."""
    try:
        return breakpoint_scope(store, workflow, run_id)
    except CommandRefused as exc:
        if exc.code == Refusal.INVALID:
            raise click.UsageError(str(exc)) from None
        raise


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
    for col in ("ID", "WORKFLOW", "SCOPE", "TARGET", "WHEN", "IF", "ACTION", "HIT COUNT", "HITS", "BY"):
        table.add_column(col)
    for b in items:
        scope = "workflow" if b["scope"] == "workflow" else f"run {b['run_id']}"
        if b["one_shot"]:
            scope += f", one-shot ({b['origin']})" if b["origin"] else ", one-shot"
        action = f"log {b['expression']}" if b["action"] == "log" else b["action"]
        table.add_row(
            str(b["id"]), Text(b["workflow"]), Text(scope), Text(target_text(b["step"], b["key"])), b["when"],
            Text(b["condition"] or "-"), Text(action), f">= {b['hit_count']}" if b["hit_count"] else "-",
            str(b["hits"]) if b["scope"] == "run" or run_id is not None else "-", Text(b["created_by"] or "-"),
        )
    console().print(table)


@breakpoint_grp.command("add")
@click.option("--workflow", default=None, help="Workflow-scoped: every run of W, now and later.")
@click.option("--run", "run_id", default=None, metavar="RUN", help="Run-scoped: only RUN (deleted when it ends).")
@click.argument("target", metavar="STEP[:KEY]")
@click.option("--when", type=click.Choice([w.value for w in When]), default="before", show_default=True,
              help="before the body, after it (output not yet visible downstream), or on error.")
@click.option("--if", "condition", default=None, metavar="EXPR",
              help="Only when this Python expression over the instance's inputs is true, e.g. \"item['x'] > 3\".")
@click.option("--log", "expression", default=None, metavar="EXPR",
              help="A logpoint: never pause; record EXPR's value (over the inputs; `output` after the body, `error` "
                   "on error) as a `logpoint` event of each instance that reaches it, e.g. \"item['x']\".")
@click.option("--hit-count", "hit_count", default=None, type=int, metavar="N",
              help="Act from the Nth instance that reaches it (and matches --if) in a run on; the first N-1 pass.")
@fmt_option
@click.pass_obj
def breakpoint_add(
    obj: State, workflow: str | None, run_id: str | None, target: str, when: str, condition: str | None,
    expression: str | None, hit_count: int | None, fmt: str | None,
) -> None:
    """Add a breakpoint on STEP (or one foreach item, STEP:KEY); live runs apply it at once. With --log it
    is a logpoint: it records a value and never pauses."""
    store = obj.store
    name, row = _scope(store, workflow, run_id)
    step, key = parse_target(target)
    action = "log" if expression is not None else "pause"
    bp = check_breakpoint(store, name, row, step, key, when, condition, action=action, expression=expression,
                          hit_count=hit_count)
    created = add_breakpoint(store, name, bp, bp.run_id)
    stored = [b for b in store.breakpoint_rows(name, run_id) if b["id"] == created.id]
    result = views.breakpoint_view(stored[0] if stored else {  # removed again meanwhile: describe what was added
        "id": created.id, "workflow": name, "run_id": run_id, "step": created.step, "key": created.key,
        "when": str(created.when), "condition": created.condition, "created_by": created.created_by,
        "created_at": time.time(), "action": str(created.action), "expression": created.expression,
        "hit_count": created.hit_count, "one_shot": created.one_shot, "origin": created.origin,
    })
    if obj.format(fmt) == "json":
        emit_json(result)
        return
    scope = f"run {run_id}" if run_id else f"workflow {name!r}"
    what = f"logpoint {created.id} ({expression})" if action == "log" else f"breakpoint {created.id}"
    cond = f", if {condition}" if condition else ""
    hits = f", from hit {hit_count} on" if hit_count is not None else ""
    click.echo(f"{what} added on {target_text(step, key)} ({when}{cond}{hits}) for {scope}")


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


COMMANDS = (breakpoint_grp,)
