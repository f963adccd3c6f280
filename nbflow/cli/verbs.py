"""The operator verbs of :data:`nbflow.verbs.VERBS` on the command line: resume, step (step_over),
skip, retry, set (set_inputs, set_output), approve, reject, cancel and signal. Each command only reads
its options into targets and a payload; :func:`operate` does the rest for all of them: it checks the command
(:func:`nbflow.commands.check`), asks the verb's question (``Verb.confirm``), submits it and awaits
the owner's answer (:func:`nbflow.commands.await_applied`). The help's first line is ``Verb.summary``."""
from __future__ import annotations

import inspect
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import click
from rich import box
from rich.table import Table
from rich.text import Text

from .. import views
from .._jsontext import to_json_text
from .._util import HOST, plural, process_state
from ..commands import WHOLE_RUN, await_applied, check, check_target, submit
from ..errors import CommandRefused, OwnershipError
from ..states import InstanceStatus, RunStatus, StepKind
from ..store import Store
from ..triage import Expression
from ..verbs import VERBS, CommandState, Refusal, Target, signal_outcome
from ._common import (
    APPLY_WAIT_S,
    UNSET,
    Groups,
    State,
    confirm,
    console,
    describe,
    echo_err,
    emit_json,
    fmt_option,
    force_option,
    groups_of,
    parse_json_option,
    reason_option,
    status_text,
    target_text,
)
from .triage import (
    PREVIEW,
    Selection,
    compile_expr,
    expr_values,
    print_preview,
    selection,
    selection_options,
    target_groups,
)

F = Callable[..., Any]


def verb_command(*names: str, command: str | None = None) -> Callable[[F], click.Command]:
    """A click command for the verbs *names* (its name: *command*, else the verb's): its help is the
    verbs' ``summary`` from the table, then the function's docstring (what the command line adds; for
    a command of several verbs its first line is the command's line in ``nbflow --help``)."""
    def make(f: F) -> click.Command:
        summary = " ".join(VERBS[n].summary for n in names)
        more = inspect.cleandoc(f.__doc__) if f.__doc__ else ""
        short = more.splitlines()[0] if len(names) > 1 and more else None
        return click.command(command or names[0], help=summary + ("\n\n" + more if more else ""),
                             short_help=short)(f)
    return make


# ---------------------------------------------------------------------------------- the one path
def ask(force: bool, verb: str, what: str, row: Mapping[str, Any], also: str = "") -> None:
    """The verb's question (``Verb.confirm``) on a terminal; without one, refuse unless --force."""
    question = VERBS[verb].confirm or f"{verb} {{what}}?"
    where = f"{what} in run {row['id']} (workflow {row['workflow']}){also}"
    confirm(force, question.format(what=where), f"refusing to {verb} {what} in run {row['id']}")


def send(store: Store, row: Mapping[str, Any], verb: str, groups: Groups, payload: Mapping[str, Any] | None,
         reason: str | None) -> list[dict[str, Any]]:
    """Write one command per step and, for a live owner, wait (up to APPLY_WAIT_S) for its answers."""
    sent: list[dict[str, Any]] = []
    for step, keys in groups:
        res = submit(store, row["id"], verb, step, keys, payload, reason, wait=False)
        sent.append({"id": res.id, "verb": verb, "step": step, "keys": keys, "state": str(res.state),
                     "message": None})
    waiting = [c["id"] for c in sent if c["state"] == CommandState.SENT]
    if waiting:
        answers = await_applied(store, waiting, APPLY_WAIT_S)
        for c in sent:
            ans = answers.get(c["id"])
            if ans is not None:
                c["state"], c["message"] = str(ans.state), ans.message
    return sent


def operate(obj: State, run_id: str, verb: str, groups: Groups, payload: Mapping[str, Any] | None,
            reason: str | None, force: bool, fmt: str | None) -> None:
    """Every verb but resume and signal: check, ask, submit, await, report (exit 1 if refused)."""
    store = obj.store
    row = store.run_row(run_id)
    for step, keys in groups:
        check(store, row, verb, step, keys, payload)
    ask(force, verb, describe(groups, verb), row)
    commands = send(store, row, verb, groups, payload, reason)
    after = store.run_row(run_id)
    report(obj, fmt, {"run": run_id, "verb": verb, "owner": views.owner_view(row), "took_over": False,
                      "commands": commands, "status": after["status"]})


def chosen(obj: State, run_id: str, targets: Sequence[str], sel: Selection, verb: str) -> Groups:
    """The (step, keys) a verb's targets and selection options (:func:`.triage.selection_options`) name."""
    return target_groups(obj.store, obj.store.run_row(run_id), targets, sel, verb)


def report(obj: State, fmt: str | None, result: dict[str, Any]) -> None:
    """Print a verb's result; exit 1 if the owner refused any command."""
    run_id = result["run"]
    refused = [c for c in result["commands"] if c["state"] == "refused"]
    if obj.format(fmt) == "json":
        emit_json(result)
    else:
        for c in result["commands"]:
            what = f"{c['verb']} {describe([(c['step'], c['keys'])], c['verb'])}"
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
        echo_err(f"refused: {c['message']}")
    if refused:
        sys.exit(1)


def _print_outcome(result: Mapping[str, Any]) -> None:
    con = console()
    prog = result["progress"]
    con.print(Text.assemble(f"run {result['run']}: ", status_text(result["status"]),
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


# ---------------------------------------------------------------------------------- resume
@verb_command("resume")
@click.argument("run_id", metavar="RUN")
@click.argument("targets", nargs=-1, metavar="[STEP[:KEY]]...")
@selection_options
@reason_option
@force_option
@click.option("--notebook", default=None, type=click.Path(exists=True, dir_okay=False, path_type=Path), metavar="NB",
              help="Instead: re-execute NB with papermill, injecting nbflow_resume=RUN (its workflow attaches).")
@click.option("--output", "nb_output", default=None, type=click.Path(dir_okay=False, path_type=Path), metavar="OUT",
              help="With --notebook: the executed notebook (default: NB's name with .RUN.out.ipynb).")
@click.option("-p", "--parameter", "nb_params", nargs=2, multiple=True, metavar="NAME VALUE",
              help="With --notebook: a papermill parameter (repeatable).")
@click.option("--executor", default=None, metavar="EXECUTOR",
              help="When taking the run over: run its steps on threads, processes, dask (NBFLOW_DASK_ADDRESS) or "
                   "the Dask scheduler at tcp://HOST:PORT, instead of the executor the run recorded.")
@fmt_option
@click.pass_obj
def resume_cmd(
    obj: State, run_id: str, targets: tuple[str, ...], sel_keys: tuple[str, ...], sel_group: str | None,
    sel_status: str | None, sel_text: str | None, reason: str | None, force: bool, notebook: Path | None,
    nb_output: Path | None, nb_params: tuple[tuple[str, str], ...], executor: str | None, fmt: str | None,
) -> None:
    """Resume the paused instances of RUN named, else every paused instance.

    If the run's owner is alive, the owner applies the command. If it is gone (interrupted, or a
    batch run that paused and exited), this process takes the run over with its pinned code and
    drives it until it finishes or pauses again. With --notebook NB, NB is re-executed with
    papermill instead and its workflow attaches to RUN (exit codes as for `nbflow run`). With STEP
    and --keys, --group, --status or --text: one command resumes every instance they select.
    """
    sel = selection(sel_keys, sel_group, sel_status, sel_text)
    if sel.given and notebook is not None:
        raise click.UsageError(f"{sel.options} and --notebook do not go together: the notebook resumes the run; "
                               "name the instances as STEP:KEY targets instead")
    if notebook is not None:
        if executor is not None:
            raise click.UsageError("--executor does not go with --notebook (set NBFLOW_EXECUTOR for the notebook)")
        from .notebooks import resume_notebook  # papermill's side: only for --notebook

        resume_notebook(obj, run_id, targets, notebook, nb_output, nb_params, force, fmt)
        return
    if nb_output is not None or nb_params:
        raise click.UsageError("--output and -p go with --notebook NB")
    store = obj.store
    row = store.run_row(run_id)
    groups: Groups = chosen(obj, run_id, targets, sel, "resume") if targets else [(None, None)]
    if sel.given and not targets:
        raise click.UsageError(f"{sel.selects} instances of one step: `nbflow resume {run_id} STEP {sel.first} ...`")
    for step, keys in groups:
        check(store, row, "resume", step, keys)
    owner = views.owner_view(row)
    what = describe(groups, "resume")
    if not owner["alive"] and not targets:
        paused = store.instance_rows(run_id, status=InstanceStatus.PAUSED)
        what = f"every paused instance ({len(paused)})" if paused else "the run (nothing is paused)"
    ask(force, "resume", what, row,
        "" if owner["alive"] else ", taking the run over in this process with its pinned code")
    if owner["alive"]:
        if executor is not None:
            raise click.UsageError(f"--executor applies when this process takes run {run_id} over, but its owner "
                                   f"(pid {owner['pid']} on {owner['host']}) is alive and keeps its executor")
        commands = send(store, row, "resume", groups, None, reason)
        after = store.run_row(run_id)
        report(obj, fmt, {"run": run_id, "verb": "resume", "owner": owner, "took_over": False,
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
        echo_err(f"run {run_id} was taken over at the same moment by another process ({owner['text']}); "
                 "the resume goes to that owner")
        commands = _resume_via_owner(store, run_id, groups if targets else [(None, None)], reason, mark)
        result = {"run": run_id, "verb": "resume", "owner": owner, "took_over": False, "commands": commands,
                  "status": store.run_row(run_id)["status"]}
        report(obj, fmt, result)
        _exit_if_not_applied(store, run_id, owner, commands)
        return
    report(obj, fmt, result)


def _exit_if_not_applied(store: Store, run_id: str, owner: Mapping[str, Any], commands: Sequence[Mapping[str, Any]]
                         ) -> None:
    """A resume the owner has not applied in time did nothing yet: say why, exit 1 (never a silent success)."""
    if not any(c["state"] == "sent" for c in commands):
        return
    row = store.run_row(run_id)
    state = process_state(int(row["owner_pid"] or 0)) if row["owner_id"] and row["owner_host"] == HOST else None
    why = {"T": " (its process is stopped)", "t": " (its process is stopped by a debugger)",
           "D": " (its process is blocked in the kernel, e.g. on disk I/O)"}.get(state or "", "")
    echo_err(f"not resumed: the owner of run {run_id} ({owner['text']}){why} has not applied the command within "
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
                c["id"] = submit(store, run_id, "resume", step, keys, reason=reason, wait=False).id
            except CommandRefused as exc:  # e.g. the owner finished the run meanwhile
                c["state"], c["message"] = "refused", str(exc)
        commands.append(c)
    deadline = time.monotonic() + APPLY_WAIT_S
    while True:
        answers = await_applied(store, [c["id"] for c in commands if c["state"] == "sent" and c["id"] is not None], 0)
        for c in commands:
            ans = answers.get(c["id"])
            if c["state"] == "sent" and ans is not None:
                c["state"], c["message"] = str(ans.state), ans.message
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
    return (f"already resumed {plural(len(seen), 'instance')} by another command applied meanwhile"
            + (f" (by {', '.join(by)})" if by else "") + f"; see `nbflow history {run_id}`")


def _still_paused(store: Store, run_id: str, before: set[tuple[str, str | None]]) -> Groups:
    """The (step, keys) of the instances paused now that were paused before the takeover (a task's: no keys)."""
    by: dict[str, list[str]] = {}
    tasks: list[str] = []
    for r in store.instance_rows(run_id, status=InstanceStatus.PAUSED):
        if (r["step"], r["key"]) in before:
            if r["key"] is None:
                tasks.append(r["step"])
            else:
                by.setdefault(r["step"], []).append(r["key"])
    return [*((step, None) for step in tasks), *((step, list(keys)) for step, keys in by.items())]


def _executor(value: str | None) -> Any:
    """``--executor``: a name, or a Dask scheduler's address."""
    if value is None or value in ("threads", "processes", "dask"):
        return value
    if "://" in value:
        return {"dask": value}
    raise click.BadParameter(f"{value!r}: use threads, processes, dask or tcp://HOST:PORT", param_hint="--executor")


def _take_over_and_resume(
    store: Store, row: Mapping[str, Any], groups: Groups, reason: str | None, executor: Any = None, mark: int = 0,
) -> dict[str, Any]:
    """Take the run over with its pinned code, let it apply the commands queued for it, resume the
    targets (every paused instance if none: those paused before the takeover, when commands were queued,
    so that what a queued step over pauses stays paused), and drive it until it finishes or pauses."""
    from ..run import resume_pinned

    run_id = row["id"]
    owner = views.owner_view(row)
    with store.engine.connect() as conn:
        queued = [c["id"] for c in store.pending_commands(run_id, conn)]
    before = {(r["step"], r["key"]) for r in store.instance_rows(run_id, status=InstanceStatus.PAUSED)}
    run = resume_pinned(store, run_id, executor=executor)
    echo_err(f"took over run {run_id} in this process (pid {os.getpid()}) with its pinned code; driving it until "
             f"it finishes or pauses (Ctrl-C stops here; `nbflow resume {run_id}` continues later)")
    earlier = []
    for cid, ans in await_applied(store, queued, APPLY_WAIT_S).items():
        earlier.append({"id": cid, "verb": ans.verb, "state": str(ans.state), "message": ans.message})
        if ans.state == CommandState.REFUSED:
            echo_err(f"note: command {cid} ({ans.verb}) queued earlier was refused: {ans.message}")
    commands: list[dict[str, Any]] = []
    todo = groups or (_still_paused(store, run_id, before) if queued
                      else [(None, None)] if store.instance_rows(run_id, status=InstanceStatus.PAUSED) else [])
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
        status = run.wait()
    except KeyboardInterrupt:
        echo_err(f"stopped; run {run_id} is left as it is: `nbflow resume {run_id}` continues it")
        sys.exit(130)
    summary = views.run_summary(store, store.run_row(run_id))
    return {"run": run_id, "verb": "resume", "owner": owner, "took_over": True, "earlier_commands": earlier,
            "commands": commands, "status": str(status), "progress": summary["progress"],
            "paused": views.paused_instances(run)}


# ---------------------------------------------------------------------------------- step over
@verb_command("step_over", command="step")
@click.argument("run_id", metavar="RUN")
@click.argument("target", metavar="STEP[:KEY]")
@reason_option
@force_option
@fmt_option
@click.pass_obj
def step_cmd(obj: State, run_id: str, target: str, reason: str | None, force: bool, fmt: str | None) -> None:
    """Resume the one paused instance STEP[:KEY] names (a foreach item needs its key) and pause, before
    their body, the instances that consume its output when they are ready: the matching item of a
    foreach over it, a task that takes it (once the whole fan-out is ready). The breakpoint that pauses
    them is run-scoped and one-shot: it is removed once it fired; resume them as any paused instance."""
    store = obj.store
    row = store.run_row(run_id)
    groups = groups_of([target])
    ((step, keys),) = groups
    check_target(store, row, step, keys)
    if keys is None and store.definition(row["workflow"], row["version"]).steps[step].kind == StepKind.FOREACH:
        raise CommandRefused(_needs_key(store, run_id, step), Refusal.INVALID)
    operate(obj, run_id, "step_over", groups, None, reason, force, fmt)


def _needs_key(store: Store, run_id: str, step: str) -> str:
    """Why ``nbflow step RUN STEP`` on a foreach is refused, with the keys of its paused instances to name."""
    rows = views.instance_page(store, run_id, step, status=InstanceStatus.PAUSED.value, limit=5)
    if rows["total"]:
        sample = ", ".join(f"{step}:{r['key']}" for r in rows["rows"]) + (", …" if rows["total"] > 5 else "")
        which = f"its paused {plural(rows['total'], 'instance')}: {sample}"
    else:
        which = "it has no paused instance now"
    return (f"step {step!r} is a foreach step: step over names one instance by its key "
            f"(`nbflow step {run_id} {step}:KEY`); {which}")


# ---------------------------------------------------------------------------------- the other verbs
@verb_command("skip")
@click.argument("run_id", metavar="RUN")
@click.argument("targets", nargs=-1, required=True, metavar="STEP[:KEY]...")
@click.option("--output", "output", required=True, callback=parse_json_option, metavar="JSON|@FILE",
              help="The output the skipped instances stand for, as JSON (downstream steps read it).")
@selection_options
@reason_option
@force_option
@fmt_option
@click.pass_obj
def skip_cmd(obj: State, run_id: str, targets: tuple[str, ...], output: Any, sel_keys: tuple[str, ...],
             sel_group: str | None, sel_status: str | None, sel_text: str | None, reason: str | None, force: bool,
             fmt: str | None) -> None:
    """Instances paused, failed, retrying or waiting can be skipped. With STEP and --keys, --group,
    --status or --text: one command skips every instance of STEP they select."""
    sel = selection(sel_keys, sel_group, sel_status, sel_text)
    operate(obj, run_id, "skip", chosen(obj, run_id, targets, sel, "skip"), {"output": output}, reason, force, fmt)


@verb_command("retry")
@click.argument("run_id", metavar="RUN")
@click.argument("targets", nargs=-1, required=True, metavar="STEP[:KEY]...")
@selection_options
@reason_option
@force_option
@fmt_option
@click.pass_obj
def retry_cmd(
    obj: State, run_id: str, targets: tuple[str, ...], sel_keys: tuple[str, ...], sel_group: str | None,
    sel_status: str | None, sel_text: str | None, reason: str | None, force: bool, fmt: str | None,
) -> None:
    """Failed or paused instances run again with their current inputs (including `set --inputs` edits).
    With STEP and --keys, --group, --status or --text: one command retries every instance they select."""
    sel = selection(sel_keys, sel_group, sel_status, sel_text)
    operate(obj, run_id, "retry", chosen(obj, run_id, targets, sel, "retry"), None, reason, force, fmt)


@verb_command("set_inputs", "set_output", command="set")
@click.argument("run_id", metavar="RUN")
@click.argument("target", metavar="STEP[:KEY]")
@click.option("--inputs", "inputs", default=None, callback=parse_json_option, metavar="JSON|@FILE",
              help="A JSON object of input name to new value, for an instance paused before its body or on error.")
@click.option("--output", "output", default=None, callback=parse_json_option, metavar="JSON|@FILE",
              help="The new output as JSON, for an instance paused after its body.")
@click.option("--expr", "expr", default=None, metavar="EXPR",
              help="Instead of --inputs: a Python expression over the instance's inputs by name, evaluated per "
                   "instance; its value becomes the new value of --input, e.g. "
                   "'{**item, \"amount\": item[\"amount\"].replace(\",\", \".\")}'.")
@click.option("--input", "input_name", default=None, metavar="NAME",
              help="With --expr: the input it sets (default: item, on a foreach step).")
@click.option("--dry-run", is_flag=True, help="With --expr: print what it would set (key, old, new); change nothing.")
@selection_options
@click.option("--reason", default=None, help="Why (required): recorded in the history with the old and new values.")
@force_option
@fmt_option
@click.pass_obj
def set_cmd(obj: State, run_id: str, target: str, inputs: Any, output: Any, expr: str | None,
            input_name: str | None, dry_run: bool, sel_keys: tuple[str, ...], sel_group: str | None,
            sel_status: str | None, sel_text: str | None, reason: str | None, force: bool, fmt: str | None) -> None:
    """Change the inputs (--inputs, --expr) or the output (--output) of paused instances, audited.

    --expr computes a new input value per instance. With STEP and --keys, --group, --status or --text:
    one command changes every instance they select."""
    sel = selection(sel_keys, sel_group, sel_status, sel_text)
    if [inputs is not UNSET, output is not UNSET, expr is not None].count(True) != 1:
        raise click.UsageError("pass exactly one of --inputs JSON, --output JSON or --expr EXPR")
    if expr is None and (input_name is not None or dry_run):
        raise click.UsageError(f"{'--input' if input_name is not None else '--dry-run'} goes with --expr: "
                               "`nbflow set RUN STEP --group N --input item --expr EXPR --dry-run`")
    if reason is None and not dry_run:
        raise click.UsageError("Missing option '--reason': say why; it is recorded in the history with the old and "
                               "new values")
    if expr is not None:
        set_by_expr(obj, run_id, target, sel, input_name, compile_expr(expr), expr, dry_run, reason, force, fmt)
        return
    groups = chosen(obj, run_id, (target,), sel, "set")
    if inputs is not UNSET:
        if not isinstance(inputs, dict) or not inputs:
            raise click.BadParameter(
                "must be a non-empty JSON object of input name to value, e.g. '{\"item\": {\"x\": 1}}'",
                param_hint="'--inputs'",
            )
        operate(obj, run_id, "set_inputs", groups, {"inputs": inputs}, reason, force, fmt)
    else:
        operate(obj, run_id, "set_output", groups, {"value": output}, reason, force, fmt)


def set_by_expr(obj: State, run_id: str, target: str, sel: Selection, input_name: str | None, expression: Expression,
                text: str, dry_run: bool, reason: str | None, force: bool, fmt: str | None) -> None:
    """``set --expr``: one set_inputs command with a value per instance (the by_key payload), or with
    --dry-run the preview of the first instances; an expression that fails for any instance is refused."""
    store = obj.store
    row = store.run_row(run_id)
    ((step, keys),) = target_groups(store, row, (target,), sel, "set")
    assert step is not None
    check_target(store, row, step)
    spec = store.definition(row["workflow"], row["version"]).steps[step]
    if keys is None:
        if spec.kind != StepKind.FOREACH:
            raise click.UsageError(f"--expr computes a value per instance of a foreach step; {step!r} is a "
                                   f"{spec.kind} step: pass its new inputs with --inputs JSON")
        raise click.UsageError(f"--expr needs the instances it changes: {step}:KEY, or {step} with --keys, --group, "
                               "--status or --text")
    name = input_name or "item"
    if name not in spec.inputs:
        raise CommandRefused(f"step {step!r} takes no input named {name!r}; its inputs are: "
                             f"{', '.join(sorted(spec.inputs)) or 'none'} (choose one with --input NAME)",
                             Refusal.INVALID)
    values, preview, failures = expr_values(store, run_id, step, [k for k in keys if k is not None], name, expression)
    for key, value in values.items():
        if to_json_text(value) is None:
            failures += 1
            if failures <= PREVIEW:
                preview.append({"key": key, "old": None, "error": f"its value is not JSON ({type(value).__name__}); "
                                "make the expression return dicts, lists, text, numbers, booleans or None"})
    failed = [p for p in preview if "error" in p]
    if dry_run or failed:
        if obj.format(fmt) == "json":
            emit_json({"run": run_id, "step": step, "input": name, "expr": text, "count": len(keys),
                       "failed": failures, "preview": preview, "dry_run": dry_run})
        else:
            print_preview(run_id, step, name, len(keys), preview)
        if failed:
            echo_err(f"refused: the expression failed for {failures} of {plural(len(keys), 'instance')} (first: "
                     f"{step}:{failed[0]['key']}: {failed[0]['error']}); nothing was changed")
            sys.exit(1)
        if obj.format(fmt) != "json":
            click.echo(f"dry run: {plural(len(keys), 'instance')} would change; nothing was changed")
        return
    payload = {"inputs": {k: {name: v} for k, v in values.items()}, "by_key": True}
    operate(obj, run_id, "set_inputs", [(step, list(values))], payload, reason, force, fmt)


@verb_command("cancel")
@click.argument("run_id", metavar="RUN")
@reason_option
@force_option
@fmt_option
@click.pass_obj
def cancel_cmd(obj: State, run_id: str, reason: str | None, force: bool, fmt: str | None) -> None:
    """The run ends."""
    operate(obj, run_id, "cancel", [(None, None)], None, reason, force, fmt)


@verb_command("approve")
@click.argument("run_id", metavar="RUN")
@click.argument("step", metavar="STEP")
@click.option("--comment", default=None, help="Why: recorded with the decision and your name.")
@click.option("--payload", "payload", default=None, callback=parse_json_option, metavar="JSON|@FILE",
              help="The gate's output as JSON (what downstream steps receive); default: a decision record.")
@force_option
@fmt_option
@click.pass_obj
def approve_cmd(obj: State, run_id: str, step: str, comment: str | None, payload: Any, force: bool,
                fmt: str | None) -> None:
    """The gate STEP of RUN succeeds, and downstream steps go on."""
    body = {"comment": comment, "payload": None if payload is UNSET else payload}
    operate(obj, run_id, "approve", [(step, None)], body, comment, force, fmt)


@verb_command("reject")
@click.argument("run_id", metavar="RUN")
@click.argument("step", metavar="STEP")
@click.option("--comment", default=None, help="Why: recorded with the decision and your name.")
@force_option
@fmt_option
@click.pass_obj
def reject_cmd(obj: State, run_id: str, step: str, comment: str | None, force: bool, fmt: str | None) -> None:
    """The gate STEP of RUN fails, and what depends on it is cancelled."""
    operate(obj, run_id, "reject", [(step, None)], {"comment": comment}, comment, force, fmt)


@verb_command("signal")
@click.argument("token", metavar="TOKEN")
@click.option("--payload", "payload", default=None, callback=parse_json_option, metavar="JSON|@FILE",
              help="The payload as JSON: the waiting step's output (or wait_for_signal's return value).")
@fmt_option
@click.pass_obj
def signal_cmd(obj: State, token: str, payload: Any, fmt: str | None) -> None:
    """The run is named by the token. For machines: it never asks for confirmation. Exit 1 when the
    token is forged or from another store, the wait timed out, or the run is finished; a duplicate
    delivery is reported, exit 0.
    """
    from ..commands import signal
    from ..signals import SignalRefused, read_token

    store = obj.store
    try:
        run_id, step, item, name = read_token(store.secret, token)
    except SignalRefused as exc:  # forged, truncated or from another store: nothing is written
        echo_err(f"refused: {exc}")
        sys.exit(1)
    out: dict[str, Any] = {"run": run_id, "step": step, "key": None, "name": name, "command": None,
                           "state": "queued", "message": None}
    for r in store.instance_rows(run_id, step=step):
        if r["item"] == item:
            out["key"] = r["key"]
    try:
        res = signal(token, None if payload is UNSET else payload, store=store)
    except SignalRefused as exc:  # the run is finished (recorded as a refused command)
        out.update(state="refused", message=str(exc))
    else:
        out["command"] = res.id
        if res.applied:  # answered already (a finished run's duplicate)
            out.update(message=res.message, state=str(signal_outcome(res.message)))
        elif res.state == CommandState.SENT:
            ans = await_applied(store, [res.id], APPLY_WAIT_S).get(res.id)
            if ans is None:
                out["state"] = "sent"
            else:
                out.update(message=ans.message,
                           state="refused" if ans.state == CommandState.REFUSED else str(signal_outcome(ans.message)))
    where = f"{target_text(step, out['key'])} of run {run_id} (signal {name!r})"
    if obj.format(fmt) == "json":
        emit_json(out)
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
        echo_err(f"refused: {out['message']}")
        sys.exit(1)


# ---------------------------------------------------------------------------------- verbs of the table alone
def table_command(name: str) -> click.Command:
    """The command of a verb that has only its table entry: ``nbflow VERB RUN [STEP[:KEY]...]`` (a
    step verb: ``RUN STEP``; a run verb: ``RUN``), each payload key an option taking JSON (the
    required ones required), --reason, --force and -o; it goes the one path, :func:`operate`."""
    v = VERBS[name]
    params: list[click.Parameter] = [click.Argument(["run_id"], metavar="RUN")]
    if v.target == Target.STEP:
        params.append(click.Argument(["targets"], nargs=1, metavar="STEP"))
    elif v.target == Target.INSTANCES:
        params.append(click.Argument(["targets"], nargs=-1, required=name not in WHOLE_RUN, metavar="STEP[:KEY]..."))
    for n, key in enumerate(v.payload):
        params.append(click.Option([f"--{key.replace('_', '-')}", key], required=n < v.required,
                                   callback=parse_json_option, metavar="JSON|@FILE",
                                   help=f"The {key} of {name}, as JSON."))

    def run(obj: State, run_id: str, targets: str | tuple[str, ...] = (), reason: str | None = None,
            force: bool = False, fmt: str | None = None, **values: Any) -> None:
        named = (targets,) if isinstance(targets, str) else targets
        groups: Groups = groups_of(named) if named else [(None, None)]
        payload = {k: value for k, value in values.items() if value is not UNSET}
        operate(obj, run_id, name, groups, payload or None, reason, force, fmt)

    callback = reason_option(force_option(fmt_option(click.pass_obj(run))))
    return click.command(name.replace("_", "-"), params=params, help=v.summary)(callback)


HANDWRITTEN = (resume_cmd, step_cmd, skip_cmd, retry_cmd, set_cmd, cancel_cmd, approve_cmd, reject_cmd, signal_cmd)
"""The verbs whose command line has more than the table says: own arguments, options and help."""
_COVERED = {"resume", "step_over", "skip", "retry", "set_inputs", "set_output", "cancel", "approve", "reject", "signal"}

COMMANDS = (*HANDWRITTEN, *(table_command(v.name) for v in VERBS.values()
                           if v.target in (Target.INSTANCES, Target.STEP, Target.RUN) and v.name not in _COVERED))
"""One command per verb of the table with an operator on the command line (set: set_inputs and set_output)."""
