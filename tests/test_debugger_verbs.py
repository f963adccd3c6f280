"""The debugger verbs of issue 17 in the engine, through the Python API: step over, logpoints and hit
counts. Runs are owned by the test process, so verbs return once the owner applied them; side effects
are counted with a Trail (a file), so each story holds on every executor."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sidefx import Trail

import nbflow
from nbflow import Breakpoint, Workflow
from nbflow.breakpoints import BreakpointRefused
from nbflow.engine.lifecycle import stop_all
from nbflow.errors import CommandRefused
from nbflow.states import STEPPED_OVER
from nbflow.store.logpoints import whole

pytestmark = pytest.mark.every_engine  # each story holds on every store x executor

WAIT_S = 60


def chain(db_url: str, trail: Trail) -> Workflow:
    """load -> enrich (foreach keyed by id) -> double (foreach over enrich) -> report; each body leaves a trace."""
    wf = Workflow("debugging", store=db_url)

    @wf.step
    def load(n):
        trail.add("load")
        return [{"id": i, "x": i} for i in range(n)]

    @wf.foreach("load", key=lambda item: item["id"])
    def enrich(item):
        trail.add(f"enrich:{item['id']}")
        return {**item, "y": item["x"] * 10}

    @wf.foreach("enrich")
    def double(item):
        trail.add(f"double:{item['id']}")
        return item["y"] * 2

    @wf.step
    def report(double):
        trail.add("report")
        return sum(double)

    return wf


@pytest.fixture
def trail(tmp_path: Path) -> Trail:
    return Trail(str(tmp_path / "trail.jsonl"))


def paused(run: nbflow.Run) -> list[tuple[str, Any, str | None]]:
    return [(v.step, v.key, v.pause_reason) for v in run.instances(status="paused")]


# ------------------------------------------------------------------ step over
def test_stepping_over_a_task_pauses_the_next_task_with_its_inputs_ready(db_url: str, trail: Trail) -> None:
    wf = chain(db_url, trail)
    run = wf.run(params={"n": 3}, breakpoints=["double"])
    assert run.wait(timeout=WAIT_S) == "paused"
    run.resume("double", keys=[0, 1])

    answer = run.step_over("double", key=2)

    assert answer.message == "stepped over double:2; pausing before: report"
    assert run.wait(timeout=WAIT_S) == "paused"
    report = run.instance("report")
    assert (report.status, report.pause_reason) == ("paused", "before: step over double:2")
    assert report.inputs == {"double": [0, 20, 40]}
    assert "report" not in trail.items()
    assert report.held_by == [STEPPED_OVER]


def test_stepping_over_a_foreach_item_pauses_only_the_item_that_consumes_it(db_url: str, trail: Trail) -> None:
    wf = chain(db_url, trail)
    run = wf.run(params={"n": 6}, breakpoints=["enrich:3"])
    assert run.wait(timeout=WAIT_S) == "paused"

    answer = run.step_over("enrich", key=3)

    assert answer.message == "stepped over enrich:3; pausing before: double (the item made from enrich:3)"
    assert run.wait(timeout=WAIT_S) == "paused"
    assert paused(run) == [("double", 3, "before: step over enrich:3")]
    assert sorted(t for t in trail.items() if t.startswith("double")) == [f"double:{i}" for i in (0, 1, 2, 4, 5)]
    assert run.instance("double", key=3).inputs == {"item": {"id": 3, "x": 3, "y": 30}}


def test_a_step_over_breakpoint_is_one_shot_run_scoped_and_gone_once_it_fired(db_url: str, trail: Trail) -> None:
    wf = chain(db_url, trail)
    run = wf.run(params={"n": 2}, breakpoints=["load"])
    assert run.wait(timeout=WAIT_S) == "paused"
    before = {bp.id for bp in run.breakpoints()}

    run.step_over("load")
    assert run.wait(timeout=WAIT_S) == "paused"

    assert {bp.id for bp in run.breakpoints()} == before  # the one-shot went once it caught enrich's items
    fired = [e.data for e in run.history() if e.kind == "breakpoint_fired"]
    assert [(f["origin"], f["count"], f["keys"]) for f in fired] == [("step over load", 2, ["0", "1"])]
    run.resume()  # an ordinary resume lets what the step over paused go on
    assert run.wait(timeout=WAIT_S) == "succeeded"
    assert run.output("report") == 20


def test_a_step_over_breakpoint_is_listed_as_one_shot_until_it_fires(db_url: str, trail: Trail) -> None:
    wf = chain(db_url, trail)
    run = wf.run(params={"n": 2}, breakpoints=["enrich"])
    assert run.wait(timeout=WAIT_S) == "paused"

    run.step_over("enrich", key=0)  # double waits for enrich:1, so the one-shot waits too

    shots = [bp for bp in run.breakpoints() if bp.one_shot]
    assert [(bp.step, bp.scope, bp.origin) for bp in shots] == [("double", "run", "step over enrich:0")]
    run.resume("enrich", key=1)
    assert run.wait(timeout=WAIT_S) == "paused"
    assert paused(run) == [("double", 0, "before: step over enrich:0")]
    assert not [bp for bp in run.breakpoints() if bp.one_shot]


def test_step_over_on_a_foreach_without_a_key_is_refused_and_changes_nothing(db_url: str, trail: Trail) -> None:
    wf = chain(db_url, trail)
    run = wf.run(params={"n": 3}, breakpoints=["enrich"])
    assert run.wait(timeout=WAIT_S) == "paused"

    with pytest.raises(CommandRefused, match="step over names one instance: 'enrich' is a foreach step, give the key"):
        run.step_over("enrich")

    assert len(run.instances("enrich", status="paused")) == 3
    assert not [bp for bp in run.breakpoints() if bp.one_shot]


def test_step_over_of_an_instance_that_is_not_paused_is_refused(db_url: str, trail: Trail) -> None:
    wf = chain(db_url, trail)
    run = wf.run(params={"n": 3}, breakpoints=["enrich:1"])
    assert run.wait(timeout=WAIT_S) == "paused"

    with pytest.raises(CommandRefused, match="cannot step_over enrich:0: it is succeeded"):
        run.step_over("enrich", key=0)


def test_stepping_over_the_last_step_says_nothing_consumes_it(db_url: str, trail: Trail) -> None:
    wf = chain(db_url, trail)
    run = wf.run(params={"n": 2}, breakpoints=["report"])
    assert run.wait(timeout=WAIT_S) == "paused"

    assert run.step_over("report").message == "stepped over report; nothing consumes its output"
    assert run.wait(timeout=WAIT_S) == "succeeded"


# ------------------------------------------------------------------ logpoints
def test_a_logpoint_over_200_items_pauses_nothing_and_records_200_values(db_url: str, trail: Trail) -> None:
    wf = chain(db_url, trail)
    bp = Breakpoint("enrich", action="log", expression="item['x'] * 3")

    run = wf.run(params={"n": 200}, breakpoints=[bp])

    assert run.wait(timeout=WAIT_S) == "succeeded"
    logged = {e.key: e.data for e in run.history() if e.kind == "logpoint"}
    assert len(logged) == 200
    assert {k: d["value"] for k, d in logged.items()} == {i: i * 3 for i in range(200)}
    assert logged[7] == {"breakpoint": logged[7]["breakpoint"], "expression": "item['x'] * 3", "when": "before",
                         "attempt": 1, "value": 21}


def test_a_logpoint_stores_its_expression_once_per_run_and_every_event_reads_whole(db_url: str,
                                                                                   trail: Trail) -> None:
    wf = chain(db_url, trail)
    run = wf.run(params={"n": 50}, breakpoints=[Breakpoint("enrich", action="log", expression="item['x'] * 3")])

    assert run.wait(timeout=WAIT_S) == "succeeded"

    armed = [e for e in run.history() if e.kind == "logpoint_armed"]
    assert [(e.step, e.data["expression"], e.data["when"], e.data["hit_count"]) for e in armed] == [
        ("enrich", "item['x'] * 3", "before", None)]
    with run.store.engine.connect() as conn:
        holding = conn.execute(sa.text("SELECT count(*) FROM events WHERE run_id = :run AND data LIKE :text"),
                               {"run": run.id, "text": "%item['x'] * 3%"}).scalar()
    assert holding == 1  # the armed event; the 50 logpoint events refer to it
    assert run.breakpoints() == []  # the run's own logpoint went with it, its events still read whole
    logged = [e.data for e in run.history() if e.kind == "logpoint"]
    assert len(logged) == 50
    assert all(d["expression"] == "item['x'] * 3" and d["when"] == "before" and d["attempt"] == 1 for d in logged)


def test_a_logpoint_after_a_retried_body_names_the_attempt_it_logged(db_url: str, trail: Trail) -> None:
    wf = Workflow("flaky", store=db_url)

    @wf.step(retries=1, backoff=0)
    def flaky(n):  # type: ignore[no-untyped-def]
        trail.add("flaky")
        if trail.items().count("flaky") == 1:
            raise ValueError("the first attempt fails")
        return n

    wf.breakpoints.add("flaky", when="after", action="log", expression="output * 2")
    run = wf.run(params={"n": 5})

    assert run.wait(timeout=WAIT_S) == "succeeded"
    bid = wf.breakpoints.list()[0].id
    assert [e.data for e in run.history() if e.kind == "logpoint"] == [
        {"breakpoint": bid, "expression": "output * 2", "when": "after", "attempt": 2, "value": 10}]


def test_a_run_taken_over_between_hits_keeps_one_definition_of_its_logpoint(db_url: str, trail: Trail) -> None:
    wf = chain(db_url, trail)
    run = wf.run(params={"n": 4}, breakpoints=[Breakpoint("double", action="log", expression="item['y']"),
                                               Breakpoint("enrich", key="2")])
    assert run.wait(timeout=WAIT_S) == "paused"
    stop_all()  # the owner goes: the run is left paused with three of its four logpoint hits

    run = wf.attach(run.id)
    run.resume("enrich", key=2)

    assert run.wait(timeout=WAIT_S) == "succeeded"
    kinds = [e.kind for e in run.history()]
    assert (kinds.count("taken_over"), kinds.count("logpoint_armed"), kinds.count("logpoint")) == (1, 1, 4)
    assert sorted(e.data["value"] for e in run.history() if e.kind == "logpoint") == [0, 10, 20, 30]


def test_a_logpoint_after_the_body_sees_the_output(db_url: str, trail: Trail) -> None:
    wf = chain(db_url, trail)
    wf.breakpoints.add("double", when="after", action="log", expression="output - item['y']")

    run = wf.run(params={"n": 4})

    assert run.wait(timeout=WAIT_S) == "succeeded"
    values = {e.key: e.data["value"] for e in run.history() if e.kind == "logpoint"}
    assert values == {0: 0, 1: 10, 2: 20, 3: 30}


def test_a_logpoint_records_a_value_that_is_not_json_as_its_repr_and_an_error_as_text(db_url: str,
                                                                                       trail: Trail) -> None:
    wf = chain(db_url, trail)
    run = wf.run(params={"n": 2}, breakpoints=[
        Breakpoint("enrich", action="log", expression="{item['x']}"),
        Breakpoint("enrich", action="log", expression="item['missing']"),
    ])

    assert run.wait(timeout=WAIT_S) == "succeeded"
    logs = [e.data for e in run.history() if e.kind == "logpoint" and e.key == 1]
    assert [d["value"] for d in logs] == ["{1}", None]
    assert logs[1]["error"] == "KeyError: 'missing'"


def test_a_logpoint_with_a_condition_logs_only_what_matches(db_url: str, trail: Trail) -> None:
    wf = chain(db_url, trail)
    wf.breakpoints.add("enrich", condition="item['x'] % 2 == 0", action="log", expression="item['x']")

    run = wf.run(params={"n": 6})

    assert run.wait(timeout=WAIT_S) == "succeeded"
    assert sorted(e.data["value"] for e in run.history() if e.kind == "logpoint") == [0, 2, 4]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"action": "log"}, "a logpoint \\(action='log'\\) needs the expression it records"),
    ({"expression": "item"}, "expression= is what a logpoint records: pass action='log'"),
    ({"action": "log", "expression": "item["}, "logpoint expression 'item\\[' is not a valid Python expression"),
    ({"action": "print", "expression": "item"}, "breakpoint action='print': use 'pause'"),
    ({"hit_count": 0}, "hit_count=0: give a whole number of at least 1"),
    ({"hit_count": True}, "hit_count=True: give a whole number"),
])
def test_a_bad_logpoint_or_hit_count_is_refused_and_nothing_is_written(db_url: str, trail: Trail,
                                                                      kwargs: dict[str, Any], message: str) -> None:
    wf = chain(db_url, trail)

    with pytest.raises(BreakpointRefused, match=message):
        wf.breakpoints.add("enrich", **kwargs)

    assert wf.breakpoints.list() == []


# ------------------------------------------------------------------ hit counts
def test_hit_count_3_with_a_condition_matching_10_items_pauses_8(db_url: str, trail: Trail) -> None:
    wf = chain(db_url, trail)
    bp = Breakpoint("enrich", condition="item['x'] >= 20", hit_count=3)

    run = wf.run(params={"n": 30}, breakpoints=[bp])

    assert run.wait(timeout=WAIT_S) == "paused"
    assert len(run.instances("enrich", status="paused")) == 8
    assert sum(1 for t in trail.items() if t.startswith("enrich")) == 22
    stored = run.breakpoints()[0]
    assert stored.hit_count == 3
    assert run.store.breakpoint_hits(run.id) == {stored.id: 10}


def test_a_hit_count_on_a_logpoint_logs_from_that_hit_on(db_url: str, trail: Trail) -> None:
    wf = chain(db_url, trail)
    run = wf.run(params={"n": 5}, breakpoints=[Breakpoint("enrich", action="log", expression="item['x']",
                                                          hit_count=4)])

    assert run.wait(timeout=WAIT_S) == "succeeded"
    assert len([e for e in run.history() if e.kind == "logpoint"]) == 2


def test_resuming_what_a_hit_count_paused_does_not_count_it_again(db_url: str, trail: Trail) -> None:
    wf = chain(db_url, trail)
    run = wf.run(params={"n": 4}, breakpoints=[Breakpoint("enrich", hit_count=2)])
    assert run.wait(timeout=WAIT_S) == "paused"
    bid = run.breakpoints()[0].id

    run.resume("enrich")

    assert run.wait(timeout=WAIT_S) == "succeeded"
    assert run.store.breakpoint_hits(run.id) == {bid: 4}


def test_a_logpoint_and_a_condition_see_the_inputs_inside_a_generator_expression(db_url: str, trail: Trail) -> None:
    wf = chain(db_url, trail)
    bp = Breakpoint("enrich", condition="any(item['x'] == k for k in (1, 2))", action="log",
                    expression="sum(k * item['x'] for k in range(3))")

    run = wf.run(params={"n": 4}, breakpoints=[bp])

    assert run.wait(timeout=WAIT_S) == "succeeded"
    logs = {e.key: e.data for e in run.history() if e.kind == "logpoint"}
    assert {k: (d["value"], d.get("error")) for k, d in logs.items()} == {1: (3, None), 2: (6, None)}


def test_a_step_over_whose_consumer_already_ran_says_nothing_will_pause_and_leaves_no_breakpoint(
    db_url: str, tmp_path: Path
) -> None:
    fixed = tmp_path / "fixed"
    wf = Workflow("late", store=db_url)

    @wf.step
    def load(n):
        return list(range(n))

    @wf.foreach("load", on_item_error="continue")
    def enrich(item):
        if item == 2 and not fixed.exists():
            raise ValueError("bad item 2")
        return item

    @wf.step
    def report(enrich):
        return sum(enrich)

    @wf.step
    def other(load):
        return 0

    run = wf.run(params={"n": 4}, breakpoints=["other"])
    assert run.wait(timeout=WAIT_S) == "paused"  # report ran without the dead letter enrich:2
    wf.breakpoints.add("enrich", key=2)
    fixed.touch()
    run.retry("enrich", key=2)
    assert run.wait(timeout=WAIT_S) == "paused"

    answer = run.step_over("enrich", key=2)

    assert answer.message == "stepped over enrich:2; nothing will pause: report started already"
    assert not [bp for bp in run.breakpoints() if bp.one_shot]


def test_a_logpoint_event_stored_whole_by_an_earlier_version_reads_as_it_was() -> None:
    old = '{"breakpoint":4,"expression":"item","when":"before","attempt":1,"value":3}'

    assert whole(old, {"4": '"expression":"other","when":"after",'}) == old
    assert whole('{"breakpoint":4,"value":3}', {"4": '"expression":"item","when":"before",'}) == (
        '{"breakpoint":4,"expression":"item","when":"before","attempt":1,"value":3}')
