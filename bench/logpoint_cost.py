"""What a logpoint costs: B2's 10,000-item foreach of trivial items, end to end, without and with a
logpoint on the foreach (``item * 2``: one ``logpoint`` event per item), interleaved; medians and the ratio.
Issue 17's target: the logpoint adds at most 10% of B2's time."""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time

from b2_foreach import workflow

import nbflow
from nbflow.engine.lifecycle import stop_all


def once(n: int, logpoint: bool, checkpoint: bool = False) -> float:
    """Seconds for one n-item foreach end to end, in a new SQLite file, with or without a logpoint on it;
    *checkpoint*: until what the run wrote is copied from SQLite's WAL into the database file too."""
    with tempfile.TemporaryDirectory() as tmp:
        wf = workflow(f"sqlite:///{tmp}/b.db")
        wf.store  # noqa: B018 - open (and migrate) outside the timed part
        bps = [nbflow.Breakpoint("square", action="log", expression="item * 2")] if logpoint else []
        t0 = time.perf_counter()
        run = wf.run(params={"n": n}, breakpoints=bps)
        status = run.wait()
        if checkpoint:
            with wf.store.engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        elapsed = time.perf_counter() - t0
        assert status == "succeeded", status
        if logpoint:
            assert sum(1 for e in run.history() if e.kind == "logpoint") == n
        stop_all()
        wf.store.dispose()
        return elapsed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--checkpoint", action="store_true",
                    help="time until the WAL is checkpointed too: every page each run wrote, not only those "
                         "before SQLite's next automatic checkpoint")
    args = ap.parse_args()
    once(args.items, True)  # warm up imports and the statement caches
    plain: list[float] = []
    logged: list[float] = []
    for _ in range(args.repeat):
        plain.append(once(args.items, False, args.checkpoint))
        logged.append(once(args.items, True, args.checkpoint))
    a, b = statistics.median(plain), statistics.median(logged)
    print(json.dumps({"items": args.items, "repeat": args.repeat, "checkpoint": args.checkpoint,
                      "b2_median_s": round(a, 3), "with_logpoint_median_s": round(b, 3), "ratio": round(b / a, 3),
                      "added_pct": round(100 * (b - a) / a, 1)}))


if __name__ == "__main__":
    main()
