"""`python -m nbflow.demo`: a 1,000-item ETL that pauses at a breakpoint, is fixed, and finishes."""
from __future__ import annotations

import os
import tempfile
from typing import Any

import nbflow


def main() -> None:
    db = os.environ.get("NBFLOW_DB") or f"sqlite:///{tempfile.mkdtemp(prefix='nbflow-demo-')}/nbflow.db"
    wf = nbflow.Workflow("etl", store=db)

    @wf.step
    def load(n: int) -> list[dict[str, int]]:
        return [{"id": i, "x": i} for i in range(n)]

    @wf.foreach("load", key=lambda item: item["id"], retries=2, backoff=0)
    def enrich(item: dict[str, int], ctx: nbflow.StepContext) -> dict[str, int]:
        if item["x"] == 17:
            raise ValueError(f"bad input row {item}")
        return {**item, "y": item["x"] ** 2}

    @wf.step
    def report(enrich: list[dict[str, Any]]) -> int:
        return sum(r["y"] for r in enrich)

    print(f"store: {db}")
    run = wf.run(params={"n": 1000}, break_on_error=True)
    print(f"run {run.id}: {run.wait()}")
    for view in run.instances("enrich", status="paused"):
        print(f"  paused {view.label}: {view.error} (attempt {view.attempts})")
    print("fixing item 17's input and retrying it ...")
    run.set_inputs("enrich", key=17, item={"id": 17, "x": 4}, reason="demo: bad row corrected")
    run.retry("enrich", key=17)
    print(f"run {run.id}: {run.wait()}; report = {run.output('report')}")
    print(f"history: {len(run.history())} events; try `nbflow --db {db} show {run.id}`")


if __name__ == "__main__":
    main()
