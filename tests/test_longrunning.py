"""Long-running workflows (issue 6): retries with backoff, step timeouts, run deadlines, dead
letters and max_parallel, approval gates, external signals, and the idempotency key. Real SQLite
files; the CLI and a killed owner run in real subprocesses."""
from __future__ import annotations

import itertools
import json
import os
import re
import signal as os_signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

import nbflow
from nbflow import Backoff
from nbflow.signals import make_token
from nbflow.store import schema

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------- helpers
def cli(db_url: str, *args: str, actor: str | None = None) -> subprocess.CompletedProcess[str]:
    """`nbflow --db URL ARGS...` in a subprocess without a terminal on stdin."""
    env = dict(os.environ)
    if actor is not None:
        env["NBFLOW_ACTOR"] = actor
    return subprocess.run(
        [sys.executable, "-m", "nbflow", "--db", db_url, *args],
        stdin=subprocess.DEVNULL, capture_output=True, check=False, text=True, timeout=120, env=env,
    )


def poll(check: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.02)


def finish(run: nbflow.Run, timeout: float = 30.0) -> str:
    """The run's status once it is finished (``run.wait`` also returns while a gate or a wait is pending)."""
    poll(lambda: run.status.terminal, timeout)
    return str(run.status)


def events(run: nbflow.Run, kind: str, step: str | None = None) -> list[nbflow.Event]:
    return [e for e in run.history() if e.kind == kind and (step is None or e.step == step)]


def reader(db_url: str, run_id: str) -> nbflow.Run:
    """A handle that only reads the run (``nbflow.attach`` would take over a run whose owner is gone)."""
    return nbflow.Run(nbflow.Store.open(db_url), run_id)


def command_count(db_url: str) -> int:
    store = nbflow.Store.open(db_url)
    with store.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(schema.commands)).scalar_one())


# State the step bodies share with the tests. Steps reach locks and events only through these
# module-level functions: a step's pinned code pickles them by reference, never the lock itself.
_lock = threading.Lock()
_state: dict[str, Any] = {}
_events: dict[str, threading.Event] = {}


@pytest.fixture(autouse=True)
def _fresh_state() -> None:
    _state.clear()
    _events.clear()


def flag(name: str) -> threading.Event:
    with _lock:
        return _events.setdefault(name, threading.Event())


def record(name: str, value: Any) -> None:
    with _lock:
        _state.setdefault(name, []).append(value)


def enter() -> None:
    with _lock:
        _state["running"] = _state.get("running", 0) + 1
        _state["peak"] = max(_state.get("peak", 0), _state["running"])


def leave() -> None:
    with _lock:
        _state["running"] -= 1


# ---------------------------------------------------------------------------------- retries
def test_backoff_delays_grow_by_the_factor_up_to_the_cap(db_url: str) -> None:
    wf = nbflow.Workflow("backoff", store=db_url)

    @wf.step(retries=3, backoff=Backoff(base=0.05, factor=2, cap=0.15, jitter=False))
    def flaky(ctx):
        if ctx.attempt < 4:
            raise ValueError(f"attempt {ctx.attempt}")
        return ctx.attempt

    run = wf.run()
    assert run.wait(timeout=30) == "succeeded"
    retrying = events(run, "retrying")
    assert [e.data["delay"] for e in retrying] == [0.05, 0.1, 0.15]
    started = [e.ts for e in events(run, "started")]
    gaps = [b - a for a, b in itertools.pairwise(started)]
    for gap, delay in zip(gaps, [0.05, 0.1, 0.15], strict=True):
        assert delay <= gap < delay + 1.0
    assert run.output("flaky") == 4


def test_jittered_delays_stay_within_their_ceiling_and_each_attempt_is_recorded(db_url: str) -> None:
    wf = nbflow.Workflow("jitter", store=db_url)

    @wf.step(retries=4, backoff=Backoff(base=0.04, factor=2, cap=0.1))
    def always(ctx):
        raise ValueError(f"attempt {ctx.attempt}")

    run = wf.run()
    assert run.wait(timeout=30) == "failed"
    retrying = events(run, "retrying")
    ceilings = [0.04, 0.08, 0.1, 0.1]
    assert [e.data["attempt"] for e in retrying] == [1, 2, 3, 4]
    for e, ceiling in zip(retrying, ceilings, strict=True):
        assert 0 <= e.data["delay"] <= ceiling
    starts = events(run, "started")
    assert [e.data["attempt"] for e in starts] == [1, 2, 3, 4, 5]
    for a, b, r in zip(starts, starts[1:], retrying):
        assert b.ts - a.ts >= r.data["delay"] - 1e-3
    assert [e.data["error"] for e in retrying] == [f"ValueError: attempt {n}" for n in range(1, 5)]
    (failed,) = events(run, "failed")
    assert failed.data == {"attempt": 5, "error": "ValueError: attempt 5"}
    view = run.instance("always")
    assert view.status == "failed" and view.attempts == 5
    assert view.error is not None and (view.error.type, view.error.message) == ("ValueError", "attempt 5")
    assert view.started_at is not None and view.finished_at is not None
    assert starts[-1].ts - 0.01 <= view.started_at <= view.finished_at


def test_retry_on_does_not_retry_other_exceptions(db_url: str) -> None:
    wf = nbflow.Workflow("retry_on", store=db_url)

    @wf.step(retries=3, backoff=0.01, retry_on=(ValueError,))
    def lookup():
        return {}["missing"]

    run = wf.run()
    assert run.wait(timeout=30) == "failed"
    view = run.instance("lookup")
    assert view.attempts == 1 and view.error is not None and view.error.type == "KeyError"
    assert events(run, "retrying") == []


def test_an_instance_waiting_out_its_backoff_holds_no_worker(db_url: str) -> None:
    wf = nbflow.Workflow("no_worker", store=db_url)

    @wf.step(retries=1, backoff=Backoff(base=1.0, jitter=False))
    def flaky(ctx):
        if ctx.attempt == 1:
            raise ConnectionError("try later")
        return "ok"

    @wf.step
    def items():
        return list(range(4))

    @wf.foreach("items")
    def quick(item):
        time.sleep(0.02)
        return item

    run = wf.run(max_workers=1)
    assert run.wait(timeout=30) == "succeeded"
    history = run.history()
    (retrying,) = [e for e in history if e.kind == "retrying"]
    second = next(e for e in history if e.kind == "started" and e.step == "flaky" and e.data["attempt"] == 2)
    quick_done = [e for e in history if e.kind == "succeeded" and e.step == "quick"]
    assert len(quick_done) == 4
    # every quick item ran on the only worker while flaky was waiting out its 1 s backoff
    assert all(retrying.id < e.id < second.id for e in quick_done)
    # the retry time is set just before the retrying event is stamped: allow for a preempted thread
    assert second.ts - retrying.ts >= 1.0 - 0.05


# ---------------------------------------------------------------------------------- timeouts and deadlines
def test_a_timed_out_attempt_is_retried_and_its_late_result_discarded(db_url: str) -> None:
    wf = nbflow.Workflow("timeout", store=db_url)

    @wf.step(timeout=0.5, retries=1, backoff=Backoff(base=0.01, jitter=False))
    def slow(ctx):
        if ctx.attempt == 1:
            flag("attempt 2 started").wait(20)  # outlives its timeout; returns while attempt 2 runs
            flag("late returned").set()
            return "late"
        flag("attempt 2 started").set()
        flag("late returned").wait(5)
        time.sleep(0.05)  # the late result reaches the scheduler first
        return "on time"

    run = wf.run()
    assert run.wait(timeout=30) == "succeeded"
    assert flag("late returned").is_set()
    assert run.output("slow") == "on time"
    assert run.instance("slow").attempts == 2
    (timed_out,) = events(run, "timed_out")
    assert timed_out.data == {"attempt": 1, "timeout": 0.5}
    (retrying,) = events(run, "retrying")
    assert "timed out after 0.5 s" in retrying.data["error"]
    assert [e.data["attempt"] for e in events(run, "succeeded", "slow")] == [2]


def test_time_paused_at_a_breakpoint_does_not_count_against_the_timeout(db_url: str) -> None:
    wf = nbflow.Workflow("pause_timeout", store=db_url)

    @wf.step(timeout=1.5)
    def quick():
        time.sleep(0.05)
        return "done"

    run = wf.run(breakpoints=["quick"])
    assert run.wait(timeout=30) == "paused"
    time.sleep(2.0)  # held longer than the timeout
    assert run.instance("quick").status == "paused"
    run.resume("quick")
    assert run.wait(timeout=30) == "succeeded"
    assert run.output("quick") == "done" and run.instance("quick").attempts == 1
    assert events(run, "timed_out") == []


def test_a_run_past_its_deadline_fails_and_cancels_what_is_unfinished(db_url: str) -> None:
    wf = nbflow.Workflow("deadline", store=db_url)

    @wf.step
    def first():
        return 1

    @wf.step
    def long(first):
        flag("release").wait(20)
        return first

    @wf.step
    def after(long):
        return long

    run = wf.run(deadline=2.0)  # time enough for first to finish on a loaded machine
    try:
        assert finish(run) == "failed"
    finally:
        flag("release").set()
    statuses = {v.step: v.status for v in run.instances()}
    assert statuses == {"first": "succeeded", "long": "cancelled", "after": "cancelled"}
    (exceeded,) = events(run, "deadline_exceeded")
    (created,) = events(run, "run_created")
    assert 2.0 <= exceeded.data["deadline"] - created.ts < 3.5  # stored as the time it falls due
    assert exceeded.data["deadline"] <= exceeded.ts
    assert events(run, "run_failed")


# ---------------------------------------------------------------------------------- poison items
def test_seventeen_poison_items_of_1000_are_dead_lettered_and_the_run_succeeds(db_url: str) -> None:
    poison = set(range(7, 1000, 59))
    assert len(poison) == 17
    wf = nbflow.Workflow("poison", store=db_url)

    @wf.step
    def load():
        return [{"id": i, "bad": i in poison} for i in range(1000)]

    @wf.foreach("load", key=lambda item: item["id"], on_item_error="continue", retries=1, backoff=0.01)
    def work(item):
        if item["bad"]:
            raise ValueError(f"poison item {item['id']}")
        return item["id"]

    @wf.step
    def report(work):
        return {"count": len(work), "ids": work}

    run = wf.run()
    assert run.wait(timeout=60) == "succeeded"
    received = run.output("report")
    assert received["count"] == 983 and received["ids"] == [i for i in range(1000) if i not in poison]
    letters = run.dead_letters("work")
    assert sorted(int(v.key) for v in letters) == sorted(poison)
    for v in letters:
        assert v.status == "failed" and v.attempts == 2
        assert v.inputs == {"item": {"id": int(v.key), "bad": True}}
        assert v.error is not None and v.error.type == "ValueError"
        assert v.error.message == f"poison item {v.key}"
    assert [v.key for v in run.dead_letters()] == [v.key for v in letters]


def test_a_dead_lettered_item_can_be_retried_or_skipped_while_the_run_is_alive(db_url: str) -> None:
    wf = nbflow.Workflow("dead_letter_ops", store=db_url)

    @wf.step
    def load():
        return list(range(6))

    @wf.foreach("load", on_item_error="continue")
    def work(item):
        if item in (2, 4) and not flag(f"fixed {item}").is_set():
            raise ValueError(f"poison {item}")
        return item * 10

    @wf.step
    def total(work):
        return work

    # the condition reads work's output, so the downstream sees it before the operator acts
    run = wf.run(breakpoints=[nbflow.Breakpoint("total", condition="len(work) > 0")])
    assert run.wait(timeout=30) == "paused"
    assert [v.key for v in run.dead_letters("work")] == [2, 4]
    flag("fixed 2").set()
    run.retry("work", key=2, reason="fixed upstream")
    run.skip("work", key=4, output=-1, reason="known bad")
    assert run.wait(timeout=30) == "paused"
    assert run.dead_letters("work") == []
    assert run.instance("work", 2).status == "succeeded" and run.instance("work", 4).status == "skipped"
    run.resume("total")
    assert run.wait(timeout=30) == "succeeded"
    assert run.output("total") == [0, 10, 20, 30, -1, 50]


def test_max_parallel_bounds_a_foreach_concurrency(db_url: str) -> None:
    wf = nbflow.Workflow("max_parallel", store=db_url)

    @wf.step
    def load():
        return list(range(12))

    @wf.foreach("load", max_parallel=3)
    def work(item):
        enter()
        time.sleep(0.05)
        leave()
        return item

    run = wf.run(max_workers=8)
    assert run.wait(timeout=30) == "succeeded"
    assert run.output("work") == list(range(12))
    assert _state["peak"] == 3


# ---------------------------------------------------------------------------------- approval gates
def gated(db_url: str, name: str, **gate: Any) -> nbflow.Workflow:
    """prepare -> gate (approval) -> ship(gate)."""
    wf = nbflow.Workflow(name, store=db_url)

    @wf.step
    def prepare():
        return "artifact"

    wf.approval("gate", after=["prepare"], **gate)

    @wf.step
    def ship(gate, prepare):
        return {"shipped": prepare, "decision": gate}

    return wf


def test_approve_with_comment_and_payload_makes_the_payload_the_gates_output(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NBFLOW_ACTOR", "ana")
    run = gated(db_url, "approve_py").run()
    assert run.wait(timeout=30) == "paused"
    gate = run.instance("gate")
    assert (gate.status, gate.pause_reason) == ("waiting", "approval")
    run.approve("gate", comment="looks good", payload={"region": "eu"})
    assert run.wait(timeout=30) == "succeeded"
    assert run.output("gate") == {"region": "eu"}
    assert run.output("ship") == {"shipped": "artifact", "decision": {"region": "eu"}}
    (approved,) = events(run, "approved")
    assert approved.actor == "ana"
    assert approved.data == {"comment": "looks good", "payload": {"region": "eu"}}


def test_reject_fails_the_gate_and_cancels_downstream(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NBFLOW_ACTOR", "bo")
    run = gated(db_url, "reject_py").run()
    assert run.wait(timeout=30) == "paused"
    run.reject("gate", comment="not today")
    assert run.wait(timeout=30) == "failed"
    gate = run.instance("gate")
    assert gate.status == "failed" and gate.error is not None
    assert (gate.error.type, gate.error.message) == ("Rejected", "rejected by bo: not today")
    assert run.instance("ship").status == "cancelled"
    (rejected,) = events(run, "rejected")
    assert rejected.actor == "bo" and rejected.data["comment"] == "not today"


def test_approve_from_a_cli_subprocess_while_the_owner_is_alive(db_url: str) -> None:
    run = gated(db_url, "approve_cli").run()
    assert run.wait(timeout=30) == "paused"
    res = cli(db_url, "approve", run.id, "gate", "--comment", "ship it", "--payload", '{"go": true}', "--force",
              actor="ops-bot")
    assert res.returncode == 0, res.stderr
    assert "approve gate: approved gate" in res.stdout
    assert finish(run) == "succeeded"
    assert run.output("ship") == {"shipped": "artifact", "decision": {"go": True}}
    (approved,) = events(run, "approved")
    assert approved.actor == "ops-bot" and approved.data == {"comment": "ship it", "payload": {"go": True}}
    (cmd,) = events(run, "command")
    assert cmd.actor == "ops-bot" and cmd.data["verb"] == "approve" and cmd.data["result"] == "ok"


def test_cli_reject_and_refusals(db_url: str) -> None:
    run = gated(db_url, "reject_cli").run()
    assert run.wait(timeout=30) == "paused"
    res = cli(db_url, "approve", run.id, "gate")
    assert res.returncode == 1 and "--force" in res.stderr
    res = cli(db_url, "approve", run.id, "prepare", "--force")
    assert res.returncode == 1 and "not an approval gate" in res.stderr and "gates of this run: gate" in res.stderr
    assert command_count(db_url) == 0
    res = cli(db_url, "reject", run.id, "gate", "--comment", "bad artifact", "--force", "-o", "json", actor="cy")
    assert res.returncode == 0, res.stderr
    (sent,) = json.loads(res.stdout)["commands"]
    assert (sent["verb"], sent["step"], sent["state"]) == ("reject", "gate", "applied")
    assert finish(run) == "failed"
    assert run.instance("ship").status == "cancelled"
    (rejected,) = events(run, "rejected")
    assert rejected.actor == "cy" and rejected.data["comment"] == "bad artifact"


@pytest.mark.parametrize("on_timeout", ["approve", "reject"])
def test_a_gate_that_times_out_decides_by_on_timeout(db_url: str, on_timeout: str) -> None:
    run = gated(db_url, f"gate_timeout_{on_timeout}", timeout=0.3, on_timeout=on_timeout).run()
    assert finish(run) == ("succeeded" if on_timeout == "approve" else "failed")
    if on_timeout == "approve":
        (approved,) = events(run, "approved")
        assert approved.actor == "timeout" and "no decision within 0.3 s" in approved.data["comment"]
        assert run.output("ship")["decision"]["approved"] is True
    else:
        gate = run.instance("gate")
        assert gate.status == "failed" and gate.error is not None and gate.error.type == "TimeoutError"
        assert "no decision" in gate.error.message
        assert events(run, "timed_out", "gate")
        assert run.instance("ship").status == "cancelled"


# ---------------------------------------------------------------------------------- signals
def hooked(db_url: str, name: str, timeout: float = 120, hold: bool = True) -> nbflow.Run:
    """prepare -> hook (wf.wait) -> use(hook), with use held by a breakpoint (the run stays alive)."""
    wf = nbflow.Workflow(name, store=db_url)

    @wf.step
    def prepare():
        return 1

    wf.wait("hook", after=["prepare"], timeout=timeout)

    @wf.step
    def use(hook):
        return {"got": hook}

    run = wf.run(breakpoints=["use"] if hold else ())
    assert run.wait(timeout=30) == "paused"
    return run


def test_a_signal_from_another_process_becomes_the_wait_steps_output(db_url: str) -> None:
    run = hooked(db_url, "signal_cli", hold=False)
    hook = run.instance("hook")
    assert (hook.status, hook.pause_reason) == ("waiting", "signal: hook")
    assert hook.token and hook.deadline is not None
    (waiting,) = events(run, "waiting", "hook")
    assert waiting.data["token"] == hook.token
    res = cli(db_url, "signal", hook.token, "--payload", '{"a": 1}', actor="webhook")
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith(f"delivered to hook of run {run.id}")
    assert finish(run) == "succeeded"
    assert run.output("hook") == {"a": 1} and run.output("use") == {"got": {"a": 1}}
    (received,) = events(run, "signal_received")
    assert received.actor == "webhook" and received.data == {"name": "hook", "payload": {"a": 1}}


def test_a_forged_token_is_refused_and_nothing_is_written(db_url: str) -> None:
    run = hooked(db_url, "forged")
    token = run.instance("hook").token
    assert token is not None
    forged = make_token(b"not the store secret", run.id, "hook", -1, "hook")
    before = len(run.history())
    res = cli(db_url, "signal", forged, "--payload", '{"a": 1}')
    assert res.returncode == 1
    assert "not valid for this store" in res.stderr and "Traceback" not in res.stderr
    assert res.stdout == ""
    for bad in (forged, token[:-4] + "AAAA", "garbage"):
        with pytest.raises(nbflow.SignalRefused, match="nothing was delivered"):
            nbflow.signal(bad, {"a": 1}, store=db_url)
    assert command_count(db_url) == 0
    assert len(run.history()) == before
    assert run.instance("hook").status == "waiting"


def test_a_duplicate_delivery_is_recorded_and_ignored(db_url: str) -> None:
    run = hooked(db_url, "duplicate")
    token = run.instance("hook").token
    first = nbflow.signal(token, {"n": 1}, store=db_url)
    assert first.message == "delivered"
    res = cli(db_url, "signal", token, "--payload", '{"n": 2}', "-o", "json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert (out["run"], out["step"], out["name"], out["state"]) == (run.id, "hook", "hook", "duplicate")
    assert run.wait(timeout=30) == "paused"
    assert run.instance("hook").output == {"n": 1}
    assert len(events(run, "signal_duplicate")) == 1
    run.resume("use")
    assert run.wait(timeout=30) == "succeeded"
    # after the run finished, a repeated delivery is still a duplicate, not an error
    res = cli(db_url, "signal", token, "--payload", '{"n": 3}')
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("duplicate:")
    assert run.output("use") == {"got": {"n": 1}}
    assert len(events(run, "signal_duplicate")) == 2


@pytest.mark.parametrize("run_alive", [True, False], ids=["run-alive", "run-finished"])
def test_a_delivery_after_the_waits_timeout_is_refused_and_recorded(db_url: str, run_alive: bool) -> None:
    wf = nbflow.Workflow(f"late_{run_alive}", store=db_url)

    @wf.step
    def side():
        return "held"

    wf.wait("hook", timeout=0.3)

    @wf.step
    def use(hook):
        return hook

    run = wf.run(breakpoints=["side"] if run_alive else ())
    assert poll(lambda: run.instance("hook").status == "failed")
    token = run.instance("hook").token
    if not run_alive:
        assert finish(run) == "failed"
    res = cli(db_url, "signal", token, "--payload", '"late"')
    assert res.returncode == 1
    assert "the wait of hook for signal 'hook' timed out; the delivery was recorded and refused" in res.stderr
    (refused,) = events(run, "signal_refused")
    assert refused.data == {"name": "hook", "reason": "timed out"}
    with pytest.raises(nbflow.SignalRefused, match="timed out"):
        nbflow.signal(token, "late", store=db_url)
    assert run.instance("hook").output is None
    assert run.instance("use").status in ("pending", "cancelled")


def test_wait_for_signal_suspends_the_step_without_holding_a_worker(db_url: str) -> None:
    wf = nbflow.Workflow("wait_in_step", store=db_url)

    @wf.step
    def poller(ctx):
        record("tokens", ctx.signal_token("job-done"))
        result = ctx.wait_for_signal("job-done", timeout=120)
        return {"result": result, "attempt": ctx.attempt}

    @wf.step
    def other():
        return "ran meanwhile"

    run = wf.run(max_workers=1)
    assert run.wait(timeout=30) == "paused"
    view = run.instance("poller")
    assert (view.status, view.pause_reason) == ("waiting", "signal: job-done")
    assert run.output("other") == "ran meanwhile"  # the only worker was free
    assert view.token == _state["tokens"][0]
    res = nbflow.signal(view.token, {"rows": 42}, store=db_url)
    assert res.message == "delivered"
    assert run.wait(timeout=30) == "succeeded"
    assert run.output("poller") == {"result": {"rows": 42}, "attempt": 1}
    assert len(_state["tokens"]) == 2  # suspended once, then called again with the payload
    assert _state["tokens"][1] == view.token  # the same token on every attempt


WAIT_SCRIPT = '''
import json
import os
import sys
import time

import nbflow

wf = nbflow.Workflow("survivor")  # the store: NBFLOW_DB


@wf.step
def prepare():
    return 2


wf.wait("hook", after=["prepare"], timeout=float(os.environ.get("WAIT_TIMEOUT", "300")))


@wf.step
def use(prepare, hook):
    return {"factor": prepare, "got": hook}


if __name__ == "__main__":
    if sys.argv[1] == "start":
        run = wf.run()
        print(run.id, run.wait(60), run.instance("hook").token, flush=True)
        time.sleep(300)  # the owner stays alive until it is killed
    else:
        run = wf.attach(sys.argv[2])
        status = run.wait(60)
        print(status, json.dumps(run.output("use") if status == "succeeded" else None), flush=True)
'''


def start_and_kill(script: Path, **env: str) -> tuple[str, str]:
    """Start the wait workflow in its own process, then SIGKILL it once it waits: (run id, token)."""
    owner = subprocess.Popen([sys.executable, str(script), "start"], stdout=subprocess.PIPE, text=True,
                             env={**os.environ, **env})
    try:
        timer = threading.Timer(60, owner.kill)
        timer.start()
        line = owner.stdout.readline() if owner.stdout else ""
        timer.cancel()
        run_id, status, token = line.split()
        assert status == "paused"
    finally:
        owner.send_signal(os_signal.SIGKILL)
        owner.wait(30)
        if owner.stdout:
            owner.stdout.close()
    return run_id, token


def test_a_wait_outlives_a_kill_of_its_owner_and_completes_after_attach(db_url: str, tmp_path: Path) -> None:
    script = tmp_path / "survivor_wf.py"
    script.write_text(WAIT_SCRIPT)
    run_id, token = start_and_kill(script)
    run = reader(db_url, run_id)
    assert run.interrupted and run.instance("hook").status == "waiting"
    res = cli(db_url, "signal", token, "--payload", '{"a": 1}')
    assert res.returncode == 0, res.stderr
    assert "queued" in res.stdout and f"nbflow resume {run_id}" in res.stdout
    assert run.instance("hook").status == "waiting"
    attach = subprocess.run([sys.executable, str(script), "attach", run_id], capture_output=True, text=True,
                            timeout=120, check=False)
    assert attach.returncode == 0, attach.stderr
    status, output = attach.stdout.split(" ", 1)
    assert status == "succeeded"
    assert json.loads(output) == {"factor": 2, "got": {"a": 1}}
    assert run.status == "succeeded" and run.output("hook") == {"a": 1}
    assert [e.data["payload"] for e in events(run, "signal_received")] == [{"a": 1}]


def test_a_signal_sent_after_the_deadline_while_the_owner_was_gone_is_refused_on_attach(
    db_url: str, tmp_path: Path
) -> None:
    script = tmp_path / "survivor_wf.py"
    script.write_text(WAIT_SCRIPT)
    run_id, token = start_and_kill(script, WAIT_TIMEOUT="2")
    run = reader(db_url, run_id)
    hook = run.instance("hook")
    assert hook.status == "waiting" and hook.deadline is not None  # its owner died before the deadline
    assert poll(lambda: time.time() > hook.deadline + 0.05, timeout=10)
    res = cli(db_url, "signal", token, "--payload", '"too late"')
    assert res.returncode == 0 and "queued" in res.stdout  # no owner to judge it yet
    attach = subprocess.run([sys.executable, str(script), "attach", run_id], capture_output=True, text=True,
                            timeout=120, check=False)
    assert attach.returncode == 0, attach.stderr
    assert attach.stdout.split() == ["failed", "null"]
    assert run.instance("hook").error is not None and run.instance("hook").error.type == "TimeoutError"
    (refused,) = events(run, "signal_refused")
    assert refused.data == {"name": "hook", "reason": "timed out"}
    assert events(run, "signal_received") == []


GATE_SCRIPT = '''
import nbflow

wf = nbflow.Workflow("batch_gate")  # the store: NBFLOW_DB


@wf.step
def prepare():
    return "artifact"


wf.approval("gate", after=["prepare"])


@wf.step
def ship(gate, prepare):
    return {"shipped": prepare, "decision": gate}


if __name__ == "__main__":
    run = wf.run()
    print(run.id, run.wait(60))
'''


def test_cli_approve_of_a_run_whose_owner_is_gone_is_queued_until_resume(db_url: str, tmp_path: Path) -> None:
    script = tmp_path / "batch_gate.py"
    script.write_text(GATE_SCRIPT)
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    run_id, status = proc.stdout.split()
    assert status == "paused"
    res = cli(db_url, "approve", run_id, "gate", "--payload", '"v2"', "--comment", "after review", "--force",
              actor="lead")
    assert res.returncode == 0, res.stderr
    assert "queued" in res.stdout
    run = reader(db_url, run_id)
    assert run.instance("gate").status == "waiting"
    res = cli(db_url, "resume", run_id, "--force")
    assert res.returncode == 0, res.stderr
    assert run.status == "succeeded"
    assert run.output("ship") == {"shipped": "artifact", "decision": "v2"}
    (approved,) = events(run, "approved")
    assert approved.actor == "lead" and approved.data["comment"] == "after review"


# ---------------------------------------------------------------------------------- CLI: dead letters
def test_cli_dead_letters_lists_items_with_their_inputs_and_errors(db_url: str) -> None:
    wf = nbflow.Workflow("dead_cli", store=db_url)

    @wf.step
    def load():
        return [{"sku": f"A{i}", "qty": i} for i in range(8)]

    @wf.foreach("load", key=lambda item: item["sku"], on_item_error="continue", retries=1, backoff=0.01)
    def price(item):
        if item["qty"] % 3 == 2:
            raise LookupError(f"no price for {item['sku']}")
        return item["qty"] * 2

    @wf.step
    def total(price):
        return sum(price)

    run = wf.run()
    assert run.wait(timeout=30) == "succeeded"
    res = cli(db_url, "dead-letters", run.id, "price", "-o", "json")
    assert res.returncode == 0, res.stderr
    letters = json.loads(res.stdout)
    assert [(d["step"], d["key"], d["attempts"]) for d in letters] == [("price", "A2", 2), ("price", "A5", 2)]
    assert letters[0]["inputs"] == {"item": {"sku": "A2", "qty": 2}}
    assert letters[0]["error"]["type"] == "LookupError" and letters[0]["error"]["message"] == "no price for A2"
    text = cli(db_url, "dead-letters", run.id)
    assert text.returncode == 0, text.stderr
    for word in ("A2", "A5", "LookupError: no price for A5", '"qty": 5'):
        assert word in text.stdout
    res = cli(db_url, "dead-letters", run.id, "nostep")
    assert res.returncode == 1 and "no step 'nostep'" in res.stderr
    res = cli(db_url, "dead-letters", run.id, "total")
    assert res.returncode == 0 and "does not dead-letter" in res.stdout


def test_help_lists_the_long_running_verbs() -> None:
    res = subprocess.run([sys.executable, "-m", "nbflow", "--help"], capture_output=True, text=True, timeout=60,
                         check=False)
    assert res.returncode == 0
    for verb in ("approve", "reject", "signal", "dead-letters"):
        assert verb in res.stdout


# ---------------------------------------------------------------------------------- idempotency
class _Payments:
    """A stand-in for an external payment service whose first response for each charge is lost."""

    def __init__(self) -> None:
        self.charged: dict[str, float] = {}
        self.calls = 0

    def already_charged(self, key: str) -> bool:
        return key in self.charged

    def charge(self, amount: float, idempotency_key: str) -> None:
        self.calls += 1
        self.charged[idempotency_key] = amount
        raise ConnectionError("the payment went through, but its response was lost")


def test_the_readme_idempotency_key_example_charges_once_across_attempts(db_url: str) -> None:
    """The example in docs/python.md (linked from the README)."""
    page = (ROOT / "docs" / "python.md").read_text()
    match = re.search(r"```python\n(@wf\.foreach\(\"orders\"\)\ndef charge\(item, ctx\):.*?)```", page, re.DOTALL)
    assert match, "docs/python.md's idempotency example is missing"
    wf = nbflow.Workflow("payments", store=db_url)

    @wf.step
    def orders():
        return [{"amount": 10}, {"amount": 20}, {"amount": 30}]

    payments = _Payments()
    namespace: dict[str, Any] = {"wf": wf, "payments": payments}
    exec(compile(match.group(1), "<docs/python.md example>", "exec"), namespace)  # noqa: S102 - the documented example

    run = wf.run(break_on_error=True)  # a lost response pauses the item instead of failing it
    assert run.wait(timeout=30) == "paused"
    assert len(run.instances("charge", status="paused")) == 3
    run.retry("charge")  # at-least-once: every item runs its body again
    assert run.wait(timeout=30) == "succeeded"
    assert run.output("charge") == ["charged"] * 3
    assert payments.calls == 3  # one charge per order, not per attempt
    assert sorted(payments.charged) == [f"{run.id}/charge/{k}" for k in ("0", "1", "2")]
    assert all(v.attempts == 2 for v in run.instances("charge"))


def test_a_signal_the_live_owner_refuses_is_recorded_once(db_url: str) -> None:
    """A wait that no longer waits (its gate was rejected) in a run still alive: the owner refuses the
    delivery and records it; nothing else writes a second record for it."""
    wf = nbflow.Workflow("refused_signal", db_url)
    wf.approval("gate")

    @wf.step
    def other():
        return 1

    run = wf.run(breakpoints=["other"])
    assert run.wait(timeout=30) == "paused"
    run.reject("gate", comment="no")
    assert run.wait(timeout=30) == "paused"  # `other` still holds the run open
    token = run.instance("gate").token
    before = command_count(db_url)

    with pytest.raises(nbflow.SignalRefused, match="no longer waits"):
        nbflow.signal(token, {"late": True}, store=db_url)

    assert command_count(db_url) == before + 1
    assert run.status == "paused"
    assert [e.data.get("reason") for e in events(run, "signal_refused")] == ["failed"]
