"""``nbflow runs``, ``show``, ``history`` and ``dead-letters``: reading runs."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import click
from rich import box
from rich.table import Table
from rich.text import Text

from .. import views
from .._util import dumps
from ..errors import CommandRefused
from ..states import BREAK_ON_ERROR, STEPPED_OVER, StepKind
from ..store import Store
from ..verbs import allowed_verbs
from ._common import (
    ATTENTION,
    INSTANCE_STATUSES,
    RUN_STATUSES,
    State,
    compact,
    console,
    counts_text,
    echo_err,
    emit_json,
    fmt_option,
    groups_of,
    local_time,
    status_text,
    target_text,
)


@click.command("runs")
@click.option("--workflow", default=None, help="Only runs of this workflow.")
@click.option("--status", multiple=True, type=click.Choice(RUN_STATUSES), help="Only runs in this status (repeatable).")
@click.option("--limit", type=click.IntRange(min=0), default=50, show_default=True,
              help="At most N runs, newest first (0: all).")
@fmt_option
@click.pass_obj
def runs_cmd(obj: State, workflow: str | None, status: tuple[str, ...], limit: int, fmt: str | None) -> None:
    """List runs, newest first."""
    store = obj.store
    rows = store.run_rows(workflow=workflow, status=list(status) or None, limit=limit or None)
    items = views.run_summaries(store, rows)
    if obj.format(fmt) == "json":
        emit_json(items)
        return
    if not items:
        click.echo(f"no runs in {store.display_url}" + (f" for workflow {workflow!r}" if workflow else ""))
        return
    table = Table(box=box.SIMPLE_HEAD)
    for col in ("ID", "WORKFLOW", "STATUS", "OWNER", "CREATED", "PAUSED", "PROGRESS"):
        table.add_column(col, justify="right" if col in ("PAUSED", "PROGRESS") else "left")
    for it in items:
        table.add_row(
            Text(it["id"]), Text(it["workflow"]), status_text(it["status"]), _owner_cell(it),
            local_time(it["created"]), str(it["paused"]), f"{it['progress']['done']}/{it['progress']['total']}",
        )
    console().print(table)


def _owner_cell(view: Mapping[str, Any]) -> Text:
    owner = view["owner"]
    if view["interrupted"]:
        return Text("interrupted", style="bold red")
    if owner["alive"]:
        return Text(f"alive (pid {owner['pid']})", style="green")
    return Text("-", style="dim")


# ---------------------------------------------------------------------------------- show
def _check_interval(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    """``--interval``'s check (:func:`.watch.check_interval`; rich's live display is imported for ``--watch``)."""
    from .watch import check_interval

    return check_interval(ctx, param, value)


@click.command("show")
@click.argument("run_id", metavar="RUN")
@click.argument("target", required=False, metavar="[STEP[:KEY]]")
@click.option(
    "--status", "inst_status", multiple=True, type=click.Choice(INSTANCE_STATUSES),
    help="List only instances in this status (repeatable). Text default: paused, failed, retrying, waiting.",
)
@click.option("--limit", type=click.IntRange(min=0), default=None, help="List at most N instances.")
@click.option("--inputs-only", is_flag=True,
              help="With STEP[:KEY]: print only the instance's inputs, a JSON object of input name to value.")
@click.option("--watch", "watching", is_flag=True,
              help="Redraw the view live (progress, counts per step, what is paused and what holds it) until the "
                   "run finishes or pauses (exit 0), or is interrupted (exit 1); Ctrl-C stops watching (exit 130).")
@click.option("--interval", type=float, default=None, callback=_check_interval, metavar="SECONDS",
              help="With --watch: how often to look for changes (default 0.5).")
@fmt_option
@click.pass_obj
def show_cmd(obj: State, run_id: str, target: str | None, inst_status: tuple[str, ...], limit: int | None,
             inputs_only: bool, watching: bool, interval: float | None, fmt: str | None) -> None:
    """The debug view of RUN: steps with counts per status, breakpoints and what they hold, instances.

    With STEP[:KEY]: that one instance, with its inputs, output, error and traceback, logs, attempts
    and history. With --watch: the view of the run, redrawn live until it finishes or pauses."""
    store = obj.store
    if interval is not None and not watching:
        raise click.UsageError("--interval goes with --watch: `nbflow show RUN --watch --interval 1`")
    if watching:
        if target is not None or inputs_only or inst_status or limit is not None:
            raise click.UsageError("--watch shows the whole run live; it does not go with STEP[:KEY], --inputs-only, "
                                   f"--status or --limit (drop them: `nbflow show {run_id} --watch`)")
        if obj.format(fmt) == "json":
            raise click.UsageError("--watch draws for people and does not go with -o json; a script polls "
                                   f"`nbflow show {run_id} -o json` (its `status` is paused or finished when done)")
        from . import watch

        watch.watch(store, run_id, 0.5 if interval is None else interval)
        return
    if target is not None:
        if inst_status or limit is not None:
            raise click.UsageError("--status and --limit narrow the list of a run's instances; "
                                   "they do not go with STEP[:KEY]")
        detail = _instance_detail(store, store.run_row(run_id), target)
        if inputs_only:
            emit_json(detail["inputs"])
        elif obj.format(fmt) == "json":
            emit_json({"run": run_id, **detail})
        else:
            _render_instance(run_id, detail)
        return
    if inputs_only:
        raise click.UsageError(f"--inputs-only shows one instance's inputs: name it, `nbflow show {run_id} STEP[:KEY] "
                               "--inputs-only`")
    if obj.format(fmt) == "json":
        emit_json(views.run_view(store, run_id, status=inst_status or None, limit=limit))
        return
    wanted = inst_status or ATTENTION
    view = views.run_view(store, run_id, status=wanted)
    _render_run(view, wanted, 50 if limit is None else limit)


def _render_run(view: Mapping[str, Any], wanted: Sequence[str], limit: int) -> None:
    con = console()
    head = Text()
    head.append(f"run {view['id']}", style="bold")
    head.append(f"  workflow {view['workflow']}  version {view['version']}  ")
    head.append_text(status_text(view["status"]))
    con.print(head)
    owner = view["owner"]
    if view["interrupted"]:
        who = f"owner {owner['text']} is gone" if owner["host"] else "no process drives it"
        con.print(Text(f"interrupted: {who}; `nbflow resume {view['id']}` continues it here", style="bold red"))
    elif owner["alive"]:
        con.print(Text(f"owner: {owner['text']} (alive)"))
    con.print(Text(f"params: {compact(view['params'], 200)}"))
    prog = view["progress"]
    con.print(Text(f"progress: {prog['done']}/{prog['total']} instances finished"
                   + ("  (break on error)" if view["break_on_error"]["enabled"] else "")))
    stepped = view["stepped_over"]["instances"]
    if stepped:
        con.print(Text("paused by a step over: " + ", ".join(target_text(i["step"], i["key"]) for i in stepped[:10])
                       + (f" … (+{len(stepped) - 10})" if len(stepped) > 10 else ""), style="yellow"))

    steps = Table(title="steps", title_justify="left", box=box.SIMPLE_HEAD)
    for col in ("STEP", "KIND", "AFTER", "INSTANCES", "BY STATUS"):
        steps.add_column(col, justify="right" if col == "INSTANCES" else "left")
    for node in view["dag"]["nodes"]:
        counts = counts_text(node["counts"])
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
        for col in ("ID", "SCOPE", "TARGET", "WHEN", "IF", "ACTION", "HITS", "STATE", "HOLDING"):
            bps.add_column(col)
        for bp in view["breakpoints"]:
            held = bp["holding"]
            shown = ", ".join("-" if k is None else str(k) for k in held[:10])
            if len(held) > 10:
                shown += f" … (+{len(held) - 10})"
            bps.add_row(
                str(bp["id"]), bp["scope"], Text(target_text(bp["step"], bp["key"])), bp["when"],
                Text(bp["condition"] or "-"),
                Text(f"log {bp['expression']}" if bp["action"] == "log" else bp["action"]),
                f"{bp['hits']} of >= {bp['hit_count']}" if bp["hit_count"] else str(bp["hits"]),
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
            Text(inst["step"]), Text("-" if inst["key"] is None else inst["key"]), status_text(inst["status"]),
            str(inst["attempt"]), Text(why or "-"), Text(", ".join(inst["verbs"]) or "-"),
        )
    con.print(table)
    if total > limit:
        con.print(Text(f"… and {total - limit} more (use --limit N, --status S, or -o json)", style="dim"))


def _one_target(store: Store, row: Mapping[str, Any], target: str) -> tuple[str, str | None]:
    """STEP[:KEY] naming a step or one instance of the run; an unknown step, a key on a task step or an
    unknown key is refused naming it (exit 1). A found key costs one row's read, not the step's."""
    ((step, keys),) = groups_of([target])
    key = keys[0] if keys else None
    if key is None or views.instance_stamp(store, row["id"], step, key) is None:
        from ..commands import check_target

        check_target(store, row, step, keys)
    return step, key


def _instance_detail(store: Store, row: Mapping[str, Any], target: str) -> dict[str, Any]:
    """:func:`views.instance_detail` of the instance *target* names, or refused (exit 1) saying why there is none."""
    run_id = row["id"]
    step, key = _one_target(store, row, target)
    detail = views.instance_detail(store, run_id, step, key)
    if detail is not None:
        return detail
    if store.definition(row["workflow"], row["version"]).steps[step].kind == StepKind.FOREACH:
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
    con = console()

    def heading(title: str, note: str = "") -> None:
        con.print()
        con.print(Text.assemble((title, "bold underline"), (f"  {note}" if note else "", "dim")))

    def verbatim(text: str) -> None:
        con.print(Text(text.rstrip("\n")), soft_wrap=True)

    head = Text()
    head.append(target_text(d["step"], d["key"]), style="bold")
    head.append(f"  in run {run_id}  ")
    head.append_text(status_text(d["status"]))
    head.append(f"  attempt {d['attempt']}")
    con.print(head)
    facts = [("pause reason", d["pause_reason"]),
             ("held by", ", ".join("break_on_error" if b == BREAK_ON_ERROR else "step over" if b == STEPPED_OVER
                                   else f"breakpoint {b}" for b in d["held_by"]) or None),
             ("started", d["started_at"] and local_time(d["started_at"])),
             ("finished", d["finished_at"] and local_time(d["finished_at"])),
             ("next attempt", d["next_attempt_at"] and local_time(d["next_attempt_at"])),
             ("deadline", d["deadline"] and local_time(d["deadline"])),
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
            table.add_row("-" if a["attempt"] is None else str(a["attempt"]), local_time(a["started"]),
                          local_time(a["finished"]), status_text(a["outcome"] or "running"), Text(a["error"] or "-"))
        con.print(table)
        final = d["error"]["traceback"] if d["error"] else None
        for a in d["attempts"]:
            if a["traceback"] and a["traceback"] != final:  # the last error's is printed above
                con.print(Text(f"traceback of attempt {a['attempt']} ({a['outcome']}):", style="bold"))
                verbatim(a["traceback"])

    heading("history", f"(the last {len(d['history'])}; {d['history_omitted']} earlier: "
            f"`nbflow history {run_id} --step {target_text(d['step'], d['key'])}`)" if d["history_omitted"] else "")
    con.print(_history_table(d["history"], with_instance=False))


def _history_table(events: Sequence[Mapping[str, Any]], with_instance: bool = True) -> Table:
    """Events as a table, numbered by ``n`` (their place in the run's history) rather than storage ids."""
    table = Table(box=box.SIMPLE_HEAD)
    cols = ("#", "TIME", "KIND", "INSTANCE", "ACTOR", "DATA")
    for col in cols if with_instance else [c for c in cols if c != "INSTANCE"]:
        table.add_column(col, justify="right" if col == "#" else "left")
    for ev in events:
        cells: list[str | Text] = [str(ev["n"]), local_time(ev["ts"]), Text(ev["kind"])]
        if with_instance:
            cells.append(Text(target_text(ev["step"], ev["key"])))
        cells += [Text(ev["actor"] or "-"), Text(compact(ev["data"]) if ev["data"] else "-")]
        table.add_row(*cells)
    return table


# ---------------------------------------------------------------------------------- history
@click.command("history")
@click.argument("run_id", metavar="RUN")
@click.option("--step", "target", default=None, metavar="STEP[:KEY]",
              help="Only the events of STEP's instances (or of one foreach item, STEP:KEY).")
@click.option("--kind", "kinds", multiple=True, metavar="KIND",
              help="Only events of this kind, e.g. failed, command (repeatable).")
@click.option("--after", type=click.IntRange(min=0), default=0,
              help="Only events after this one: its id (JSON) or its number # (text).")
@click.option("--limit", type=click.IntRange(min=0), default=None, help="Only the last N (matching) events.")
@fmt_option
@click.pass_obj
def history_cmd(obj: State, run_id: str, target: str | None, kinds: tuple[str, ...], after: int, limit: int | None,
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
            echo_err(f"note: run {run_id} has no event of kind {', '.join(map(repr, absent))}; "
                 f"its kinds are: {', '.join(have)}")
    if obj.format(fmt) == "json":
        emit_json(events)
        return
    console().print(_history_table(events))



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
        "verbs": allowed_verbs(str(v.status), v.pause_reason),
    }


@click.command("dead-letters")
@click.argument("run_id", metavar="RUN")
@click.argument("step", required=False, metavar="[STEP]")
@fmt_option
@click.pass_obj
def dead_letters_cmd(obj: State, run_id: str, step: str | None, fmt: str | None) -> None:
    """Items of RUN's foreach steps with on_item_error='continue' that exhausted their retries.

    They can still be retried or skipped (`nbflow retry|skip RUN STEP:KEY`) while the run is alive."""
    store = obj.store
    row = store.run_row(run_id)
    definition = store.definition(row["workflow"], row["version"])
    steps = definition.steps
    if step is not None and step not in steps:
        raise CommandRefused(definition.no_step(run_id, step))
    from ..run import Run

    items = [dead_letter_view(v) for v in Run(store, run_id).dead_letters(step)]
    if obj.format(fmt) == "json":
        emit_json(items)
        return
    if not items:
        continuing = [s for s in definition.order if steps[s].continues_on_item_error]
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
            Text(f"{err['type']}: {err['message']}" if err else "-"), Text(compact(it["inputs"], 80)),
        )
    console().print(table)


COMMANDS = (runs_cmd, show_cmd, history_cmd, dead_letters_cmd)
