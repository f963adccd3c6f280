"""B4 (issue 3): latency from a CLI `nbflow resume` in another process to the instance
running in the owner, and B5: time for a 10,000-item foreach to reach fully paused."""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time

import sqlalchemy as sa

import nbflow
from nbflow.engine.lifecycle import stop_all

STARTED: dict[str, float] = {}


def resume_latency(samples: int, url: str) -> tuple[list[float], list[float]]:
    wf = nbflow.Workflow("b4", store=url)

    @wf.step
    def items():
        return list(range(samples + 1))  # one stays paused

    @wf.foreach("items")
    def work(item, ctx):
        STARTED[ctx.key] = time.time()
        return item

    run = wf.run(breakpoints=["work"])
    assert run.wait() == "paused"
    from_write, from_launch = [], []
    engine = sa.create_engine(url)
    for k in range(samples):
        launched = time.time()
        subprocess.run(
            [sys.executable, "-m", "nbflow", "--db", url, "resume", run.id, f"work:{k}", "--force"],
            check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while str(k) not in STARTED and time.monotonic() < deadline:
            time.sleep(0.001)
        with engine.connect() as c:
            written = c.execute(
                sa.text("SELECT max(created_at) FROM commands WHERE run_id = :r AND verb = 'resume'"), {"r": run.id}
            ).scalar()
        from_write.append(STARTED[str(k)] - written)
        from_launch.append(STARTED[str(k)] - launched)
    engine.dispose()
    run.cancel()
    stop_all()
    return from_write, from_launch


def time_to_paused(n: int, url: str) -> float:
    wf = nbflow.Workflow("b5", store=url)

    @wf.step
    def items(n):
        return list(range(n))

    @wf.foreach("items")
    def work(item):
        return item

    wf.store  # noqa: B018 - the property opens the store
    t0 = time.perf_counter()
    run = wf.run(params={"n": n}, breakpoints=["work"])
    assert run.wait() == "paused"
    elapsed = time.perf_counter() - t0
    assert len(run.instances("work", status="paused")) == n
    run.cancel()
    stop_all()
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=15)
    ap.add_argument("--items", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        written, launched = resume_latency(args.samples, f"sqlite:///{d}/b4.db")
    paused = []
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as d:
            paused.append(time_to_paused(args.items, f"sqlite:///{d}/b5.db"))
    print(json.dumps({
        "bench": "B4/B5", "samples": args.samples,
        "resume_ms_from_command_written_median": round(statistics.median(written) * 1e3, 1),
        "resume_ms_from_command_written_max": round(max(written) * 1e3, 1),
        "resume_ms_from_cli_launch_median": round(statistics.median(launched) * 1e3, 1),
        "target_resume_ms": 250,
        "pause_10k_seconds_median": round(statistics.median(paused), 3),
        "pause_10k_seconds_all": [round(x, 3) for x in paused],
        "target_pause_seconds": 1.0,
    }, indent=2))


if __name__ == "__main__":
    main()
