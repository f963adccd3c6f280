"""The debugger view's history (issue 18), through its controller: the scrubber travels to an event
and the counts, the DAG, the table and the panel show the run as it was then, read-only, until it
goes live again; "Fork from here" forks the ticked rows in this process and the widget can show the
fork; a fork's "vs parent" panel names the items whose output changed and both runs' parameters and
code versions."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import nbflow
from nbflow import Workflow
from nbflow.notebook.controller import ACTIONS, CHANGING_ACTIONS, NAVIGATION, Controller
from nbflow.notebook.widget import RunWidget
from tests.sidefx import Trail
from tests.test_widget import WAIT_S, until

FACTOR = {"value": 10}
"""What enrich multiplies by: a value of the test's module, so a fork can run with another one."""


def chain(db_url: str, trail: Trail, name: str = "chain") -> Workflow:
    """load(n) -> enrich (a foreach keyed by the item) -> double (a foreach over enrich, item by item,
    keyed by its index) -> total; every body adds what it ran to *trail*."""
    wf = Workflow(name, store=db_url)

    @wf.step
    def load(n):
        return list(range(1, n + 1))

    @wf.foreach("load", key=lambda item: item)
    def enrich(item):
        trail.add(["enrich", item])
        return item * FACTOR["value"]

    @wf.foreach("enrich")
    def double(item):
        trail.add(["double", item])
        return item * 2

    @wf.step
    def total(double):
        trail.add(["total"])
        return sum(double)

    return wf


@pytest.fixture
def trail(tmp_path: Path) -> Trail:
    return Trail(str(tmp_path / "trail.jsonl"))


@pytest.fixture
def finished(db_url: str, trail: Trail) -> nbflow.Run:
    """A run that paused on enrich:3 (a breakpoint), was resumed and succeeded."""
    run = chain(db_url, trail).run(params={"n": 5}, breakpoints=["enrich:3"])
    assert run.wait(timeout=WAIT_S) == "paused"
    run.resume("enrich", keys=[3])
    assert run.wait(timeout=WAIT_S) == "succeeded"
    return run


def _mark(state: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(m for m in state["history"]["marks"] if m["kind"] == kind)


def _node(state: dict[str, Any], step: str) -> dict[str, Any]:
    return next(n for n in state["dag"]["nodes"] if n["step"] == step)


def _rows(state: dict[str, Any]) -> dict[Any, str]:
    return {r["key"]: r["status"] for r in state["instances"]["rows"]}


def test_travel_and_diff_are_navigation_the_sidebar_allows_with_read() -> None:
    assert {"travel", "diff"} <= set(NAVIGATION)
    assert "fork" not in NAVIGATION


def test_the_scrubber_marks_the_pause_and_the_run_level_events(finished: nbflow.Run) -> None:
    state = Controller(finished).state()
    history = state["history"]
    assert history["total"] == len(finished.history()) and history["at"] is None
    kinds = [m["kind"] for m in history["marks"]]
    assert "run_paused" in kinds and kinds[-1] == "run_succeeded"
    assert all(1 <= m["n"] <= history["total"] for m in history["marks"])


def test_the_scrubbers_range_ends_at_the_newest_event_while_the_run_changes(db_url: str, trail: Trail) -> None:
    run = chain(db_url, trail).run(params={"n": 3}, breakpoints=["enrich:3", "total"])
    assert run.wait(timeout=WAIT_S) == "paused"
    c = Controller(run)
    first = c.state()["history"]["total"]
    run.resume("enrich", keys=[3])
    until(lambda: str(run.instance("total").status) == "paused", "total to pause")
    before = len(run.history())
    total = c.state()["history"]["total"]  # the marks may be a few seconds behind; the range is not
    assert first < before <= total <= len(run.history())


def test_travel_to_the_pause_shows_the_run_paused_in_the_counts_the_dag_and_the_table(finished: nbflow.Run) -> None:
    c = Controller(finished)
    c.act("select_step", {"step": "enrich"})
    pause = _mark(c.state(), "run_paused")
    assert c.act("travel", {"event": pause["n"]}) == {"ok": True, "text": None, "action": "travel", "command": None}
    state = c.state()
    assert state["history"]["at"]["n"] == pause["n"] and state["history"]["at"]["kind"] == "run_paused"
    assert state["summary"]["status"] == "paused" and state["summary"]["counts"].get("paused") == 1
    assert _node(state, "enrich")["status"] == "paused" and _node(state, "total")["status"] == "pending"
    rows = _rows(state)
    assert rows[3] == "paused" and {rows[k] for k in (1, 2, 4, 5)} == {"succeeded"}
    assert all(r["verbs"] == [] for r in state["instances"]["rows"])  # the past is read-only


def test_live_returns_to_the_run_as_it_is_now(finished: nbflow.Run) -> None:
    c = Controller(finished)
    c.act("select_step", {"step": "enrich"})
    c.act("travel", {"event": _mark(c.state(), "run_paused")["n"]})
    assert c.act("travel", {"event": None})["ok"]
    state = c.state()
    assert state["history"]["at"] is None and state["summary"]["status"] == "succeeded"
    assert set(_rows(state).values()) == {"succeeded"}


def test_the_panel_at_an_event_shows_the_instance_as_it_was_with_no_verbs(finished: nbflow.Run) -> None:
    c = Controller(finished)
    c.act("select_step", {"step": "enrich"})
    c.act("select_instance", {"step": "enrich", "key": 3})
    c.act("travel", {"event": _mark(c.state(), "run_paused")["n"]})
    detail = c.state()["detail"]
    assert detail["status"] == "paused" and detail["at"] is True and detail["verbs"] == []
    assert detail["output"] is None and detail["inputs"]["item"] == 3
    assert all(e["kind"] != "succeeded" for e in detail["history"])  # nothing after that moment


def test_at_an_event_the_banners_total_is_the_runs_event_count_now_while_it_goes_on(db_url: str, trail: Trail) -> None:
    run = chain(db_url, trail).run(params={"n": 3}, breakpoints=["enrich:3"])
    assert run.wait(timeout=WAIT_S) == "paused"
    c = Controller(run)
    c.act("travel", {"event": 1})
    assert c.state()["history"]["at"]["of"] == len(run.history())
    run.resume("enrich", keys=[3])
    assert run.wait(timeout=WAIT_S) == "succeeded"
    history = c.state()["history"]
    assert history["at"]["n"] == 1 and history["at"]["of"] == history["total"] == len(run.history())


def test_the_past_refuses_every_verb_and_nothing_changes(db_url: str, trail: Trail) -> None:
    run = chain(db_url, trail).run(params={"n": 3}, breakpoints=["enrich:3"])
    assert run.wait(timeout=WAIT_S) == "paused"
    c = Controller(run)
    c.act("select_step", {"step": "enrich"})
    c.act("select_instance", {"step": "enrich", "key": 3})
    c.act("toggle", {"key": 3})
    c.act("travel", {"event": 1})
    # what changes nothing besides the view: a watch column, a preview of a bulk edit
    assert set(ACTIONS) - set(NAVIGATION) - set(CHANGING_ACTIONS) == {"watch_add", "watch_remove", "preview_edit"}
    args: dict[str, dict[str, Any]] = {
        "skip": {"step": "enrich", "keys": [3], "output": 0},
        "set_inputs": {"step": "enrich", "key": 3, "inputs": {"item": 30}, "reason": "fix"},
        "set_output": {"step": "enrich", "key": 3, "value": 300, "reason": "fix"},
        "add_breakpoint": {"step": "total", "when": "before"},
        "remove_breakpoint": {"id": 1},
        "edit_selected": {"expression": "output * 2"},
        "approve": {"step": "enrich", "key": 3, "comment": "ok"},
        "reject": {"step": "enrich", "key": 3, "comment": "no"},
    }

    def now() -> tuple[Any, ...]:
        shown = sorted((i.step, str(i.key), str(i.status), i.output) for i in run.instances())
        return len(run.history()), run.status, shown, [b.id for b in run.breakpoints()], len(nbflow.runs(run.store))

    before = now()
    for name in CHANGING_ACTIONS:
        answer = c.act(name, args.get(name, {"step": "enrich", "keys": [3], "selected": True}))
        assert answer["ok"] is False and answer["code"] == "state", (name, answer)
        assert "press Live" in answer["text"] and answer["command"] is None, (name, answer)
    assert now() == before and str(run.instance("enrich", 3).status) == "paused"
    assert c.state()["history"]["at"]["n"] == 1  # still in the past


def test_travel_past_the_history_is_refused_naming_the_range(finished: nbflow.Run) -> None:
    c = Controller(finished)
    total = c.state()["history"]["total"]
    for bad in (0, total + 1, "soon"):
        answer = c.act("travel", {"event": bad})
        assert answer["ok"] is False and answer["code"] == "invalid", answer
    assert str(total) in c.act("travel", {"event": total + 1})["text"]
    assert c.view().get("at") is None  # nothing changed


def test_the_view_state_keeps_the_moment_for_the_next_request(finished: nbflow.Run) -> None:
    c = Controller(finished)
    n = _mark(c.state(), "run_paused")["n"]
    c.act("travel", {"event": n})
    view = c.view()
    assert view["at"] == n
    again = Controller(nbflow.Run(finished.store, finished.id), view=view)  # how the sidebar's requests go
    assert again.state()["summary"]["status"] == "paused"


def test_fork_from_ticked_rows_re_runs_exactly_those_items_and_what_needs_them(
        finished: nbflow.Run, trail: Trail) -> None:
    c = Controller(finished)
    c.act("select_step", {"step": "enrich"})
    c.act("toggle", {"key": 2})
    before = len(trail.items())
    answer = c.act("fork", {"step": "enrich", "selected": True})
    assert answer["ok"], answer
    fork = answer["fork"]
    assert fork["parent"] == finished.id and fork["from_step"] == "enrich" and fork["keys"] == ["2"]
    assert fork["run"] in answer["text"]
    new = c.forks[fork["run"]]
    assert new.wait(timeout=WAIT_S) == "succeeded"
    assert sorted(map(tuple, trail.items()[before:])) == [("double", 20), ("enrich", 2), ("total",)]


def test_fork_from_a_tasks_step_re_runs_it_and_nothing_upstream(finished: nbflow.Run, trail: Trail) -> None:
    c = Controller(finished)
    c.act("select_step", {"step": "total"})
    before = len(trail.items())
    answer = c.act("fork", {})  # the selected step, no keys: run.fork(step)
    assert answer["ok"] and answer["fork"]["from_step"] == "total" and answer["fork"]["keys"] is None, answer
    assert c.forks[answer["fork"]["run"]].wait(timeout=WAIT_S) == "succeeded"
    assert trail.items()[before:] == [["total"]]


def test_fork_without_the_workflow_is_refused_saying_how_and_starts_nothing(finished: nbflow.Run) -> None:
    c = Controller(nbflow.Run(finished.store, finished.id))  # the sidebar's handle: no code
    runs = len(nbflow.runs(finished.store))
    answer = c.act("fork", {"step": "enrich", "keys": [2]})
    assert answer["ok"] is False and answer["code"] == "invalid"
    assert "needs its workflow's code" in answer["text"] and f"nbflow fork {finished.id} enrich:2" in answer["text"]
    assert len(nbflow.runs(finished.store)) == runs
    assert c.state()["summary"]["forkable"] is False


def test_a_forks_vs_parent_panel_names_the_changed_items_and_both_runs_params_and_versions(
        finished: nbflow.Run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(FACTOR, "value", 100)  # enrich:4 re-runs with another factor
    fork = finished.fork("enrich", keys=[4])
    assert fork.wait(timeout=WAIT_S) == "succeeded"
    c = Controller(fork)
    assert c.state()["diff"] is None  # closed until asked
    assert c.act("diff", {})["ok"]
    diff = c.state()["diff"]
    assert diff["parent"] == finished.id and diff["fork"] == {"from_step": "enrich", "keys": ["4"]}
    assert [(e["step"], e["key"], e["before"], e["after"]) for e in diff["changed"]] == [
        ("enrich", 4, 40, 400), ("double", 3, 80, 800), ("total", None, 300, 1020)]
    assert diff["added"] == diff["removed"] == [] and diff["counts"] == {"changed": 3, "added": 0, "removed": 0}
    assert [r["id"] for r in diff["runs"]] == [finished.id, fork.id]
    assert diff["runs"][0]["params"] == diff["runs"][1]["params"] == {"n": 5}
    assert c.act("diff", {"on": False})["ok"] and c.state()["diff"] is None


def test_diff_of_a_run_that_is_no_fork_is_refused(finished: nbflow.Run) -> None:
    answer = Controller(finished).act("diff", {})
    assert answer["ok"] is False and "no fork" in answer["text"]


def test_the_widget_shows_the_fork_it_started(finished: nbflow.Run) -> None:
    w = RunWidget(finished, live=False)
    try:
        w.handle_message({"action": "select_step", "step": "enrich"})
        w.handle_message({"action": "toggle", "key": 5})
        answer = w.handle_message({"action": "fork", "step": "enrich", "selected": True})
        assert answer["ok"], answer
        new_id = answer["fork"]["run"]
        assert w.handle_message({"action": "open_run", "run": new_id})["ok"]
        assert w.run_id == new_id and w.summary["id"] == new_id and w.summary["forked_from"] == finished.id
        assert w.controller.forks[new_id].wait(timeout=WAIT_S) == "succeeded"
        bad = w.handle_message({"action": "open_run", "run": "no-such-run"})
        assert bad["ok"] is False and w.run_id == new_id
    finally:
        w.stop()
