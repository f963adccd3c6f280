"""B1: per-step overhead of a 1,000-step sequential chain of trivial steps, next to this
machine's floor: stdlib sqlite3, one WAL transaction (synchronous=NORMAL) per 200-byte row."""
from __future__ import annotations

import argparse
import gc
import json
import statistics
import tempfile
import time

from sqlite_floor import floor_once

import nbflow
from nbflow.engine.lifecycle import stop_all


def build(n: int, url: str) -> nbflow.Workflow:
    wf = nbflow.Workflow("b1", store=url)
    ns: dict[str, object] = {"__name__": "__main__"}  # as in a notebook: pickled by value
    wf.step(name="s0")(lambda: 0)
    for i in range(1, n):
        exec(f"def s{i}(s{i - 1}):\n    return s{i - 1} + 1", ns)  # noqa: S102 - n distinct functions, as cells would
        wf.step(ns[f"s{i}"])
    return wf


def nbflow_once(n: int, url: str | None = None) -> tuple[float, float]:
    """(total, execution) seconds per step: total includes creating the run (pinning 1,000 steps'
    code with cloudpickle, writing 1,000 rows); execution is from wf.run() returning to the end.
    The store is *url*, else a temporary SQLite file."""
    if url is None:
        with tempfile.TemporaryDirectory() as d:
            return nbflow_once(n, f"sqlite:///{d}/b1.db")
    wf = build(n, url)
    wf.plan()
    wf.store  # noqa: B018 - the property opens the store
    # Building 1,000 functions leaves the garbage collector a full collection due (~50 ms here); pay
    # it now, as timing harnesses do, so the run is charged only for collections it causes itself.
    gc.collect()
    t0 = time.perf_counter()
    run = wf.run()
    t1 = time.perf_counter()
    status = run.wait()
    t2 = time.perf_counter()
    assert status == "succeeded", status
    assert run.output(f"s{n - 1}") == n - 1
    stop_all()
    wf.store.dispose()
    return (t2 - t0) / n, (t2 - t1) / n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    pairs = [nbflow_once(args.steps) for _ in range(args.repeat)]
    nb = [p[1] for p in pairs]
    fl = [floor_once(args.steps) for _ in range(args.repeat)]
    med_nb, med_fl = statistics.median(nb), statistics.median(fl)
    print(json.dumps({
        "bench": "B1", "steps": args.steps, "repeat": args.repeat,
        "nbflow_us_per_step_median": round(med_nb * 1e6, 1),
        "nbflow_us_per_step_all": [round(x * 1e6, 1) for x in nb],
        "nbflow_us_per_step_with_run_creation_median": round(statistics.median(p[0] for p in pairs) * 1e6, 1),
        "sqlite_floor_us_per_txn_median": round(med_fl * 1e6, 1),
        "ratio_to_floor": round(med_nb / med_fl, 2),
        "target_us_per_step": 150,
    }, indent=2))


if __name__ == "__main__":
    main()
