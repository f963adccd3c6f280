"""Values above the artifact threshold (issue 14, point 5) on every path that stores one: run
parameters, operator payloads (skip, set_inputs, set_output, approve), signal payloads and forks.
Each is tried just below and just above ``codec.LARGE_VALUE_BYTES``: the run works end to end, the
value reads back equal (also after another process takes the run over), and a refusal leaves no file
in the artifact folder. Real SQLite files (PostgreSQL too for the core paths); the CLI through click's
CliRunner (a value this large does not fit in one command-line argument of a subprocess), other
processes as real subprocesses."""
from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import nbflow
from nbflow import Breakpoint, CommandRefused, DefinitionError, Workflow
from nbflow.cli import cli
from nbflow.engine.lifecycle import live, stop_all
from nbflow.signals import SignalRefused
from nbflow.store.codec import LARGE_VALUE_BYTES

TIMEOUT = 60
SIZES = pytest.mark.parametrize("size", [LARGE_VALUE_BYTES - 64, LARGE_VALUE_BYTES + 64], ids=["below", "above"])
"""JSON sizes of the value itself, either side of the threshold (a command's payload wraps it in a few bytes more)."""


def text(size: int) -> str:
    """A string whose JSON text is *size* bytes."""
    return "x" * (size - 2)


def artifact_files(db_url: str) -> set[str]:
    folder = nbflow.Store.open(db_url).artifacts.root / "sha256"
    return {p.name for p in folder.iterdir() if not p.name.startswith(".")} if folder.is_dir() else set()


def echo(db_url: str, name: str) -> Workflow:
    """echo(blob) -> measure(echo): the parameter comes back as echo's output."""
    wf = Workflow(name, store=db_url)

    @wf.step
    def echo(blob):
        return blob

    @wf.step
    def measure(echo):
        return len(echo)

    return wf


def shop(db_url: str, name: str) -> Workflow:
    """load -> enrich(load) -> total(enrich)."""
    wf = Workflow(name, store=db_url)

    @wf.step
    def load():
        return "small"

    @wf.step
    def enrich(load):
        return load.upper()

    @wf.step
    def total(enrich):
        return len(enrich)

    return wf


def show_json(db_url: str, run_id: str) -> dict[str, Any]:
    res = CliRunner().invoke(cli, ["--db", db_url, "show", run_id, "-o", "json"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return json.loads(res.output)


# ---------------------------------------------------------------------------------- run parameters
@SIZES
def test_a_run_parameter_reads_back_equal_in_the_run_its_steps_and_show(store_url: str, size: int) -> None:
    blob = text(size)
    run = echo(store_url, "param").run(params={"blob": blob})
    assert run.wait(timeout=TIMEOUT) == "succeeded"
    assert run.params == {"blob": blob}
    assert run.output("echo") == blob and run.output("measure") == len(blob)
    assert show_json(store_url, run.id)["params"] == {"blob": blob}


ATTACH_SCRIPT = '''
import json
import sys

import nbflow

wf = nbflow.Workflow("resumable")  # the store: NBFLOW_DB


@wf.step
def echo(blob):
    return blob


@wf.step
def measure(echo):
    return len(echo)


if sys.argv[1] == "start":  # paused before measure; exiting hands the run back
    run = wf.run(params={"blob": "x" * int(sys.argv[2])}, breakpoints=["measure"])
    print(run.id, run.wait(60), flush=True)
else:
    run = wf.attach(sys.argv[2])
    run.resume()
    print(run.wait(60), json.dumps(run.output("measure")), json.dumps(run.params["blob"] == "x" * int(sys.argv[3])),
          flush=True)
'''


@SIZES
def test_a_run_with_a_large_parameter_is_taken_over_by_another_process(db_url: str, tmp_path: Path, size: int) -> None:
    script = tmp_path / "resumable.py"
    script.write_text(ATTACH_SCRIPT)
    n = size - 2

    def python(*args: str) -> list[str]:
        res = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=120,
                             check=False, env={**os.environ, "NBFLOW_DB": db_url})
        assert res.returncode == 0, res.stderr
        return res.stdout.split()

    run_id, status = python("start", str(n))
    assert status == "paused"
    assert python("attach", run_id, str(n)) == ["succeeded", str(n), "true"]


@SIZES
def test_a_fork_of_a_run_with_a_large_parameter_runs_with_it(db_url: str, size: int) -> None:
    blob = text(size)
    wf = echo(db_url, "fork")
    parent = wf.run(params={"blob": blob})
    assert parent.wait(timeout=TIMEOUT) == "succeeded"
    child = wf.attach(parent.id).fork("echo")
    assert child.wait(timeout=TIMEOUT) == "succeeded"
    assert child.params == {"blob": blob} and child.output("measure") == len(blob)
    assert show_json(db_url, child.id)["params"] == {"blob": blob}


# ---------------------------------------------------------------------------------- operator payloads
@SIZES
def test_skip_with_a_large_output_gives_it_downstream(store_url: str, size: int) -> None:
    blob = text(size)
    run = shop(store_url, "skip").run(breakpoints=["enrich"])
    assert run.wait(timeout=TIMEOUT) == "paused"
    run.skip("enrich", output=blob)
    assert run.wait(timeout=TIMEOUT) == "succeeded"
    assert run.output("enrich") == blob and run.output("total") == len(blob)


@SIZES
def test_set_inputs_with_a_large_input_runs_the_step_on_it(db_url: str, size: int) -> None:
    blob = text(size)
    run = shop(db_url, "inputs").run(breakpoints=["enrich"])
    assert run.wait(timeout=TIMEOUT) == "paused"
    run.set_inputs("enrich", load=blob)
    assert run.instance("enrich").inputs == {"load": blob}
    run.resume("enrich")
    assert run.wait(timeout=TIMEOUT) == "succeeded"
    assert run.output("enrich") == blob.upper() and run.output("total") == len(blob)


@SIZES
def test_set_output_with_a_large_value_replaces_the_output(db_url: str, size: int) -> None:
    blob = text(size)
    run = shop(db_url, "output").run(breakpoints=[Breakpoint("enrich", when="after")])
    assert run.wait(timeout=TIMEOUT) == "paused"
    run.set_output("enrich", value=blob, reason="a bigger one")
    run.resume("enrich")
    assert run.wait(timeout=TIMEOUT) == "succeeded"
    assert run.output("enrich") == blob and run.output("total") == len(blob)


@SIZES
def test_cli_skip_with_a_large_output(db_url: str, size: int) -> None:
    blob = text(size)
    run = shop(db_url, "cli_skip").run(breakpoints=["enrich"])
    assert run.wait(timeout=TIMEOUT) == "paused"
    res = CliRunner().invoke(cli, ["--db", db_url, "skip", run.id, "enrich", "--output", json.dumps(blob), "--force"],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert run.wait(timeout=TIMEOUT) == "succeeded"
    assert run.output("enrich") == blob


@SIZES
def test_cli_skip_reads_a_large_output_from_a_file(db_url: str, size: int, tmp_path: Path) -> None:
    """From a real shell: a value this large does not fit in one command-line argument, @FILE does."""
    blob = text(size)
    (tmp_path / "output.json").write_text(json.dumps(blob))
    run = shop(db_url, "cli_file").run(breakpoints=["enrich"])
    assert run.wait(timeout=TIMEOUT) == "paused"
    res = subprocess.run([sys.executable, "-m", "nbflow", "--db", db_url, "skip", run.id, "enrich", "--output",
                          f"@{tmp_path / 'output.json'}", "--force"],
                         capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120, check=False)
    assert res.returncode == 0, res.stderr
    assert run.wait(timeout=TIMEOUT) == "succeeded"
    assert run.output("enrich") == blob


def test_cli_json_from_a_missing_file_is_a_usage_error(db_url: str, tmp_path: Path) -> None:
    run = shop(db_url, "cli_nofile").run(breakpoints=["enrich"])
    assert run.wait(timeout=TIMEOUT) == "paused"
    res = CliRunner().invoke(cli, ["--db", db_url, "skip", run.id, "enrich", "--output", f"@{tmp_path / 'nope.json'}",
                                   "--force"])
    assert res.exit_code == 2 and "cannot read JSON from" in res.output
    assert run.instance("enrich").status == "paused"


def gated(db_url: str, name: str) -> Workflow:
    """gate (approval) -> ship(gate)."""
    wf = Workflow(name, store=db_url)
    wf.approval("gate")

    @wf.step
    def ship(gate):
        return len(gate)

    return wf


@SIZES
def test_approve_with_a_large_payload_makes_it_the_gates_output(db_url: str, size: int) -> None:
    blob = text(size)
    run = gated(db_url, "approve").run()
    assert run.wait(timeout=TIMEOUT) == "paused"
    run.approve("gate", payload=blob)
    assert run.wait(timeout=TIMEOUT) == "succeeded"
    assert run.output("gate") == blob and run.output("ship") == len(blob)


# ---------------------------------------------------------------------------------- signal payloads
def hooked(db_url: str, name: str, breakpoints: list[str] | None = None) -> nbflow.Run:
    """hook (wf.wait) -> use(hook), waiting on hook."""
    wf = Workflow(name, store=db_url)
    wf.wait("hook", timeout=300)

    @wf.step
    def use(hook):
        return len(hook)

    run = wf.run(breakpoints=breakpoints or [])
    assert run.wait(timeout=TIMEOUT) == "paused"
    return run


@SIZES
def test_a_large_signal_payload_becomes_the_wait_steps_output(store_url: str, size: int) -> None:
    blob = text(size)
    run = hooked(store_url, "signal")
    token = run.instance("hook").token
    assert token is not None
    assert nbflow.signal(token, blob, store_url).message == "delivered"
    assert run.wait(timeout=TIMEOUT) == "succeeded"
    assert run.output("hook") == blob and run.output("use") == len(blob)


@SIZES
def test_a_run_that_received_a_large_signal_is_taken_over_with_it(db_url: str, size: int) -> None:
    blob = text(size)
    run = hooked(db_url, "signal_attach", breakpoints=["use"])
    token = run.instance("hook").token
    assert token is not None
    nbflow.signal(token, blob, db_url)
    assert run.wait(timeout=TIMEOUT) == "paused" and run.instance("use").status == "paused"
    stop_all()  # this process hands the run back, as when its kernel exits
    wf = Workflow("signal_attach", store=db_url)
    wf.wait("hook", timeout=300)

    @wf.step
    def use(hook):
        return len(hook)

    taken = wf.attach(run.id)
    taken.resume()
    assert taken.wait(timeout=TIMEOUT) == "succeeded"
    assert taken.output("hook") == blob and taken.output("use") == len(blob)


# ---------------------------------------------------------------------------------- refusals
def test_a_run_refused_after_its_large_parameter_was_encoded_leaves_no_file(store_url: str) -> None:
    wf = Workflow("unpicklable", store=store_url, executor="processes")
    lock = threading.Lock()  # a notebook object a worker process cannot get: refused after encoding

    @wf.step
    def guarded(blob):
        with lock:
            return len(blob)

    before = artifact_files(store_url)
    with pytest.raises(DefinitionError, match="cannot be sent to executor='processes'"):
        wf.run(params={"blob": text(LARGE_VALUE_BYTES + 64)})
    assert artifact_files(store_url) == before
    assert nbflow.Store.open(store_url).run_rows() == []


REFUSED = {
    "skip on a finished run": lambda run, blob: run.skip("enrich", output=blob),
    "set_inputs naming an input the step does not take": lambda run, blob: run.set_inputs("enrich", nope=blob),
    "set_output on an unknown step": lambda run, blob: run.set_output("nope", value=blob),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_a_refused_command_with_a_large_payload_leaves_no_file(db_url: str, case: str) -> None:
    finished = case == "skip on a finished run"
    run = shop(db_url, "refused").run(breakpoints=[] if finished else ["enrich"])
    assert run.wait(timeout=TIMEOUT) == ("succeeded" if finished else "paused")
    before = artifact_files(db_url)
    with pytest.raises(CommandRefused):
        REFUSED[case](run, text(LARGE_VALUE_BYTES + 64))
    assert artifact_files(db_url) == before


def test_a_large_signal_to_a_finished_run_is_refused_and_leaves_no_file(db_url: str) -> None:
    run = hooked(db_url, "late_signal")
    token = run.instance("hook").token
    assert token is not None
    run.cancel()
    assert run.wait(timeout=TIMEOUT) == "cancelled"
    before = artifact_files(db_url)
    with pytest.raises(SignalRefused, match="no longer waits"):
        nbflow.signal(token, text(LARGE_VALUE_BYTES + 64), db_url)
    assert artifact_files(db_url) == before


def test_a_large_output_whose_commit_fails_leaves_no_file(db_url: str, tmp_path: Path) -> None:
    """The owner lost the run to another owner while a step ran: the output is not committed, nor its file kept."""
    wf = Workflow("lost", store=db_url)

    @wf.step
    def produce(gate):
        while not os.path.exists(gate):
            time.sleep(0.01)
        return text(LARGE_VALUE_BYTES + 64)

    gate = tmp_path / "gate"
    run = wf.run(params={"gate": str(gate)})
    deadline = time.monotonic() + TIMEOUT
    while run.instance("produce").status != "running":
        assert time.monotonic() < deadline, "produce never started"
        time.sleep(0.01)
    before = artifact_files(db_url)
    with sqlite3.connect(db_url.removeprefix("sqlite:///")) as conn:  # as a forced takeover elsewhere writes it
        conn.execute("UPDATE runs SET owner_id = 'another owner' WHERE id = ?", (run.id,))
    gate.touch()
    while live(run.id) is not None:
        assert time.monotonic() < deadline, "the scheduler kept the run it lost"
        time.sleep(0.01)
    assert run.instance("produce").status == "running"  # what the new owner will run again
    assert artifact_files(db_url) == before
