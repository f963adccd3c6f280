"""The ``nbflow`` command: list and inspect runs, manage breakpoints, and operate on runs.

Every verb reads through the store's query helpers and :mod:`nbflow.views`, and acts through
:mod:`nbflow.commands` (the one command path); it never writes store tables itself.
Exit codes: 0 done, 1 refused or unknown run/step/key (the reason on stderr), 2 usage.
README.md documents every verb (section "The CLI: `nbflow`") and every field of ``-o json``
(its "JSON reference").
"""
from __future__ import annotations

import json
import os
import sqlite3
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import click
import sqlalchemy as sa
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from . import views
from ._util import HOST, dumps, parse_json, process_state
from .breakpoints import Breakpoint, parse_target, validate
from .commands import add_breakpoint, check_pending, remove_breakpoints, submit
from .errors import CommandRefused, NbflowError, OwnershipError
from .states import InstanceStatus, RunStatus, StepKind, When
from .store import Store
from .store.store import error_text, store_error

APPLY_WAIT_S = 10.0
"""How long a verb sent to a live owner waits to report the owner's answer (it applies within ~0.1 s)."""

RUN_STATUSES = [s.value for s in RunStatus]
INSTANCE_STATUSES = [s.value for s in InstanceStatus]
ATTENTION = ("paused", "failed", "retrying", "waiting")
"""The instance states `nbflow show` lists in text by default: the ones a person may act on."""

STYLE = {
    "running": "cyan", "ready": "cyan", "pending": "dim", "retrying": "yellow", "paused": "bold yellow",
    "waiting": "yellow", "succeeded": "green", "skipped": "green", "failed": "bold red", "cancelled": "magenta",
}


# ---------------------------------------------------------------------------------- plumbing
class _State:
    """What the group's options leave for the verbs: the store URL and the default output format."""

    def __init__(self, db: str | None, fmt: str | None) -> None:
        self.db = db
        self.fmt = fmt
        self._store: Store | None = None

    @property
    def store(self) -> Store:
        if self._store is None:
            try:
                self._store = Store.open(self.db)
            except sa.exc.ArgumentError as exc:
                raise click.BadParameter(
                    f"{self.db!r} is not a usable SQLAlchemy URL ({exc})", param_hint="'--db'"
                ) from None
            except sa.exc.OperationalError as exc:
                raise click.ClickException(f"cannot open the store {self.db or '(default)'}: {exc.orig}") from None
            except ImportError as exc:
                raise click.ClickException(
                    f"cannot open the store: its database driver is not installed ({exc}); "
                    "install the driver the URL names (for PostgreSQL: psycopg)"
                ) from None
        return self._store

    def format(self, fmt: str | None) -> str:
        return fmt or self.fmt or "text"


class _Group(click.Group):
    """Turns nbflow's own errors into exit code 1 with their message, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except NbflowError as exc:
            raise click.ClickException(str(exc)) from None
        except (sa.exc.SQLAlchemyError, sqlite3.Error) as exc:  # a query the store's own mapping did not see
            obj = ctx.obj
            known = obj._store if isinstance(obj, _State) else None
            where = known.where if known is not None else f"the store {getattr(obj, 'db', None) or '(default)'}"
            err = store_error(where, exc)
            raise click.ClickException(str(err) if err else f"{where} failed: {error_text(exc)}") from None


def _fmt_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "-o", "--format", "fmt", type=click.Choice(["text", "json"]), default=None,
        help="text (tables for people, the default) or json (stable, for scripts).",
    )(f)


def _force_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--force", is_flag=True, help="Do not ask for confirmation (needed without a terminal).")(f)


def _reason_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--reason", default=None, help="Why: recorded in the run's history with your name.")(f)


def _emit_json(value: Any) -> None:
    """Print *value* as strict JSON (NaN or a lone surrogate in a stored value is shown as text)."""
    click.echo(dumps(value, indent=2))


def _console() -> Console:
    return Console(highlight=False, width=None if sys.stdout.isatty() else 160)


def _err(message: str) -> None:
    click.echo(message, err=True)


def _local(iso: str | None) -> str:
    if iso is None:
        return "-"
    return datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _status_text(status: str) -> Text:
    return Text(status, style=STYLE.get(status, ""))


def _compact(value: Any, width: int = 100) -> str:
    text = dumps(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def _label(step: str | None, key: str | None) -> str:
    if step is None:
        return "-"
    return step if key is None else f"{step}:{key}"


def _parse_json(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    """Click callback: the option's JSON value; invalid JSON, NaN, Infinity or a lone surrogate is a
    usage error (exit 2) naming the option. ``@FILE`` reads the JSON from FILE (``@-``: standard input),
    as curl does: a value above ~128 KiB does not fit in one command-line argument."""
    if value is None:
        return _UNSET
    if value.startswith("@"):
        source = value[1:]
        try:
            value = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise click.BadParameter(f"cannot read JSON from {source!r}: {exc}", ctx, param) from None
    try:
        return parse_json(value)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(
            f"not valid JSON ({exc}); write a JSON value, e.g. '{{\"x\": 1}}', '3' or '\"text\"' (quotes included)",
            ctx, param,
        ) from None
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None


_UNSET: Any = object()


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--db", envvar="NBFLOW_DB", default=None, metavar="URL",
    help="The store: a SQLAlchemy URL (default: $NBFLOW_DB, else sqlite:///./.nbflow/nbflow.db).",
)
@_fmt_option
@click.version_option(package_name="nbflow", prog_name="nbflow")
@click.pass_context
def cli(ctx: click.Context, db: str | None, fmt: str | None) -> None:
    """nbflow: inspect and operate workflow runs stored in an nbflow database.

    Exit codes: 0 done, 1 refused or unknown run/step/key (the reason is printed), 2 usage.
    """
    ctx.obj = _State(db, fmt)


# ---------------------------------------------------------------------------------- runs
@cli.command("runs")
@click.option("--workflow", default=None, help="Only runs of this workflow.")
@click.option("--status", multiple=True, type=click.Choice(RUN_STATUSES), help="Only runs in this status (repeatable).")
@click.option("--limit", type=click.IntRange(min=0), default=50, show_default=True,
              help="At most N runs, newest first (0: all).")
@_fmt_option
@click.pass_obj
def runs_cmd(obj: _State, workflow: str | None, status: tuple[str, ...], limit: int, fmt: str | None) -> None:
    """List runs, newest first."""
    store = obj.store
    rows = store.run_rows(workflow=workflow, status=list(status) or None, limit=limit or None)
    items = [views.run_summary(store, r) for r in rows]
    if obj.format(fmt) == "json":
        _emit_json(items)
        return
    if not items:
        click.echo(f"no runs in {store.display_url}" + (f" for workflow {workflow!r}" if workflow else ""))
        return
    table = Table(box=box.SIMPLE_HEAD)
    for col in ("ID", "WORKFLOW", "STATUS", "OWNER", "CREATED", "PAUSED", "PROGRESS"):
        table.add_column(col, justify="right" if col in ("PAUSED", "PROGRESS") else "left")
    for it in items:
        table.add_row(
            Text(it["id"]), Text(it["workflow"]), _status_text(it["status"]), _owner_cell(it),
            _local(it["created"]), str(it["paused"]), f"{it['progress']['done']}/{it['progress']['total']}",
        )
    _console().print(table)


def _owner_cell(view: Mapping[str, Any]) -> Text:
    owner = view["owner"]
    if view["interrupted"]:
        return Text("interrupted", style="bold red")
    if owner["alive"]:
        return Text(f"alive (pid {owner['pid']})", style="green")
    return Text("-", style="dim")


# ---------------------------------------------------------------------------------- show
@cli.command("show")
@click.argument("run_id", metavar="RUN")
@click.argument("target", required=False, metavar="[STEP[:KEY]]")
@click.option(
    "--status", "inst_status", multiple=True, type=click.Choice(INSTANCE_STATUSES),
    help="List only instances in this status (repeatable). Text default: paused, failed, retrying, waiting.",
)
@click.option("--limit", type=click.IntRange(min=0), default=None, help="List at most N instances.")
@click.option("--inputs-only", is_flag=True,
              help="With STEP[:KEY]: print only the instance's inputs, a JSON object of input name to value.")
@_fmt_option
@click.pass_obj
def show_cmd(obj: _State, run_id: str, target: str | None, inst_status: tuple[str, ...], limit: int | None,
             inputs_only: bool, fmt: str | None) -> None:
    """The debug view of RUN: steps with counts per status, breakpoints and what they hold, instances.

    With STEP[:KEY]: that one instance, with its inputs, output, error and traceback, logs, attempts
    and history."""
    store = obj.store
    if target is not None:
        if inst_status or limit is not None:
            raise click.UsageError("--status and --limit narrow the list of a run's instances; "
                                   "they do not go with STEP[:KEY]")
        detail = _instance_detail(store, store.run_row(run_id), target)
        if inputs_only:
            _emit_json(detail["inputs"])
        elif obj.format(fmt) == "json":
            _emit_json({"run": run_id, **detail})
        else:
            _render_instance(run_id, detail)
        return
    if inputs_only:
        raise click.UsageError(f"--inputs-only shows one instance's inputs: name it, `nbflow show {run_id} STEP[:KEY] "
                               "--inputs-only`")
    if obj.format(fmt) == "json":
        _emit_json(views.run_view(store, run_id, status=inst_status or None, limit=limit))
        return
    wanted = inst_status or ATTENTION
    view = views.run_view(store, run_id, status=wanted)
    _render_run(view, wanted, 50 if limit is None else limit)


def _render_run(view: Mapping[str, Any], wanted: Sequence[str], limit: int) -> None:
    con = _console()
    head = Text()
    head.append(f"run {view['id']}", style="bold")
    head.append(f"  workflow {view['workflow']}  version {view['version']}  ")
    head.append_text(_status_text(view["status"]))
    con.print(head)
    owner = view["owner"]
    if view["interrupted"]:
        who = f"owner {owner['text']} is gone" if owner["host"] else "no process drives it"
        con.print(Text(f"interrupted: {who}; `nbflow resume {view['id']}` continues it here", style="bold red"))
    elif owner["alive"]:
        con.print(Text(f"owner: {owner['text']} (alive)"))
    con.print(Text(f"params: {_compact(view['params'], 200)}"))
    prog = view["progress"]
    con.print(Text(f"progress: {prog['done']}/{prog['total']} instances finished"
                   + ("  (break on error)" if view["break_on_error"]["enabled"] else "")))

    steps = Table(title="steps", title_justify="left", box=box.SIMPLE_HEAD)
    for col in ("STEP", "KIND", "AFTER", "INSTANCES", "BY STATUS"):
        steps.add_column(col, justify="right" if col == "INSTANCES" else "left")
    for node in view["dag"]["nodes"]:
        counts = Text()
        for st, n in node["counts"].items():
            if n:
                if counts:
                    counts.append("  ")
                counts.append(f"{st} {n}", style=STYLE.get(st, ""))
        kind = node["kind"] + (f" over {node['foreach']}" if node["foreach"] else "")
        after = Text(", ".join(node["upstream"]) or "-")
        steps.add_row(Text(node["step"]), Text(kind), after, str(node["total"]), counts)
    con.print(steps)
    for node in view["dag"]["nodes"]:
        if node["uses"]:
            con.print(Text(f"{node['step']} uses from the notebook (not stored with the run's code): "
                           + ", ".join(u["text"] for u in node["uses"]), style="yellow"))

    if view["breakpoints"]:
        bps = Table(title="breakpoints", title_justify="left", box=box.SIMPLE_HEAD)
        for col in ("ID", "SCOPE", "TARGET", "WHEN", "IF", "STATE", "HOLDING"):
            bps.add_column(col)
        for bp in view["breakpoints"]:
            held = bp["holding"]
            shown = ", ".join("-" if k is None else str(k) for k in held[:10])
            if len(held) > 10:
                shown += f" … (+{len(held) - 10})"
            bps.add_row(
                str(bp["id"]), bp["scope"], Text(_label(bp["step"], bp["key"])), bp["when"],
                Text(bp["condition"] or "-"),
                Text(bp["state"], style="bold yellow" if bp["state"] == "hit" else ""),
                Text(f"{len(held)}: {shown}" if held else "-"),
            )
        con.print(bps)

    insts = view["instances"]
    total = len(insts)
    title = f"instances {', '.join(wanted)} ({total})"
    if not insts:
        con.print(Text(f"{title}: none", style="dim"))
        return
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD)
    for col in ("STEP", "KEY", "STATUS", "ATTEMPT", "REASON / ERROR", "VERBS"):
        table.add_column(col, justify="right" if col == "ATTEMPT" else "left")
    for inst in insts[:limit]:
        why = inst["pause_reason"] or ""
        if inst["error"]:
            why = (why + ": " if why else "") + f"{inst['error']['type']}: {inst['error']['message']}"
        table.add_row(
            Text(inst["step"]), Text("-" if inst["key"] is None else inst["key"]), _status_text(inst["status"]),
            str(inst["attempt"]), Text(why or "-"), Text(", ".join(inst["verbs"]) or "-"),
        )
    con.print(table)
    if total > limit:
        con.print(Text(f"… and {total - limit} more (use --limit N, --status S, or -o json)", style="dim"))


def _one_target(store: Store, row: Mapping[str, Any], target: str) -> tuple[str, str | None]:
    """STEP[:KEY] naming a step or one instance of the run; an unknown step, a key on a task step or an
    unknown key is refused naming it (exit 1). A found key costs one row's read, not the step's."""
    ((step, keys),) = _groups([target])
    key = keys[0] if keys else None
    if key is None or views.instance_stamp(store, row["id"], step, key) is None:
        _check_targets(store, row, [(step, keys)])
    return step, key


def _instance_detail(store: Store, row: Mapping[str, Any], target: str) -> dict[str, Any]:
    """:func:`views.instance_detail` of the instance *target* names, or refused (exit 1) saying why there is none."""
    run_id = row["id"]
    step, key = _one_target(store, row, target)
    detail = views.instance_detail(store, run_id, step, key)
    if detail is not None:
        return detail
    if store.definition(row["workflow"], row["version"])["steps"][step]["kind"] == StepKind.FOREACH:
        page = views.instance_page(store, run_id, step, limit=5)
        if page["total"]:
            sample = ", ".join(f"{step}:{r['key']}" for r in page["rows"]) + (", …" if page["total"] > 5 else "")
            raise CommandRefused(
                f"step {step!r} is a foreach step with {page['total']} instances; name one by its key: {sample}"
            )
        raise CommandRefused(f"step {step!r} of run {run_id} has no instances yet (its upstream output is not known)")
    raise CommandRefused(f"step {step!r} of run {run_id} has no instance yet (the run has not reached it)")


def _render_instance(run_id: str, d: Mapping[str, Any]) -> None:
    """One instance for people: its state, then a section per part (values as JSON, texts verbatim)."""
    con = _console()

    def heading(title: str, note: str = "") -> None:
        con.print()
        con.print(Text.assemble((title, "bold underline"), (f"  {note}" if note else "", "dim")))

    def verbatim(text: str) -> None:
        con.print(Text(text.rstrip("\n")), soft_wrap=True)

    head = Text()
    head.append(_label(d["step"], d["key"]), style="bold")
    head.append(f"  in run {run_id}  ")
    head.append_text(_status_text(d["status"]))
    head.append(f"  attempt {d['attempt']}")
    con.print(head)
    facts = [("pause reason", d["pause_reason"]),
             ("held by", ", ".join("break_on_error" if b == views.BREAK_ON_ERROR_ID else f"breakpoint {b}"
                                   for b in d["held_by"]) or None),
             ("started", d["started_at"] and _local(d["started_at"])),
             ("finished", d["finished_at"] and _local(d["finished_at"])),
             ("next attempt", d["next_attempt_at"] and _local(d["next_attempt_at"])),
             ("deadline", d["deadline"] and _local(d["deadline"])),
             ("signal token", d["token"]),
             ("verbs now", ", ".join(d["verbs"]) or "none")]
    for name, value in facts:
        if value:
            con.print(Text.assemble((f"{name}: ", "bold"), str(value)))

    heading("inputs", f"read-only (not JSON, or too long): {', '.join(d['readonly_inputs'])}"
            if d["readonly_inputs"] else "")
    if not d["inputs"]:
        con.print(Text("(none)", style="dim"))
    for name, value in d["inputs"].items():
        text = dumps(value, indent=2)
        verbatim(f"{name} = " + text.replace("\n", "\n" + " " * (len(name) + 3)))
    heading("output")
    if d["has_output"]:
        verbatim(dumps(d["output"], indent=2))
    else:
        con.print(Text("(none)", style="dim"))
    if d["error"]:
        heading("error")
        con.print(Text(f"{d['error']['type']}: {d['error']['message']}", style="bold red"), soft_wrap=True)
        if d["error"]["traceback"]:
            verbatim(d["error"]["traceback"])
    heading("logs", "(only the last 64 KiB)" if d["logs_truncated"] else "")
    if d["logs"]:
        verbatim(d["logs"])
    else:
        con.print(Text("(none)", style="dim"))

    heading("attempts")
    if not d["attempts"]:
        con.print(Text("(none yet)", style="dim"))
    else:
        table = Table(box=box.SIMPLE_HEAD)
        for col in ("ATTEMPT", "STARTED", "FINISHED", "OUTCOME", "ERROR"):
            table.add_column(col, justify="right" if col == "ATTEMPT" else "left")
        for a in d["attempts"]:
            table.add_row("-" if a["attempt"] is None else str(a["attempt"]), _local(a["started"]),
                          _local(a["finished"]), _status_text(a["outcome"] or "running"), Text(a["error"] or "-"))
        con.print(table)
        final = d["error"]["traceback"] if d["error"] else None
        for a in d["attempts"]:
            if a["traceback"] and a["traceback"] != final:  # the last error's is printed above
                con.print(Text(f"traceback of attempt {a['attempt']} ({a['outcome']}):", style="bold"))
                verbatim(a["traceback"])

    heading("history", f"(the last {len(d['history'])}; {d['history_omitted']} earlier: "
            f"`nbflow history {run_id} --step {_label(d['step'], d['key'])}`)" if d["history_omitted"] else "")
    con.print(_history_table(d["history"], with_instance=False))


def _history_table(events: Sequence[Mapping[str, Any]], with_instance: bool = True) -> Table:
    """Events as a table, numbered by ``n`` (their place in the run's history) rather than storage ids."""
    table = Table(box=box.SIMPLE_HEAD)
    cols = ("#", "TIME", "KIND", "INSTANCE", "ACTOR", "DATA")
    for col in cols if with_instance else [c for c in cols if c != "INSTANCE"]:
        table.add_column(col, justify="right" if col == "#" else "left")
    for ev in events:
        cells: list[str | Text] = [str(ev["n"]), _local(ev["ts"]), Text(ev["kind"])]
        if with_instance:
            cells.append(Text(_label(ev["step"], ev["key"])))
        cells += [Text(ev["actor"] or "-"), Text(_compact(ev["data"]) if ev["data"] else "-")]
        table.add_row(*cells)
    return table


# ---------------------------------------------------------------------------------- history
@cli.command("history")
@click.argument("run_id", metavar="RUN")
@click.option("--step", "target", default=None, metavar="STEP[:KEY]",
              help="Only the events of STEP's instances (or of one foreach item, STEP:KEY).")
@click.option("--kind", "kinds", multiple=True, metavar="KIND",
              help="Only events of this kind, e.g. failed, command (repeatable).")
@click.option("--after", type=click.IntRange(min=0), default=0,
              help="Only events after this one: its id (JSON) or its number # (text).")
@click.option("--limit", type=click.IntRange(min=0), default=None, help="Only the last N (matching) events.")
@_fmt_option
@click.pass_obj
def history_cmd(obj: _State, run_id: str, target: str | None, kinds: tuple[str, ...], after: int, limit: int | None,
                fmt: str | None) -> None:
    """The events of RUN, oldest first: status changes, attempts, errors, commands, mutations.

    Text numbers them 1, 2, 3... within the run (the same number whatever the filters)."""
    store = obj.store
    step, key = _one_target(store, store.run_row(run_id), target) if target is not None else (None, None)
    events = views.history_view(store, run_id, after=after, step=step, key=key, kinds=list(kinds) or None,
                                limit=limit)
    if not events and kinds:
        have = store.event_kinds(run_id)
        absent = [k for k in kinds if k not in have]
        if absent:
            _err(f"note: run {run_id} has no event of kind {', '.join(map(repr, absent))}; "
                 f"its kinds are: {', '.join(have)}")
    if obj.format(fmt) == "json":
        _emit_json(events)
        return
    _console().print(_history_table(events))


# ---------------------------------------------------------------------------------- breakpoints
@cli.group("breakpoint", cls=_Group)
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
@_fmt_option
@click.pass_obj
def breakpoint_list(obj: _State, workflow: str | None, run_id: str | None, fmt: str | None) -> None:
    """List breakpoints; with neither option, those of every workflow with runs in the store."""
    if workflow is not None and run_id is not None:
        raise click.UsageError("pass at most one of --workflow W or --run RUN")
    items = views.breakpoints_list(obj.store, workflow, run_id)
    if obj.format(fmt) == "json":
        _emit_json(items)
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
            str(b["id"]), Text(b["workflow"]), Text(scope), Text(_label(b["step"], b["key"])), b["when"],
            Text(b["condition"] or "-"), Text(b["created_by"] or "-"),
        )
    _console().print(table)


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
@_fmt_option
@click.pass_obj
def breakpoint_add(
    obj: _State, workflow: str | None, run_id: str | None, target: str, when: str, condition: str | None,
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
        _emit_json(result)
        return
    scope = f"run {run_id}" if run_id else f"workflow {name!r}"
    cond = f", if {condition}" if condition else ""
    click.echo(f"breakpoint {created.id} added on {_label(step, key)} ({when}{cond}) for {scope}")


@breakpoint_grp.command("rm")
@click.option("--workflow", default=None, help="Remove from the workflow-scoped breakpoints of W.")
@click.option("--run", "run_id", default=None, metavar="RUN", help="Remove from RUN's own breakpoints.")
@click.argument("target", metavar="STEP[:KEY]")
@_fmt_option
@click.pass_obj
def breakpoint_rm(obj: _State, workflow: str | None, run_id: str | None, target: str, fmt: str | None) -> None:
    """Remove the breakpoints on STEP (every one, keyed ones included) or on STEP:KEY only.

    Instances that they alone held resume."""
    store = obj.store
    name, _row = _scope(store, workflow, run_id)
    step, key = parse_target(target)
    n = remove_breakpoints(store, name, step, key, run_id)
    if obj.format(fmt) == "json":
        _emit_json({"removed": n, "workflow": name, "run_id": run_id, "step": step, "key": key})
        return
    scope = f"run {run_id}" if run_id else f"workflow {name!r}"
    click.echo(f"removed {n} breakpoint(s) on {_label(step, key)} from {scope}")


# ---------------------------------------------------------------------------------- operator verbs
Groups = Sequence[tuple[str | None, list[str] | None]]


def _groups(targets: Iterable[str]) -> list[tuple[str, list[str] | None]]:
    """``["enrich:3", "enrich:5", "report"]`` -> ``[("enrich", ["3", "5"]), ("report", None)]``."""
    by: dict[str, list[str] | None] = {}
    for text in targets:
        step, key = parse_target(text)
        if key is None:
            by[step] = None
        elif step not in by:
            by[step] = [key]
        else:
            keys = by[step]
            if keys is not None and key not in keys:
                keys.append(key)
    return list(by.items())


def _describe(groups: Groups, verb: str) -> str:
    parts = []
    for step, keys in groups:
        if step is None:
            parts.append("every paused instance" if verb == "resume" else "every unfinished instance")
        elif keys is None:
            parts.append(step if verb in ("approve", "reject") else f"every instance of {step}")
        else:
            parts.extend(f"{step}:{k}" for k in keys)
    return ", ".join(parts)


def _check_run(row: Mapping[str, Any], verb: str) -> None:
    status = RunStatus(row["status"])
    if status.terminal:
        raise CommandRefused(
            f"run {row['id']} is {status}; a finished run cannot be changed (nothing to {verb}). "
            "Start a new run from it with run.fork() in Python"
        )


def _check_targets(
    store: Store, row: Mapping[str, Any], groups: Groups, inputs: Mapping[str, Any] | None = None
) -> None:
    """Refuse unknown steps, keys and input names before anything is written."""
    definition = store.definition(row["workflow"], row["version"])
    steps = definition["steps"]
    for step, keys in groups:
        if step is None:
            continue
        if step not in steps:
            raise CommandRefused(f"run {row['id']} has no step {step!r}; steps are: {', '.join(definition['order'])}")
        if inputs is not None:
            names = {b[0] for b in steps[step]["bindings"] if b[1] != "ctx"}
            bad = sorted(set(inputs) - names)
            if bad:
                raise CommandRefused(
                    f"step {step!r} takes no input named {', '.join(map(repr, bad))}; its inputs are: "
                    f"{', '.join(sorted(names)) or 'none'}"
                )
        if keys is None:
            continue
        kind = steps[step]["kind"]
        if kind != StepKind.FOREACH:
            raise CommandRefused(
                f"step {step!r} is a {kind} step with a single instance; name it without a key: {step}"
            )
        have = [r["key"] for r in store.instance_rows(row["id"], step=step)]
        missing = [k for k in keys if k not in set(have)]
        if missing:
            sample = ", ".join(str(k) for k in have[:5]) + (", …" if len(have) > 5 else "")
            raise CommandRefused(
                f"step {step!r} of run {row['id']} has no instance with key {', '.join(missing)}"
                + (f" (it has {len(have)} instances, keys {sample})" if have else " (it has no instances yet)")
            )


def _confirm(force: bool, question: str, refusal: str) -> None:
    """Ask on a terminal; without one, refuse unless --force (exit 1 with the hint)."""
    if force:
        return
    if not sys.stdin.isatty():
        raise click.ClickException(
            f"{refusal}: standard input is not a terminal, so nothing can be confirmed; pass --force"
        )
    if not click.confirm(question, default=False, err=True):
        raise click.ClickException("not confirmed; nothing was changed")


def _await(store: Store, ids: Sequence[int], timeout: float = APPLY_WAIT_S) -> dict[int, Mapping[str, Any]]:
    """The command rows once the owner applied them (those still pending after *timeout* are left out)."""
    deadline = time.monotonic() + timeout
    done: dict[int, Mapping[str, Any]] = {}
    while True:
        for cid in ids:
            if cid not in done:
                row = store.command_row(cid)
                if row["applied_at"] is not None:
                    done[cid] = row
        if len(done) == len(ids) or time.monotonic() >= deadline:
            return done
        time.sleep(0.02)


def _send(store: Store, row: Mapping[str, Any], verb: str, groups: Groups, payload: Mapping[str, Any] | None,
          reason: str | None) -> list[dict[str, Any]]:
    """Write one command per step and, if the owner is alive, wait for its answer."""
    sent: list[dict[str, Any]] = []
    for step, keys in groups:
        res = submit(store, row["id"], verb, step, keys, payload, reason)
        sent.append({"id": res.id, "verb": verb, "step": step, "keys": keys, "state": "queued", "message": None})
    if views.owner_view(store.run_row(row["id"]))["alive"]:
        answers = _await(store, [c["id"] for c in sent])
        for c in sent:
            ans = answers.get(c["id"])
            if ans is None:
                c["state"] = "sent"
            else:
                c["state"] = "applied" if ans["result"] == "ok" else "refused"
                c["message"] = ans["message"]
    return sent


def _report(obj: _State, fmt: str | None, result: dict[str, Any]) -> None:
    """Print a mutation's result; exit 1 if the owner refused any command."""
    run_id = result["run"]
    refused = [c for c in result["commands"] if c["state"] == "refused"]
    if obj.format(fmt) == "json":
        _emit_json(result)
    else:
        for c in result["commands"]:
            what = f"{c['verb']} {_describe([(c['step'], c['keys'])], c['verb'])}"
            if c["state"] == "applied":
                click.echo(f"{what}: {c['message']}")
            elif c["state"] == "queued":
                click.echo(
                    f"{what}: queued. Run {run_id} has no live owner, so the command will be applied when the run "
                    f"is resumed (`nbflow resume {run_id}`)"
                )
            elif c["state"] == "sent":
                click.echo(f"{what}: sent; the owner has not applied it yet (see `nbflow history {run_id}`)")
        if "took_over" in result and result.get("took_over"):
            _print_outcome(result)
    for c in refused:
        _err(f"refused: {c['message']}")
    if refused:
        sys.exit(1)


def _print_outcome(result: Mapping[str, Any]) -> None:
    con = _console()
    prog = result["progress"]
    con.print(Text.assemble(f"run {result['run']}: ", _status_text(result["status"]),
                            f"  ({prog['done']}/{prog['total']} instances finished)"))
    paused = result["paused"]
    if paused:
        table = Table(title=f"paused ({len(paused)})", title_justify="left", box=box.SIMPLE_HEAD)
        for col in ("STEP", "KEY", "REASON / ERROR"):
            table.add_column(col)
        for inst in paused[:50]:
            why = inst["pause_reason"] or "-"
            if inst["error"]:
                why += f": {inst['error']['type']}: {inst['error']['message']}"
            table.add_row(Text(inst["step"]), Text(inst["key"] or "-"), Text(why))
        con.print(table)
        if len(paused) > 50:
            more = f"… and {len(paused) - 50} more (`nbflow show {result['run']} --status paused`)"
            con.print(Text(more, style="dim"))


def _mutation(obj: _State, run_id: str, verb: str, groups: Groups, payload: Mapping[str, Any] | None,
              reason: str | None, force: bool, fmt: str | None, inputs: Mapping[str, Any] | None = None) -> None:
    store = obj.store
    row = store.run_row(run_id)
    _check_run(row, verb)
    _check_targets(store, row, groups, inputs)
    if verb != "cancel" and not views.owner_view(row)["alive"]:
        _check_states(store, row, verb, groups)
    _check_pending(store, row, verb, groups)
    what = _describe(groups, verb)
    _confirm(
        force, f"{verb} {what} in run {run_id} (workflow {row['workflow']})?",
        f"refusing to {verb} {what} in run {run_id}",
    )
    commands = _send(store, row, verb, groups, payload, reason)
    after = store.run_row(run_id)
    _report(obj, fmt, {"run": run_id, "verb": verb, "owner": views.owner_view(row), "took_over": False,
                       "commands": commands, "status": after["status"]})


@cli.command("resume")
@click.argument("run_id", metavar="RUN")
@click.argument("targets", nargs=-1, metavar="[STEP[:KEY]]...")
@_reason_option
@_force_option
@click.option("--notebook", default=None, type=click.Path(exists=True, dir_okay=False, path_type=Path), metavar="NB",
              help="Instead: re-execute NB with papermill, injecting nbflow_resume=RUN (its workflow attaches).")
@click.option("--output", "nb_output", default=None, type=click.Path(dir_okay=False, path_type=Path), metavar="OUT",
              help="With --notebook: the executed notebook (default: NB's name with .RUN.out.ipynb).")
@click.option("-p", "--parameter", "nb_params", nargs=2, multiple=True, metavar="NAME VALUE",
              help="With --notebook: a papermill parameter (repeatable).")
@click.option("--executor", default=None, metavar="EXECUTOR",
              help="When taking the run over: run its steps on threads, processes, dask (NBFLOW_DASK_ADDRESS) or "
                   "the Dask scheduler at tcp://HOST:PORT, instead of the executor the run recorded.")
@_fmt_option
@click.pass_obj
def resume_cmd(
    obj: _State, run_id: str, targets: tuple[str, ...], reason: str | None, force: bool, notebook: Path | None,
    nb_output: Path | None, nb_params: tuple[tuple[str, str], ...], executor: str | None, fmt: str | None,
) -> None:
    """Resume paused instances of RUN: the ones named, else every paused instance.

    If the run's owner is alive, the owner applies the command. If it is gone (interrupted, or a
    batch run that paused and exited), this process takes the run over with its pinned code and
    drives it until it finishes or pauses again. With --notebook NB, NB is re-executed with
    papermill instead and its workflow attaches to RUN (exit codes as for `nbflow run`).
    """
    if notebook is not None:
        if executor is not None:
            raise click.UsageError("--executor does not go with --notebook (set NBFLOW_EXECUTOR for the notebook)")
        from .batch import resume_notebook

        resume_notebook(obj, run_id, targets, notebook, nb_output, nb_params, force, fmt)
        return
    if nb_output is not None or nb_params:
        raise click.UsageError("--output and -p go with --notebook NB")
    store = obj.store
    row = store.run_row(run_id)
    _check_run(row, "resume")
    groups: Groups = _groups(targets) if targets else [(None, None)]
    _check_targets(store, row, groups)
    owner = views.owner_view(row)
    paused = store.instance_rows(run_id, status=InstanceStatus.PAUSED)
    if not owner["alive"]:
        _check_states(store, row, "resume", groups)
    _check_pending(store, row, "resume", groups)
    what = _describe(groups, "resume")
    if not owner["alive"] and not targets:
        what = f"every paused instance ({len(paused)})" if paused else "the run (nothing is paused)"
    question = f"resume {what} in run {run_id} (workflow {row['workflow']})" + (
        "" if owner["alive"] else ", taking the run over in this process with its pinned code"
    )
    _confirm(force, question + "?", f"refusing to resume {what} in run {run_id}")
    if owner["alive"]:
        if executor is not None:
            raise click.UsageError(f"--executor applies when this process takes run {run_id} over, but its owner "
                                   f"(pid {owner['pid']} on {owner['host']}) is alive and keeps its executor")
        commands = _send(store, row, "resume", groups, None, reason)
        after = store.run_row(run_id)
        _report(obj, fmt, {"run": run_id, "verb": "resume", "owner": owner, "took_over": False,
                           "commands": commands, "status": after["status"]})
        _exit_if_not_applied(store, run_id, owner, commands)
        return
    with store.engine.connect() as conn:
        mark = store.last_event_id(run_id, conn)
    try:
        result = _take_over_and_resume(store, row, groups if targets else [], reason, _executor(executor), mark)
    except OwnershipError:
        # Another `nbflow resume` (or an attach) took the run over first: it is the owner now, so
        # this resume goes to it, as to any live owner.
        owner = views.owner_view(store.run_row(run_id))
        _err(f"run {run_id} was taken over at the same moment by another process ({owner['text']}); "
             "the resume goes to that owner")
        commands = _resume_via_owner(store, run_id, groups if targets else [(None, None)], reason, mark)
        result = {"run": run_id, "verb": "resume", "owner": owner, "took_over": False, "commands": commands,
                  "status": store.run_row(run_id)["status"]}
        _report(obj, fmt, result)
        _exit_if_not_applied(store, run_id, owner, commands)
        return
    _report(obj, fmt, result)


def _exit_if_not_applied(store: Store, run_id: str, owner: Mapping[str, Any], commands: Sequence[Mapping[str, Any]]
                         ) -> None:
    """A resume the owner has not applied in time did nothing yet: say why, exit 1 (never a silent success)."""
    if not any(c["state"] == "sent" for c in commands):
        return
    row = store.run_row(run_id)
    state = process_state(int(row["owner_pid"] or 0)) if row["owner_id"] and row["owner_host"] == HOST else None
    why = {"T": " (its process is stopped)", "t": " (its process is stopped by a debugger)",
           "D": " (its process is blocked in the kernel, e.g. on disk I/O)"}.get(state or "", "")
    _err(f"not resumed: the owner of run {run_id} ({owner['text']}){why} has not applied the command within "
         f"{APPLY_WAIT_S:g} s. It stays queued: that owner applies it when it polls again, and `nbflow resume "
         f"{run_id}` applies it once that process is gone")
    sys.exit(1)


def _resume_via_owner(store: Store, run_id: str, groups: Groups, reason: str | None, mark: int
                      ) -> list[dict[str, Any]]:
    """Send the resume to the run's new owner and wait for its answer. Instances resumed since event
    *mark* (by a racing resume of the same instances) count as resumed, not refused."""
    commands: list[dict[str, Any]] = []
    for step, keys in groups:
        c: dict[str, Any] = {"id": None, "verb": "resume", "step": step, "keys": keys, "state": "sent", "message": None}
        done = _resumed_since(store, run_id, step, keys, mark)
        if done is not None:
            c["state"], c["message"] = "applied", done
        elif not views.owner_view(store.run_row(run_id))["alive"]:
            c["state"] = "refused"
            c["message"] = (f"run {run_id} was taken over by another process, which has given it up again; "
                            f"run `nbflow resume {run_id}` again")
        else:
            try:
                c["id"] = submit(store, run_id, "resume", step, keys, reason=reason).id
            except CommandRefused as exc:  # e.g. the owner finished the run meanwhile
                c["state"], c["message"] = "refused", str(exc)
        commands.append(c)
    deadline = time.monotonic() + APPLY_WAIT_S
    while True:
        for c in commands:
            if c["state"] == "sent" and c["id"] is not None:
                ans = store.command_row(c["id"])
                if ans["applied_at"] is not None:
                    c["state"], c["message"] = "applied" if ans["result"] == "ok" else "refused", ans["message"]
            if c["state"] != "applied":
                done = _resumed_since(store, run_id, c["step"], c["keys"], mark)
                if done is not None:
                    c["state"], c["message"] = "applied", done
        row = store.run_row(run_id)
        if (all(c["state"] != "sent" for c in commands) or time.monotonic() >= deadline
                or RunStatus(row["status"]).terminal or not views.owner_view(row)["alive"]):
            return commands
        time.sleep(0.02)


def _resumed_since(store: Store, run_id: str, step: str | None, keys: list[str] | None, mark: int) -> str | None:
    """Why a resume of *step*/*keys* has nothing left to do because the instances were resumed after
    event *mark* and none of them is paused now; None if that is not so."""
    rows = store.instance_rows(run_id, step=step) if step is not None else store.instance_rows(run_id)
    named = [r for r in rows if keys is None or r["key"] in keys]
    if not named or any(r["status"] == InstanceStatus.PAUSED for r in named):
        return None
    events = {(e["step"], e["key"]): e for e in store.event_rows(run_id, after_id=mark) if e["kind"] == "resumed"}
    seen = [events[(r["step"], r["key"])] for r in named if (r["step"], r["key"]) in events]
    explicit = keys is not None or all(r["key"] is None for r in named)
    if not seen or (explicit and len(seen) != len(named)):
        return None
    by = sorted({e["actor"] for e in seen if e["actor"]})
    return (f"already resumed {len(seen)} instance(s) by another command applied meanwhile"
            + (f" (by {', '.join(by)})" if by else "") + f"; see `nbflow history {run_id}`")


def _check_pending(store: Store, row: Mapping[str, Any], verb: str, groups: Groups) -> None:
    """Refuse, before anything is written, targets a command queued earlier will change first."""
    for step, keys in groups:
        check_pending(store, row, verb, step, keys)


def _executor(value: str | None) -> Any:
    """``--executor``: a name, or a Dask scheduler's address."""
    if value is None or value in ("threads", "processes", "dask"):
        return value
    if "://" in value:
        return {"dask": value}
    raise click.BadParameter(f"{value!r}: use threads, processes, dask or tcp://HOST:PORT", param_hint="--executor")


def _check_states(store: Store, row: Mapping[str, Any], verb: str, groups: Groups) -> None:
    """With no live owner the stored states are current: refuse a verb that does not fit them now,
    before anything is written (a live owner answers for itself)."""
    rows = store.instance_rows(row["id"])
    for step, keys in groups:
        if step is None:
            continue
        insts = [r for r in rows if r["step"] == step]
        if keys is not None:
            named = [r for r in insts if r["key"] in keys]
        else:  # a task step's single instance is named by the step alone
            named = [r for r in insts if r["key"] is None]
        for r in named:
            allowed = views.verbs(r["status"], r["pause_reason"])
            if verb not in allowed:
                state = r["status"] + (f" ({r['pause_reason']})" if r["pause_reason"] else "")
                raise CommandRefused(
                    f"cannot {verb} {_label(step, r['key'])} in run {row['id']}: it is {state}; "
                    f"allowed now: {', '.join(allowed) if allowed else 'nothing'}"
                )
        if not any(verb in views.verbs(r["status"], r["pause_reason"]) for r in insts):
            raise CommandRefused(
                f"nothing to {verb}: no instance of {step!r} in run {row['id']} accepts {verb} now "
                f"(see `nbflow show {row['id']}`)"
            )


def _take_over_and_resume(
    store: Store, row: Mapping[str, Any], groups: Groups, reason: str | None, executor: Any = None, mark: int = 0,
) -> dict[str, Any]:
    """Take the run over with its pinned code, let it apply the commands queued for it, resume the
    targets (every paused instance if none), and drive it until it finishes or pauses."""
    from .run import resume_pinned

    run_id = row["id"]
    owner = views.owner_view(row)
    with store.engine.connect() as conn:
        queued = [c["id"] for c in store.pending_commands(run_id, conn)]
    run = resume_pinned(store, run_id, executor=executor)
    _err(f"took over run {run_id} in this process (pid {os.getpid()}) with its pinned code; driving it until it "
         f"finishes or pauses (Ctrl-C stops here; `nbflow resume {run_id}` continues later)")
    earlier = []
    for cid, ans in _await(store, queued).items():
        earlier.append({"id": cid, "verb": ans["verb"], "state": "applied" if ans["result"] == "ok" else "refused",
                        "message": ans["message"]})
        if ans["result"] != "ok":
            _err(f"note: command {cid} ({ans['verb']}) queued earlier was refused: {ans['message']}")
    commands: list[dict[str, Any]] = []
    todo = groups or ([(None, None)] if store.instance_rows(run_id, status=InstanceStatus.PAUSED) else [])
    for step, keys in todo:
        refusal = ""
        try:
            res = submit(store, run_id, "resume", step, keys, reason=reason)
        except CommandRefused as exc:
            res, refusal = None, str(exc)
        if res is not None and res.applied:
            commands.append({"id": res.id, "verb": "resume", "step": step, "keys": keys, "state": "applied",
                             "message": res.message})
            continue
        # Refused, or left unapplied by a run that finished first: a racing `nbflow resume` of the
        # same instances may have resumed them since this process read the run.
        done = _resumed_since(store, run_id, step, keys, mark)
        state = "applied" if done is not None else "refused" if res is None else "queued"
        commands.append({"id": None if res is None else res.id, "verb": "resume", "step": step, "keys": keys,
                         "state": state, "message": done or (refusal if res is None else res.message)})
    try:
        status = _drive(store, run)
    except KeyboardInterrupt:
        _err(f"stopped; run {run_id} is left as it is: `nbflow resume {run_id}` continues it")
        sys.exit(130)
    summary = views.run_summary(store, store.run_row(run_id))
    return {"run": run_id, "verb": "resume", "owner": owner, "took_over": True, "earlier_commands": earlier,
            "commands": commands, "status": str(status), "progress": summary["progress"],
            "paused": views.paused_instances(run)}


def _drive(store: Store, run: Any) -> RunStatus:
    """``run.wait()``, made sure against a status read just before the scheduler published a change."""
    while True:
        status = RunStatus(run.wait())
        row = store.run_row(run.id)
        if status != RunStatus.RUNNING and row["status"] == RunStatus.RUNNING and views.owner_view(row)["alive"]:
            time.sleep(0.05)
            continue
        return status


@cli.command("skip")
@click.argument("run_id", metavar="RUN")
@click.argument("targets", nargs=-1, required=True, metavar="STEP[:KEY]...")
@click.option("--output", "output", required=True, callback=_parse_json, metavar="JSON|@FILE",
              help="The output the skipped instances stand for, as JSON (downstream steps read it).")
@_reason_option
@_force_option
@_fmt_option
@click.pass_obj
def skip_cmd(obj: _State, run_id: str, targets: tuple[str, ...], output: Any, reason: str | None, force: bool,
             fmt: str | None) -> None:
    """Skip paused, failed or retrying instances, giving the output they stand for."""
    _mutation(obj, run_id, "skip", _groups(targets), {"output": output}, reason, force, fmt)


@cli.command("retry")
@click.argument("run_id", metavar="RUN")
@click.argument("targets", nargs=-1, required=True, metavar="STEP[:KEY]...")
@_reason_option
@_force_option
@_fmt_option
@click.pass_obj
def retry_cmd(
    obj: _State, run_id: str, targets: tuple[str, ...], reason: str | None, force: bool, fmt: str | None
) -> None:
    """Re-run failed or paused instances with their current inputs (including `set --inputs` edits)."""
    _mutation(obj, run_id, "retry", _groups(targets), None, reason, force, fmt)


@cli.command("set")
@click.argument("run_id", metavar="RUN")
@click.argument("target", metavar="STEP[:KEY]")
@click.option("--inputs", "inputs", default=None, callback=_parse_json, metavar="JSON|@FILE",
              help="A JSON object of input name to new value, for an instance paused before its body or on error.")
@click.option("--output", "output", default=None, callback=_parse_json, metavar="JSON|@FILE",
              help="The new output as JSON, for an instance paused after its body.")
@click.option("--reason", required=True, help="Why: recorded in the history with the old and new values.")
@_force_option
@_fmt_option
@click.pass_obj
def set_cmd(obj: _State, run_id: str, target: str, inputs: Any, output: Any, reason: str, force: bool,
            fmt: str | None) -> None:
    """Change the inputs or the output of a paused instance (an audited mutation)."""
    if (inputs is _UNSET) == (output is _UNSET):
        raise click.UsageError("pass exactly one of --inputs JSON or --output JSON")
    groups = _groups([target])
    if inputs is not _UNSET:
        if not isinstance(inputs, dict) or not inputs:
            raise click.BadParameter(
                "must be a non-empty JSON object of input name to value, e.g. '{\"item\": {\"x\": 1}}'",
                param_hint="'--inputs'",
            )
        _mutation(obj, run_id, "set_inputs", groups, {"inputs": inputs}, reason, force, fmt, inputs=inputs)
    else:
        _mutation(obj, run_id, "set_output", groups, {"value": output}, reason, force, fmt)


@cli.command("cancel")
@click.argument("run_id", metavar="RUN")
@_reason_option
@_force_option
@_fmt_option
@click.pass_obj
def cancel_cmd(obj: _State, run_id: str, reason: str | None, force: bool, fmt: str | None) -> None:
    """Cancel RUN: every unfinished instance is cancelled and the run ends."""
    _mutation(obj, run_id, "cancel", [(None, None)], None, reason, force, fmt)


# ---------------------------------------------------------------------------------- gates and signals
def _check_gate(store: Store, row: Mapping[str, Any], step: str, verb: str) -> None:
    """Refuse (exit 1, nothing written) a step that does not exist or is not an approval gate."""
    definition = store.definition(row["workflow"], row["version"])
    steps = definition["steps"]
    if step not in steps:
        raise CommandRefused(f"run {row['id']} has no step {step!r}; steps are: {', '.join(definition['order'])}")
    if steps[step]["kind"] != StepKind.APPROVAL:
        gates = [s for s in definition["order"] if steps[s]["kind"] == StepKind.APPROVAL]
        raise CommandRefused(
            f"{step!r} is a {steps[step]['kind']} step, not an approval gate; {verb} applies to wf.approval(...) "
            f"steps" + (f" (gates of this run: {', '.join(gates)})" if gates else " (this run has none)")
        )


@cli.command("approve")
@click.argument("run_id", metavar="RUN")
@click.argument("step", metavar="STEP")
@click.option("--comment", default=None, help="Why: recorded with the decision and your name.")
@click.option("--payload", "payload", default=None, callback=_parse_json, metavar="JSON|@FILE",
              help="The gate's output as JSON (what downstream steps receive); default: a decision record.")
@_force_option
@_fmt_option
@click.pass_obj
def approve_cmd(obj: _State, run_id: str, step: str, comment: str | None, payload: Any, force: bool,
                fmt: str | None) -> None:
    """Approve the approval gate STEP of RUN: it succeeds, and downstream steps go on."""
    row = obj.store.run_row(run_id)
    _check_gate(obj.store, row, step, "approve")
    body = {"comment": comment, "payload": None if payload is _UNSET else payload}
    _mutation(obj, run_id, "approve", [(step, None)], body, comment, force, fmt)


@cli.command("reject")
@click.argument("run_id", metavar="RUN")
@click.argument("step", metavar="STEP")
@click.option("--comment", default=None, help="Why: recorded with the decision and your name.")
@_force_option
@_fmt_option
@click.pass_obj
def reject_cmd(obj: _State, run_id: str, step: str, comment: str | None, force: bool, fmt: str | None) -> None:
    """Reject the approval gate STEP of RUN: it fails, and what depends on it is cancelled."""
    row = obj.store.run_row(run_id)
    _check_gate(obj.store, row, step, "reject")
    _mutation(obj, run_id, "reject", [(step, None)], {"comment": comment}, comment, force, fmt)


_SIGNAL_STATES = {
    "delivered": "delivered",
    "duplicate delivery: already received, ignored": "duplicate",
    "received; the step will find it when it waits": "received",
}


@cli.command("signal")
@click.argument("token", metavar="TOKEN")
@click.option("--payload", "payload", default=None, callback=_parse_json, metavar="JSON|@FILE",
              help="The payload as JSON: the waiting step's output (or wait_for_signal's return value).")
@_fmt_option
@click.pass_obj
def signal_cmd(obj: _State, token: str, payload: Any, fmt: str | None) -> None:
    """Deliver a signal to the instance waiting on TOKEN (the run is named by the token).

    For machines: it never asks for confirmation. Exit 1 when the token is forged or from another
    store, the wait timed out, or the run is finished; a duplicate delivery is reported, exit 0.
    """
    from .commands import signal
    from .signals import SignalRefused, read_token

    store = obj.store
    try:
        run_id, step, item, name = read_token(store.secret, token)
    except SignalRefused as exc:  # forged, truncated or from another store: nothing is written
        _err(f"refused: {exc}")
        sys.exit(1)
    out: dict[str, Any] = {"run": run_id, "step": step, "key": None, "name": name, "command": None,
                           "state": "queued", "message": None}
    for r in store.instance_rows(run_id, step=step):
        if r["item"] == item:
            out["key"] = r["key"]
    try:
        res = signal(token, None if payload is _UNSET else payload, store=store)
    except SignalRefused as exc:  # the run is finished (recorded as a refused command)
        out.update(state="refused", message=str(exc))
    else:
        out["command"] = res.id
        if res.applied:  # answered already (a finished run's duplicate)
            out.update(message=res.message, state=_SIGNAL_STATES.get(res.message or "", "delivered"))
        elif views.owner_view(store.run_row(run_id))["alive"]:
            ans = _await(store, [res.id]).get(res.id)
            if ans is None:
                out["state"] = "sent"
            else:
                ok = ans["result"] == "ok"
                out.update(message=ans["message"],
                           state=_SIGNAL_STATES.get(ans["message"] or "", "delivered") if ok else "refused")
    where = f"{_label(step, out['key'])} of run {run_id} (signal {name!r})"
    if obj.format(fmt) == "json":
        _emit_json(out)
    elif out["state"] == "delivered":
        click.echo(f"delivered to {where}")
    elif out["state"] == "duplicate":
        click.echo(f"duplicate: {where} already received this signal; this delivery was recorded and ignored")
    elif out["state"] == "received":
        click.echo(f"received by {where}; the step will find it when it waits")
    elif out["state"] == "queued":
        click.echo(f"queued for {where}: the run has no live owner, so the signal will be delivered when the run "
                   f"is resumed (`nbflow resume {run_id}`)")
    elif out["state"] == "sent":
        click.echo(f"sent to {where}; the owner has not applied it yet (see `nbflow history {run_id}`)")
    if out["state"] == "refused":
        _err(f"refused: {out['message']}")
        sys.exit(1)


# ---------------------------------------------------------------------------------- dead letters
def dead_letter_view(v: Any) -> dict[str, Any]:
    """One dead-lettered item as JSON (``nbflow dead-letters -o json``)."""
    inputs = {}
    for name, value in v.inputs.items():
        inputs[name], _ok = views.value_view(value)
    return {
        "step": v.step,
        "item": v.item,
        "key": v.key_text,
        "attempts": v.attempts,
        "error": None if v.error is None else {"type": v.error.type, "message": v.error.message,
                                               "traceback": v.error.traceback},
        "inputs": inputs,
        "finished_at": views.iso(v.finished_at),
        "verbs": views.verbs(str(v.status), v.pause_reason),
    }


@cli.command("dead-letters")
@click.argument("run_id", metavar="RUN")
@click.argument("step", required=False, metavar="[STEP]")
@_fmt_option
@click.pass_obj
def dead_letters_cmd(obj: _State, run_id: str, step: str | None, fmt: str | None) -> None:
    """Items of RUN's foreach steps with on_item_error='continue' that exhausted their retries.

    They can still be retried or skipped (`nbflow retry|skip RUN STEP:KEY`) while the run is alive."""
    from .run import Run

    store = obj.store
    row = store.run_row(run_id)
    definition = store.definition(row["workflow"], row["version"])
    steps = definition["steps"]
    if step is not None and step not in steps:
        raise CommandRefused(f"run {run_id} has no step {step!r}; steps are: {', '.join(definition['order'])}")
    items = [dead_letter_view(v) for v in Run(store, run_id).dead_letters(step)]
    if obj.format(fmt) == "json":
        _emit_json(items)
        return
    if not items:
        continuing = [s for s in definition["order"] if steps[s]["options"].get("on_item_error") == "continue"]
        if step is not None and step not in continuing:
            click.echo(f"no dead letters: step {step!r} does not dead-letter items (on_item_error='fail')")
        else:
            click.echo(f"no dead letters in run {run_id}" + (f" for step {step!r}" if step else ""))
        return
    table = Table(title=f"dead letters ({len(items)})", title_justify="left", box=box.SIMPLE_HEAD)
    for col in ("STEP", "KEY", "ATTEMPTS", "ERROR", "INPUTS"):
        table.add_column(col, justify="right" if col == "ATTEMPTS" else "left")
    for it in items:
        err = it["error"]
        table.add_row(
            Text(it["step"]), Text(it["key"] or "-"), str(it["attempts"]),
            Text(f"{err['type']}: {err['message']}" if err else "-"), Text(_compact(it["inputs"], 80)),
        )
    _console().print(table)


from .batch import run_cmd as _batch_run_cmd  # noqa: E402 - `nbflow run NOTEBOOK` (papermill): batch.py imports cli

cli.add_command(_batch_run_cmd)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``nbflow`` script and of ``python -m nbflow``."""
    cli.main(args=list(argv) if argv is not None else None, prog_name="nbflow")


__all__ = ["cli", "main"]
