"""Scale-out figures (issue 8): B1 and B2 with the store in PostgreSQL, and B2 with step bodies on a
Dask LocalCluster of 2 worker processes (SQLite and PostgreSQL stores), next to the default.

PostgreSQL is a throwaway local server started like the tests start it (tests/pg.py: Debian's
postgresql binaries, a cluster under a temporary folder, loopback only).

    python3 bench/scale.py --repeat 5
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from b1_chain import nbflow_once
from b2_foreach import once as b2_once

import nbflow


def b1(url: str, n: int) -> float:
    """Seconds per step of an n-step chain, from wf.run() returning to the end."""
    return nbflow_once(n, url)[1]


def b2(url: str, n: int, executor: Any = None) -> float:
    """Seconds for one n-item foreach of trivial items, end to end."""
    return b2_once(n, url, executor)


def median_of(repeat: int, fn: Callable[[], float]) -> dict[str, Any]:
    xs = [fn() for _ in range(repeat)]
    return {"median": round(statistics.median(xs), 6), "all": [round(x, 6) for x in xs]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--items", type=int, default=10_000)
    args = ap.parse_args()
    from distributed import Client, LocalCluster
    from pg import start_cluster

    out: dict[str, Any] = {"repeat": args.repeat, "steps": args.steps, "items": args.items}
    pg = start_cluster()
    tmp = tempfile.TemporaryDirectory()
    counter = iter(range(10_000))

    def sqlite() -> str:
        return f"sqlite:///{tmp.name}/s{next(counter)}.db"

    try:
        out["B1 sqlite, threads: s/step"] = median_of(args.repeat, lambda: b1(sqlite(), args.steps))
        out["B1 postgres, threads: s/step"] = median_of(args.repeat, lambda: b1(pg.create_database(), args.steps))
        out["B2 sqlite, threads: s"] = median_of(args.repeat, lambda: b2(sqlite(), args.items))
        out["B2 postgres, threads: s"] = median_of(args.repeat, lambda: b2(pg.create_database(), args.items))
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, \
                Client(cluster, set_as_default=False) as client:
            dask = nbflow.DaskExecutor(client)
            b2(sqlite(), 200, dask)  # warm the workers (imports) outside the figures
            out["B2 sqlite, dask 2 workers: s"] = median_of(args.repeat, lambda: b2(sqlite(), args.items, dask))
            out["B2 postgres, dask 2 workers: s"] = median_of(
                args.repeat, lambda: b2(pg.create_database(), args.items, dask))
        b2(sqlite(), 200, "processes")
        out["B2 sqlite, processes: s"] = median_of(args.repeat, lambda: b2(sqlite(), args.items, "processes"))
    finally:
        pg.stop()
        tmp.cleanup()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
