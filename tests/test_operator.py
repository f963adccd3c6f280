"""Operator control (issue 3): verbs act on one run only, bad input is refused and changes nothing,
cancel and fork, runs never stall each other, and a command from another process is applied by
the live owner."""
from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from unchanged import snapshot

import nbflow
from nbflow import CommandRefused, DefinitionError, Workflow

WAIT_S = 30
MUTATIONS = {"resumed", "skipped", "retry_requested", "inputs_changed", "output_changed", "cancelled", "run_cancelled"}


def shop(db_url: str, name: str = "shop", fail_item: int | None = None) -> Workflow:
    """load -> enrich (a 6-item foreach, keys are the indexes) -> total."""
    wf = Workflow(name, store=db_url)

    @wf.step
    def load():
        return [1, 2, 3, 4, 5, 6]

    @wf.foreach("load")
    def enrich(item):
        if item == fail_item:
            raise ValueError(f"cannot enrich {item}")
        return item * 10

    @wf.step
    def total(enrich):
        return sum(enrich)

    return wf


def paused(wf: Workflow, **kwargs: Any) -> nbflow.Run:
    run = wf.run(**{"breakpoints": ["enrich"], **kwargs})
    assert run.wait(timeout=WAIT_S) == "paused"
    return run



def mutation_events(run: nbflow.Run) -> list[str]:
    return [e.kind for e in run.history() if e.kind in MUTATIONS]


# ------------------------------------------------------------------ runs are independent
ACTIONS: dict[str, Callable[[nbflow.Run], Any]] = {
    "resume": lambda run: run.resume("enrich", key=1),
    "resume_all": lambda run: run.resume(),
    "skip": lambda run: run.skip("enrich", key=2, output=0),
    "cancel": lambda run: run.cancel(),
}


@pytest.mark.parametrize("action", list(ACTIONS))
def test_acting_on_one_run_never_touches_another_run_of_the_same_workflow(db_url: str, action: str) -> None:
    wf = shop(db_url)
    a = paused(wf)
    b = paused(wf)
    before = snapshot(b)

    ACTIONS[action](a)
    a.wait(timeout=WAIT_S)

    assert snapshot(b) == before
    assert len(b.instances("enrich", status="paused")) == 6
    assert mutation_events(a) and not mutation_events(b)


# ------------------------------------------------------------------ bad input changes nothing
def test_breakpoint_on_unknown_step_is_refused(db_url: str) -> None:
    wf = shop(db_url)
    with pytest.raises(DefinitionError, match=r"no step 'nope'.*enrich"):
        wf.breakpoints.add("nope")
    assert wf.breakpoints.list() == []


def test_run_with_breakpoint_on_unknown_step_is_refused_and_leaves_no_run(db_url: str) -> None:
    wf = shop(db_url)
    with pytest.raises(DefinitionError, match=r"no step 'nope'.*enrich"):
        wf.run(breakpoints=["nope"])
    with pytest.raises(DefinitionError, match="nope"):
        wf.run(breakpoints=["nope:3"])
    with pytest.raises(DefinitionError, match="'total' is a task step with a single instance; a key only narrows"):
        wf.run(breakpoints=["total:3"])  # it could never catch anything
    assert nbflow.runs(store=db_url) == []


def test_breakpoint_condition_that_does_not_compile_is_refused(db_url: str) -> None:
    wf = shop(db_url)
    with pytest.raises(DefinitionError, match=r"item\[.*not a valid Python expression"):
        wf.breakpoints.add("enrich", condition="item[")
    with pytest.raises(DefinitionError, match="not a valid Python expression"):
        wf.run(breakpoints=[nbflow.Breakpoint("enrich", condition="item ==")])
    assert wf.breakpoints.list() == []
    assert nbflow.runs(store=db_url) == []


VERBS: dict[str, Callable[[nbflow.Run], Any]] = {
    "resume": lambda run: run.resume("enrich", key=1),
    "skip": lambda run: run.skip("enrich", key=1, output=0),
    "retry": lambda run: run.retry("enrich", key=1),
    "set_inputs": lambda run: run.set_inputs("enrich", key=1, item=9, reason="late"),
    "set_output": lambda run: run.set_output("enrich", key=1, value=9, reason="late"),
    "cancel": lambda run: run.cancel(),
}


@pytest.mark.parametrize("verb", list(VERBS))
def test_verb_on_a_finished_run_is_refused(db_url: str, verb: str) -> None:
    run = shop(db_url).run()
    assert run.wait(timeout=WAIT_S) == "succeeded"
    before = snapshot(run)

    with pytest.raises(CommandRefused, match=rf"run {run.id} is succeeded.*fork"):
        VERBS[verb](run)

    assert snapshot(run) == before


def test_verb_on_an_unknown_key_is_refused(db_url: str) -> None:
    run = paused(shop(db_url))
    before = snapshot(run)

    with pytest.raises(CommandRefused, match=r"step 'enrich' of run \w+ has no instance with key 99.*6 instances"):
        run.resume("enrich", key=99)
    with pytest.raises(CommandRefused, match="key 99"):
        run.skip("enrich", keys=[1, 99], output=0)

    assert snapshot(run) == before


def test_verb_on_an_unknown_step_is_refused(db_url: str) -> None:
    run = paused(shop(db_url))
    before = snapshot(run)

    with pytest.raises(CommandRefused, match=r"no step 'nope'; steps are: load, enrich, total"):
        run.resume("nope")

    assert snapshot(run) == before


def test_set_inputs_with_an_input_the_step_does_not_take_is_refused(db_url: str) -> None:
    run = paused(shop(db_url))
    before = snapshot(run)

    with pytest.raises(CommandRefused, match=r"takes no input named 'colour'.*inputs are: item"):
        run.set_inputs("enrich", key=1, colour="red", reason="typo")

    assert snapshot(run) == before


def test_set_output_on_an_instance_paused_before_is_refused_naming_state_and_allowed_verbs(db_url: str) -> None:
    run = paused(shop(db_url))
    before = snapshot(run)

    with pytest.raises(CommandRefused) as err:
        run.set_output("enrich", key=1, value=5, reason="guess")

    message = str(err.value)
    assert "enrich:1" in message
    assert "paused (before)" in message
    assert "allowed now: resume, step_over, retry, skip, set_inputs" in message
    assert snapshot(run) == before
    assert run.instance("enrich", 1).output is None


def test_resume_on_a_failed_instance_is_refused_naming_state_and_allowed_verbs(db_url: str) -> None:
    run = shop(db_url, fail_item=1).run(breakpoints=["enrich:3"])
    assert run.wait(timeout=WAIT_S) == "paused"
    assert run.instance("enrich", 0).status == "failed"
    before = snapshot(run)

    with pytest.raises(CommandRefused) as err:
        run.resume("enrich", key=0)

    message = str(err.value)
    assert "enrich:0" in message and "it is failed" in message
    assert "allowed now: retry, skip, set_inputs" in message
    assert snapshot(run) == before
    assert mutation_events(run) == []


def test_resume_on_a_succeeded_instance_is_refused_naming_its_state(db_url: str) -> None:
    run = shop(db_url).run(breakpoints=["enrich:3"])
    assert run.wait(timeout=WAIT_S) == "paused"
    before = snapshot(run)

    with pytest.raises(CommandRefused, match=r"cannot resume enrich:2: it is succeeded.*allowed now"):
        run.resume("enrich", key=2)

    assert snapshot(run) == before
    assert mutation_events(run) == []


# ------------------------------------------------------------------ cancel, fork
def test_cancel_a_paused_run_cancels_every_unfinished_instance(db_url: str) -> None:
    run = shop(db_url).run(breakpoints=["enrich:2", "enrich:4"])
    assert run.wait(timeout=WAIT_S) == "paused"

    run.cancel(reason="wrong input file")

    assert run.wait(timeout=WAIT_S) == "cancelled"
    assert run.status == "cancelled"
    st = {v.label: str(v.status) for v in run.instances()}
    assert st == {
        "load": "succeeded",
        "enrich:0": "succeeded", "enrich:1": "succeeded", "enrich:2": "cancelled",
        "enrich:3": "succeeded", "enrich:4": "cancelled", "enrich:5": "succeeded",
        "total": "cancelled",
    }
    assert run.breakpoints() == []  # run-scoped breakpoints end with the run


def test_fork_reuses_upstream_checkpoints_and_runs_the_rest_with_todays_code(db_url: str, tmp_path: Path) -> None:
    calls = tmp_path / "calls.txt"
    wf = Workflow("fork", store=db_url)

    def called(name: str) -> None:
        with calls.open("a") as f:
            f.write(name + "\n")

    @wf.step
    def load():
        called("load")
        return [1, 2, 3]

    @wf.foreach("load")
    def enrich(item):
        called("enrich")
        return item * 10

    @wf.step
    def total(enrich):
        called("total")
        return sum(enrich)

    first = wf.run()
    assert first.wait(timeout=WAIT_S) == "succeeded"
    assert first.output("total") == 60

    @wf.foreach("load")
    def enrich(item):  # noqa: F811 - a notebook cell run again
        called("enrich")
        return item * 100

    second = first.fork(from_step="enrich")

    assert second.id != first.id
    assert second.wait(timeout=WAIT_S) == "succeeded"
    assert second.output("total") == 600
    assert second.output("load") == [1, 2, 3]
    assert calls.read_text().split() == ["load"] + ["enrich"] * 3 + ["total"] + ["enrich"] * 3 + ["total"]
    assert second.version != first.version
    assert first.output("total") == 60


# ------------------------------------------------------------------ liveness
def test_paused_run_never_stalls_another_run_of_the_same_workflow(db_url: str) -> None:
    wf = shop(db_url)
    a = paused(wf)

    b = wf.run()

    assert b.wait(timeout=WAIT_S) == "succeeded"
    assert b.output("total") == 210
    assert a.status == "paused"
    assert len(a.instances("enrich", status="paused")) == 6


def test_command_from_another_process_is_applied_by_the_live_owner(db_url: str) -> None:
    run = paused(shop(db_url))
    code = (
        "import sys; from nbflow import commands; from nbflow.store import Store; "
        "r = commands.submit(Store.open(sys.argv[1]), sys.argv[2], 'resume', 'enrich', ['3'], actor='cli-user'); "
        "print(r.applied)"
    )

    out = subprocess.run([sys.executable, "-c", code, db_url, run.id], capture_output=True, text=True, timeout=60,
                         check=False)

    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"  # written, not waited for: the owner is another process
    deadline = time.monotonic() + WAIT_S
    while run.instance("enrich", 3).status != "succeeded" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert run.instance("enrich", 3).status == "succeeded"
    assert run.instance("enrich", 3).output == 40
    assert [v.key for v in run.instances("enrich", status="paused")] == [0, 1, 2, 4, 5]
    resumed = [e for e in run.history() if e.kind == "resumed"]
    assert [(e.key, e.actor) for e in resumed] == [(3, "cli-user")]


def test_a_refusal_says_why_with_a_code_of_the_verb_table(db_url: str) -> None:
    """commands.check refuses before anything is written, with a Refusal code; the owner's refusals are
    ``state``; an applied command says so in ``CommandResult.state``."""
    from nbflow.verbs import CommandState, Refusal

    run = paused(shop(db_url))
    before = snapshot(run)
    cases: list[tuple[Callable[[], Any], Refusal]] = [
        (lambda: run.resume("nope"), Refusal.NOT_FOUND),
        (lambda: run.resume("enrich", key=99), Refusal.NOT_FOUND),
        (lambda: run.retry("load", key=1), Refusal.INVALID),
        (lambda: run.set_inputs("enrich", key=1, colour="red"), Refusal.INVALID),
        (lambda: run.approve("enrich"), Refusal.INVALID),
        (lambda: run.set_output("enrich", key=1, value=5), Refusal.STATE),
    ]
    for call, code in cases:
        with pytest.raises(CommandRefused) as err:
            call()
        assert err.value.code == code, (str(err.value), code)
    assert snapshot(run) == before
    assert run.resume("enrich", key=1).state == CommandState.APPLIED
    run.cancel()
    assert run.wait(timeout=WAIT_S) == "cancelled"
    with pytest.raises(CommandRefused) as err:
        run.resume()
    assert err.value.code == Refusal.FINISHED
