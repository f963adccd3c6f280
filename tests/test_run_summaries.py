"""``views.run_summaries``: the lines of ``nbflow runs`` from one query are the per-run summaries."""
from __future__ import annotations

import pytest

import nbflow
from nbflow import views
from nbflow.store import queries


def test_the_summaries_of_many_runs_from_one_query_are_each_runs_own_summary(db_url: str) -> None:
    wf = nbflow.Workflow("summaries", store=db_url)

    @wf.step
    def items(n: int) -> list[int]:
        return list(range(n))

    @wf.foreach("items")
    def work(item: int) -> int:
        if item == 2:
            raise ValueError("two")
        return item

    finished = wf.run(params={"n": 2})
    assert finished.wait() == "succeeded"
    failed = wf.run(params={"n": 3})
    assert failed.wait() == "failed"
    paused = wf.run(params={"n": 4}, breakpoints=["work"])
    assert paused.wait() == "paused"
    store = wf.store
    rows = store.run_rows()

    assert views.run_summaries(store, rows) == [views.run_summary(store, row) for row in rows]
    assert [s["progress"] for s in views.run_summaries(store, rows)][::-1] == [
        views.run_summary(store, store.run_row(r.id))["progress"] for r in (finished, failed, paused)
    ]
    paused.cancel()


def test_counts_of_more_runs_than_one_query_binds_are_all_read(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    wf = nbflow.Workflow("many", store=db_url)

    @wf.step
    def one() -> int:
        return 1

    for _ in range(3):
        wf.run().wait()
    ids = [row["id"] for row in wf.store.run_rows()]
    monkeypatch.setattr(queries, "RUNS_PER_QUERY", 2)  # three runs: two queries

    counts = queries.status_counts_of_runs(wf.store, ids)

    assert counts == {run_id: {"succeeded": 1} for run_id in ids}
