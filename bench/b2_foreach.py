"""B2: one 10,000-item foreach of trivial items, end to end, with peak RSS."""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import tempfile
import time

import nbflow
from nbflow.engine.lifecycle import stop_all


def workflow(url: str, executor: object = None) -> nbflow.Workflow:
    """B2's workflow: ``items`` (range(n)) -> ``square`` (a foreach of trivial items) -> ``total``."""
    wf = nbflow.Workflow("b2", store=url, executor=executor)

    @wf.step
    def items(n):
        return list(range(n))

    @wf.foreach("items")
    def square(item):
        return item * item

    @wf.step
    def total(square):
        return sum(square)

    return wf


def once(n: int, url: str, executor: object = None) -> float:
    """Seconds for one n-item foreach of trivial items, end to end, on *executor* (default threads)."""
    wf = workflow(url, executor)
    wf.store  # noqa: B018 - open (and migrate) outside the timed part
    t0 = time.perf_counter()
    run = wf.run(params={"n": n})
    status = run.wait()
    elapsed = time.perf_counter() - t0
    assert status == "succeeded", status
    assert run.output("total") == sum(i * i for i in range(n))
    stop_all()
    wf.store.dispose()
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--db", default=None, help="SQLAlchemy URL (default: a temporary SQLite file per run)")
    args = ap.parse_args()
    times = []
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as d:
            times.append(once(args.items, args.db or f"sqlite:///{d}/b2.db"))
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({
        "bench": "B2", "items": args.items, "repeat": args.repeat, "store": args.db or "sqlite (temp file)",
        "seconds_median": round(statistics.median(times), 3),
        "seconds_all": [round(x, 3) for x in times],
        "peak_rss_mib": round(peak_mib, 1),
        "target_seconds": 1.0,
    }, indent=2))


if __name__ == "__main__":
    main()
