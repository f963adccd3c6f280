"""B6 (issue 14): `wf.run()` until the first step starts, for a 3-step workflow whose middle step
reads a 100 MB notebook global. The global is left out of the pinned code (it is data, not code),
so the start should not grow with its size: compared with the same workflow reading a small global."""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from typing import Any

import nbflow
from nbflow.engine.lifecycle import stop_all

SIZES = {
    "bytes": lambda: bytes(100 * 1024 * 1024),
    "list": lambda: list(range(12_500_000)),
    "strings": lambda: [f"{i:010d}" + "x" * 10_000 for i in range(10_000)],
}
"""100 MB as one bytes object, as a list of 12.5 million ints (100 MB of pointers alone), and as
10,000 strings of 10 KB (too few items for the cheap size estimate: measured by a pickle that
stops at the 1 MiB bound)."""


def start_latency(url: str, data: Any, repeat: int) -> list[float]:
    started = threading.Event()
    at: list[float] = []
    wf = nbflow.Workflow(f"b6-{type(data).__name__}", store=url)

    @wf.step
    def first() -> int:
        at.append(time.perf_counter())
        started.set()
        return 1

    @wf.step
    def middle(first: int) -> int:
        return first + len(data)

    @wf.step
    def last(middle: int) -> int:
        return middle

    out = []
    for _ in range(repeat + 1):  # the first run also creates the store's tables: not counted
        started.clear()
        t0 = time.perf_counter()
        run = wf.run()
        started.wait(30)
        out.append(at[-1] - t0)
        assert run.wait() == "succeeded"
    return out[1:]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()
    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/b6.db"
        small = start_latency(url, b"x" * 100, args.repeat)
        result["small global: wf.run() to first step, ms"] = round(statistics.median(small) * 1e3, 2)
        for name, make in SIZES.items():
            times = start_latency(url, make(), args.repeat)
            result[f"100 MB {name} global: wf.run() to first step, ms"] = round(statistics.median(times) * 1e3, 2)
            result[f"100 MB {name} global: runs, ms"] = [round(t * 1e3, 2) for t in times]
    stop_all()
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
