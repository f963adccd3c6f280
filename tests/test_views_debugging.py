"""What the views show of issue 17's debugger verbs, read from real runs: each breakpoint's action,
expression, hit count, hits and label; the logged values of logpoints per instance (a page's rows, the
instance detail); the instances a fired step over holds; and which instances ran a step's old code
after a hot fix, with the step's diff."""
from __future__ import annotations

from typing import Any

import pytest

import nbflow
from nbflow import Breakpoint, views
from nbflow.notebook.controller import Controller
from nbflow.states import STEPPED_OVER
from tests.test_cli import poll

pytestmark = pytest.mark.timeout(120)

WAIT_S = 60


def fanout(db_url: str, n: int, breakpoints: list[Any], name: str = "views-debug") -> nbflow.Run:
    """load -> enrich (foreach keyed by id) -> double (foreach over enrich) -> report, paused."""
    wf = nbflow.Workflow(name, store=db_url)

    @wf.step
    def load(n):
        return [{"id": i, "x": i} for i in range(n)]

    @wf.foreach("load", key=lambda item: item["id"])
    def enrich(item):
        return item["x"] * 2

    @wf.foreach("enrich")
    def double(item):
        return item * 2

    @wf.step
    def report(double):
        return sum(double)

    run = wf.run(params={"n": n}, breakpoints=breakpoints)
    assert run.wait(timeout=WAIT_S) == "paused"
    return run


LOGPOINTS = [Breakpoint("enrich", action="log", expression="item['x'] * 10"),
             Breakpoint("enrich", when="after", action="log", expression="output"), "report"]


# ---------------------------------------------------------------------------------- logged values
def test_a_page_of_instances_shows_each_rows_newest_value_per_logged_expression(db_url: str) -> None:
    run = fanout(db_url, 30, LOGPOINTS)
    page = views.instance_page(run.store, run.id, "enrich", offset=20, limit=5)
    assert [r["key"] for r in page["rows"]] == ["20", "21", "22", "23", "24"]
    assert [r["logged"] for r in page["rows"]] == [{"item['x'] * 10": x * 10, "output": x * 2} for x in range(20, 25)]
    assert all(r["logged"] == {} for r in views.instance_page(run.store, run.id, "double", limit=3)["rows"])


def test_show_json_instances_carry_logged_values_and_code_changed(db_url: str) -> None:
    run = fanout(db_url, 4, LOGPOINTS)
    shown = {(i["step"], i["key"]): i for i in views.run_view(run.store, run.id)["instances"]}
    assert shown[("enrich", "3")]["logged"] == {"item['x'] * 10": 30, "output": 6}
    assert shown[("load", None)]["logged"] == {}
    assert not any(i["code_changed"] for i in shown.values())


def test_instance_detail_lists_every_logged_value_oldest_first_with_when(db_url: str) -> None:
    run = fanout(db_url, 8, LOGPOINTS)
    detail = views.instance_detail(run.store, run.id, "enrich", "7")
    assert detail is not None
    assert [(e["expression"], e["value"], e["when"], e["error"]) for e in detail["logged"]] == [
        ("item['x'] * 10", 70, "before", None), ("output", 14, "after", None)]
    assert all(e["at"] for e in detail["logged"])


def test_a_logpoint_whose_expression_raises_logs_null_and_the_detail_names_the_error(db_url: str) -> None:
    run = fanout(db_url, 3, [Breakpoint("enrich", action="log", expression="item['nope']"), "report"])
    (row,) = views.instance_page(run.store, run.id, "enrich", offset=1, limit=1)["rows"]
    assert row["logged"] == {"item['nope']": None}
    detail = views.instance_detail(run.store, run.id, "enrich", "1")
    assert detail is not None
    (entry,) = detail["logged"]
    assert entry["value"] is None and entry["error"] == "KeyError: 'nope'"


def test_a_long_logged_value_is_cut_in_the_rows_and_whole_in_the_detail(db_url: str) -> None:
    run = fanout(db_url, 2, [Breakpoint("enrich", action="log", expression="'x' * 1000"), "report"])
    (row,) = views.instance_page(run.store, run.id, "enrich", limit=1)["rows"]
    cut = row["logged"]["'x' * 1000"]
    assert cut == {"truncated": '"' + "x" * (views.LOGGED_VALUE_CHARS - 1), "chars": 1002}
    detail = views.instance_detail(run.store, run.id, "enrich", "0")
    assert detail is not None and detail["logged"][0]["value"] == "x" * 1000


# ---------------------------------------------------------------------------------- breakpoints
def test_each_breakpoint_reads_as_the_breakpoints_box_shows_it_with_this_runs_hits(db_url: str) -> None:
    run = fanout(db_url, 10, [
        Breakpoint("enrich", condition="item['x'] > 7"),
        Breakpoint("enrich", when="after", action="log", expression="item['x']"),
        Breakpoint("enrich", when="after", hit_count=9),
    ])
    assert sorted(int(v.key) for v in run.instances("enrich", status="paused")) == [8, 9]
    for bps in (views.run_state(run.store, run.id)["breakpoints"], views.run_view(run.store, run.id)["breakpoints"]):
        assert [(b["label"], b["hits"]) for b in bps] == [
            ("before enrich if item['x'] > 7", 2),
            ("log item['x'] · after enrich", 8),
            ("after enrich · hit 8 of >= 9", 8),
        ]
        assert [(b["action"], b["expression"], b["hit_count"], b["one_shot"], b["origin"]) for b in bps] == [
            ("pause", None, None, False, None), ("log", "item['x']", None, False, None),
            ("pause", None, 9, False, None)]


def test_a_step_overs_breakpoint_shows_as_one_shot_until_its_consumer_is_ready(db_url: str) -> None:
    wf = nbflow.Workflow("views-one-shot", store=db_url)

    @wf.step
    def load():
        return 1

    wf.wait("hook")

    @wf.step
    def report(load, hook):
        return load

    run = wf.run(breakpoints=["load"])
    assert run.wait(timeout=WAIT_S) == "paused"
    run.step_over("load")
    poll(lambda: run.instance("load").status == "succeeded", WAIT_S)
    listed = views.run_state(run.store, run.id)["breakpoints"]
    assert [(b["step"], b["one_shot"], b["origin"]) for b in listed] == [
        ("load", False, None), ("report", True, "step over load")]
    assert [b["label"] for b in listed] == ["before load", "step over load (one-shot)"]
    assert [b["label"] for b in views.breakpoints_list(run.store, run_id=run.id)] == [b["label"] for b in listed]


def test_instances_held_by_a_fired_step_over_are_listed_as_stepped_over(db_url: str) -> None:
    run = fanout(db_url, 5, ["enrich:3"])
    run.step_over("enrich", 3)
    poll(lambda: [str(v.key) for v in run.instances("double", status="paused")] == ["3"], WAIT_S)
    shown = views.run_view(run.store, run.id)
    assert shown["stepped_over"] == {"holding": ["3"], "instances": [{"step": "double", "key": "3"}]}
    assert views.run_state(run.store, run.id)["stepped_over"] == {"held": 1}
    (row,) = views.instance_page(run.store, run.id, "double", status="paused")["rows"]
    assert row["held_by"] == [STEPPED_OVER] and row["pause_reason"] == "before: step over enrich:3"


# ---------------------------------------------------------------------------------- hot fix
def fix(wf: nbflow.Workflow) -> None:
    """The hot fix: enrich redefined, as a notebook cell run again does."""

    @wf.foreach("load", key=lambda item: item["id"])
    def enrich(item):
        return item["x"] * 2 + 1


def paused_on_row_3(db_url: str, name: str, n: int) -> tuple[nbflow.Workflow, nbflow.Run]:
    """load -> enrich (fails on x == 3) -> report, run with break_on_error: paused on enrich:3's error."""
    wf = nbflow.Workflow(name, store=db_url)

    @wf.step
    def load(n):
        return [{"id": i, "x": i} for i in range(n)]

    @wf.foreach("load", key=lambda item: item["id"])
    def enrich(item):
        if item["x"] == 3:
            raise ValueError("bad row 3")
        return item["x"] * 2

    @wf.step
    def report(enrich):
        return sum(enrich)

    run = wf.run(params={"n": n}, break_on_error=True)
    assert run.wait(timeout=WAIT_S) == "paused"
    return wf, run


def hot_fixed(db_url: str) -> nbflow.Run:
    """A run whose enrich:3 failed on its first code; enrich redefined and enrich:3 retried on the new one."""
    wf, run = paused_on_row_3(db_url, "views-hot-fix", 6)
    fix(wf)
    run.retry("enrich", key=3, reason="fixed the code")
    assert run.wait(timeout=WAIT_S) == "succeeded"
    return run


def test_instances_that_ran_the_old_code_are_marked_code_changed(db_url: str) -> None:
    run = hot_fixed(db_url)
    rows = views.instance_page(run.store, run.id, "enrich")["rows"]
    assert [(r["key"], r["code_changed"]) for r in rows] == [
        ("0", True), ("1", True), ("2", True), ("3", False), ("4", True), ("5", True)]
    (report,) = views.instance_page(run.store, run.id, "report")["rows"]
    assert report["code_changed"] is False


def test_each_dag_node_carries_its_steps_newest_code_change_with_the_diff(db_url: str) -> None:
    run = hot_fixed(db_url)
    nodes = {n["step"]: n for n in views.run_state(run.store, run.id)["dag"]["nodes"]}
    assert nodes["load"]["code_change"] is None and nodes["report"]["code_change"] is None
    change = nodes["enrich"]["code_change"]
    assert set(change) == {"at", "old_version", "new_version", "diff"}
    assert change["new_version"] == run.version != change["old_version"]
    assert '-        raise ValueError("bad row 3")' in change["diff"]
    assert '+    return item["x"] * 2 + 1' in change["diff"]
    assert views.run_view(run.store, run.id)["dag"]["nodes"][1]["code_change"] == change


def test_instance_detail_has_its_steps_code_diff(db_url: str) -> None:
    run = hot_fixed(db_url)
    fixed = views.instance_detail(run.store, run.id, "enrich", "3")
    old = views.instance_detail(run.store, run.id, "enrich", "4")
    assert fixed is not None and old is not None
    assert (fixed["code_changed"], old["code_changed"]) == (False, True)
    assert fixed["code_diff"] == old["code_diff"] and '+    return item["x"] * 2 + 1' in fixed["code_diff"]
    load = views.instance_detail(run.store, run.id, "load", None)
    assert load is not None and load["code_diff"] is None


def test_a_one_shot_breakpoint_without_an_origin_is_labelled_by_its_target() -> None:
    bp = Breakpoint("double", key="3", one_shot=True)
    assert views.breakpoint_label(bp) == "before double:3 (one-shot)"


def test_the_open_panel_shows_the_diff_once_its_step_is_redefined_while_the_run_is_paused(db_url: str) -> None:
    """A hot fix changes no instance row: the panel of the selected instance still shows it at the next refresh."""
    wf, run = paused_on_row_3(db_url, "views-hot-fix-panel", 4)
    c = Controller(run)
    c.act("select_instance", {"step": "enrich", "key": 3})
    assert c.state()["detail"]["code_diff"] is None

    fix(wf)

    detail = c.state(force=False)["detail"]
    assert detail["code_changed"] is True and '+    return item["x"] * 2 + 1' in detail["code_diff"]
