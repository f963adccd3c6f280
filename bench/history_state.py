"""Issue 18: what the debugger view's history costs, on the 100,000-instance run of bench/at_100k.py.

The controller's ``state()`` (what the widget syncs and the sidebar fetches on every refresh) live and
at the run's ``run_paused`` event, with the ``enrich``-like step (``parse``) selected and its
instance panel open: **live, marks read**: the scrubber's marks read again (what each refresh of a
changing run costs); **live, marks kept**: the run did not change (a finished or idle run); **at the
pause**: the view travelled there (warm: the history folded in this process; ``travel`` + ``state``
is one move of the scrubber, to an event not shown before); and its JSON size (the widget's traits).
Each figure is the median of ``--rounds`` rounds. Prints JSON.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from at_100k import machine, median_s, workflow

import nbflow
from nbflow import views
from nbflow.engine.lifecycle import stop_all
from nbflow.notebook import controller as controller_module
from nbflow.notebook.controller import Controller


def median_ms(fn: Callable[[], Any], rounds: int, before: Callable[[], None] | None = None) -> float:
    """at_100k's median, in milliseconds to one decimal."""
    return round(median_s(fn, rounds, before) * 1000, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--db", help="a store holding bench/at_100k.py's run already (skips making it)")
    args = parser.parse_args()
    url = args.db or f"sqlite:///{Path(tempfile.mkdtemp(prefix='nbflow-history-')) / 'nbflow.db'}"
    wf = workflow(url)
    if args.db is None:
        run = wf.run(params={"n": args.n}, breakpoints=[f"parse:{args.n // 2}"], break_on_error=True)
        assert run.wait() == "paused"
        bad = run.keys("parse", status="paused")
        run.skip("parse", keys=[k for k in bad if k != args.n // 2], output=0)
        run.resume("parse", key=args.n // 2)
        assert run.wait() == "succeeded"
        stop_all()
    else:
        run = nbflow.runs(url, workflow="at-100k", limit=1)[0]
    marks = views.history_marks(run.store, run.id)
    pause = next(m["n"] for m in marks["marks"] if m["kind"] == "run_paused")

    c = Controller(run)
    c.act("select_step", {"step": "parse"})
    c.act("select_instance", {"step": "parse", "key": args.n // 2})

    def forget_marks() -> None:
        controller_module._MARKS.clear()  # as if the run had changed more than MARKS_REFRESH_S ago

    live_read = median_ms(c.state, args.rounds, forget_marks)
    live_kept = median_ms(c.state, args.rounds)
    live_size = len(json.dumps(c.state()))
    c.act("travel", {"event": pause})
    c.state()  # the history folded once in this process
    at_state = median_ms(c.state, args.rounds)
    at_size = len(json.dumps(c.state()))
    moves = iter(range(pause - 1, 0, -1))  # each move to an event the view has not shown yet

    def move() -> None:
        c.act("travel", {"event": next(moves)})
        c.state()

    out = {
        "machine": machine(), "instances": args.n + 2, "events": marks["total"], "marks": len(marks["marks"]),
        "rounds": args.rounds,
        "state_ms": {"live, marks read": live_read, "live, marks kept": live_kept, "at the pause": at_state,
                     "travel + state (one scrubber move)": median_ms(move, args.rounds)},
        "state_kb": {"live": round(live_size / 1000, 1), "at the pause": round(at_size / 1000, 1)},
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
