"""``run.at(event)`` (issue 18): a read-only view of a run as it was right after one of its events, from
real runs in real SQLite files: the run paused with its instances' statuses, attempts, pause reasons and
errors of that moment; a foreach's items absent before it expanded; outputs and inputs as they were
before an operator changed them; an unknown event refused naming the range; and nothing runs."""
from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import nbflow
from nbflow import Breakpoint
from nbflow.errors import NbflowError
from nbflow.run import Event
from nbflow.store import replay
from tests.sidefx import Trail

pytestmark = pytest.mark.timeout(120)

WAIT_S = 60


def nth(run: nbflow.Run, kind: str, step: str | None = None, which: int = 0) -> Event:
    """The run's *which*-th event of *kind* (of *step*)."""
    return [e for e in run.history() if e.kind == kind and (step is None or e.step == step)][which]


def failing(db_url: str, trail: Trail, n: int = 8) -> nbflow.Run:
    """load -> enrich (keyed by id; items 3 and 7 raise) -> report, with break_on_error and a breakpoint on
    enrich:2. It pauses; enrich:3 is retried (fails and pauses again: attempt 2); then 3 and 7 are skipped,
    enrich:2 is resumed, and the run succeeds. Each body run is recorded in *trail*."""
    wf = nbflow.Workflow("travel", store=db_url)

    @wf.step
    def load(n):
        return [{"id": i} for i in range(n)]

    @wf.foreach("load", key=lambda item: item["id"])
    def enrich(item):
        trail.add(["enrich", item["id"]])
        if item["id"] in (3, 7):
            raise ValueError(f"bad row {item['id']}")
        return item["id"] * 10

    @wf.step
    def report(enrich):
        return sum(enrich)

    run = wf.run(params={"n": n}, breakpoints=["enrich:2"], break_on_error=True)
    assert run.wait(timeout=WAIT_S) == "paused"
    run.retry("enrich", key=3)
    assert run.wait(timeout=WAIT_S) == "paused"
    run.skip("enrich", keys=[3, 7], output=0)
    run.resume("enrich", key=2)
    assert run.wait(timeout=WAIT_S) == "succeeded"
    return run


def test_at_the_pause_event_the_run_is_paused_with_its_instances_then(db_url: str, tmp_path: Path) -> None:
    run = failing(db_url, Trail(str(tmp_path / "trail")))
    then = run.at(nth(run, "run_paused"))
    assert then.status == "paused"
    assert {i.key: str(i.status) for i in then.instances("enrich")} == {
        0: "succeeded", 1: "succeeded", 2: "paused", 3: "paused", 4: "succeeded", 5: "succeeded", 6: "succeeded",
        7: "paused"}
    assert str(then.instance("report").status) == "pending"
    assert run.status == "succeeded" and str(run.instance("enrich", 3).status) == "skipped"


def test_at_the_pause_event_attempts_pause_reasons_and_errors_are_those_of_then(db_url: str, tmp_path: Path) -> None:
    run = failing(db_url, Trail(str(tmp_path / "trail")))
    first, second = run.at(nth(run, "run_paused", which=0)), run.at(nth(run, "run_paused", which=1))
    assert first.instance("enrich", 3).attempts == 1 and second.instance("enrich", 3).attempts == 2
    held = first.instance("enrich", 2)
    assert (held.pause_reason, held.attempts, held.error, held.held_by) == ("before", 0, None, [1])
    bad = first.instance("enrich", 7)
    assert bad.pause_reason == "error" and bad.held_by == [0]  # 0: the run's break_on_error
    assert (bad.error.type, bad.error.message) == ("ValueError", "bad row 7")
    assert "raise ValueError" in bad.error.traceback
    assert first.instance("enrich", 0).attempts == 1 and first.instance("enrich", 0).error is None


def test_at_an_event_outputs_are_those_of_then(db_url: str, tmp_path: Path) -> None:
    run = failing(db_url, Trail(str(tmp_path / "trail")))
    then = run.at(nth(run, "run_paused"))
    assert then.instance("enrich", 4).output == 40
    assert then.instance("enrich", 7).output is None  # it had not succeeded yet (skipped later, output 0)
    assert then.instance("enrich", 2).output is None
    assert then.instance("report").output is None and run.output("report") == sum(i * 10 for i in range(8)) - 100


def test_at_an_event_before_the_foreach_expanded_it_has_no_items(db_url: str, tmp_path: Path) -> None:
    run = failing(db_url, Trail(str(tmp_path / "trail")))
    then = run.at(nth(run, "succeeded", "load"))
    assert then.instances("enrich") == []
    assert [i.step for i in then.instances()] == ["load", "report"]
    assert then.instance("load").output == [{"id": i} for i in range(8)]
    with pytest.raises(NbflowError, match=r"step 'enrich' of run \w+ had no instance with key 0 .*did not exist yet"):
        then.instance("enrich", 0)
    assert then.counts()["pending"] == 1 and then.counts()["succeeded"] == 1 and sum(then.counts().values()) == 2


def test_at_counts_the_instances_by_their_status_then(db_url: str, tmp_path: Path) -> None:
    run = failing(db_url, Trail(str(tmp_path / "trail")))
    counts = run.at(nth(run, "run_paused")).counts()
    assert {s: n for s, n in counts.items() if n} == {"succeeded": 6, "paused": 3, "pending": 1}
    assert run.at(len(run.history())).counts()["succeeded"] == 8


def test_at_takes_an_event_its_id_or_its_position_alike(db_url: str, tmp_path: Path) -> None:
    run = failing(db_url, Trail(str(tmp_path / "trail")))
    history = run.history()
    n = next(n for n, e in enumerate(history, 1) if e.kind == "run_paused")
    for where in (history[n - 1], history[n - 1].id, n):
        then = run.at(where)
        assert (then.n, then.event.id, then.event.kind, then.status) == (n, history[n - 1].id, "run_paused", "paused")


def test_at_refuses_an_unknown_event_naming_the_range(db_url: str, tmp_path: Path) -> None:
    run = failing(db_url, Trail(str(tmp_path / "trail")))
    history = run.history()
    total = len(history)
    for bad in (0, -1, total + 1, history[-1].id + 1):
        with pytest.raises(NbflowError, match=rf"has {total} events, positions 1\.\.{total} "
                                              rf"\(ids {history[0].id}\.\.{history[-1].id}\)"):
            run.at(bad)
    with pytest.raises(NbflowError, match=r"an event id, a position in the history \(1\.\.\d+\) or an Event"):
        run.at("soon")  # type: ignore[arg-type]


def test_at_runs_nothing(db_url: str, tmp_path: Path) -> None:
    trail = Trail(str(tmp_path / "trail"))
    run = failing(db_url, trail)
    ran = trail.items()
    assert sorted(map(tuple, ran)) == sorted([("enrich", i) for i in range(8)] + [("enrich", 3)])
    for n in range(1, len(run.history()) + 1):
        run.at(n).instances()
    assert trail.items() == ran
    assert run.status == "succeeded"


def gated(db_url: str, when: str) -> nbflow.Run:
    """numbers -> total (a task), paused at a breakpoint on total (*when* its body)."""
    wf = nbflow.Workflow(f"travel-{when}", store=db_url)

    @wf.step
    def numbers(n):
        return list(range(n))

    @wf.step
    def total(numbers):
        return sum(numbers)

    run = wf.run(params={"n": 5}, breakpoints=[Breakpoint("total", when=when)])
    assert run.wait(timeout=WAIT_S) == "paused"
    return run


def test_an_output_changed_later_shows_the_old_value_at_the_earlier_event(db_url: str) -> None:
    run = gated(db_url, "after")
    run.set_output("total", value=999, reason="fix")
    run.resume("total")
    assert run.wait(timeout=WAIT_S) == "succeeded"
    paused = run.at(nth(run, "paused", "total"))
    assert (str(paused.instance("total").status), paused.instance("total").output) == ("paused", 10)
    assert paused.instance("total").pause_reason == "after"
    assert run.at(nth(run, "output_changed", "total")).instance("total").output == 999
    assert run.instance("total").output == 999


def test_an_output_of_a_re_run_changed_later_is_not_shown_at_an_event_before_the_re_run(db_url: str) -> None:
    wf = nbflow.Workflow("travel-rerun", store=db_url)

    @wf.step
    def answer(ctx):
        return f"attempt-output-{ctx.attempt - 1}"

    run = wf.run(breakpoints=[Breakpoint("answer", when="after")])
    assert run.wait(timeout=WAIT_S) == "paused" and run.instance("answer").output == "attempt-output-0"
    wf.breakpoints.add("answer", when="after")  # the run's own breakpoint fired once: the retry pauses on this one
    run.retry("answer")
    assert run.wait(timeout=WAIT_S) == "paused" and run.instance("answer").output == "attempt-output-1"
    run.set_output("answer", value="C", reason="fix")
    run.resume("answer")
    assert run.wait(timeout=WAIT_S) == "succeeded" and run.output("answer") == "C"
    first, second = nth(run, "paused", "answer", 0), nth(run, "paused", "answer", 1)
    assert run.at(first).instance("answer").output is None  # re-run after it: nothing to show then
    assert run.at(second).instance("answer").output == "attempt-output-1"  # changed after it: the old value


def test_inputs_changed_later_show_the_old_value_at_the_earlier_event(db_url: str) -> None:
    run = gated(db_url, "before")
    run.set_inputs("total", numbers=[100], reason="fix")
    run.resume("total")
    assert run.wait(timeout=WAIT_S) == "succeeded"
    paused = run.at(nth(run, "paused", "total"))
    assert paused.instance("total").inputs == {"numbers": [0, 1, 2, 3, 4]}
    assert run.at(nth(run, "inputs_changed", "total")).instance("total").inputs == {"numbers": [100]}
    assert run.output("total") == 100


def test_at_names_its_event_with_the_instances_key_as_the_key_function_returned_it(db_url: str,
                                                                                   tmp_path: Path) -> None:
    run = failing(db_url, Trail(str(tmp_path / "trail")))
    then = run.at(nth(run, "paused", "enrich"))
    assert (then.event.kind, then.event.step, then.event.key, then.event.key_text) == ("paused", "enrich", 2, "2")
    assert then.event.data["reason"] == "before"


def test_at_the_start_of_a_fork_what_it_copied_from_its_parent_is_there_as_copied(db_url: str,
                                                                                 tmp_path: Path) -> None:
    parent = failing(db_url, Trail(str(tmp_path / "trail")))
    fork = parent.fork("report")
    assert fork.wait(timeout=WAIT_S) == "succeeded"
    start = fork.at(1)
    assert start.event.kind == "run_created" and start.status == "running"
    assert {i.key: str(i.status) for i in start.instances("enrich")} == {
        k: ("skipped" if k in (3, 7) else "succeeded") for k in range(8)}
    assert start.instance("enrich", 4).output == 40
    assert str(start.instance("report").status) == "pending" and start.instance("report").output is None


def test_at_an_approval_gates_waiting_event_it_waits_for_its_decision(db_url: str) -> None:
    wf = nbflow.Workflow("travel-gate", store=db_url)

    @wf.step
    def draft():
        return "text"

    wf.approval("sign_off", after=["draft"])
    run = wf.run()
    assert run.wait(timeout=WAIT_S) == "paused"
    run.approve("sign_off", comment="ok")
    assert run.wait(timeout=WAIT_S) == "succeeded"
    then = run.at(nth(run, "waiting", "sign_off"))
    gate = then.instance("sign_off")
    assert (str(gate.status), gate.pause_reason, gate.output) == ("waiting", "approval", None)
    assert then.status == "running"  # its run_paused event comes after, in the same turn
    assert run.at(nth(run, "run_paused")).status == "paused"
    assert str(run.instance("sign_off").status) == "succeeded"


def test_large_inputs_changed_later_show_their_old_value_and_no_file_is_written(db_url: str, tmp_path: Path) -> None:
    wf = nbflow.Workflow("travel-large", store=db_url)

    @wf.step
    def rows(n):
        return ["x" * 100] * n  # ~0.5 MB of JSON: stored as a file

    @wf.step
    def count(rows):
        return len(rows)

    run = wf.run(params={"n": 5000}, breakpoints=["count"])
    assert run.wait(timeout=WAIT_S) == "paused"
    run.set_inputs("count", rows=["small"], reason="fix")
    run.resume("count")
    assert run.wait(timeout=WAIT_S) == "succeeded"
    files = sorted(p for p in (tmp_path / "artifacts").rglob("*") if p.is_file())
    assert files  # the large output of rows was stored as a file
    then = run.at(nth(run, "paused", "count"))
    assert then.instance("count").inputs == {"rows": ["x" * 100] * 5000}
    assert sorted(p for p in (tmp_path / "artifacts").rglob("*") if p.is_file()) == files
    assert run.output("count") == 1


def test_at_takes_a_numpy_integer_as_a_position(db_url: str, tmp_path: Path) -> None:
    import numpy

    run = failing(db_url, Trail(str(tmp_path / "trail")))
    history = run.history()
    n = next(n for n, e in enumerate(history, 1) if e.kind == "run_paused")
    for where in (numpy.int64(n), numpy.int64(history[n - 1].id)):
        then = run.at(where)  # type: ignore[arg-type]  # a position read from a DataFrame
        assert (then.n, then.event.kind, then.status) == (n, "run_paused", "paused")
    with pytest.raises(NbflowError, match=r"an event id, a position in the history"):
        run.at(True)  # type: ignore[arg-type]


def test_a_held_view_reads_its_instances_while_another_thread_extends_the_index(db_url: str) -> None:
    run = gated(db_url, "before")
    then = run.at(nth(run, "paused", "total"))  # the index is folded up to the pause
    run.resume("total")
    assert run.wait(timeout=WAIT_S) == "succeeded"
    ix = then._m.index
    new = list(replay.heads(run.store, run.id, ix.last, replay.bounds(run.store, run.id).last))
    assert any(h[1] == "total" for h in new)
    assert str(then.instance("total").status) == "paused"  # the run went on; the index has not folded it yet
    folded, read = threading.Event(), threading.Event()

    def paced(heads: list[tuple[Any, ...]]) -> Iterator[tuple[Any, ...]]:
        """Each event, then a read by the main thread while the fold is inside its loop."""
        for h in heads:
            yield h
            folded.set()
            assert read.wait(timeout=WAIT_S)
            read.clear()

    fold = threading.Thread(target=lambda: ix.fold(paced(new)), daemon=True)
    fold.start()
    seen: list[Any] = []
    try:
        for _ in new:
            assert folded.wait(timeout=WAIT_S)
            folded.clear()
            try:
                seen.append((str(then.instance("total").status), then.instance("numbers").output))
            except Exception as exc:  # noqa: BLE001 - what a reader meets is what the test reports
                seen.append(exc)
            read.set()
    finally:
        read.set()
        fold.join(timeout=WAIT_S)
    assert seen == [("paused", [0, 1, 2, 3, 4])] * len(new)
    assert str(then.instance("total").status) == "paused" and run.at(len(run.history())).instance("total").output == 10
