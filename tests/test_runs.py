"""Runs end to end: outputs, foreach fan-out, failures and retries, concurrency, the run list.

Every test runs on each store x executor, so step bodies share state with the test through
files (``sidefx``), never through Python objects a worker process could not see.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sidefx import Barrier, Gate, Trail, peak_overlap

import nbflow
from nbflow import StepContext, Workflow, views

pytestmark = pytest.mark.every_engine  # every test here runs on each store x executor

TIMEOUT = 60


@dataclass(frozen=True)
class Point:
    """A non-JSON value that pickles by reference."""

    x: int
    y: int


# -- the ETL example of DESIGN.md section 4 --------------------------------------------------------
def etl(db_url: str) -> Workflow:
    wf = Workflow("etl", db_url)

    @wf.step
    def load(n: int) -> list[dict[str, int]]:
        return [{"id": i, "x": i} for i in range(n)]

    @wf.foreach("load", key=lambda item: item["id"] * 7, retries=2)
    def enrich(item: dict[str, int], ctx: StepContext) -> dict[str, int]:
        return {**item, "y": item["x"] ** 2}

    @wf.step
    def report(enrich: list[dict[str, int]]) -> int:
        return sum(r["y"] for r in enrich)

    return wf


def test_etl_example_computes_the_report(db_url: str) -> None:
    run = etl(db_url).run(params={"n": 1000})
    assert run.wait(timeout=TIMEOUT) == "succeeded"
    assert run.status == "succeeded"
    assert run.output("report") == sum(i * i for i in range(1000))


def test_foreach_output_is_a_list_in_item_order(db_url: str) -> None:
    run = etl(db_url).run(params={"n": 1000})
    assert run.wait(timeout=TIMEOUT) == "succeeded"
    assert run.output("enrich") == [{"id": i, "x": i, "y": i * i} for i in range(1000)]


def test_foreach_instances_are_keyed_by_the_key_function(db_url: str) -> None:
    run = etl(db_url).run(params={"n": 1000})
    assert run.wait(timeout=TIMEOUT) == "succeeded"
    views = run.instances("enrich")
    assert [v.item for v in views] == list(range(1000))
    assert [v.key for v in views] == [i * 7 for i in range(1000)]
    assert {v.status for v in views} == {"succeeded"}
    one = run.instance("enrich", key=21)
    assert (one.item, one.inputs["item"], one.output) == (3, {"id": 3, "x": 3}, {"id": 3, "x": 3, "y": 9})
    assert run.instances("load")[0].item is None


def test_history_lists_starts_and_successes_in_order(db_url: str) -> None:
    run = etl(db_url).run(params={"n": 20})
    assert run.wait(timeout=TIMEOUT) == "succeeded"
    events = run.history()
    assert [e.id for e in events] == sorted(e.id for e in events)
    assert [e.ts for e in events] == sorted(e.ts for e in events)
    assert events[0].kind == "run_created"
    assert events[-1].kind == "run_succeeded"
    position: dict[tuple[str, int | None, str], int] = {}
    for n, e in enumerate(events):
        if e.kind in ("started", "succeeded") and e.step is not None:
            position.setdefault((e.step, e.key, e.kind), n)
    labels = [("load", None)] + [("enrich", i * 7) for i in range(20)] + [("report", None)]
    for step, key in labels:
        assert position[(step, key, "started")] < position[(step, key, "succeeded")]
    last_enrich = max(position[("enrich", k, "succeeded")] for _, k in labels[1:-1])
    first_enrich = min(position[("enrich", k, "started")] for _, k in labels[1:-1])
    assert position[("load", None, "succeeded")] < first_enrich
    assert last_enrich < position[("report", None, "started")]


# -- failures ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "type_name"), [pytest.param(42, "int", id="int"), pytest.param({"a": 1}, "dict", id="dict")]
)
def test_foreach_over_a_non_sequence_fails_that_step(db_url: str, value: Any, type_name: str) -> None:
    wf = Workflow("not-a-list", db_url)

    @wf.step
    def load() -> Any:
        return value

    @wf.foreach("load")
    def enrich(item: int) -> int:
        return item

    run = wf.run()
    assert run.wait(timeout=TIMEOUT) == "failed"
    assert run.instances("load")[0].status == "succeeded"
    [failed] = run.instances("enrich")
    assert failed.status == "failed"
    assert failed.error is not None
    assert "not a sequence" in failed.error.message
    assert "'enrich'" in failed.error.message and type_name in failed.error.message


def test_foreach_over_an_empty_list_succeeds_with_an_empty_output(db_url: str) -> None:
    wf = Workflow("empty", db_url)

    @wf.step
    def load() -> list[int]:
        return []

    @wf.foreach("load")
    def enrich(item: int) -> int:
        return item

    @wf.step
    def report(enrich: list[int]) -> int:
        return len(enrich)

    run = wf.run()
    assert run.wait(timeout=TIMEOUT) == "succeeded"
    assert run.instances("enrich") == []
    assert run.output("enrich") == []
    assert run.output("report") == 0


def test_foreach_keys_that_collide_fail_that_step(db_url: str) -> None:
    wf = Workflow("same-keys", db_url)

    @wf.step
    def load() -> list[dict[str, int]]:
        return [{"id": 1}, {"id": 2}, {"id": 1}]

    @wf.foreach("load", key=lambda row: row["id"])
    def enrich(item: dict[str, int]) -> int:
        return item["id"]

    run = wf.run()
    assert run.wait(timeout=TIMEOUT) == "failed"
    [failed] = run.instances("enrich")
    assert failed.status == "failed" and failed.error is not None
    assert "same key '1'" in failed.error.message and "items 0 and 2" in failed.error.message


def test_unserializable_foreach_output_names_the_instance_key(db_url: str) -> None:
    wf = Workflow("unserializable-item", db_url)

    @wf.step
    def load() -> list[str]:
        return ["fine", "locked"]

    @wf.foreach("load", key=lambda name: name)
    def open_it(item: str) -> Any:
        return threading.Lock() if item == "locked" else item

    run = wf.run()
    assert run.wait(timeout=TIMEOUT) == "failed"
    assert run.instance("open_it", key="fine").status == "succeeded"
    bad = run.instance("open_it", key="locked")
    assert bad.status == "failed" and bad.error is not None
    assert "'open_it'" in bad.error.message and "locked" in bad.error.message and "lock" in bad.error.message
    assert bad.attempts == 1


@pytest.mark.parametrize(
    ("make", "type_name"),
    [
        pytest.param(threading.Lock, "lock", id="lock"),
        pytest.param(lambda: (i for i in range(3)), "generator", id="generator"),
    ],
)
def test_unserializable_output_fails_its_step_naming_step_and_type(db_url: str, make: Any, type_name: str) -> None:
    wf = Workflow("unserializable", db_url)

    @wf.step
    def resource() -> Any:
        return make()

    @wf.step
    def use(resource: Any) -> str:
        return "never"

    run = wf.run()
    assert run.wait(timeout=TIMEOUT) == "failed"
    [view] = run.instances("resource")
    assert view.status == "failed"
    assert view.error is not None
    assert "'resource'" in view.error.message
    assert type_name in view.error.message
    assert run.instances("use")[0].status == "cancelled"


@pytest.mark.parametrize(
    "value",
    [
        pytest.param((1, "two", 3.0), id="tuple"),
        pytest.param({1, 2, 3}, id="set"),
        pytest.param(Point(1, 2), id="dataclass"),
    ],
)
def test_non_json_picklable_output_round_trips(db_url: str, value: Any) -> None:
    wf = Workflow("pickled", db_url)

    @wf.step
    def make() -> Any:
        return value

    @wf.step
    def seen(make: Any) -> str:
        return type(make).__name__

    run = wf.run()
    assert run.wait(timeout=TIMEOUT) == "succeeded"
    out = run.output("make")
    assert out == value and type(out) is type(value)
    assert run.output("seen") == type(value).__name__


def test_retries_until_success_count_attempts_from_one(db_url: str, tmp_path: Path) -> None:
    wf = Workflow("flaky", db_url)
    seen = Trail(str(tmp_path / "attempts"))

    @wf.step(retries=3, backoff=0)
    def flaky(ctx: StepContext) -> str:
        seen.add(ctx.attempt)
        if ctx.attempt < 3:
            raise ConnectionError(f"attempt {ctx.attempt} failed")
        return "ok"

    run = wf.run()
    assert run.wait(timeout=TIMEOUT) == "succeeded"
    assert seen.items() == [1, 2, 3]
    [view] = run.instances("flaky")
    assert (view.status, view.attempts, view.output) == ("succeeded", 3, "ok")
    kinds = [e.kind for e in run.history() if e.step == "flaky"]
    assert kinds.count("started") == 3 and kinds.count("retrying") == 2 and kinds[-1] == "succeeded"


def test_a_retried_attempt_keeps_its_traceback_after_a_later_attempt_succeeds(db_url: str) -> None:
    wf = Workflow("flaky-traced", db_url)

    @wf.step(retries=1, backoff=0)
    def flaky(ctx: StepContext) -> str:
        if ctx.attempt == 1:
            raise ConnectionError("the API hung up")
        return "ok"

    run = wf.run()
    assert run.wait(timeout=TIMEOUT) == "succeeded"
    assert run.instance("flaky").error is None  # the instance keeps only its last outcome
    (retrying,) = [e for e in run.history() if e.kind == "retrying"]
    assert retrying.data["error"] == "ConnectionError: the API hung up"
    assert 'raise ConnectionError("the API hung up")' in retrying.data["traceback"]
    detail = views.instance_detail(wf.store, run.id, "flaky", None)
    assert detail is not None
    first, second = detail["attempts"]
    assert (first["outcome"], second["outcome"], second["traceback"]) == ("retrying", "succeeded", None)
    assert "Traceback (most recent call last)" in first["traceback"]


def test_retries_exhausted_fail_after_one_plus_retries_attempts(db_url: str) -> None:
    wf = Workflow("hopeless", db_url)

    @wf.step(retries=2, backoff=0)
    def hopeless(ctx: StepContext) -> None:
        raise OSError(f"down on attempt {ctx.attempt}")

    run = wf.run()
    assert run.wait(timeout=TIMEOUT) == "failed"
    [view] = run.instances("hopeless")
    assert (view.status, view.attempts) == ("failed", 3)
    assert view.error is not None and view.error.message == "down on attempt 3"


def test_retry_on_limits_which_errors_are_retried(db_url: str) -> None:
    wf = Workflow("picky", db_url)

    @wf.step(retries=5, backoff=0, retry_on=ConnectionError)
    def picky() -> None:
        raise KeyError("not a network problem")

    run = wf.run()
    assert run.wait(timeout=TIMEOUT) == "failed"
    [view] = run.instances("picky")
    assert (view.status, view.attempts) == ("failed", 1)
    assert view.error is not None and view.error.type == "KeyError"


def test_failure_without_retries_fails_the_run_and_cancels_downstream(db_url: str) -> None:
    wf = Workflow("branches", db_url)

    @wf.step
    def source() -> int:
        return 1

    @wf.step
    def broken(source: int) -> int:
        raise ValueError(f"bad value {source}")

    @wf.step
    def after_broken(broken: int) -> int:
        return broken

    @wf.step
    def last(after_broken: int) -> int:
        return after_broken

    @wf.step
    def healthy(source: int) -> int:
        return source + 1

    @wf.foreach("source_list")
    def per_item(item: int) -> int:
        return item

    @wf.step
    def source_list(source: int) -> list[int]:
        return [source, source]

    run = wf.run()
    assert run.wait(timeout=TIMEOUT) == "failed"
    status = {v.label: v.status for v in run.instances()}
    assert status["broken"] == "failed"
    assert status["after_broken"] == "cancelled" and status["last"] == "cancelled"
    assert status["healthy"] == "succeeded" and run.output("healthy") == 2
    assert run.output("per_item") == [1, 1]
    [view] = run.instances("broken")
    assert view.attempts == 1
    assert view.error is not None and view.error.type == "ValueError" and view.error.message == "bad value 1"
    assert "raise ValueError" in view.error.traceback


# -- waiting, listing, ordering, concurrency -----------------------------------------------------
def test_wait_with_timeout_returns_the_current_status(db_url: str, tmp_path: Path) -> None:
    wf = Workflow("slow", db_url)
    gate = Gate(str(tmp_path / "gate"))

    @wf.step
    def blocked() -> bool:
        return gate.wait()

    run = wf.run()
    try:
        assert run.wait(timeout=0.2) == "running"
    finally:
        gate.open()
    assert run.wait(timeout=TIMEOUT) == "succeeded"
    assert run.output("blocked") is True


def test_two_concurrent_runs_of_one_workflow_stay_independent(db_url: str, tmp_path: Path) -> None:
    wf = Workflow("twins", db_url)
    both = Barrier(str(tmp_path / "barrier"), 2)

    @wf.step
    def load(n: int) -> list[int]:
        both.wait()  # both runs are inside a step at the same time
        return list(range(n))

    @wf.foreach("load")
    def double(item: int, factor: int) -> int:
        return item * factor

    @wf.step
    def total(double: list[int]) -> int:
        return sum(double)

    a = wf.run(params={"n": 10, "factor": 2})
    b = wf.run(params={"n": 5, "factor": 100})
    assert a.id != b.id
    assert a.wait(timeout=TIMEOUT) == "succeeded"
    assert b.wait(timeout=TIMEOUT) == "succeeded"
    assert (a.output("total"), b.output("total")) == (90, 1000)
    assert (len(a.instances("double")), len(b.instances("double"))) == (10, 5)
    assert a.params == {"n": 10, "factor": 2} and b.params == {"n": 5, "factor": 100}


def test_runs_filters_by_workflow_and_status(db_url: str) -> None:
    first = Workflow("first", db_url)

    @first.step
    def check(ok: bool) -> bool:
        if not ok:
            raise RuntimeError("not ok")
        return ok

    second = Workflow("second", db_url)

    @second.step
    def other() -> int:
        return 1

    good = first.run(params={"ok": True})
    bad = first.run(params={"ok": False})
    elsewhere = second.run()
    for run in (good, bad, elsewhere):
        run.wait(timeout=TIMEOUT)

    def ids(**query: Any) -> set[str]:
        return {r.id for r in nbflow.runs(db_url, **query)}

    assert ids() == {good.id, bad.id, elsewhere.id}
    assert ids(workflow="first") == {good.id, bad.id}
    assert ids(workflow="first", status="failed") == {bad.id}
    assert ids(status="succeeded") == {good.id, elsewhere.id}
    assert ids(workflow="first", status=["failed", "succeeded"]) == {good.id, bad.id}
    assert ids(workflow="nope") == set()


def test_after_adds_an_ordering_only_edge(db_url: str, tmp_path: Path) -> None:
    wf = Workflow("ordered", db_url)
    trail = Trail(str(tmp_path / "trail"))

    @wf.step
    def migrate() -> str:
        time.sleep(0.05)  # a real edge, not luck, keeps seed behind migrate
        trail.add("migrate")
        return "schema v2"

    @wf.step(after=["migrate"])
    def seed() -> str:
        trail.add("seed")
        return "seeded"

    @wf.step(after=["seed", "migrate"])
    def serve(ctx: StepContext) -> str:
        trail.add("serve")
        return "up"

    run = wf.run()
    assert run.wait(timeout=TIMEOUT) == "succeeded"
    assert trail.items() == ["migrate", "seed", "serve"]
    assert run.instances("seed")[0].inputs == {}  # ordering only: no value flows
    assert run.output("serve") == "up"


def test_max_workers_bounds_concurrent_step_bodies(db_url: str, tmp_path: Path) -> None:
    wf = Workflow("bounded", db_url)
    spans = Trail(str(tmp_path / "spans"))

    @wf.step
    def items() -> list[int]:
        return list(range(16))

    @wf.foreach("items")
    def work(item: int) -> int:
        start = time.time()
        time.sleep(0.05)
        spans.add([start, time.time()])
        return item

    run = wf.run(max_workers=3)
    assert run.wait(timeout=TIMEOUT) == "succeeded"
    assert run.output("work") == list(range(16))
    assert 1 <= peak_overlap(spans.items()) <= 3


def test_a_string_output_that_is_not_valid_unicode_is_stored(db_url: str) -> None:
    wf = Workflow("surrogates", db_url)

    @wf.step
    def name() -> str:
        return "report-\udcff.csv"  # as os.listdir returns an undecodable file name

    run = wf.run()
    assert run.wait(timeout=TIMEOUT) == "succeeded"
    assert run.output("name") == "report-\udcff.csv"
