"""``nbflow show RUN --watch``: the debug view redrawn live (rich) until the run finishes or pauses.

Each frame is read the light way (:func:`nbflow.views.run_state`: counts from GROUP BY queries, and
one short page of the instances that need a person), so it costs the same for 10 or 100,000 items;
a frame is rebuilt only when :func:`nbflow.views.change_token` moves (or every few seconds, to see an
owner that died). The last frame is printed once more, not live, so a log or a pipe keeps it.
"""
from __future__ import annotations

import signal
import time
from collections.abc import Mapping
from types import FrameType
from typing import Any

import click
from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from .. import views
from .._util import plural
from ..states import BREAK_ON_ERROR, STEPPED_OVER, InstanceStatus, RunStatus
from ..store import Store
from ._common import ATTENTION, console, counts_text, echo_err, status_text

REFRESH_S = 3.0
"""A frame is rebuilt at least this often even when nothing in the store changed (the owner may die)."""
LISTED = 20
"""How many of the instances that need a person a frame lists (the rest are counted)."""


def held_text(held_by: list[int]) -> str:
    """What holds a paused instance, for people: ``breakpoint 3``, ``break on error``, ``step over``."""
    return ", ".join("break on error" if b == BREAK_ON_ERROR else "step over" if b == STEPPED_OVER
                     else f"breakpoint {b}" for b in held_by)


def frame(store: Store, run_id: str) -> tuple[RenderableType, Mapping[str, Any]]:
    """One frame of the watch and the light view it was drawn from."""
    view = views.run_state(store, run_id)
    parts: list[RenderableType] = []
    head = Text()
    head.append(f"run {view['id']}", style="bold")
    head.append(f"  workflow {view['workflow']}  version {view['version']}  ")
    head.append_text(status_text(view["status"]))
    owner = view["owner"]
    if owner["alive"]:
        head.append(f"  owner {owner['text']} (alive)", style="green")
    parts.append(head)
    if view["interrupted"]:
        who = f"owner {owner['text']} is gone" if owner["host"] else "no process drives it"
        parts.append(Text(f"interrupted: {who}; `nbflow resume {view['id']}` continues it", style="bold red"))
    prog = view["progress"]
    bar = Table.grid(padding=(0, 1))
    bar.add_row(ProgressBar(total=max(prog["total"], 1), completed=prog["done"], width=40),
                Text(f"{prog['done']}/{prog['total']} instances finished"))
    parts.append(bar)

    steps = Table(title="steps", title_justify="left", box=box.SIMPLE_HEAD)
    for col in ("STEP", "KIND", "DONE", "", "BY STATUS"):
        steps.add_column(col, justify="right" if col == "DONE" else "left")
    for node in view["dag"]["nodes"]:
        counts = counts_text(node["counts"])
        done = sum(n for st, n in node["counts"].items() if InstanceStatus(st).terminal)
        kind = node["kind"] + (f" over {node['foreach']}" if node["foreach"] else "")
        steps.add_row(Text(node["step"]), Text(kind), f"{done}/{node['total']}",
                      ProgressBar(total=max(node["total"], 1), completed=done, width=16), counts)
    parts.append(steps)

    holds = [f"break on error: holding {view['break_on_error']['held']}"] if view["break_on_error"]["enabled"] else []
    if view["stepped_over"]["held"]:
        holds.append(f"step over: holding {view['stepped_over']['held']}")
    for bp in view["breakpoints"]:
        what = "logpoint" if bp["action"] == "log" else "breakpoint"
        holds.append(f"{what} {bp['id']} {bp['label']}: " + (f"hit, holding {bp['held']}" if bp["held"] else "set"))
    if holds:
        parts.append(Text("breakpoints: " + "; ".join(holds)))

    for node in view["dag"]["nodes"]:
        if node["counts"]["failed"] or node["counts"]["paused"] or node["counts"]["retrying"]:
            found = views.error_groups(store, run_id, node["step"], limit=3)
            if found["groups"]:
                more = len(found["groups"]) + found["groups_omitted"]
                kinds = ", ".join(f"{g['type']} {g['count']}" for g in found["groups"])
                parts.append(Text.assemble(
                    (f"errors of {node['step']}: ", "bold red"),
                    f"{found['total']} in {plural(more, 'group')}: {kinds}"
                    + (", …" if found["groups_omitted"] else ""),
                    (f"  (`nbflow errors {run_id} {node['step']}`)", "dim")))

    rows: list[dict[str, Any]] = []
    total = 0
    for node in view["dag"]["nodes"]:
        n = sum(node["counts"][st] for st in ATTENTION)
        if not n:
            continue
        total += n
        if len(rows) < LISTED:
            page = views.instance_page(store, run_id, node["step"], status=ATTENTION, limit=LISTED - len(rows))
            rows.extend(page["rows"])
    title = f"instances {', '.join(ATTENTION)} ({total})"
    if not rows:
        parts.append(Text(f"{title}: none", style="dim"))
    else:
        table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD)
        for col in ("STEP", "KEY", "STATUS", "ATTEMPT", "HELD BY / REASON / ERROR"):
            table.add_column(col, justify="right" if col == "ATTEMPT" else "left")
        for inst in rows:
            held, reason = held_text(inst["held_by"]), inst["pause_reason"] or ""
            why = [f"{held} ({reason})" if held and reason else held or reason]
            if inst["error"]:
                error = f"{inst['error']['type']}: {inst['error']['message']}"
                why.append(error if len(error) <= 80 else error[:79] + "…")
            key = "-" if inst["key"] is None else str(inst["key"])
            table.add_row(Text(inst["step"]), Text(key), status_text(inst["status"]), str(inst["attempt"]),
                          Text("; ".join(w for w in why if w) or "-"))
        parts.append(table)
        if total > len(rows):
            parts.append(Text(f"… and {total - len(rows)} more (`nbflow show {run_id} --status paused`)", style="dim"))
    return Group(*parts), view


def finished(view: Mapping[str, Any]) -> bool:
    """The watch ends when the run finished or paused, or nothing drives it any more."""
    status = RunStatus(view["status"])
    return status.terminal or status == RunStatus.PAUSED or bool(view["interrupted"])


class _Stop:
    """Ctrl-C while watching: a flag the loop reads between frames. (A KeyboardInterrupt raised inside
    a store query would surface as a database error, "interrupted", instead of a clean stop.)"""

    def __init__(self) -> None:
        self.asked = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.asked = True


def watch(store: Store, run_id: str, interval: float) -> None:
    """Redraw the run's frame every *interval* seconds while it changes; exit 0 when the run finished or
    paused, 1 when it is interrupted (no process drives it), 130 on Ctrl-C."""
    con: Console = console()
    stop = _Stop()
    previous = signal.signal(signal.SIGINT, stop)
    try:
        shown, view = frame(store, run_id)
        token, built = views.change_token(store, run_id), time.monotonic()
        with Live(shown, console=con, transient=True, auto_refresh=False, redirect_stderr=False) as live:
            while not finished(view) and not stop.asked:
                time.sleep(interval)
                if stop.asked:
                    break
                now = views.change_token(store, run_id)
                if now == token and time.monotonic() - built < REFRESH_S:
                    continue
                shown, view = frame(store, run_id)
                token, built = now, time.monotonic()
                live.update(shown, refresh=True)
        con.print(shown)
    finally:
        signal.signal(signal.SIGINT, previous)
    if stop.asked:
        echo_err(f"stopped watching; run {run_id} goes on as it is (`nbflow show {run_id}` shows it)")
        raise SystemExit(130)
    if view["interrupted"] and not RunStatus(view["status"]).terminal and view["status"] != RunStatus.PAUSED:
        echo_err(f"run {run_id} is interrupted: no process drives it, so it will not change; "
                 f"`nbflow resume {run_id}` continues it")
        raise SystemExit(1)


def check_interval(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    """Click callback: ``--interval`` is a positive number of seconds."""
    if value is not None and value <= 0:
        raise click.BadParameter("must be a positive number of seconds, e.g. 0.5", ctx, param)
    return value
