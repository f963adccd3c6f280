"""Triage on the command line: ``nbflow errors RUN STEP`` (a step's error groups), and the bulk
selections the instance verbs take (``--keys``, ``--group``, ``--status``, ``--text``), each turned
into one command over the keys it covers. ``set --expr`` computes a new input value per instance.

The groups, keys and filters are computed in the store (:mod:`nbflow.views`); this module only reads
options, names what is wrong, and prints."""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import click
from rich import box
from rich.table import Table
from rich.text import Text

from .. import views
from .._util import plural
from ..commands import check_target
from ..errors import CommandRefused, NbflowError
from ..states import StepKind
from ..store import Store
from ..triage import Expression
from ..verbs import Refusal
from ._common import INSTANCE_STATUSES, Groups, State, compact, console, emit_json, fmt_option, groups_of

F = Callable[..., Any]
PREVIEW = 5
"""How many instances ``set --expr --dry-run`` shows (the widget's preview shows as many)."""
FILTER_STATUSES = [*INSTANCE_STATUSES, "problems"]


# ---------------------------------------------------------------------------------- selections
@dataclass(frozen=True)
class Selection:
    """What the bulk options of a verb name: keys, an error group, or a filter (status and/or text)."""

    keys: tuple[str, ...] = ()
    group: str | None = None
    status: str | None = None
    text: str | None = None

    @property
    def given(self) -> bool:
        return bool(self.keys) or self.group is not None or self.status is not None or self.text is not None

    @property
    def selects(self) -> str:
        """``--keys selects`` / ``--group, --status select``: the options as the subject of a message."""
        return f"{self.options} {'select' if ', ' in self.options else 'selects'}"

    @property
    def first(self) -> str:
        """The first option given (for an example command)."""
        return self.options.split(", ")[0]

    @property
    def options(self) -> str:
        """The options given, as typed (for messages)."""
        named = [("--keys", bool(self.keys)), ("--group", self.group is not None),
                 ("--status", self.status is not None), ("--text", self.text is not None)]
        return ", ".join(n for n, on in named if on)


def _split_keys(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> tuple[str, ...]:
    """``--keys 3,5 --keys 7`` -> ``("3", "5", "7")`` (in order, each once)."""
    out: list[str] = []
    for text in value:
        for part in text.split(","):
            key = part.strip()
            if not key:
                raise click.BadParameter(f"{text!r} has an empty key; write keys as K1,K2,...", ctx, param)
            if key not in out:
                out.append(key)
    return tuple(out)


def selection_options(f: F) -> F:
    """``--keys``, ``--group``, ``--status`` and ``--text``: the instances of one STEP a verb covers."""
    f = click.option("--text", "sel_text", default=None, metavar="TEXT",
                     help="With STEP: every instance whose key, error message or pause reason contains TEXT.")(f)
    f = click.option("--status", "sel_status", default=None, type=click.Choice(FILTER_STATUSES), metavar="STATUS",
                     help="With STEP: every instance in this status (problems: paused, failed, waiting, retrying).")(f)
    f = click.option("--group", "sel_group", default=None, metavar="N|ID",
                     help="With STEP: the instances of error group N (or its id) of `nbflow errors RUN STEP`.")(f)
    return click.option("--keys", "sel_keys", multiple=True, callback=_split_keys, metavar="K1,K2,...",
                        help="With STEP: these keys of the foreach step (repeatable). One command covers them.")(f)


def selection(sel_keys: tuple[str, ...], sel_group: str | None, sel_status: str | None,
              sel_text: str | None) -> Selection:
    if sel_keys and (sel_group is not None or sel_status is not None or sel_text is not None):
        raise click.UsageError("--keys names the instances itself; it does not go with --group, --status or --text "
                               "(use one, or --group with --status/--text to narrow the group)")
    if sel_text is not None and not sel_text.strip():
        raise click.BadParameter("give the text to find in the key, the error or the pause reason (an empty one "
                                 "would select every instance of the step)", param_hint="'--text'")
    if sel_group is not None and not sel_group.strip():
        raise click.BadParameter("name a group by its number (1 is the largest) or its id, as `nbflow errors RUN "
                                 "STEP` lists them", param_hint="'--group'")
    return Selection(sel_keys, sel_group, sel_status, sel_text)


def one_step(targets: Sequence[str], sel: Selection, verb: str) -> str:
    """The one STEP a selection applies to; anything else is a usage error naming the options."""
    if len(targets) != 1 or ":" in targets[0]:
        got = " ".join(targets) or "none"
        raise click.UsageError(f"{sel.selects} instances of one step: name the step alone, "
                               f"`nbflow {verb} RUN STEP {sel.first} ...` (got targets: {got})")
    return targets[0]


def no_group(store: Store, run_id: str, step: str, group: str) -> CommandRefused:
    """The refusal of an unknown error group, naming the step's groups (the first ten)."""
    groups: list[dict[str, Any]] = views.error_groups(store, run_id, step, limit=10)["groups"]
    have = "; ".join(f"{g['n']} (id {g['id']}, {g['type']}, {g['count']} instances)" for g in groups)
    return CommandRefused(
        f"step {step!r} of run {run_id} has no error group {group}; "
        + (f"its groups are: {have} (`nbflow errors {run_id} {step}`)" if have
           else "it has no failed or error-paused instances"),
        Refusal.NOT_FOUND,
    )


def selected_keys(store: Store, row: Mapping[str, Any], step: str, sel: Selection, verb: str) -> list[str]:
    """The key texts *sel* covers in *step* (at least one; else refused, nothing changed)."""
    run_id = row["id"]
    check_target(store, row, step)
    kind = store.definition(row["workflow"], row["version"]).steps[step].kind
    if kind != StepKind.FOREACH:
        raise CommandRefused(
            f"{sel.selects} instances of a foreach step; step {step!r} is a {kind} step with a single "
            f"instance: name it alone, `nbflow {verb} {run_id} {step}`", Refusal.INVALID,
        )
    if sel.keys:
        return list(sel.keys)
    group = None if sel.group is None else sel.group.strip().lower()
    try:
        if group is not None and sel.status is None and sel.text is None:
            keys = views.group_keys(store, run_id, step, group)
        else:
            keys = views.filter_keys(store, run_id, step, status=sel.status, text=sel.text, group=group)
    except NbflowError:
        if group is None:
            raise
        raise no_group(store, run_id, step, str(sel.group)) from None
    if not keys:
        what = " and ".join(p for p in (sel.group and f"group {sel.group}", sel.status and f"status {sel.status}",
                                        sel.text and f"text {sel.text!r}") if p)
        raise CommandRefused(f"no instance of {step!r} in run {run_id} matches {what}; nothing was changed",
                             Refusal.NOT_FOUND)
    return [str(k) for k in keys]


def target_groups(store: Store, row: Mapping[str, Any], targets: Sequence[str], sel: Selection, verb: str) -> Groups:
    """The (step, keys) the command covers: the targets, or the one step's selected keys."""
    if not sel.given:
        return groups_of(targets)
    step = one_step(targets, sel, verb)
    return [(step, selected_keys(store, row, step, sel, verb))]


# ---------------------------------------------------------------------------------- set --expr
def compile_expr(text: str) -> Expression:
    try:
        return Expression(text)
    except NbflowError as exc:
        raise click.BadParameter(str(exc), param_hint="'--expr'") from None


def expr_values(store: Store, run_id: str, step: str, keys: Sequence[str], name: str, expr: Expression
                ) -> tuple[dict[str, Any], list[dict[str, Any]], int]:
    """Evaluate *expr* over each instance's inputs (:func:`nbflow.views.edits`): ``({key: new value},
    preview rows, how many failed)``; the preview has ``{"key", "old", "new"}`` for the first
    :data:`PREVIEW` instances and ``{"key", "old", "error"}`` for the first :data:`PREVIEW` failures."""
    values: dict[str, Any] = {}
    preview: list[dict[str, Any]] = []
    failed = 0
    for n, e in enumerate(views.edits(store, run_id, step, keys, name, expr.evaluate)):
        key = str(e.key)
        if e.error is not None:
            failed += 1
            if failed <= PREVIEW:
                preview.append({"key": key, "old": e.old, "error": e.error})
            continue
        values[key] = e.new
        if n < PREVIEW:
            preview.append({"key": key, "old": e.old, "new": e.new})
    return values, preview, failed


def print_preview(run_id: str, step: str, name: str, count: int, preview: Sequence[Mapping[str, Any]]) -> None:
    table = Table(title=f"set {name} of {plural(count, 'instance')} of {step} in run {run_id}", title_justify="left",
                  box=box.SIMPLE_HEAD)
    for col in ("KEY", "OLD", "NEW"):
        table.add_column(col)
    for p in preview:
        new = Text(f"error: {p['error']}", style="bold red") if "error" in p else Text(compact(p["new"], 60))
        table.add_row(Text(p["key"]), Text(compact(p["old"], 60)), new)
    console().print(table)


# ---------------------------------------------------------------------------------- nbflow errors
def masked(group: Mapping[str, Any]) -> str:
    """A group's message with its values masked: its signature without the type and the failing line."""
    text = str(group["signature"])
    head = f"{group['type']}: "
    text = text.removeprefix(head)
    return text.removesuffix(f" @ {group['line']}") if group["line"] else text


@click.command("errors")
@click.argument("run_id", metavar="RUN")
@click.argument("step", metavar="STEP", required=False)
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True, help="At most N groups.")
@fmt_option
@click.pass_obj
def errors_cmd(obj: State, run_id: str, step: str | None, limit: int, fmt: str | None) -> None:
    """The error groups of STEP in RUN: its failed and error-paused instances grouped by cause.

    A group is one signature: the exception type, the message with numbers and quoted values masked,
    and the failing line. Largest first, numbered 1, 2, ...: act on one with `--group N` on resume,
    retry, skip and set."""
    store = obj.store
    row = store.run_row(run_id)
    if step is None:
        counts = views.instance_counts(store, run_id)
        failing = {s: sum(c.get(st, 0) for st in ("failed", "paused", "retrying")) for s, c in counts.items()}
        named = [f"`nbflow errors {run_id} {s}` ({n} failed, paused or retrying)" for s, n in failing.items() if n]
        raise click.UsageError("name the step whose errors to group: " + ("; ".join(named) if named else
                               f"run {run_id} has no failed, paused or retrying instance"))
    check_target(store, row, step)
    found = views.error_groups(store, run_id, step, limit=limit)
    if obj.format(fmt) == "json":
        emit_json(found)
        return
    groups = found["groups"]
    if not groups:
        click.echo(f"no errors: step {step!r} of run {run_id} has no failed or error-paused instances")
        return
    con = console()
    con.print(Text(f"error groups of {step} in run {run_id}: {found['total']} instances in "
                   f"{plural(len(groups) + found['groups_omitted'], 'group')}, largest first", style="bold"))
    for g in groups:
        states = ", ".join(f"{s} {n}" for s, n in g["statuses"].items() if n)
        keys = [str(k) for k in g["keys"]][:10]
        shown = ", ".join(keys) + (f", … (+{g['count'] - len(keys)})" if g["count"] > len(keys) else "")
        con.print()
        con.print(Text.assemble((f"{g['n']:>3}  ", "bold"), (g["type"], "bold red"),
                                f"  {plural(g['count'], 'instance')} ({states})  ", (f"id {g['id']}", "dim")))
        con.print(Text("     " + masked(g)), soft_wrap=True)
        if g["line"]:
            con.print(Text(f"     at {g['line']}"), soft_wrap=True)
        con.print(Text(f"     keys: {shown}"), soft_wrap=True)
    con.print()
    if found.get("groups_omitted"):
        con.print(Text(f"… and {plural(found['groups_omitted'], 'more group')} (--limit N)", style="dim"))
    con.print(Text("act on a group (N or its id):", style="dim"))
    for line in (f"nbflow retry {run_id} {step} --group N", f"nbflow skip {run_id} {step} --group N --output JSON",
                 f"nbflow set {run_id} {step} --group N --expr EXPR --reason TEXT [--dry-run]"):
        con.print(Text("  " + line, style="dim"), soft_wrap=True)


COMMANDS = (errors_cmd,)
