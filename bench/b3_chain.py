"""B3 on a chain: take over a SIGKILLed 1,000-step chain (500 steps done) with today's code, in a
new process, as a notebook would after a crash: ``wf.attach()`` to the next step starting. Target
<= 50 ms: the takeover compares each step's fingerprint with the pinned one instead of pickling
1,000 steps again. ``--changed`` edits one step's body first (a new version is pinned: that step is
pickled, the others' pinned code is copied). The floor is a raw sqlite3 transaction, measured in the
same rounds (this machine's speed drifts).

    python3 bench/b3_chain.py --repeat 7                       # this tree
    python3 bench/b3_chain.py --repeat 7 --trees /tmp/old .    # two trees, interleaved
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlite_floor import floor_us

STEPS = 1000
KILLED_AT = 500
"""The owner is killed while this step runs (the ones before it have succeeded)."""


def chain_source(n: int, changed: bool) -> str:
    """A chain of *n* trivial steps as a notebook's cells would define them (``__main__``); step
    KILLED_AT blocks in the first owner. *changed*: step ``s{n - 10}`` returns one more."""
    lines = ["import os, time", "FIRST = []", "def s0():", "    return 0"]
    for i in range(1, n):
        body = [f"def s{i}(s{i - 1}):"]
        if i == KILLED_AT:
            body += ["    if os.environ.get('B3C_OWNER'):", "        time.sleep(3600)",
                     "    if not FIRST:", "        FIRST.append(time.perf_counter())"]
        body.append(f"    return s{i - 1} + {2 if changed and i == n - 10 else 1}")
        lines += body
    return "\n".join(lines) + "\n"


def build(url: str, n: int, changed: bool = False) -> tuple[Any, dict[str, Any]]:
    import nbflow

    ns: dict[str, Any] = {"__name__": "__main__"}
    exec(compile(chain_source(n, changed), "<b3-chain-cells>", "exec"), ns)  # noqa: S102 - the cells
    wf = nbflow.Workflow("b3c", store=url)
    for i in range(n):
        wf.step(ns[f"s{i}"])
    return wf, ns


def owner(url: str, n: int) -> None:
    """The first owner: start the run, print its id, block in step KILLED_AT until killed."""
    wf, _ns = build(url, n)
    run = wf.run()
    print(run.id, flush=True)
    run.wait()


def once(n: int, changed: bool) -> dict[str, Any]:
    """One takeover in this process (a new one, like a notebook's kernel after a crash)."""
    import sqlalchemy as sa

    with tempfile.TemporaryDirectory() as d:
        url = f"sqlite:///{d}/b3c.db"
        child = subprocess.Popen(
            [sys.executable, __file__, "--owner", "--steps", str(n), "--db", url],
            env={**os.environ, "B3C_OWNER": "1"}, stdout=subprocess.PIPE, text=True,
        )
        assert child.stdout is not None
        run_id = child.stdout.readline().strip()
        engine = sa.create_engine(url)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with engine.connect() as c:
                status = c.exec_driver_sql(
                    "SELECT status FROM instances WHERE run_id=? AND step=?", (run_id, f"s{KILLED_AT}")
                ).scalar()
            if status == "running":
                break
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
        child.wait()
        engine.dispose()

        from nbflow.engine.lifecycle import stop_all

        wf, ns = build(url, n, changed)
        wf.plan()
        wf.store  # noqa: B018 - open the store (migrations checked) outside the timed part, as a notebook has
        version_before = wf.store.run_row(run_id)["version"]
        gc.collect()  # building 1,000 functions leaves a full collection due: not the takeover's
        t0 = time.perf_counter()
        run = wf.attach(run_id)
        t1 = time.perf_counter()
        while not ns["FIRST"]:
            time.sleep(0.0002)
        first = ns["FIRST"][0] - t0
        assert run.wait() == "succeeded"
        assert run.output(f"s{n - 1}") == n - 1 + (1 if changed else 0)
        same_version = wf.store.run_row(run_id)["version"] == version_before
        stop_all()
        wf.store.dispose()
    return {"attach_ms": (t1 - t0) * 1e3, "first_step_ms": first * 1e3, "same_version": same_version}


def _machine() -> dict[str, Any]:
    model = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                  if ln.startswith("model name")), "?")
    return {"nproc": os.cpu_count(), "cpu": model, "loadavg": [round(x, 2) for x in os.getloadavg()],
            "python": sys.version.split()[0]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--steps", type=int, default=STEPS)
    ap.add_argument("--changed", action="store_true", help="edit one step's body before the takeover")
    ap.add_argument("--trees", nargs="*", default=None, help="source trees to compare, interleaved")
    ap.add_argument("--owner", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--once", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--db", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.owner:
        owner(args.db, args.steps)
        return
    if args.once:
        print(json.dumps(once(args.steps, args.changed)), flush=True)
        return
    trees = [str(Path(t).resolve()) for t in (args.trees or [str(Path(__file__).resolve().parent.parent)])]
    results: dict[str, list[dict[str, Any]]] = {t: [] for t in trees}
    floors: list[float] = []
    machine = _machine()
    for r in range(args.repeat):
        floors.append(floor_us())
        for tree in trees if r % 2 == 0 else trees[::-1]:
            cmd = [sys.executable, __file__, "--once", "--steps", str(args.steps)]
            cmd += ["--changed"] if args.changed else []
            out = subprocess.run(cmd, env={**os.environ, "PYTHONPATH": tree}, capture_output=True, text=True,
                                 check=True, cwd=tempfile.gettempdir())
            results[tree].append(json.loads(out.stdout.strip().splitlines()[-1]))
    floor = statistics.median(floors)
    report: dict[str, Any] = {
        "bench": "B3 chain", "steps": args.steps, "done_before_takeover": KILLED_AT, "changed_step": args.changed,
        "rounds": args.repeat, "machine": machine, "loadavg_end": [round(x, 2) for x in os.getloadavg()],
        "floor_sqlite_txn_us_median": round(floor, 1), "target_ms": 50, "trees": {},
    }
    for tree, rows in results.items():
        attach = statistics.median(x["attach_ms"] for x in rows)
        report["trees"][tree] = {
            "attach_ms_median": round(attach, 1),
            "attach_ms_all": [round(x["attach_ms"], 1) for x in rows],
            "to_first_step_ms_median": round(statistics.median(x["first_step_ms"] for x in rows), 1),
            "attach_in_floor_txns": round(attach * 1e3 / floor, 0),
            "version_kept": sorted({x["same_version"] for x in rows}),
        }
    if len(trees) == 2:
        a, b = (results[t] for t in trees)
        report["median_round_ratio_second_over_first"] = round(
            statistics.median(y["first_step_ms"] / x["first_step_ms"] for x, y in zip(a, b)), 3)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
