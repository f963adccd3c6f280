"""Issue 18: time travel on a 100,000-instance run: ``run.at(E)`` + ``.counts()`` + one page of the
table as it was (``views.instance_page(..., at=E)``), target < 200 ms.

One run in a fresh SQLite store: ``export`` -> ``parse`` (a foreach of 100,000 items; every 1,000th raises
and the run has break-on-error, and a breakpoint holds item 50,000) -> ``total``. It pauses with 101
items paused (100 on their error, one before its body); the failed ones are skipped, the held one
resumed, and it succeeds: about 200,000 events. Figures at four events: the ``expanded`` event (100,000
items appear), one in the middle of the history, the ``run_paused`` event, and the last.

Each figure is the median of ``--rounds`` rounds. **warm**: the run's history already folded in this
process (what a scrubber's every move costs after its first); **cold**: the fold dropped from the process
before each round (the first travel on a run in a process: the fold the store keeps is read back);
**first ever**: the kept fold deleted too (the first travel on the run anywhere: 200,000 events folded).
Also the live view's cost for comparison
(``views.run_state`` + ``instance_page``). Prints JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy

import nbflow
from nbflow import timetravel, views
from nbflow.engine.lifecycle import stop_all
from nbflow.store import schema


def workflow(url: str) -> nbflow.Workflow:
    wf = nbflow.Workflow("at-100k", store=url)

    @wf.step
    def export(n):
        return [{"id": i, "x": i % 97} for i in range(n)]

    @wf.foreach("export", key=lambda row: row["id"])
    def parse(item):
        if item["id"] % 1000 == 999:
            raise ValueError(f"bad row {item['id']}")
        return item["x"] * 2

    @wf.step
    def total(parse):
        return sum(parse)

    return wf


def median_s(fn: Callable[[], Any], rounds: int, before: Callable[[], None] | None = None) -> float:
    times = []
    for _ in range(rounds):
        if before is not None:
            before()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def machine() -> dict[str, Any]:
    model = ""
    try:
        model = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"python": platform.python_version(), "cpus": os.cpu_count(), "cpu": model,
            "platform": platform.platform(), "sqlite": sqlite3.sqlite_version, "sqlalchemy": sqlalchemy.__version__,
            "load": os.getloadavg()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--db", help="a store holding the run already (skips making it)")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="nbflow-at-"))
    url = args.db or f"sqlite:///{folder / 'nbflow.db'}"
    wf = workflow(url)
    made = None
    if args.db is None:
        t0 = time.perf_counter()
        run = wf.run(params={"n": args.n}, breakpoints=[f"parse:{args.n // 2}"], break_on_error=True)
        assert run.wait() == "paused"
        bad = run.keys("parse", status="paused")
        run.skip("parse", keys=[k for k in bad if k != args.n // 2], output=0)
        run.resume("parse", key=args.n // 2)
        assert run.wait() == "succeeded"
        made = round(time.perf_counter() - t0, 1)
        stop_all()
    else:
        run = nbflow.runs(url, workflow="at-100k", limit=1)[0]
    store, rid = run.store, run.id
    history = views.history_marks(store, rid)
    total = history["total"]
    by_kind = {m["kind"]: m["n"] for m in reversed(history["marks"])}
    events = {"expanded": by_kind["expanded"], "middle": total // 2, "run_paused": by_kind["run_paused"],
              "last": total}

    def drop() -> None:  # a new process: the fold kept in the store is read back
        timetravel._INDEXES.clear()

    def forget() -> None:  # the first travel on the run ever: no fold kept
        timetravel._INDEXES.clear()
        with store.engine.begin() as conn:
            conn.execute(schema.travel_folds.delete().where(schema.travel_folds.c.run_id == rid))

    out: dict[str, Any] = {"machine": machine(), "instances": args.n + 2, "events": total, "made_s": made,
                           "rounds": args.rounds, "at": {}}
    for name, n in events.items():
        def travel(n: int = n) -> None:
            then = run.at(n)
            then.counts()
            views.instance_page(store, rid, "parse", at=n, limit=50)

        def state(n: int = n) -> None:
            views.run_state_at(store, rid, n)
            views.instance_page(store, rid, "parse", at=n, limit=50)

        def paused_page(n: int = n) -> None:
            views.instance_page(store, rid, "parse", at=n, status="paused", limit=50)

        travel()  # folded once
        then = run.at(n)
        out["at"][name] = {
            "n": n, "status": str(then.status), "counts": {s: c for s, c in then.counts().items() if c},
            "warm_ms": {
                "run.at + counts + page": ms(median_s(travel, args.rounds)),
                "run.at": ms(median_s(lambda n=n: run.at(n), args.rounds)),
                "views.run_state_at + page": ms(median_s(state, args.rounds)),
                "page of the paused then": ms(median_s(paused_page, args.rounds)),
            },
            "cold_ms": {"run.at + counts + page": ms(median_s(travel, args.rounds, drop))},
            "first_ever_ms": {"run.at + counts + page": ms(median_s(travel, args.rounds, forget))},
        }
    out["live_ms"] = {"views.run_state + page": ms(median_s(
        lambda: (views.run_state(store, rid), views.instance_page(store, rid, "parse", limit=50)), args.rounds))}
    out["store_mb"] = round(sum(p.stat().st_size for p in folder.glob("nbflow.db*")) / 1e6, 1) if made else None
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
