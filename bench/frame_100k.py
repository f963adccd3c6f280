"""Issue 18: ``run.frame()`` and ``run.diff()`` of a 100,000-item foreach, read from a fresh SQLite store.

Two runs of one workflow (``export`` -> ``parse``, a foreach of ``-n`` items keyed by id -> ``total``):

* **errors**: break-on-error; one item in 59 has no amount and pauses on a TypeError (1,695 of
  100,000), the others succeed;
* **bumped**: the same items with the parameter ``bump`` naming item 37 (its output is one cent more),
  every item fixed (no errors): the run a diff is taken against.

Each figure is the median of ``--rounds`` calls: ``run.frame("parse")`` (values as references, the
default: the outputs here are small, so all are decoded; the items' list, 3.5 MB kept in a file, is
read for the ``item`` column), ``values="load"``, ``run.frame()`` (every
step: the task rows, each with its upstream list as an input cell) and ``run.diff(other)`` (200,003
instances compared), in wall time and in this process's CPU time. The target: a 100,000-instance
step's frame in under 1 s. Prints JSON.
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

import nbflow
from nbflow.engine.lifecycle import stop_all

BAD_EVERY = 59


def workflow(url: str) -> nbflow.Workflow:
    wf = nbflow.Workflow("frames_100k", store=url)

    @wf.step
    def export(n, fixed):
        return [{"id": i, "amount": None if i % BAD_EVERY == 7 and not fixed else 10 + i % 90} for i in range(n)]

    @wf.foreach("export", key=lambda row: row["id"])
    def parse(item, bump):
        return {"id": item["id"], "cents": item["amount"] * 100 + (1 if item["id"] == bump else 0)}

    @wf.step
    def total(parse):
        return sum(p["cents"] for p in parse if p is not None)

    return wf


CPU: dict[str, float] = {}
"""The median CPU time (this process) of the last :func:`median_s`: on a machine others load, closer to
what an idle one shows than wall time (the calls are single-threaded)."""


def median_s(fn: Callable[[], Any], rounds: int) -> tuple[float, list[float], Any]:
    """The median wall time of *rounds* calls of *fn*, every time, and its last value."""
    times, cpu, value = [], [], None
    for _ in range(rounds):
        c0, t0 = time.process_time(), time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    CPU["last"] = statistics.median(cpu)
    return statistics.median(times), times, value


def figure(t: float, times: list[float]) -> dict[str, Any]:
    """A figure: the median wall time, the median CPU time and every wall time (ms)."""
    return {"ms": ms(t), "cpu_ms": ms(CPU["last"]), "all_ms": [ms(x) for x in times]}


def ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def machine() -> dict[str, Any]:
    import pandas as pd

    return {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform(),
            "sqlite": sqlite3.sqlite_version, "pandas": pd.__version__,
            "load_avg": os.getloadavg() if hasattr(os, "getloadavg") else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=100_000, help="items of the foreach")
    ap.add_argument("--rounds", type=int, default=5, help="calls per figure (the median is given)")
    args = ap.parse_args()
    out: dict[str, Any] = {"n": args.n, "rounds": args.rounds, "machine": machine()}
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        wf = workflow(url)
        t0 = time.perf_counter()
        errors = wf.run(params={"n": args.n, "fixed": False, "bump": -1}, break_on_error=True)
        assert errors.wait() == "paused"
        bumped = wf.run(params={"n": args.n, "fixed": True, "bump": 37})
        assert bumped.wait() == "succeeded"
        out["build_s"] = round(time.perf_counter() - t0, 1)
        out["store_mb"] = round(os.path.getsize(Path(tmp) / "bench.db") / 2**20, 1)

        figures: dict[str, Any] = {}
        t, times, frame = median_s(lambda: errors.frame("parse"), args.rounds)
        statuses = frame["status"].value_counts().to_dict()
        figures["frame_step"] = {**figure(t, times), "rows": len(frame),
                                 "columns": list(frame.columns), "statuses": statuses}
        t, times, frame = median_s(lambda: errors.frame("parse", values="load"), args.rounds)
        figures["frame_step_load"] = {**figure(t, times), "rows": len(frame)}
        t, times, frame = median_s(errors.frame, args.rounds)
        figures["frame_run"] = {**figure(t, times), "rows": len(frame)}
        t, times, d = median_s(lambda: bumped.diff(errors), args.rounds)
        figures["diff"] = {**figure(t, times),
                           "counts": {k: len(v) for k, v in d.items()}}
        out["figures"] = figures
        errors.cancel()
        stop_all()
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
