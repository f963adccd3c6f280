"""The step context (ids, attempt, idempotency key, logger, checkpoints) and per-instance
capture of stdout, stderr and logging."""
from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from nbflow import StepContext, Workflow

TIMEOUT = 60

_gate = threading.Event()  # module level: a run pins its code with cloudpickle, which cannot pickle an Event


def gate_wait() -> bool:
    return _gate.wait(timeout=TIMEOUT)


@pytest.fixture(autouse=True)
def _reset_gate() -> None:
    _gate.clear()


def describe(ctx: StepContext) -> dict[str, Any]:
    return {
        "run_id": ctx.run_id, "step": ctx.step, "key": ctx.key, "item_index": ctx.item_index,
        "attempt": ctx.attempt, "idempotency_key": ctx.idempotency_key,
        "log": type(ctx.log).__name__ if isinstance(ctx.log, logging.Logger) else None,
    }


def test_ctx_describes_a_task_instance(db_url: str) -> None:
    wf = Workflow("ctx-task", db_url)

    @wf.step
    def whoami(ctx: StepContext) -> dict[str, Any]:
        return describe(ctx)

    run = wf.run()
    assert run.wait(timeout=TIMEOUT) == "succeeded"
    seen = run.output("whoami")
    assert seen["run_id"] == run.id
    assert (seen["step"], seen["key"], seen["item_index"], seen["attempt"]) == ("whoami", None, None, 1)
    assert seen["log"] == "Logger"
    assert seen["idempotency_key"] and run.id in seen["idempotency_key"]


def test_ctx_describes_foreach_instances_by_key_and_index(db_url: str) -> None:
    wf = Workflow("ctx-foreach", db_url)

    @wf.step
    def users() -> list[dict[str, str]]:
        return [{"name": "ada"}, {"name": "bob"}, {"name": "cy"}]

    @wf.foreach("users", key=lambda u: u["name"])
    def greet(item: dict[str, str], ctx: StepContext) -> dict[str, Any]:
        return describe(ctx)

    run = wf.run()
    assert run.wait(timeout=TIMEOUT) == "succeeded"
    seen = run.output("greet")
    assert [(s["step"], s["key"], s["item_index"], s["attempt"]) for s in seen] == [
        ("greet", "ada", 0, 1), ("greet", "bob", 1, 1), ("greet", "cy", 2, 1),
    ]
    assert {s["run_id"] for s in seen} == {run.id}
    assert len({s["idempotency_key"] for s in seen}) == 3  # one per run x step x key


def test_idempotency_key_is_stable_across_attempts_and_differs_between_runs(db_url: str) -> None:
    wf = Workflow("ctx-idem", db_url)
    keys: list[tuple[int, str]] = []

    @wf.step(retries=2, backoff=0)
    def charge(ctx: StepContext) -> str:
        keys.append((ctx.attempt, ctx.idempotency_key))
        if ctx.attempt < 3:
            raise TimeoutError("payment gateway timed out")
        return ctx.idempotency_key

    first = wf.run()
    assert first.wait(timeout=TIMEOUT) == "succeeded"
    assert [a for a, _ in keys] == [1, 2, 3]
    assert len({k for _, k in keys}) == 1
    second = wf.run()
    assert second.wait(timeout=TIMEOUT) == "succeeded"
    assert second.output("charge") != first.output("charge")


def test_checkpoint_is_seen_as_saved_by_the_next_attempt(db_url: str) -> None:
    wf = Workflow("ctx-checkpoint", db_url)
    saved_seen: list[Any] = []

    @wf.step(retries=1, backoff=0)
    def long_job(ctx: StepContext) -> dict[str, Any]:
        saved_seen.append(ctx.saved)
        if ctx.saved is None:
            ctx.checkpoint({"done": 5, "of": 10})
            assert ctx.saved == {"done": 5, "of": 10}
            raise RuntimeError("crashed half way")
        return {"resumed_from": ctx.saved["done"], "attempt": ctx.attempt}

    run = wf.run()
    assert run.wait(timeout=TIMEOUT) == "succeeded"
    assert saved_seen == [None, {"done": 5, "of": 10}]
    assert run.output("long_job") == {"resumed_from": 5, "attempt": 2}
    [view] = run.instances("long_job")
    assert view.attempts == 2
    assert view.saved == {"done": 5, "of": 10}
    assert "checkpoint" in [e.kind for e in run.history() if e.step == "long_job"]


def test_checkpoint_is_durable_when_it_returns(db_url: str) -> None:
    """Another reader of the store sees the saved value while the step is still running."""
    wf = Workflow("ctx-durable", db_url)

    @wf.step
    def slow(ctx: StepContext) -> str:
        ctx.checkpoint([1, 2, 3])
        gate_wait()
        return "done"

    run = wf.run()
    try:
        deadline = time.monotonic() + TIMEOUT
        while run.instances("slow")[0].saved is None and time.monotonic() < deadline:
            time.sleep(0.02)
        [view] = run.instances("slow")
        assert (view.status, view.saved) == ("running", [1, 2, 3])
    finally:
        _gate.set()
    assert run.wait(timeout=TIMEOUT) == "succeeded"


def test_step_output_and_logging_are_captured_per_instance(db_url: str) -> None:
    wf = Workflow("ctx-logs", db_url)

    @wf.step
    def names() -> list[str]:
        return ["left", "right"]

    @wf.foreach("names", key=lambda n: n)
    def chatty(item: str, ctx: StepContext) -> str:
        print(f"stdout from {item}")
        sys.stderr.write(f"stderr from {item}\n")
        ctx.log.info("ctx.log from %s", item)
        logging.getLogger("x").warning("library warning from %s", item)
        return item

    run = wf.run()
    assert run.wait(timeout=TIMEOUT) == "succeeded"
    for mine, other in (("left", "right"), ("right", "left")):
        logs = run.instance("chatty", key=mine).logs
        for line in (f"stdout from {mine}", f"stderr from {mine}", f"ctx.log from {mine}",
                     f"library warning from {mine}"):
            assert line in logs
        assert other not in logs
        assert "INFO" in logs and "WARNING" in logs
    assert run.instances("names")[0].logs == ""


def test_prints_from_parallel_instances_do_not_mix(db_url: str) -> None:
    wf = Workflow("ctx-parallel", db_url)

    @wf.step
    def workers() -> list[int]:
        return list(range(6))

    @wf.foreach("workers")
    def noisy(item: int) -> int:
        for i in range(15):
            print(f"worker {item} line {i}")
            time.sleep(0.001)
        return item

    run = wf.run(max_workers=6)
    assert run.wait(timeout=TIMEOUT) == "succeeded"
    for item in range(6):
        logs = run.instance("noisy", key=item).logs
        assert logs.splitlines() == [f"worker {item} line {i}" for i in range(15)]


def test_output_printed_outside_steps_is_not_captured(db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    wf = Workflow("ctx-outside", db_url)

    @wf.step
    def inside() -> bool:
        print("printed inside the step")
        return gate_wait()

    run = wf.run()
    try:
        deadline = time.monotonic() + TIMEOUT
        while run.instances("inside")[0].status != "running" and time.monotonic() < deadline:
            time.sleep(0.02)
        print("printed by the notebook cell")
        logging.getLogger("x").warning("logged by the notebook cell")
    finally:
        _gate.set()
    assert run.wait(timeout=TIMEOUT) == "succeeded"
    out = capsys.readouterr()
    assert "printed by the notebook cell" in out.out
    assert "printed inside the step" not in out.out
    logs = run.instances("inside")[0].logs
    assert "printed inside the step" in logs
    assert "notebook cell" not in logs


def test_a_program_without_logging_setup_still_sees_its_warnings_after_a_run(tmp_path: Path) -> None:
    """With no handler configured, Python prints WARNING and above to stderr; nbflow's capture must
    not take that away from the rest of the program (a warning inside a step stays with the step)."""
    script = f"""
import logging
import nbflow

wf = nbflow.Workflow("quiet", store="sqlite:///{tmp_path}/n.db")

@wf.step
def step():
    logging.getLogger("lib").warning("warned inside the step")
    return 1

logging.getLogger("app").warning("warned before the run")
run = wf.run()
assert run.wait(60) == "succeeded"
logging.getLogger("app").warning("warned after the run")
logging.getLogger("app").info("an info line is not printed, as without nbflow")
print("step logs:", run.instance("step").logs)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    ours = [line for line in done.stderr.splitlines() if "warned" in line or "info line" in line]
    assert ours == ["warned before the run", "warned after the run"]
    assert "WARNING lib: warned inside the step" in done.stdout
