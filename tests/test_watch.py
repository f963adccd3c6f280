"""`nbflow show RUN --watch`, run as a subprocess (stdout not a terminal) against a real run this test
process drives: it keeps watching while the run runs, and ends when the run pauses or finishes."""
from __future__ import annotations

import os
import pty
import selectors
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import nbflow
from tests.test_cli import cli
from tests.test_cli_triage import triage_run


def watcher(db_url: str, run_id: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "nbflow", "--db", db_url, "show", run_id, "--watch", "--interval", "0.1", *args],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def gated_run(db_url: str, gate: threading.Event, **options: object) -> nbflow.Run:
    """A live run of a 10-item foreach whose items wait for *gate*; a breakpoint holds enrich:7."""
    wf = nbflow.Workflow("watch", store=db_url)

    @wf.step
    def load(n):
        return list(range(n))

    @wf.foreach("load")
    def enrich(item):
        gate.wait(30)
        return item * 2

    @wf.step
    def report(enrich):
        return sum(enrich)

    return wf.run(params={"n": 10}, **options)


def running(proc: subprocess.Popen[str], seconds: float = 1.0) -> bool:
    """Whether *proc* is still running after *seconds* (it watches a run that cannot move yet)."""
    time.sleep(seconds)
    return proc.poll() is None


def test_watch_runs_until_the_run_pauses_then_shows_the_paused_instance_and_what_holds_it(db_url: str) -> None:
    gate = threading.Event()
    run = gated_run(db_url, gate, breakpoints=["enrich:7"])
    proc = watcher(db_url, run.id)
    try:
        assert running(proc), proc.communicate()
        gate.set()
        out, err = proc.communicate(timeout=30)
    finally:
        gate.set()
        proc.kill()
    assert proc.returncode == 0, err
    assert run.wait(timeout=10) == "paused"
    assert f"run {run.id}" in out and "paused" in out
    assert "10/12 instances finished" in out
    (line,) = [ln for ln in out.splitlines() if " 7 " in ln and "enrich" in ln]
    assert "paused" in line and "breakpoint 1" in line
    assert "breakpoint 1 before enrich:7: hit, holding 1" in out
    assert out.count(f"run {run.id}") == 1  # one final frame, printed once


def test_watch_ends_with_exit_0_when_the_run_succeeds(db_url: str) -> None:
    gate = threading.Event()
    run = gated_run(db_url, gate)
    proc = watcher(db_url, run.id)
    try:
        assert running(proc, 0.5)
        gate.set()
        out, err = proc.communicate(timeout=30)
    finally:
        gate.set()
        proc.kill()
    assert proc.returncode == 0, err
    assert "succeeded" in out and "12/12 instances finished" in out
    assert "instances paused, failed, retrying, waiting (0): none" in out


def test_watch_of_a_paused_run_prints_its_frame_at_once(db_url: str) -> None:
    gate = threading.Event()
    gate.set()
    run = gated_run(db_url, gate, breakpoints=["enrich:2"])
    assert run.wait(timeout=30) == "paused"
    res = cli(db_url, "show", run.id, "--watch")
    assert res.returncode == 0, res.stderr
    assert "breakpoint 1 before enrich:2: hit, holding 1" in res.stdout


class Terminal:
    """`nbflow show RUN --watch` on a pseudo-terminal (stdout and stderr): what it drew so far."""

    def __init__(self, db_url: str, run_id: str) -> None:
        self.fd, tty = pty.openpty()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "nbflow", "--db", db_url, "show", run_id, "--watch", "--interval", "0.1"],
            stdin=tty, stdout=tty, stderr=tty)
        os.close(tty)
        self.out = b""
        self._sel = selectors.DefaultSelector()  # epoll: select() refuses a descriptor above 1023
        self._sel.register(self.fd, selectors.EVENT_READ)

    def read_until(self, text: str, timeout: float = 30) -> str:
        """Read until *text* was drawn (or the command ended, or *timeout*); everything drawn so far."""
        deadline = time.monotonic() + timeout
        while text.encode() not in self.out and time.monotonic() < deadline:
            if self._sel.select(0.2):
                try:
                    chunk = os.read(self.fd, 65536)
                except OSError:  # the command ended and closed the terminal
                    break
                if not chunk:
                    break
                self.out += chunk
            elif self.proc.poll() is not None:
                break
        return self.out.decode(errors="replace")

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)
        self._sel.close()
        os.close(self.fd)


def test_on_a_terminal_the_view_is_redrawn_live_as_the_run_moves(db_url: str) -> None:
    gate = threading.Event()
    run = gated_run(db_url, gate, breakpoints=["enrich:7"])
    term = Terminal(db_url, run.id)
    try:
        first = term.read_until("1/12 instances finished")
        assert "1/12 instances finished" in first
        gate.set()
        term.read_until("holding 1")
        assert term.proc.wait(timeout=30) == 0
        drawn = term.read_until("\x00", timeout=2)
    finally:
        gate.set()
        term.close()
    assert "\x1b[" in drawn and drawn.count("instances finished") >= 2  # drawn in place, more than once
    assert "10/12 instances finished" in drawn.rsplit(f"run {run.id}", 1)[1]  # the last view, printed to stay


def test_ctrl_c_stops_watching_with_exit_130_and_leaves_the_run_alone(db_url: str) -> None:
    gate = threading.Event()
    run = gated_run(db_url, gate)
    term = Terminal(db_url, run.id)
    try:
        assert "instances finished" in term.read_until("instances finished")
        term.proc.send_signal(signal.SIGINT)
        assert term.proc.wait(timeout=30) == 130
        out = term.read_until("\x00", timeout=2)
    finally:
        gate.set()
        term.close()
    assert f"stopped watching; run {run.id} goes on" in out and "Traceback" not in out
    assert run.wait(timeout=30) == "succeeded"


def test_watch_with_json_output_is_refused_saying_what_to_poll_instead(db_url: str) -> None:
    gate = threading.Event()
    gate.set()
    run = gated_run(db_url, gate)
    run.wait(timeout=30)
    res = cli(db_url, "show", run.id, "--watch", "-o", "json")
    assert res.returncode == 2
    assert "--watch" in res.stderr and f"nbflow show {run.id} -o json" in res.stderr


def test_watch_does_not_go_with_a_target_and_interval_needs_watch(db_url: str) -> None:
    gate = threading.Event()
    gate.set()
    run = gated_run(db_url, gate)
    run.wait(timeout=30)
    res = cli(db_url, "show", run.id, "enrich:1", "--watch")
    assert res.returncode == 2 and "STEP[:KEY]" in res.stderr
    res = cli(db_url, "show", run.id, "--interval", "1")
    assert res.returncode == 2 and "--interval goes with --watch" in res.stderr
    res = cli(db_url, "show", run.id, "--watch", "--interval", "0")
    assert res.returncode == 2 and "positive number of seconds" in res.stderr


SLOW_SCRIPT = '''
import sys
import time

import nbflow

wf = nbflow.Workflow("slow", store=sys.argv[1])


@wf.step
def load(n):
    return list(range(n))


@wf.foreach("load")
def enrich(item):
    time.sleep(60)
    return item


if __name__ == "__main__":
    run = wf.run(params={"n": 3})
    print(run.id, flush=True)
    run.wait()
'''


def test_watch_ends_with_exit_1_when_the_owner_dies_and_says_how_to_continue(db_url: str, tmp_path: Path) -> None:
    script = tmp_path / "slow_wf.py"
    script.write_text(SLOW_SCRIPT)
    owner = subprocess.Popen([sys.executable, str(script), db_url], stdout=subprocess.PIPE, text=True)
    try:
        assert owner.stdout is not None
        run_id = owner.stdout.readline().split()[0]
        proc = watcher(db_url, run_id)
        assert running(proc)
        owner.kill()
        owner.wait(timeout=10)
        out, err = proc.communicate(timeout=30)
    finally:
        owner.kill()
    assert proc.returncode == 1, err
    assert f"run {run_id} is interrupted" in err and f"`nbflow resume {run_id}` continues it" in err
    assert "interrupted: owner pid" in out


def test_watch_of_a_run_paused_on_errors_names_its_error_groups(db_url: str) -> None:
    run = triage_run(db_url)
    res = cli(db_url, "show", run.id, "--watch")
    assert res.returncode == 0, res.stderr
    assert "break on error: holding 17" in res.stdout
    groups = f"errors of parse: 17 in 2 groups: ValueError 12, TypeError 5  (`nbflow errors {run.id} parse`)"
    assert groups in res.stdout
    assert "instances paused, failed, retrying, waiting (17)" in res.stdout
