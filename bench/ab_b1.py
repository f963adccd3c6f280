"""B1 before and after: two source trees (e.g. `git worktree add /tmp/old <commit>` and this one)
measured in alternation, one 1,000-step run at a time, each tree in its own long-lived process. The
machine's speed drifts from minute to minute; pairs taken seconds apart cancel most of that.

    python3 bench/ab_b1.py --pairs 20 /tmp/old .
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


def worker(steps: int) -> None:
    """Runs the engine of the tree under test (its package on PYTHONPATH) under this file's B1 harness
    (b1_chain.py next to it, so only the engine differs): one run per line read."""
    from b1_chain import nbflow_once

    for _ in sys.stdin:
        print(nbflow_once(steps)[1] * 1e6, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=20)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("trees", nargs="*")
    args = ap.parse_args()
    if args.worker:
        worker(args.steps)
        return
    if len(args.trees) != 2:
        ap.error("give two source trees: before and after")
    trees = [str(Path(t).resolve()) for t in args.trees]
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, "--worker", "--steps", str(args.steps)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=tempfile.gettempdir(),
            env={**os.environ, "PYTHONPATH": tree},
        )
        for tree in trees
    ]
    runs: list[list[float]] = [[], []]
    for i in range(args.pairs):
        for k in ((0, 1) if i % 2 == 0 else (1, 0)):  # alternate which tree goes first
            p = procs[k]
            assert p.stdin is not None and p.stdout is not None
            p.stdin.write("run\n")
            p.stdin.flush()
            runs[k].append(float(p.stdout.readline()))
    for p in procs:
        assert p.stdin is not None
        p.stdin.close()
        p.wait()
    before, after = runs
    print(json.dumps({
        "bench": "B1 a/b", "pairs": args.pairs, "steps": args.steps, "before": trees[0], "after": trees[1],
        "before_us_per_step_median": round(statistics.median(before), 1),
        "after_us_per_step_median": round(statistics.median(after), 1),
        "after_faster_in_pairs": sum(a < b for b, a in zip(before, after)),
        "median_pair_ratio_after_over_before": round(statistics.median(a / b for b, a in zip(before, after)), 3),
    }, indent=2))


if __name__ == "__main__":
    main()
