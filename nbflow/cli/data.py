"""``nbflow diff`` and ``nbflow fork``: two runs compared output by output (``Run.diff``), and a new
run forked from a step or from chosen items of it, with the parent's pinned code, driven here until it
finishes or pauses (as ``nbflow resume`` drives a run it takes over)."""
from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import click
from rich import box
from rich.table import Table
from rich.text import Text

from .. import diffs, views
from .._util import plural
from ..breakpoints import parse_target
from ..run import Run, fork_pinned
from ._common import State, compact, console, echo_err, emit_json, fmt_option, status_text

SHOWN_ROWS = 50
"""Each section of the text diff lists at most this many entries (``-o json`` lists every one)."""


@click.command("diff")
@click.argument("run_a", metavar="RUN_A")
@click.argument("run_b", metavar="RUN_B")
@fmt_option
@click.pass_obj
def diff_cmd(obj: State, run_a: str, run_b: str, fmt: str | None) -> None:
    """What differs between the outputs of RUN_A (before) and RUN_B (after), instance by instance.

    Lists the changed instances, those only RUN_B has (added) and those only RUN_A has (removed); a
    value stored as a file shows as its reference, size and digest. Exit 0 whatever differs."""
    store = obj.store
    result = Run(store, run_a).diff(Run(store, run_b))
    if obj.format(fmt) == "json":
        emit_json(result)
        return
    con = console()
    for section in diffs.SECTIONS:
        entries = result[section]
        if not entries:
            continue
        table = Table(title=f"{section} ({len(entries)})", title_justify="left", box=box.SIMPLE_HEAD)
        for col in ("STEP", "KEY", "BEFORE", "AFTER"):
            table.add_column(col)
        for e in entries[:SHOWN_ROWS]:
            table.add_row(Text(e["step"]), Text("-" if e["key"] is None else str(e["key"])),
                          Text(compact(e["before"], 60)), Text(compact(e["after"], 60)))
        con.print(table)
        if len(entries) > SHOWN_ROWS:
            con.print(Text(f"… and {len(entries) - SHOWN_ROWS} more {section} (-o json lists every one)", style="dim"))
    same = "" if any(result[s] for s in diffs.SECTIONS) else ": the same outputs"
    con.print(Text(f"{run_a} -> {run_b}{same}: {diffs.summary(result)}"))


def _fork_target(targets: Sequence[str]) -> tuple[str, list[str] | None]:
    """``STEP`` -> (step, None); ``STEP:KEY...`` (one step) -> (step, [key text, ...]); else a usage error."""
    parsed = [parse_target(t) for t in targets]
    steps = list(dict.fromkeys(step for step, _ in parsed))
    if len(steps) > 1:
        raise click.UsageError(f"a fork starts from one step; these name {', '.join(map(repr, steps))}: "
                               "write STEP, or STEP:KEY... of one step")
    keys = [k for _, k in parsed if k is not None]
    if keys and len(keys) != len(parsed):
        raise click.UsageError(f"write {steps[0]} alone (fork from the whole step) or only {steps[0]}:KEY targets "
                               "(fork those items), not both")
    return steps[0], (list(dict.fromkeys(keys)) or None)


@click.command("fork")
@click.argument("run_id", metavar="RUN")
@click.argument("targets", nargs=-1, required=True, metavar="STEP[:KEY]...")
@fmt_option
@click.pass_obj
def fork_cmd(obj: State, run_id: str, targets: tuple[str, ...], fmt: str | None) -> None:
    """A new run of RUN's workflow, with its parameters and pinned code, that re-executes from STEP.

    STEP alone: every instance of STEP and what is downstream of it runs again. STEP:KEY...: only those
    items of the foreach STEP run again, with the matching items of each foreach over it and what needs
    their whole list; every other checkpoint is RUN's. The new run is driven here until it finishes or
    pauses (Ctrl-C stops here; `nbflow resume NEW` continues it)."""
    store = obj.store
    step, keys = _fork_target(targets)
    store.run_row(run_id)  # an unknown run is refused before anything else
    run = fork_pinned(store, run_id, step, keys)
    echo_err(f"forked run {run.id} from {run_id} at {step}" + (f" ({plural(len(keys), 'item')})" if keys else "")
             + f" in this process (pid {os.getpid()}) with the pinned code; driving it until it finishes or pauses "
             f"(Ctrl-C stops here; `nbflow resume {run.id}` continues later)")
    try:
        status = run.wait()
    except KeyboardInterrupt:
        echo_err(f"stopped; run {run.id} is left as it is: `nbflow resume {run.id}` continues it")
        sys.exit(130)
    result = {"run": run.id, "parent": run_id, "from_step": step, "keys": keys, "status": str(status)}
    if obj.format(fmt) == "json":
        emit_json(result)
        return
    _print_fork(result, views.run_summary(store, store.run_row(run.id)))


def _print_fork(result: Mapping[str, Any], summary: Mapping[str, Any]) -> None:
    prog = summary["progress"]
    keys = result["keys"]
    what = result["from_step"] if keys is None else ", ".join(f"{result['from_step']}:{k}" for k in keys[:5]) + (
        f", … (+{len(keys) - 5})" if len(keys) > 5 else "")
    console().print(Text.assemble(f"run {result['run']} (fork of {result['parent']} from {what}): ",
                                  status_text(result["status"]),
                                  f"  ({prog['done']}/{prog['total']} instances finished)"))


COMMANDS = (diff_cmd, fork_cmd)
