"""Taking over a run whose owner died, and commands sent around a takeover.

Each story runs its owner in a real subprocess, kills or stops it with real signals, and acts on the
run through the real `nbflow` CLI (or, where a notebook would, ``wf.attach``): a zombie owner, an owner
killed in the middle of a step body, two `nbflow resume` racing for the same run, and a command sent
while one queued earlier is not applied yet.
"""
from __future__ import annotations

import importlib.util
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from procs import run_at_once
from sidefx import Trail

from nbflow import Run, Store

FLOW = '''
"""load -> enrich (one instance per item) -> report; enrich appends {key, attempt} to the trail."""
from __future__ import annotations

import json
import os
import signal

import nbflow

wf = nbflow.Workflow("takeover", store=os.environ["NBFLOW_DB"])


@wf.step
def load(n):
    return list(range(n))


@wf.foreach("load")
def enrich(item, trail, crash_key, ctx):
    key = str(ctx.key)  # the key's text, as the CLI addresses it
    with open(trail, encoding="utf-8") as fh:
        ran_before = any(json.loads(line)["key"] == key for line in fh)
    with open(trail, "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"key": key, "attempt": ctx.attempt}) + "\\n")
    if key == crash_key and not ran_before:  # the owner dies in this body, the first time it runs
        os.kill(os.getpid(), signal.SIGKILL)
    return item * 10


@wf.step
def report(enrich):
    return sum(enrich)
'''

OWNER = '''
import json
import sys
import time

sys.path.insert(0, sys.argv[1])
import takeoverflow

params = {"n": 5, "trail": sys.argv[2], "crash_key": sys.argv[3]}
run = takeoverflow.wf.run(params=params, breakpoints=json.loads(sys.argv[4]))
print(run.id, flush=True)
print(run.wait(), flush=True)
time.sleep(600)  # stays alive, the run's owner, until the test kills it
'''

RESUME = "import sys; from nbflow.cli import main; main(sys.argv[1:])"
"""`nbflow ARGS...` as a `python -c` script (for procs.run_at_once)."""

REPORT = sum(10 * i for i in range(5))


class Owner:
    """The owner process of one run, started by the test; every way it ends is the test's to choose."""

    def __init__(self, tmp_path: Path, *, crash_key: str = "", breakpoints: tuple[str, ...] = ()) -> None:
        (tmp_path / "takeoverflow.py").write_text(FLOW)
        (tmp_path / "owner.py").write_text(OWNER)
        self.trail = Trail(str(tmp_path / "trail.jsonl"))
        Path(self.trail.path).touch()
        self.proc = subprocess.Popen(
            [sys.executable, str(tmp_path / "owner.py"), str(tmp_path), self.trail.path, crash_key,
             json.dumps(list(breakpoints))],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=tmp_path,
        )
        assert self.proc.stdout is not None
        self.run_id = self.proc.stdout.readline().strip()
        assert self.run_id, "the owner printed no run id"

    def status(self) -> str:
        """The status its run.wait() printed (blocks until then)."""
        assert self.proc.stdout is not None
        return self.proc.stdout.readline().strip()

    def kill(self) -> None:
        """SIGKILL, not reaped: the process stays a zombie until :meth:`reap`."""
        self.proc.send_signal(signal.SIGKILL)
        until(lambda: _state(self.proc.pid) == "Z")

    def reap(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.fixture
def owners(tmp_path: Path) -> Iterator[Callable[..., Owner]]:
    """Start owner processes; each is killed (if still running) and reaped after the test."""
    started: list[Owner] = []

    def start(**kwargs: Any) -> Owner:
        started.append(Owner(tmp_path, **kwargs))
        return started[-1]

    yield start
    for owner in started:
        with_signal(owner, signal.SIGCONT)
        owner.reap()


def with_signal(owner: Owner, sig: signal.Signals) -> None:
    if owner.proc.poll() is None:
        owner.proc.send_signal(sig)


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat", "rb") as fh:
        return fh.read().rsplit(b")", 1)[1].split()[0].decode()


def until(check: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, "gave up waiting"
        time.sleep(0.01)
    return value


def cli(db_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`nbflow --db URL ARGS...` in a subprocess without a terminal on stdin."""
    return subprocess.run(
        [sys.executable, "-m", "nbflow", "--db", db_url, *args],
        stdin=subprocess.DEVNULL, capture_output=True, check=False, text=True, timeout=120,
    )


def _sleeping_children(marker: str) -> int:
    """How many of this process's children whose command line holds *marker* are asleep in a
    nanosleep (SQLite's busy handler waiting for the write lock)."""
    kids: list[str] = []
    for task in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{task}/children") as fh:
            kids += fh.read().split()
    asleep = 0
    for pid in kids:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                if marker.encode() not in fh.read():
                    continue
            with open(f"/proc/{pid}/syscall") as fh:
                asleep += fh.read().split()[0] in ("35", "230")  # nanosleep, clock_nanosleep (x86_64)
        except (OSError, IndexError):
            continue
    return asleep


def hold_write_lock_until_waiting(db_url: str, marker: str, n: int) -> threading.Thread:
    """Take the SQLite store's write lock, and give it up once *n* children (named by *marker*) wait
    for it: whatever they read before their first write, they all read before any of them wrote."""
    lock = sqlite3.connect(db_url.removeprefix("sqlite:///"), isolation_level=None, check_same_thread=False)
    lock.execute("BEGIN IMMEDIATE")

    def release() -> None:
        try:
            deadline, seen = time.monotonic() + 60, 0
            while time.monotonic() < deadline and seen < 5:  # five looks in a row: they really wait
                seen = seen + 1 if _sleeping_children(marker) >= n else 0
                time.sleep(0.01)
        finally:
            lock.rollback()
            lock.close()

    thread = threading.Thread(target=release, daemon=True)
    thread.start()
    return thread


def reader(db_url: str, run_id: str) -> Run:
    """The run as a reader sees it (no takeover)."""
    return Run(Store.open(db_url), run_id)


def import_flow(tmp_path: Path) -> ModuleType:
    """The flow module the owners import, loaded here too (kept out of sys.modules)."""
    spec = importlib.util.spec_from_file_location("takeoverflow", tmp_path / "takeoverflow.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------------------------- a dead owner
def test_resume_takes_over_a_run_whose_killed_owner_is_an_unreaped_zombie(
    db_url: str, owners: Callable[..., Owner]
) -> None:
    """A killed owner its parent has not reaped yet is dead: `nbflow resume` takes the run over and finishes it."""
    owner = owners(breakpoints=("enrich:2",))
    assert owner.status() == "paused"
    owner.kill()  # a zombie: kill(pid, 0) still succeeds for it
    res = cli(db_url, "resume", owner.run_id, "--force", "-o", "json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["took_over"] is True and out["status"] == "succeeded"
    assert reader(db_url, owner.run_id).output("report") == REPORT


def test_resume_a_live_owner_does_not_apply_says_why_and_exits_1(db_url: str, owners: Callable[..., Owner]) -> None:
    """The owner is alive but stopped: `nbflow resume` does not report success; it names the owner, exits 1."""
    owner = owners(breakpoints=("enrich:2",))
    assert owner.status() == "paused"
    owner.proc.send_signal(signal.SIGSTOP)
    until(lambda: _state(owner.proc.pid) == "T")
    res = cli(db_url, "resume", owner.run_id, "enrich:2", "--force")
    assert res.returncode == 1
    assert "not resumed" in res.stderr and f"pid {owner.proc.pid}" in res.stderr and "stopped" in res.stderr
    assert reader(db_url, owner.run_id).instance("enrich", 2).status == "paused"
    owner.proc.send_signal(signal.SIGCONT)  # the command stayed queued: the owner applies it when it polls
    until(lambda: reader(db_url, owner.run_id).status == "succeeded")


def test_an_owner_killed_mid_body_leaves_its_attempt_so_the_rerun_is_a_higher_attempt(
    db_url: str, owners: Callable[..., Owner], tmp_path: Path
) -> None:
    """The owner dies inside enrich:1's first attempt; after a takeover that instance runs as attempt 2."""
    owner = owners(crash_key="1")
    assert owner.proc.wait(timeout=60) == -signal.SIGKILL
    assert [e["attempt"] for e in owner.trail.items() if e["key"] == "1"] == [1]

    run = import_flow(tmp_path).wf.attach(owner.run_id)
    assert run.wait(timeout=60) == "succeeded"
    by_key: dict[str, list[int]] = {}
    for entry in owner.trail.items():
        by_key.setdefault(entry["key"], []).append(entry["attempt"])
    assert by_key["1"] == [1, 2]
    assert all(attempts == sorted(set(attempts)) for attempts in by_key.values()), by_key  # never a repeat
    assert run.instance("enrich", 1).attempts == 2
    assert run.output("report") == REPORT


# ---------------------------------------------------------------------------------- racing resumes
def test_two_resumes_racing_for_an_interrupted_run_both_succeed(
    db_url: str, owners: Callable[..., Owner], tmp_path: Path
) -> None:
    """Two `nbflow resume RUN enrich:2` at once: one takes the run over, the other hands its resume to it."""
    owner = owners(breakpoints=("enrich:2",))
    assert owner.status() == "paused"
    owner.kill()
    owner.reap()
    # Both read the interrupted run before either takes it over: the race a user can lose.
    releaser = hold_write_lock_until_waiting(db_url, RESUME, 2)
    outs = run_at_once(RESUME, ["--db", db_url, "resume", owner.run_id, "enrich:2", "--force", "-o", "json"], 2,
                       tmp_path)
    releaser.join()
    results = [json.loads(out) for out in outs]
    assert sorted(r["took_over"] for r in results) == [False, True], results
    for r in results:
        assert [c["state"] for c in r["commands"]] == ["applied"], r
    run = reader(db_url, owner.run_id)
    assert run.status == "succeeded" and run.output("report") == REPORT
    assert [e.kind for e in run.history()].count("taken_over") == 1


# ---------------------------------------------------------------------------------- queued commands
def test_a_command_on_an_instance_with_a_queued_command_is_refused_naming_it(
    db_url: str, owners: Callable[..., Owner]
) -> None:
    """resume enrich:3 is queued for a live owner that has not applied it; skip enrich:3 is refused, not queued."""
    owner = owners(breakpoints=("enrich:3",))
    assert owner.status() == "paused"
    owner.proc.send_signal(signal.SIGSTOP)  # alive, but it applies nothing until it is continued
    until(lambda: _state(owner.proc.pid) == "T")
    queued = reader(db_url, owner.run_id).resume("enrich", key=3)
    assert queued.applied is False

    res = cli(db_url, "skip", owner.run_id, "enrich:3", "--output", "0", "--force")
    assert res.returncode == 1
    assert f"command {queued.id} (resume enrich:3" in res.stderr and "not applied yet" in res.stderr

    owner.proc.send_signal(signal.SIGCONT)
    run = reader(db_url, owner.run_id)
    until(lambda: run.status == "succeeded")
    assert run.instance("enrich", 3).status == "succeeded"  # resumed, never skipped
    assert not [e for e in run.history() if e.kind == "command" and e.data["verb"] == "skip"]


def test_a_command_conflicting_with_one_queued_for_an_ownerless_run_is_refused(
    db_url: str, owners: Callable[..., Owner]
) -> None:
    """No live owner: skip enrich:2 is queued; retry enrich:2 is refused at once; resume applies the skip."""
    owner = owners(breakpoints=("enrich:2",))
    assert owner.status() == "paused"
    owner.kill()
    owner.reap()
    res = cli(db_url, "skip", owner.run_id, "enrich:2", "--output", "100", "--force")
    assert res.returncode == 0 and "queued" in res.stdout, res.stderr
    res = cli(db_url, "retry", owner.run_id, "enrich:2", "--force")
    assert res.returncode == 1
    assert "(skip enrich:2" in res.stderr and f"nbflow resume {owner.run_id}" in res.stderr

    res = cli(db_url, "resume", owner.run_id, "--force", "-o", "json")
    assert res.returncode == 0, res.stderr
    assert [c["state"] for c in json.loads(res.stdout)["earlier_commands"]] == ["applied"]
    run = reader(db_url, owner.run_id)
    assert run.instance("enrich", 2).status == "skipped"
    assert run.output("report") == REPORT - 20 + 100
    assert not [e for e in run.history() if e.kind == "command" and e.data["verb"] == "retry"]
