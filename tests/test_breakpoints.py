"""Breakpoints (issue 3): pausing foreach items before, after and on error; conditions; releasing
and re-catching; repairing a run paused on errors. All runs are owned by the test process, so
verbs return once the owner applied them."""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from sidefx import Trail

import nbflow
from nbflow import Breakpoint, Workflow
from nbflow.commands import remove_breakpoints

pytestmark = pytest.mark.every_engine  # every test here runs on each store x executor

N = 1000
WAIT_S = 60
FAILING = frozenset(x for x in range(N) if x % 59 == 7)  # 17 items: 7, 66, ..., 951


def etl(db_url: str, name: str = "etl") -> Workflow:
    """load -> enrich (foreach keyed by id) -> report."""
    wf = Workflow(name, store=db_url)

    @wf.step
    def load(n):
        return [{"id": i, "x": i} for i in range(n)]

    @wf.foreach("load", key=lambda item: item["id"])
    def enrich(item):
        return {**item, "y": item["x"] ** 2}

    @wf.step
    def report(enrich):
        return sum(r["y"] for r in enrich)

    return wf


def statuses(run: nbflow.Run, step: str) -> dict[Any, str]:
    return {v.key: str(v.status) for v in run.instances(step)}


# ------------------------------------------------------------------ pausing a large foreach
def test_run_scoped_breakpoint_pauses_every_foreach_item(db_url: str) -> None:
    wf = etl(db_url)
    run = wf.run(params={"n": N}, breakpoints=["enrich"])

    assert run.wait(timeout=WAIT_S) == "paused"
    paused = run.instances("enrich", status="paused")
    assert len(paused) == N
    assert all(v.pause_reason == "before" and v.output is None for v in paused)
    assert paused[17].inputs == {"item": {"id": 17, "x": 17}}
    assert run.instance("report").status == "pending"


@pytest.mark.threads_only("counts the thread executor's threads")
def test_paused_foreach_items_hold_no_threads(db_url: str) -> None:
    wf = etl(db_url)
    pool = 4
    baseline = threading.active_count()
    run = wf.run(params={"n": N}, breakpoints=["enrich"], max_workers=pool)

    assert run.wait(timeout=WAIT_S) == "paused"
    assert len(run.instances("enrich", status="paused")) == N
    assert threading.active_count() <= baseline + pool + 3


def test_resume_one_key_completes_only_that_item(db_url: str) -> None:
    wf = etl(db_url)
    run = wf.run(params={"n": N}, breakpoints=["enrich"])
    assert run.wait(timeout=WAIT_S) == "paused"

    run.resume("enrich", key=17)

    assert run.wait(timeout=WAIT_S) == "paused"
    done = run.instance("enrich", 17)
    assert done.status == "succeeded"
    assert done.output == {"id": 17, "x": 17, "y": 289}
    st = statuses(run, "enrich")
    assert [k for k, s in st.items() if s != "paused"] == [17]
    assert run.instance("report").status == "pending"


def test_conditional_workflow_breakpoint_pauses_exactly_matching_items(db_url: str) -> None:
    wf = etl(db_url)
    wf.breakpoints.add("enrich", condition="item['x'] % 100 == 0")
    run = wf.run(params={"n": N})

    assert run.wait(timeout=WAIT_S) == "paused"
    paused = {v.key for v in run.instances("enrich", status="paused")}
    assert paused == set(range(0, N, 100))
    assert len(run.instances("enrich", status="succeeded")) == N - len(paused)


def test_removing_workflow_breakpoint_resumes_all_it_held_and_run_succeeds(db_url: str) -> None:
    wf = etl(db_url)
    wf.breakpoints.add("enrich", condition="item['x'] % 100 == 0")
    run = wf.run(params={"n": N})
    assert run.wait(timeout=WAIT_S) == "paused"
    assert len(run.instances("enrich", status="paused")) == 10

    assert wf.breakpoints.remove("enrich") == 1

    assert run.wait(timeout=WAIT_S) == "succeeded"
    assert wf.breakpoints.list() == []
    assert run.instances("enrich", status="paused") == []
    assert run.output("report") == sum(x * x for x in range(N))


def test_workflow_breakpoint_applies_to_a_run_already_alive(db_url: str) -> None:
    wf = etl(db_url)
    run = wf.run(params={"n": 10}, breakpoints=["report"])
    assert run.wait(timeout=WAIT_S) == "paused"

    wf.breakpoints.add("report", when="after")
    run.resume("report")

    assert run.wait(timeout=WAIT_S) == "paused"
    view = run.instance("report")
    assert (view.status, view.pause_reason, view.output) == ("paused", "after", sum(x * x for x in range(10)))


# ------------------------------------------------------------------ after breakpoints
def test_after_breakpoint_output_corrected_before_downstream_reads_it(db_url: str, tmp_path: Path) -> None:
    wf = Workflow("after", store=db_url)
    seen = Trail(str(tmp_path / "seen"))

    @wf.step
    def price(base):
        return base * 2

    @wf.step
    def invoice(price):
        seen.add(price)
        return f"total {price}"

    run = wf.run(params={"base": 21}, breakpoints=[Breakpoint("price", when="after")])
    assert run.wait(timeout=WAIT_S) == "paused"
    view = run.instance("price")
    assert (view.status, view.pause_reason, view.output) == ("paused", "after", 42)
    assert run.instance("invoice").status == "pending"

    run.set_output("price", value=40, reason="discount agreed")
    run.resume("price")

    assert run.wait(timeout=WAIT_S) == "succeeded"
    assert run.output("price") == 40
    assert run.output("invoice") == "total 40"
    assert seen.items() == [40]
    changed = [e for e in run.history() if e.kind == "output_changed"]
    assert [(e.step, e.data["old"], e.data["new"], e.data["reason"]) for e in changed] == [
        ("price", 42, 40, "discount agreed")
    ]


# ------------------------------------------------------------------ holding and releasing
def small(db_url: str, name: str = "small") -> Workflow:
    """A 5-item foreach without a key function (keys are the indexes)."""
    wf = Workflow(name, store=db_url)

    @wf.step
    def load():
        return [10, 20, 30, 40, 50]

    @wf.foreach("load")
    def enrich(item):
        return item + 1

    @wf.step
    def total(enrich):
        return sum(enrich)

    return wf


def test_instance_held_by_two_breakpoints_stays_paused_until_both_are_removed(db_url: str) -> None:
    wf = small(db_url)
    wf.breakpoints.add("enrich", key=2)
    run = wf.run(breakpoints=["enrich:2"])
    assert run.wait(timeout=WAIT_S) == "paused"
    assert len(run.instance("enrich", 2).held_by) == 2

    wf.breakpoints.remove("enrich", key=2)
    assert run.wait(timeout=WAIT_S) == "paused"
    view = run.instance("enrich", 2)
    assert view.status == "paused"
    assert len(view.held_by) == 1

    assert remove_breakpoints(wf.store, wf.name, "enrich", "2", run_id=run.id) == 1
    assert run.wait(timeout=WAIT_S) == "succeeded"
    assert run.output("total") == 155


def test_explicit_resume_releases_an_instance_held_by_two_breakpoints(db_url: str) -> None:
    wf = small(db_url)
    wf.breakpoints.add("enrich", key=2)
    run = wf.run(breakpoints=["enrich:2"])
    assert run.wait(timeout=WAIT_S) == "paused"

    run.resume("enrich", key=2)

    assert run.wait(timeout=WAIT_S) == "succeeded"
    assert run.instance("enrich", 2).output == 31


@pytest.mark.parametrize("how", ["error_breakpoint", "break_on_error"])
def test_released_breakpoint_does_not_catch_automatic_retries(db_url: str, how: str, tmp_path: Path) -> None:
    wf = Workflow("flaky", store=db_url)
    attempts = Trail(str(tmp_path / "attempts"))

    @wf.step(retries=2, backoff=0)
    def flaky(ctx):
        attempts.add(ctx.attempt)
        if ctx.attempt < 3:
            raise RuntimeError(f"transient failure {ctx.attempt}")
        return "ok"

    if how == "error_breakpoint":
        wf.breakpoints.add("flaky", when="error")
        run = wf.run()
    else:
        run = wf.run(break_on_error=True)
    assert run.wait(timeout=WAIT_S) == "paused"
    view = run.instance("flaky")
    assert (view.pause_reason, view.attempts, view.error.message) == ("error", 1, "transient failure 1")

    run.resume("flaky")

    assert run.wait(timeout=WAIT_S) == "succeeded"
    assert attempts.items() == [1, 2, 3]
    assert run.instance("flaky").attempts == 3
    assert [e.kind for e in run.history() if e.kind == "paused"] == ["paused"]


def test_condition_that_raises_pauses_with_a_reason_naming_the_error(db_url: str) -> None:
    wf = small(db_url)
    wf.breakpoints.add("enrich", key=1, condition="item['price'] > 10")
    run = wf.run()

    assert run.wait(timeout=WAIT_S) == "paused"
    view = run.instance("enrich", 1)
    assert view.status == "paused"
    assert view.pause_reason.startswith("before")
    assert "TypeError" in view.pause_reason
    assert "item['price'] > 10" in view.pause_reason
    assert [v.key for v in run.instances("enrich", status="paused")] == [1]


# ------------------------------------------------------------------ break on error, then repair
FIXED = sorted(FAILING)[:6]
SKIPPED = sorted(FAILING)[6:11]
REDEFINED = sorted(FAILING)[11:]


def failing_etl(db_url: str) -> Workflow:
    wf = Workflow("repair", store=db_url)

    @wf.step
    def load(n):
        return [{"id": i, "x": i} for i in range(n)]

    @wf.foreach("load", key=lambda item: item["id"])
    def enrich(item):
        if item["x"] % 59 == 7:
            raise ValueError(f"bad row {item['id']}")
        return item["x"] * 2

    @wf.step
    def report(enrich):
        return sum(enrich)

    return wf


def repair(wf: Workflow, run: nbflow.Run) -> None:
    """Fix some inputs, skip some, redefine the step and retry the rest."""
    for k in FIXED:
        run.set_inputs("enrich", key=k, item={"id": k, "x": k + 1}, reason=f"row {k} had a typo")
        run.retry("enrich", key=k)
    run.skip("enrich", keys=SKIPPED, output=-1, reason="not worth fixing")

    @wf.foreach("load", key=lambda item: item["id"])
    def enrich(item):
        return item["x"] * 2 + 1

    run.retry("enrich", keys=REDEFINED, reason="fixed the code")


def test_break_on_error_pauses_exactly_the_failing_items_with_their_errors(db_url: str) -> None:
    wf = failing_etl(db_url)
    run = wf.run(params={"n": N}, break_on_error=True)

    assert run.wait(timeout=WAIT_S) == "paused"
    paused = run.instances("enrich", status="paused")
    assert {int(v.key) for v in paused} == FAILING
    for v in paused:
        assert v.pause_reason == "error"
        assert (v.error.type, v.error.message) == ("ValueError", f"bad row {v.key}")
        assert "ValueError" in v.error.traceback
    assert len(run.instances("enrich", status="succeeded")) == N - len(FAILING)
    assert run.instances(status="failed") == []


def test_run_paused_on_errors_succeeds_after_fixing_skipping_and_retrying(db_url: str) -> None:
    wf = failing_etl(db_url)
    run = wf.run(params={"n": N}, break_on_error=True)
    assert run.wait(timeout=WAIT_S) == "paused"

    repair(wf, run)

    assert run.wait(timeout=WAIT_S) == "succeeded"
    out = run.output("enrich")
    for k in FIXED:
        assert out[k] == (k + 1) * 2
        assert run.instance("enrich", k).inputs["item"] == {"id": k, "x": k + 1}
    for k in SKIPPED:
        assert out[k] == -1
        assert run.instance("enrich", k).status == "skipped"
    for k in REDEFINED:
        assert out[k] == k * 2 + 1
    expected = sum(x * 2 for x in range(N) if x not in FAILING)
    expected += sum((k + 1) * 2 for k in FIXED) - len(SKIPPED) + sum(k * 2 + 1 for k in REDEFINED)
    assert run.output("report") == expected


def test_repair_history_holds_every_action_with_actor_and_old_and_new_values(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NBFLOW_ACTOR", "alice")
    wf = failing_etl(db_url)
    run = wf.run(params={"n": N}, break_on_error=True)
    assert run.wait(timeout=WAIT_S) == "paused"
    repair(wf, run)
    assert run.wait(timeout=WAIT_S) == "succeeded"

    history = run.history()
    commands = [e for e in history if e.kind == "command"]
    assert [e.data["verb"] for e in commands] == ["set_inputs", "retry"] * len(FIXED) + ["skip", "retry"]
    assert all(e.actor == "alice" and e.data["result"] == "ok" for e in commands)

    changed = {e.key: e for e in history if e.kind == "inputs_changed"}
    assert sorted(changed) == FIXED
    for k in FIXED:
        e = changed[k]
        assert e.actor == "alice"
        assert e.data["old"] == {"item": {"id": k, "x": k}}
        assert e.data["new"] == {"item": {"id": k, "x": k + 1}}
        assert e.data["reason"] == f"row {k} had a typo"

    skipped = [e for e in history if e.kind == "skipped"]
    assert sorted(int(e.key) for e in skipped) == SKIPPED
    assert all(e.actor == "alice" and e.data["output"] == -1 for e in skipped)

    retried = [e for e in history if e.kind == "retry_requested"]
    assert sorted(int(e.key) for e in retried) == sorted(FIXED + REDEFINED)
    assert all(e.actor == "alice" for e in retried)


def test_redefining_a_step_under_a_paused_run_records_code_changed_with_a_diff(db_url: str) -> None:
    wf = failing_etl(db_url)
    run = wf.run(params={"n": N}, break_on_error=True)
    assert run.wait(timeout=WAIT_S) == "paused"
    old_version = run.version
    repair(wf, run)
    assert run.wait(timeout=WAIT_S) == "succeeded"

    changes = [e for e in run.history() if e.kind == "code_changed"]
    assert len(changes) == 1
    data = changes[0].data
    assert data["old_version"] == old_version != data["new_version"]
    assert run.version == data["new_version"]
    diff = data["diffs"]["enrich"]
    assert "-        raise ValueError" in diff
    assert '+    return item["x"] * 2 + 1' in diff
    assert set(data["diffs"]) == {"enrich"}
