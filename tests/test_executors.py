"""Executors (issue 8): step bodies in worker processes or on a Dask cluster behave as on threads.

The core and breakpoint suites already run on every store x executor (``every_engine``); these
tests cover what only a remote executor can get wrong: logs and checkpoints coming back from a
worker, timeouts stopping the work, a worker dying, paused instances holding no cluster task,
and a run owned by a killed process continuing on the cluster it recorded.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from sidefx import Gate, Trail

import nbflow
from nbflow import ExecutorError, StepContext, Workflow

WAIT_S = 60
REMOTE = ["processes", "dask"]


@pytest.fixture(params=REMOTE)
def executor(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """A remote executor by name; the Dask one is the session's LocalCluster."""
    if request.param == "dask":
        monkeypatch.setenv("NBFLOW_DASK_ADDRESS", request.getfixturevalue("dask_address"))
    return str(request.param)


def test_the_run_records_its_executor(db_url: str, executor: str) -> None:
    wf = Workflow("recorded", db_url, executor=executor)

    @wf.step
    def pid() -> int:
        return os.getpid()

    run = wf.run()
    assert run.wait(timeout=WAIT_S) == "succeeded"
    assert run.output("pid") != os.getpid()  # the body ran in another process
    shown = subprocess.run([sys.executable, "-m", "nbflow", "--db", db_url, "show", run.id, "-o", "json"],
                           capture_output=True, text=True, check=True).stdout
    import json

    recorded = json.loads(shown)["executor"]
    assert recorded == "processes" if executor == "processes" else recorded["dask"].startswith("tcp://")


def test_worker_output_and_log_records_come_back_with_the_instance(db_url: str, executor: str) -> None:
    wf = Workflow("chatty", db_url, executor=executor)

    @wf.step
    def items(n: int) -> list[int]:
        return list(range(n))

    @wf.foreach("items")
    def shout(item: int, ctx: StepContext) -> int:
        print(f"printing {item}")
        print(f"warning {item}", file=sys.stderr)
        ctx.log.info("logged %s", item)
        return item

    run = wf.run(params={"n": 3})
    assert run.wait(timeout=WAIT_S) == "succeeded"
    logs = run.instance("shout", 2).logs
    assert "printing 2" in logs and "warning 2" in logs and "logged 2" in logs
    assert "printing 1" not in logs


def test_a_checkpoint_made_on_a_worker_is_saved_for_the_next_attempt(db_url: str, executor: str) -> None:
    wf = Workflow("resumable", db_url, executor=executor)

    @wf.step(retries=1, backoff=0)
    def crunch(ctx: StepContext) -> dict:
        if ctx.attempt == 1:
            ctx.checkpoint({"done": 500})
            raise RuntimeError("worker hiccup after the checkpoint")
        return {"resumed_from": ctx.saved["done"], "attempt": ctx.attempt}

    run = wf.run()
    assert run.wait(timeout=WAIT_S) == "succeeded"
    assert run.output("crunch") == {"resumed_from": 500, "attempt": 2}
    assert [e.kind for e in run.history() if e.kind == "checkpoint"] == ["checkpoint"]


def test_a_step_error_from_a_worker_keeps_its_type_for_retry_on(db_url: str, executor: str) -> None:
    wf = Workflow("typed", db_url, executor=executor)

    @wf.step(retries=3, backoff=0, retry_on=(ConnectionError,))
    def fetch(ctx: StepContext) -> str:
        raise KeyError(f"not retried (attempt {ctx.attempt})")

    run = wf.run()
    assert run.wait(timeout=WAIT_S) == "failed"
    view = run.instance("fetch")
    assert (view.attempts, view.error.type, view.error.message) == (1, "KeyError", "'not retried (attempt 1)'")
    assert "raise KeyError" in view.error.traceback


def test_a_timed_out_attempt_is_retried_and_its_late_result_ignored(db_url: str, executor: str, tmp_path: Path) -> None:
    wf = Workflow("slowpoke", db_url, executor=executor)
    attempts = Trail(str(tmp_path / "attempts"))

    @wf.step(timeout=2.5, retries=1, backoff=0)  # attempt 2 must come back within it, from Dask too
    def slow(ctx: StepContext) -> int:
        attempts.add(ctx.attempt)
        if ctx.attempt == 1:
            time.sleep(8)
        return ctx.attempt

    run = wf.run()
    assert run.wait(timeout=WAIT_S) == "succeeded"
    assert run.output("slow") == 2
    assert [e.kind for e in run.history() if e.kind == "timed_out"] == ["timed_out"]
    assert attempts.items() == [1, 2]


def test_a_timed_out_attempt_on_a_process_is_stopped(db_url: str, tmp_path: Path) -> None:
    wf = Workflow("stuck", db_url, executor="processes")
    pids = Trail(str(tmp_path / "pids"))

    @wf.step(timeout=1.0)
    def stuck() -> None:
        pids.add(os.getpid())
        time.sleep(60)

    run = wf.run()
    assert run.wait(timeout=WAIT_S) == "failed"
    assert run.instance("stuck").error.type == "StepTimeout"
    [pid] = pids.items()
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pid), "the worker process running the timed-out attempt was not stopped"


def test_a_worker_process_that_dies_fails_the_attempt_and_is_replaced(db_url: str) -> None:
    wf = Workflow("fragile", db_url, executor="processes")

    @wf.step(retries=1, backoff=0)
    def fragile(ctx: StepContext) -> int:
        if ctx.attempt == 1:
            os._exit(7)  # a segfault or the OOM killer, as the owner sees it
        return ctx.attempt

    run = wf.run()
    assert run.wait(timeout=WAIT_S) == "succeeded"
    assert run.output("fragile") == 2
    [retry] = [e for e in run.history() if e.kind == "retrying"]
    assert "worker process running the step 'fragile' died (exit code 7)" in retry.data["error"]


def test_a_signal_wait_on_a_worker_holds_nothing_and_reruns_with_the_payload(db_url: str, executor: str) -> None:
    wf = Workflow("callback", db_url, executor=executor)

    @wf.step
    def job(ctx: StepContext) -> str:
        return f"paid {ctx.wait_for_signal('payment')['amount']}"

    run = wf.run()
    assert run.wait(timeout=WAIT_S) == "paused"
    view = run.instance("job")
    assert (view.status, view.pause_reason) == ("waiting", "signal: payment")
    nbflow.signal(view.token, {"amount": 12}, store=db_url)
    assert run.wait(timeout=WAIT_S) == "succeeded"
    assert run.output("job") == "paid 12"


def test_paused_instances_hold_no_dask_task(db_url: str, dask_address: str) -> None:
    from distributed import Client

    wf = Workflow("held", db_url, executor=nbflow.DaskExecutor(dask_address))

    @wf.step
    def items(n: int) -> list[int]:
        return list(range(n))

    @wf.foreach("items")
    def work(item: int) -> int:
        return item

    run = wf.run(params={"n": 50}, breakpoints=["work"])
    assert run.wait(timeout=WAIT_S) == "paused"
    assert len(run.instances("work", status="paused")) == 50
    with Client(dask_address, set_as_default=False) as client:
        keys = client.run_on_scheduler(lambda dask_scheduler: [str(k) for k in dask_scheduler.tasks])
    assert [k for k in keys if f"{run.id[:6]}-work-" in k] == []
    run.resume("work")
    assert run.wait(timeout=WAIT_S) == "succeeded"
    assert run.output("work") == list(range(50))


def test_an_unknown_executor_is_refused_by_name(db_url: str) -> None:
    with pytest.raises(ExecutorError, match=r"unknown executor 'gpu'.*threads.*processes.*dask"):
        Workflow("bad", db_url, executor="gpu")


def test_dask_without_an_address_says_how_to_give_one(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NBFLOW_DASK_ADDRESS", raising=False)
    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS", raising=False)
    wf = Workflow("nowhere", db_url, executor="dask")

    @wf.step
    def one() -> int:
        return 1

    with pytest.raises(ExecutorError, match="NBFLOW_DASK_ADDRESS"):
        wf.run()
    assert nbflow.runs(db_url) == []


def test_an_unreachable_dask_scheduler_is_named(db_url: str) -> None:
    with pytest.raises(ExecutorError, match=r"cannot reach the Dask scheduler at tcp://127\.0\.0\.1:9"):
        nbflow.DaskExecutor("tcp://127.0.0.1:9")


# ------------------------------------------------------------------ kill the owner of a Dask run
_OWNER = textwrap.dedent(
    """
    import sys, time
    import nbflow
    from sidefx import Gate, Trail

    wf = nbflow.Workflow("on-dask", sys.argv[1], executor=nbflow.DaskExecutor(sys.argv[2]))
    done = Trail(sys.argv[3])
    late = Gate(sys.argv[4])

    @wf.step
    def items():
        return list(range(120))

    @wf.foreach("items")
    def work(item):
        time.sleep(0.02)
        if item >= 90:  # the last items wait until the owner was killed: the kill lands mid-run
            late.wait()
        done.add(item)
        return item * 2

    @wf.step
    def total(work):
        return sum(work)

    if __name__ == "__main__":
        run = wf.run()
        print(run.id, flush=True)
        run.wait()
    """
)


def test_killing_the_owner_of_a_dask_run_then_attaching_reruns_no_succeeded_instance(
    db_url: str, dask_address: str, tmp_path: Path
) -> None:
    script = tmp_path / "owner.py"
    script.write_text(_OWNER)
    trail = Trail(str(tmp_path / "done"))
    late = Gate(str(tmp_path / "late"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])}
    owner = subprocess.Popen([sys.executable, str(script), db_url, dask_address, trail.path, late.path],
                             stdout=subprocess.PIPE, text=True, env=env)
    assert owner.stdout is not None
    run_id = owner.stdout.readline().strip()
    deadline = time.monotonic() + WAIT_S
    while len(_succeeded_keys(db_url, run_id)) < 20 and time.monotonic() < deadline:
        time.sleep(0.02)
    owner.send_signal(signal.SIGKILL)
    owner.wait()
    late.open()

    before = _succeeded_keys(db_url, run_id)
    assert 20 <= len(before) <= 90, "the kill lands mid-run"

    run = nbflow.attach(run_id, store=db_url)  # takes over with the pinned code, on the recorded cluster
    assert run.wait(timeout=WAIT_S) == "succeeded"
    assert run.output("total") == sum(x * 2 for x in range(120))
    ran = [str(x) for x in trail.items()]
    reran = {k for k in before if ran.count(k) > 1}
    assert reran == set(), f"succeeded instances ran again after the takeover: {sorted(reran)}"
    assert set(ran) == {str(x) for x in range(120)}


def _succeeded_keys(db_url: str, run_id: str) -> set[str]:
    from nbflow.store import Store

    return {r["key"] for r in Store.open(db_url).instance_rows(run_id, status=["succeeded"]) if r["step"] == "work"}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


_PAUSES = textwrap.dedent(
    """
    import os, sys
    import nbflow

    wf = nbflow.Workflow("batchy", sys.argv[1])

    @wf.step
    def prepare():
        return os.getpid()

    @wf.step
    def crunch(prepare):
        return os.getpid()

    if __name__ == "__main__":
        run = wf.run(breakpoints=["crunch"])
        print(run.id, run.wait(), flush=True)  # paused: the process exits, the run stays in the store
    """
)


def test_cli_resume_can_move_a_run_to_another_executor(db_url: str, tmp_path: Path) -> None:
    import json

    script = tmp_path / "batchy.py"
    script.write_text(_PAUSES)
    out = subprocess.run([sys.executable, str(script), db_url], capture_output=True, text=True, check=True).stdout
    run_id, status = out.split()
    assert status == "paused"

    def nbflow_cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "nbflow", "--db", db_url, *args], capture_output=True, text=True,
                              check=False)

    bad = nbflow_cli("resume", run_id, "--force", "--executor", "gpu")
    assert bad.returncode == 2 and "use threads, processes, dask or tcp://HOST:PORT" in bad.stderr
    done = nbflow_cli("resume", run_id, "--force", "--executor", "processes", "-o", "json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "succeeded"
    shown = json.loads(nbflow_cli("show", run_id, "-o", "json").stdout)
    assert shown["executor"] == "processes"
    outputs = {i["step"]: i for i in shown["instances"]}
    assert outputs["crunch"]["status"] == "succeeded"
    from nbflow.store import Store

    store = Store.open(db_url)
    pids = {r["step"]: store.decode(r["output_codec"], r["output"]) for r in store.instance_rows(run_id)}
    assert pids["crunch"] != pids["prepare"]  # crunch ran in a worker process of the resuming CLI


class ApiError(Exception):
    """An exception whose __init__ takes two arguments: it pickles, but unpickles only by hand."""

    def __init__(self, code: int, body: str) -> None:
        super().__init__(f"{code}: {body}")
        self.code, self.body = code, body


def test_an_exception_that_cannot_travel_back_fails_the_attempt_with_its_text(db_url: str, executor: str) -> None:
    wf = Workflow("api", db_url, executor=executor)

    @wf.foreach("items")
    def call(item: int) -> int:
        if item == 0:
            raise ApiError(503, "busy")
        return item

    @wf.step
    def items() -> list[int]:
        return [0, 1, 2]

    run = wf.run()
    assert run.wait(timeout=WAIT_S) == "failed"
    view = run.instance("call", 0)
    assert (view.status, view.error.type, view.error.message) == ("failed", "test_executors.ApiError", "503: busy")
    assert [run.instance("call", k).status for k in (1, 2)] == ["succeeded", "succeeded"]


def test_a_timed_out_attempt_does_not_hold_up_the_attempts_queued_behind_it(db_url: str, tmp_path: Path) -> None:
    wf = Workflow("queued", db_url)
    release = Gate(str(tmp_path / "release"))

    @wf.step
    def items() -> list[int]:
        return [0, 1]

    @wf.foreach("items", timeout=0.5)
    def work(item: int) -> int:
        if item == 0:
            release.wait()  # stuck well past its timeout
        return item

    run = wf.run(max_workers=1)
    try:
        assert run.wait(timeout=WAIT_S) == "failed"
        assert (run.instance("work", 0).status, run.instance("work", 1).status) == ("failed", "succeeded")
    finally:
        release.open()


def test_cancelling_a_run_drops_attempts_that_had_not_started(db_url: str, tmp_path: Path) -> None:
    wf = Workflow("dropped", db_url)
    release, ran = Gate(str(tmp_path / "release")), Trail(str(tmp_path / "ran"))

    @wf.step
    def items() -> list[int]:
        return [0, 1]

    @wf.foreach("items")
    def work(item: int) -> int:
        ran.add(item)
        if item == 0:
            release.wait()
        return item

    run = wf.run(max_workers=1)
    deadline = time.monotonic() + WAIT_S
    while ran.items() != [0] and time.monotonic() < deadline:
        time.sleep(0.02)
    run.cancel(reason="wrong day")
    release.open()
    assert run.wait(timeout=WAIT_S) == "cancelled"
    time.sleep(0.3)  # give a wrongly kept task the time to run
    assert ran.items() == [0]


def test_a_timed_out_process_step_takes_the_processes_it_started_with_it(db_url: str, tmp_path: Path) -> None:
    wf = Workflow("spawner", db_url, executor="processes")
    pids = Trail(str(tmp_path / "pids"))

    @wf.step(timeout=1.0)
    def spawner() -> None:
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        pids.add(child.pid)
        time.sleep(60)

    run = wf.run()
    assert run.wait(timeout=WAIT_S) == "failed"
    [child] = pids.items()
    deadline = time.monotonic() + 10
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child), "a process started by the timed-out step outlived it"
