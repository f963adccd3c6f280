"""Time travel in the views every surface reads (issue 18): ``views.run_state_at`` (the DAG and counts
as they were right after an event), ``views.instance_page(..., at=)`` (a page of the past) and
``views.history_marks`` (what a scrubber marks), and the same through the REST API's ``at`` parameter
and ``marks`` route. Real runs in real SQLite files, paused by a breakpoint and by errors, then finished."""
from __future__ import annotations

import time
from typing import Any

import pytest

import nbflow
from nbflow import views
from nbflow.errors import NbflowError
from nbflow.store import Store
from tests.api_server import Server

pytestmark = pytest.mark.timeout(120)

WAIT_S = 60


def paused_then_finished(db_url: str, n: int = 10, name: str = "travel-views") -> tuple[nbflow.Run, int]:
    """load -> enrich (a foreach keyed by id; every 4th item fails) -> report, run with break_on_error and a
    breakpoint on enrich:2: it pauses (enrich:2 before its body, enrich:3 and :7 on their error); then the
    failed ones are skipped and enrich:2 resumed, and it succeeds. Returns the run and the position of
    its ``run_paused`` event."""
    wf = nbflow.Workflow(name, store=db_url)

    @wf.step
    def load(n):
        return [{"id": i} for i in range(n)]

    @wf.foreach("load", key=lambda item: item["id"])
    def enrich(item):
        if item["id"] % 4 == 3:
            raise ValueError(f"bad row {item['id']}")
        return item["id"] * 10

    @wf.step
    def report(enrich):
        return sum(enrich)

    run = wf.run(params={"n": n}, breakpoints=["enrich:2"], break_on_error=True)
    assert run.wait(timeout=WAIT_S) == "paused"
    run.skip("enrich", keys=[3, 7], output=-1)
    run.resume("enrich", key=2)
    assert run.wait(timeout=WAIT_S) == "succeeded"
    paused = [e for e in run.history() if e.kind == "run_paused"]
    assert len(paused) == 1
    return run, next(n for n, e in enumerate(run.history(), 1) if e.kind == "run_paused")


def node(view: dict[str, Any], step: str) -> dict[str, Any]:
    return next(nd for nd in view["dag"]["nodes"] if nd["step"] == step)


def nonzero(counts: dict[str, int]) -> dict[str, int]:
    return {s: c for s, c in counts.items() if c}


def test_run_state_at_the_pause_event_shows_the_run_paused_with_its_counts_then(db_url: str) -> None:
    run, n = paused_then_finished(db_url)
    then = views.run_state_at(run.store, run.id, n)
    assert then["status"] == "paused"
    assert nonzero(node(then, "enrich")["counts"]) == {"paused": 3, "succeeded": 7}
    assert node(then, "enrich")["status"] == "paused"
    assert nonzero(node(then, "report")["counts"]) == {"pending": 1}
    assert nonzero(then["counts"]) == {"paused": 3, "succeeded": 8, "pending": 1}
    assert then["progress"] == {"done": 8, "total": 12}
    now = views.run_state(run.store, run.id)
    assert now["status"] == "succeeded" and nonzero(now["counts"]) == {"succeeded": 10, "skipped": 2}


def test_run_state_at_names_the_event_it_stands_at(db_url: str) -> None:
    run, n = paused_then_finished(db_url)
    event = run.history()[n - 1]
    then = views.run_state_at(run.store, run.id, event.id)
    assert then["at"] == {"id": event.id, "n": n, "ts": views.iso(event.ts), "kind": "run_paused", "step": None,
                          "key": None, "of": len(run.history())}
    assert views.run_state_at(run.store, run.id, n) == then  # its position means the same event


def test_run_state_at_an_event_before_the_foreach_expanded_has_no_items_for_it(db_url: str) -> None:
    run, _ = paused_then_finished(db_url)
    expanded = next(n for n, e in enumerate(run.history(), 1) if e.kind == "expanded")
    before = views.run_state_at(run.store, run.id, expanded - 1)
    assert node(before, "enrich")["total"] == 0 and node(before, "enrich")["status"] == "pending"
    assert nonzero(node(before, "load")["counts"]) == {"succeeded": 1}
    assert before["status"] == "running"
    assert views.instance_page(run.store, run.id, "enrich", at=expanded - 1)["total"] == 0
    at = views.run_state_at(run.store, run.id, expanded)
    assert node(at, "enrich")["total"] == 10


def test_run_state_at_refuses_an_unknown_event_naming_the_range(db_url: str) -> None:
    run, _ = paused_then_finished(db_url)
    total = len(run.history())
    for bad in (0, total + 1, run.history()[-1].id + 1):
        with pytest.raises(NbflowError, match=rf"has {total} events, positions 1\.\.{total}"):
            views.run_state_at(run.store, run.id, bad)


def test_a_page_at_the_pause_shows_each_rows_status_attempts_and_pause_then(db_url: str) -> None:
    run, n = paused_then_finished(db_url)
    page = views.instance_page(run.store, run.id, "enrich", at=n, user_keys=True)
    assert page["total"] == 10 and page["at"]["n"] == n
    rows = {r["key"]: r for r in page["rows"]}
    assert [rows[k]["status"] for k in range(10)] == [
        "succeeded", "succeeded", "paused", "paused", "succeeded", "succeeded", "succeeded", "paused", "succeeded",
        "succeeded"]
    assert rows[2]["pause"] == {"when": "before", "detail": None} and rows[2]["attempt"] == 0
    assert rows[3]["pause"]["when"] == "error" and rows[3]["attempt"] == 1
    assert rows[3]["error"] == {"type": "ValueError", "message": "bad row 3"}
    assert rows[0]["attempt"] == 1 and rows[0]["pause"] is None
    assert all(r["verbs"] == [] for r in page["rows"])  # the past is read-only


def test_a_page_at_an_event_narrows_by_the_status_then(db_url: str) -> None:
    run, n = paused_then_finished(db_url)
    page = views.instance_page(run.store, run.id, "enrich", at=n, status="paused")
    assert [r["key"] for r in page["rows"]] == ["2", "3", "7"] and page["total"] == 3
    assert views.instance_page(run.store, run.id, "enrich", status="paused")["total"] == 0  # live: none paused
    problems = views.instance_page(run.store, run.id, "enrich", at=n, status=views.PROBLEMS, offset=2, limit=2)
    assert [r["key"] for r in problems["rows"]] == ["7"] and problems["offset"] == 2


def test_history_marks_list_the_run_level_events_and_the_pauses(db_url: str) -> None:
    run, n = paused_then_finished(db_url)
    marks = views.history_marks(run.store, run.id)
    assert marks["total"] == len(run.history()) and not marks["truncated"]
    kinds = [(m["kind"], m["key"]) for m in marks["marks"]]
    assert kinds[0] == ("run_created", None)
    assert {("paused", "2"), ("paused", "3"), ("paused", "7"), ("run_paused", None), ("run_succeeded", None),
            ("expanded", None)} <= set(kinds)
    assert next(m["n"] for m in marks["marks"] if m["kind"] == "run_paused") == n
    assert [m["n"] for m in marks["marks"]] == sorted(m["n"] for m in marks["marks"])
    assert all(run.history()[m["n"] - 1].id == m["id"] for m in marks["marks"])


def test_history_marks_are_bounded(db_url: str) -> None:
    run, _ = paused_then_finished(db_url)
    marks = views.history_marks(run.store, run.id, limit=2)
    assert marks["truncated"]
    assert sum(1 for m in marks["marks"] if m["kind"] == "paused") == 2


def test_rest_at_and_marks_answer_what_the_views_do(server: Server) -> None:
    run, n = paused_then_finished(server.db, name="travel-rest")
    store = Store.open(server.db)
    assert server.get(f"runs/{run.id}", params={"at": n}).json() == views.run_state_at(store, run.id, n)
    page = server.get(f"runs/{run.id}/instances", params={"step": "enrich", "at": n, "status": "paused"}).json()
    assert page == views.instance_page(store, run.id, "enrich", at=n, status="paused")
    assert server.get(f"runs/{run.id}/marks").json() == views.history_marks(store, run.id)


def test_rest_refuses_an_unknown_event_with_400_naming_the_range(server: Server) -> None:
    run, _ = paused_then_finished(server.db, name="travel-rest-bad")
    total = len(run.history())
    resp = server.get(f"runs/{run.id}", params={"at": total + 5})
    assert resp.status_code == 400
    assert f"positions 1..{total}" in resp.json()["message"]
    bad = server.get(f"runs/{run.id}/instances", params={"step": "enrich", "at": "soon"})
    assert bad.status_code == 400 and "'at'" in bad.json()["message"]


def test_a_page_at_an_event_refuses_an_unknown_status_naming_the_statuses(db_url: str) -> None:
    run, n = paused_then_finished(db_url)
    with pytest.raises(NbflowError, match=r"'stuck' is not a status of an instance; use one of: pending, ready"):
        views.instance_page(run.store, run.id, "enrich", at=n, status="stuck")


def test_a_page_at_an_event_pages_in_item_order_either_way_and_keeps_to_the_last_page(db_url: str) -> None:
    run, n = paused_then_finished(db_url)

    def keys(**kw: Any) -> list[str]:
        return [r["key"] for r in views.instance_page(run.store, run.id, "enrich", at=n, **kw)["rows"]]

    assert keys(limit=4, desc=True) == ["9", "8", "7", "6"]
    assert keys(status="paused", desc=True) == ["7", "3", "2"]
    assert keys(offset=50, limit=4) == ["8", "9"]
    assert views.instance_page(run.store, run.id, "enrich", at=n, offset=50, limit=4)["offset"] == 8
    assert keys(text="7") == ["7"]


def test_history_marks_of_a_long_history_fold_it_ahead_of_the_first_travel(db_url: str,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from nbflow import timetravel

    run, n = paused_then_finished(db_url)
    monkeypatch.setattr(timetravel, "PREPARE_EVENTS", 1)
    key = (str(run.store.url), run.id)
    timetravel._INDEXES.pop(key, None)
    views.history_marks(run.store, run.id)
    deadline = time.monotonic() + 30
    while key not in timetravel._INDEXES and time.monotonic() < deadline:
        time.sleep(0.05)
    assert key in timetravel._INDEXES
    assert views.run_state_at(run.store, run.id, n)["status"] == "paused"


def test_a_page_at_an_event_by_duration_puts_what_had_finished_then_first(db_url: str) -> None:
    run, n = paused_then_finished(db_url)
    page = views.instance_page(run.store, run.id, "enrich", at=n, sort="duration", user_keys=True)
    finished = [r for r in page["rows"] if r["status"] == "succeeded"]
    assert sorted(r["key"] for r in finished) == [0, 1, 4, 5, 6, 8, 9]  # the 7 items done at the pause
    assert [r["key"] for r in page["rows"][:len(finished)]] == [r["key"] for r in finished]
    assert [r["status"] for r in page["rows"][len(finished):]] == ["paused", "paused", "paused"]
    shown = [r["duration_s"] for r in finished]
    assert shown == sorted(shown)
    slowest = views.instance_page(run.store, run.id, "enrich", at=n, sort="duration", desc=True)["rows"]
    assert [r["duration_s"] for r in slowest[:len(finished)]] == sorted(shown, reverse=True)


def test_a_page_at_an_event_finds_the_text_in_the_pause_reason_and_the_error_then_in_any_case(db_url: str) -> None:
    run, n = paused_then_finished(db_url)

    def keys(at: int, text: str) -> list[str]:
        page = views.instance_page(run.store, run.id, "enrich", at=at, text=text)
        assert page["total"] == len(page["rows"])
        return [r["key"] for r in page["rows"]]

    assert keys(n, "Bad ROW") == ["3", "7"]  # their error message then
    assert keys(n, "BEFORE") == ["2"]  # its pause reason then
    assert keys(n, "ERROR") == ["3", "7"]  # paused on their error
    expanded = next(i for i, e in enumerate(run.history(), 1) if e.kind == "expanded")
    assert keys(expanded, "bad row") == [] and keys(expanded, "before") == []  # none had failed or paused yet
    assert keys(len(run.history()), "before") == []  # resumed since: no pause reason
    live = views.instance_page(run.store, run.id, "enrich", text="bad row")
    assert [r["key"] for r in views.instance_page(run.store, run.id, "enrich", at=len(run.history()),
                                                  text="bad row")["rows"]] == [r["key"] for r in live["rows"]]


def test_a_page_at_an_event_finds_the_text_in_the_key_in_any_case(db_url: str) -> None:
    wf = nbflow.Workflow("travel-keys", store=db_url)

    @wf.step
    def names():
        return ["Alpha", "beta", "GAMMA"]

    @wf.foreach("names", key=lambda name: name)
    def greet(item):
        return f"hi {item}"

    run = wf.run()
    assert run.wait(timeout=WAIT_S) == "succeeded"
    last = len(run.history())
    for text, found in (("alpha", ["Alpha"]), ("BETA", ["beta"]), ("a", ["Alpha", "beta", "GAMMA"]), ("z", [])):
        page = views.instance_page(run.store, run.id, "greet", at=last, text=text)
        assert [r["key"] for r in page["rows"]] == found, text
        assert [r["key"] for r in views.instance_page(run.store, run.id, "greet", text=text)["rows"]] == found, text
