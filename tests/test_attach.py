"""Ownership: who may drive a run, taking over a run whose owner is gone, and pinned vs today's code.

Real subprocesses own the runs; the workflow lives in a module file under tmp_path that every
process imports, so "the same code" and "changed code" mean what they mean for a user.
"""
from __future__ import annotations

import importlib.util
import json
import os
import queue
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType

import pytest
from sidefx import Trail

import nbflow
from nbflow import Run, Store
from nbflow.engine.lifecycle import live, stop_all
from nbflow.run import resume_pinned

V1 = '''
import os
import time

import nbflow

wf = nbflow.Workflow("owned", store=os.environ["NBFLOW_DB"])


@wf.step
def load(n):
    return list(range(n))


@wf.foreach("load")
def square(item):
    return item * item


@wf.step
def total(square, gate):
    while not os.path.exists(gate):  # the test opens the gate by creating the file
        time.sleep(0.01)
    return sum(square)
'''
V2 = V1.replace("return item * item\n", "return item * item + 1000\n")
N = 5
V1_TOTAL = sum(i * i for i in range(N))
V2_TOTAL = V1_TOTAL + 1000 * N

CHILD = '''
import json
import os
import sys
import time

import nbflow

flow_dir, action, arg = sys.argv[1], sys.argv[2], sys.argv[3]
hold = "--hold" in sys.argv
if action == "start":
    sys.path.insert(0, flow_dir)
    import flow
    opts = json.loads(arg)
    run = flow.wf.run(params=opts["params"], breakpoints=opts.get("breakpoints", ()))
    print(run.id, flush=True)
    print(run.wait(), flush=True)
elif action == "attach":
    sys.path.insert(0, flow_dir)
    import flow
    go = sys.argv[4]
    print("ready", flush=True)
    while not os.path.exists(go):
        time.sleep(0.0005)
    try:
        flow.wf.attach(arg)
    except nbflow.OwnershipError as exc:
        print("lost", exc, flush=True)
    else:
        print("won", flush=True)
elif action == "resume_pinned":  # as `nbflow resume RUN` does: no import of the workflow's module
    from nbflow.run import resume_pinned
    run = resume_pinned(nbflow.Store.open(os.environ["NBFLOW_DB"]), arg)
    run.resume()
    print(run.wait(), flush=True)
    print(json.dumps(run.output("total")), flush=True)
if hold:
    sys.stdin.read()  # stay alive (and keep owning the run) until the test closes stdin
'''


class Child:
    """A subprocess acting on the store; its stdout lines arrive through a queue."""

    def __init__(self, tmp_path: Path, *args: str, hold: bool = False, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(tmp_path / "child.py"), str(tmp_path), *args, *(["--hold"] if hold else [])],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
            env={**os.environ, **(env or {})},
        )
        self.pid = self.proc.pid
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line.rstrip("\n"))
        self.proc.stdout.close()
        self._lines.put(None)

    def line(self, timeout: float = 30.0) -> str:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"child {self.pid} printed nothing for {timeout} s") from None
        if line is None:
            err = self.proc.stderr.read() if self.proc.stderr and not self.proc.stderr.closed else ""
            raise AssertionError(f"child {self.pid} ended without output: {err}")
        return line

    def release(self) -> int:
        """Close stdin (a held child then exits normally) and wait for it."""
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        return self._reap()

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self._reap()  # its pid no longer exists, as after a real crash
        if self.proc.stdin is not None:
            self.proc.stdin.close()

    def _reap(self) -> int:
        code = self.proc.wait(timeout=30)
        if self.proc.stderr is not None:
            self.proc.stderr.close()
        return code


@pytest.fixture
def flow_dir(tmp_path: Path, db_url: str) -> Path:
    """tmp_path holding flow.py (version 1), the child script and an open gate file."""
    (tmp_path / "flow.py").write_text(V1)
    (tmp_path / "child.py").write_text(CHILD)
    (tmp_path / "gate").touch()
    return tmp_path


def import_flow(flow_dir: Path) -> ModuleType:
    """flow.py as it is on disk now, named `flow` as in the children (kept out of sys.modules)."""
    spec = importlib.util.spec_from_file_location("flow", flow_dir / "flow.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def start(flow_dir: Path, breakpoints: Sequence[str] = (), gate: str = "gate", hold: bool = False) -> tuple[Child, str]:
    opts = {"params": {"n": N, "gate": str(flow_dir / gate)}, "breakpoints": list(breakpoints)}
    child = Child(flow_dir, "start", json.dumps(opts), hold=hold)
    return child, child.line()


def owner(db_url: str, run_id: str) -> tuple[str | None, int | None]:
    row = Store.open(db_url).run_row(run_id)
    return row["owner_host"], row["owner_pid"]


def poll(predicate: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_attach_takes_over_at_once_when_the_owner_exited_normally(flow_dir: Path, db_url: str) -> None:
    """A process that exits gives up its lease: attach needs no lease expiry and finishes the run."""
    child, run_id = start(flow_dir, breakpoints=["total"])
    assert child.line() == "paused"
    assert child.release() == 0
    assert owner(db_url, run_id) == (None, None)
    version = Run(Store.open(db_url), run_id).version

    run = import_flow(flow_dir).wf.attach(run_id)
    assert owner(db_url, run_id) == (socket.gethostname(), os.getpid())
    assert run.version == version  # the same code: no new version, no code change recorded
    assert "code_changed" not in [e.kind for e in run.history()]
    run.resume()
    assert run.wait(timeout=30) == "succeeded"
    assert run.output("total") == V1_TOTAL
    assert [e.kind for e in run.history()].count("taken_over") == 1


def test_attach_takes_over_at_once_when_the_owner_was_killed(flow_dir: Path, db_url: str) -> None:
    """A SIGKILLed owner on this host counts as gone at once; only its running instance runs again."""
    child, run_id = start(flow_dir, gate="closed-gate")
    stored = Run(Store.open(db_url), run_id)
    poll(lambda: stored.instance("total").status == "running", "total to be running")
    child.kill()
    assert owner(db_url, run_id)[1] == child.pid  # the lease is still there: only the pid says it is gone

    (flow_dir / "closed-gate").touch()
    run = import_flow(flow_dir).wf.attach(run_id)
    assert run.wait(timeout=30) == "succeeded"
    assert run.output("total") == V1_TOTAL
    assert run.instance("total").attempts == 2
    assert [v.attempts for v in run.instances("square")] == [1] * N


def test_attach_takes_over_when_the_dead_owners_pid_now_belongs_to_a_newer_process(
    flow_dir: Path, db_url: str
) -> None:
    """A restarted container or machine hands out the same low pids again: a live process with the
    owner's pid that started after the owner's last heartbeat is not the owner."""
    child, run_id = start(flow_dir, breakpoints=["total"])
    assert child.line() == "paused"
    child.kill()
    newcomer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        with sqlite3.connect(db_url.removeprefix("sqlite:///")) as conn:  # the owner died a minute ago
            conn.execute("UPDATE runs SET owner_pid = ?, heartbeat_at = heartbeat_at - 60 WHERE id = ?",
                         (newcomer.pid, run_id))
        assert Run(Store.open(db_url), run_id).interrupted is True

        run = import_flow(flow_dir).wf.attach(run_id)
        assert owner(db_url, run_id) == (socket.gethostname(), os.getpid())
        run.resume()
        assert run.wait(timeout=30) == "succeeded"
        assert newcomer.poll() is None  # nothing was done to the process that only had the pid
    finally:
        newcomer.kill()
        newcomer.wait()


def test_attach_is_refused_while_the_owner_is_alive_naming_it(flow_dir: Path, db_url: str) -> None:
    """A second owner for a live run is refused with the owner's pid and host; nothing changes."""
    child, run_id = start(flow_dir, breakpoints=["total"], hold=True)
    try:
        assert child.line() == "paused"
        with pytest.raises(nbflow.OwnershipError) as err:
            import_flow(flow_dir).wf.attach(run_id)
        assert str(child.pid) in str(err.value)
        assert socket.gethostname() in str(err.value)
        assert owner(db_url, run_id) == (socket.gethostname(), child.pid)
        assert "taken_over" not in [e.kind for e in Run(Store.open(db_url), run_id).history()]
    finally:
        child.release()


def test_two_processes_racing_to_attach_an_orphaned_run_exactly_one_wins(flow_dir: Path, db_url: str) -> None:
    """Two attaches started at the same moment: one owns the run, the other gets OwnershipError."""
    child, run_id = start(flow_dir, breakpoints=["total"])
    assert child.line() == "paused"
    child.release()

    go = flow_dir / "go"
    racers = [Child(flow_dir, "attach", run_id, str(go), hold=True) for _ in range(2)]
    try:
        assert [r.line() for r in racers] == ["ready", "ready"]
        go.touch()
        results = {r.pid: r.line() for r in racers}
        winners = [pid for pid, text in results.items() if text == "won"]
        losers = [text for text in results.values() if text.startswith("lost")]
        assert len(winners) == 1 and len(losers) == 1, results
        assert owner(db_url, run_id) == (socket.gethostname(), winners[0])
        assert [e.kind for e in Run(Store.open(db_url), run_id).history()].count("taken_over") == 1
    finally:
        for r in racers:
            r.release()


def test_attach_with_changed_code_records_a_diff_per_changed_step(flow_dir: Path, db_url: str) -> None:
    """Attaching with an edited step records code_changed with a unified diff of that step, then uses it."""
    child, run_id = start(flow_dir, breakpoints=["square"])
    assert child.line() == "paused"
    child.release()

    (flow_dir / "flow.py").write_text(V2)
    run = import_flow(flow_dir).wf.attach(run_id)
    changes = [e for e in run.history() if e.kind == "code_changed"]
    assert len(changes) == 1
    diffs = changes[0].data["diffs"]
    assert set(diffs) == {"square"}
    assert "-    return item * item\n" in diffs["square"]
    assert "+    return item * item + 1000\n" in diffs["square"]
    assert diffs["square"].startswith("---") and "@@" in diffs["square"]

    run.resume()
    assert run.wait(timeout=30) == "succeeded"
    assert run.output("total") == V2_TOTAL


def test_attach_on_a_finished_run_returns_a_handle_that_reads_it(flow_dir: Path, db_url: str) -> None:
    """A finished run is not taken over: its outputs read back, and it gets no new owner."""
    child, run_id = start(flow_dir)
    assert child.line() == "succeeded"
    child.release()

    run = import_flow(flow_dir).wf.attach(run_id)
    assert run.status == "succeeded"
    assert run.output("total") == V1_TOTAL
    assert run.output("square") == [i * i for i in range(N)]
    assert live(run_id) is None
    assert owner(db_url, run_id) == (None, None)
    assert "taken_over" not in [e.kind for e in run.history()]


def test_resume_pinned_runs_the_code_the_run_started_with(flow_dir: Path, db_url: str) -> None:
    """After flow.py changed on disk, resume_pinned continues with version 1, recording no code change."""
    child, run_id = start(flow_dir, breakpoints=["square"])
    assert child.line() == "paused"
    child.release()

    (flow_dir / "flow.py").write_text(V2)  # importable as `flow` by the resuming process
    # flow.py importable, and nbflow from where this test imports it (a worktree's PYTHONPATH)
    path = os.pathsep.join(p for p in (str(flow_dir), os.environ.get("PYTHONPATH")) if p)
    resumer = Child(flow_dir, "resume_pinned", run_id, env={"PYTHONPATH": path})
    assert resumer.line() == "succeeded"
    assert json.loads(resumer.line()) == V1_TOTAL
    resumer.release()
    assert "code_changed" not in [e.kind for e in Run(Store.open(db_url), run_id).history()]


def test_resume_pinned_in_this_process_needs_no_import_of_the_workflow_module(flow_dir: Path, db_url: str) -> None:
    """The pinned code is in the store: resuming works where the module cannot be imported at all."""
    child, run_id = start(flow_dir, breakpoints=["square"])
    assert child.line() == "paused"
    child.release()

    (flow_dir / "flow.py").unlink()
    run = resume_pinned(Store.open(db_url), run_id)
    run.resume()
    assert run.wait(timeout=30) == "succeeded"
    assert run.output("total") == V1_TOTAL


def test_nbflow_attach_takes_over_an_orphaned_run_with_its_pinned_code(flow_dir: Path, db_url: str) -> None:
    """nbflow.attach(run_id) needs no workflow object: another notebook debugs a batch run that exited."""
    child, run_id = start(flow_dir, breakpoints=["square"])
    assert child.line() == "paused"
    child.release()

    run = nbflow.attach(run_id, db_url)
    assert owner(db_url, run_id) == (socket.gethostname(), os.getpid())
    assert len(run.instances("square", status="paused")) == N
    run.resume()
    assert run.wait(timeout=30) == "succeeded"
    assert run.output("total") == V1_TOTAL


def test_nbflow_attach_to_a_live_run_only_reads_it(flow_dir: Path, db_url: str) -> None:
    """While the owner lives, nbflow.attach gives a handle whose verbs the owner applies; no takeover."""
    child, run_id = start(flow_dir, breakpoints=["total"], hold=True)
    assert child.line() == "paused"
    run = nbflow.attach(run_id, db_url)
    assert live(run_id) is None
    assert owner(db_url, run_id)[1] != os.getpid()
    run.resume("total")
    poll(lambda: run.status == "succeeded", "the owner to finish the run")
    child.release()


def test_interrupted_only_while_no_live_process_drives_an_unfinished_run(flow_dir: Path, db_url: str) -> None:
    """interrupted: False while the owner lives, True once it exited, False again when attached and when done."""
    child, run_id = start(flow_dir, breakpoints=["total"], hold=True)
    assert child.line() == "paused"
    stored = Run(Store.open(db_url), run_id)
    assert stored.interrupted is False
    child.release()
    assert stored.interrupted is True

    run = import_flow(flow_dir).wf.attach(run_id)
    assert run.interrupted is False
    run.resume()
    assert run.wait(timeout=30) == "succeeded"
    assert run.interrupted is False
    assert stored.interrupted is False


KEYED = '''
import os

import nbflow

wf = nbflow.Workflow("keyed", store=os.environ["NBFLOW_DB"])


@wf.step
def load(n):
    return list(range(n))


@wf.foreach("load", key=lambda item: item * 10)
def tag(item, ctx):
    return [ctx.key, type(ctx.key).__name__]
'''


def test_keys_stay_ints_after_the_owner_exited_and_another_process_took_over(flow_dir: Path, db_url: str) -> None:
    """The owner ran four items and exited paused on tag:30; here, attached, keys and ctx.key are ints."""
    (flow_dir / "flow.py").write_text(KEYED)
    child = Child(flow_dir, "start", json.dumps({"params": {"n": N}, "breakpoints": ["tag:30"]}))
    run_id = child.line()
    assert child.line() == "paused"
    assert child.release() == 0

    run = import_flow(flow_dir).wf.attach(run_id)
    views = run.instances("tag")
    assert [v.key for v in views] == [0, 10, 20, 30, 40] and all(type(v.key) is int for v in views)
    assert run.instance("tag", key=30).status == "paused"
    run.resume("tag", key=30)
    assert run.wait(timeout=30) == "succeeded"
    assert run.output("tag") == [[k, "int"] for k in (0, 10, 20, 30, 40)]  # 30 ran here, the others in the child


def test_a_taken_over_run_keeps_the_values_of_its_paused_instances(db_url: str) -> None:
    """After a takeover, releasing one of two breakpoints holding an instance keeps its output and logs."""
    wf = nbflow.Workflow("held-twice", store=db_url)

    @wf.step
    def total(n):  # type: ignore[no-untyped-def]
        print("computed")
        return n * 10

    @wf.step
    def plus_one(total):  # type: ignore[no-untyped-def]
        return total + 1

    wf.breakpoints.add("total", when="after")
    run = wf.run(params={"n": 4}, breakpoints=[nbflow.Breakpoint(step="total", when="after")])
    assert run.wait(timeout=30) == "paused"
    stop_all()  # what a process exiting normally does: the run is left paused, with no owner

    run = wf.attach(run.id)
    wf.breakpoints.remove("total")
    view = run.instance("total")
    assert (view.status, len(view.held_by)) == ("paused", 1)
    assert (view.output, view.logs) == (40, "computed\n")
    run.resume()
    assert run.wait(timeout=30) == "succeeded"
    assert run.output("plus_one") == 41


def test_a_scheduler_stopped_by_an_error_hands_the_run_back_to_be_taken_over(db_url: str, tmp_path: Path) -> None:
    """The store refuses a write (here a trigger, as a full disk or a broken constraint would): the
    scheduler stops, records why and gives up the lease, so any process sees the run interrupted
    and can take it over once the cause is gone, without re-running what succeeded."""
    ran = Trail(str(tmp_path / "ran.jsonl"))
    wf = nbflow.Workflow("refused", store=db_url)

    @wf.step
    def first():  # type: ignore[no-untyped-def]
        ran.add("first")
        return 1

    @wf.step
    def second(first):  # type: ignore[no-untyped-def]
        ran.add("second")
        return first + 1

    assert wf.store.is_sqlite  # opened (created) before the trigger is added
    db = db_url.removeprefix("sqlite:///")
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TRIGGER refuse BEFORE UPDATE ON instances WHEN NEW.step = 'second' "
                     "AND NEW.status = 'succeeded' BEGIN SELECT RAISE(ABORT, 'no space left on device'); END")
    run = wf.run()
    stopped = f"the scheduler of run {run.id} stopped:.*no space left"
    with pytest.raises(nbflow.NbflowError, match=stopped):
        run.wait(timeout=30)
    with pytest.raises(nbflow.NbflowError, match=stopped):  # also once the scheduler is gone
        run.wait(timeout=30)

    assert owner(db_url, run.id) == (None, None)
    assert Run(Store.open(db_url), run.id).interrupted is True
    (stopped,) = [e for e in run.history() if e.kind == "scheduler_stopped"]
    assert "no space left on device" in stopped.data["error"]

    with sqlite3.connect(db) as conn:
        conn.execute("DROP TRIGGER refuse")
    run = wf.attach(run.id)
    assert run.wait(timeout=30) == "succeeded"
    assert run.output("second") == 2
    assert ran.items() == ["first", "second", "second"]  # first succeeded before the stop: not re-run
