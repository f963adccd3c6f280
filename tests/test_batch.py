"""Batch runs with papermill (real papermill, real kernels): a notebook whose run pauses finishes
cleanly and leaves the run paused in the store; the run is resumed later from the CLI (pinned
code), by re-executing the notebook, or from another notebook; a killed kernel leaves the run
interrupted and resumable. `nbflow run` / `nbflow resume --notebook` are invoked in this process
(papermill is slow to import); kernels and the other CLI verbs are separate processes."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import nbformat
import pytest
from click.testing import CliRunner, Result
from shown import shown as _shown

import nbflow
from nbflow import Run, Store
from nbflow.batch import EXIT_FAILED, EXIT_PAUSED, EXIT_SUCCEEDED, RunPaused, run_or_resume
from nbflow.cli import cli
from nbflow.engine.lifecycle import stop_all

NOTEBOOKS = Path(__file__).parent / "notebooks"
ETL = NOTEBOOKS / "batch_etl.ipynb"  # load(n) -> foreach enrich (y = x**2) -> report = sum(y); pauses before stop_at
MAGICS = NOTEBOOKS / "batch_magics.ipynb"  # the same shape written with %%step cells and `%nbflow run --wait`
KILLABLE = NOTEBOOKS / "killable.ipynb"  # first -> slow (hangs the first time) -> last
ATTACH = NOTEBOOKS / "attach_debug.ipynb"  # nbflow.attach(run_id), resume, print the report


# ---------------------------------------------------------------------------------- helpers
def nbflow_run(db_url: str, *args: str) -> Result:
    """`nbflow --db URL ARGS...` in this process (no terminal on stdin)."""
    return CliRunner().invoke(cli, ["--db", db_url, *args], catch_exceptions=False)


def nbflow_cli(db_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`nbflow --db URL ARGS...` in a subprocess: an operator acting while the batch process is gone."""
    return subprocess.run(
        [sys.executable, "-m", "nbflow", "--db", db_url, *args],
        stdin=subprocess.DEVNULL, capture_output=True, check=False, text=True, timeout=120,
    )


def ran(log: Path) -> Counter[str]:
    """How many times each step body ran (the notebooks' side-effect log)."""
    return Counter(log.read_text().split()) if log.exists() else Counter()


def cell_outputs(path: Path, contains: str) -> list[dict[str, Any]]:
    """The outputs of the (first) code cell of the executed notebook whose source contains *contains*."""
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code" and contains in cell.source:
            return list(cell.get("outputs", []))
    raise AssertionError(f"no cell with {contains!r} in {path}")


def shown(outputs: list[dict[str, Any]]) -> str:
    """What a reader of the saved notebook sees without JavaScript: streams, text/plain and text/html."""
    return _shown(outputs, html=True)


def only_run(db_url: str) -> Run:
    (row,) = Store.open(db_url).run_rows()
    return Run(Store.open(db_url), row["id"])


def paused_etl(db_url: str, tmp_path: Path, *extra: str) -> Run:
    """Execute batch_etl.ipynb to its breakpoint; the run it leaves behind."""
    res = nbflow_run(db_url, "run", str(ETL), "--output", str(tmp_path / "out.ipynb"),
                     "-p", "log_path", str(tmp_path / "ran.log"), *extra)
    assert res.exit_code == EXIT_PAUSED, res.output
    run = only_run(db_url)
    assert run.status == "paused"
    return run


# ---------------------------------------------------------------------------------- pausing
def test_a_run_paused_at_a_breakpoint_lets_the_notebook_finish_and_stays_paused_in_the_store(
    db_url: str, tmp_path: Path
) -> None:
    run = paused_etl(db_url, tmp_path)
    assert [i.step for i in run.instances(status="paused")] == ["report"]
    assert run.interrupted  # no process drives it: the kernel gave it up when papermill shut it down
    assert Store.open(db_url).run_row(run.id)["owner_id"] is None  # the lease was given up, not lost
    # the output notebook shows the run: id, status, the paused instance and the static DAG
    waited = shown(cell_outputs(tmp_path / "out.ipynb", "nbflow.batch.finish(run)"))
    assert run.id in waited and "paused" in waited
    assert "paused instances (1):\n  report  before" in waited
    assert "nbflow-static" in waited and "enrich" in waited  # the Run's static text/html (DAG or summary)
    assert "after the wait: paused" in shown(cell_outputs(tmp_path / "out.ipynb", "after the wait"))
    assert ran(tmp_path / "ran.log") == Counter({"load": 1, "enrich:0": 1, "enrich:1": 1, "enrich:2": 1,
                                                 "enrich:3": 1})


def test_nbflow_run_prints_the_runs_the_notebook_started_with_their_status(db_url: str, tmp_path: Path) -> None:
    res = nbflow_run(db_url, "-o", "json", "run", str(ETL), "--output", str(tmp_path / "out.ipynb"),
                     "-p", "log_path", str(tmp_path / "ran.log"))
    assert res.exit_code == EXIT_PAUSED, res.output
    view = json.loads(res.stdout)
    run = only_run(db_url)
    assert view["outcome"] == "paused" and view["exit_code"] == 3 and view["error"] is None
    assert view["output"] == str(tmp_path / "out.ipynb")
    (item,) = view["runs"]
    assert item["id"] == run.id and item["workflow"] == "batch_etl" and item["status"] == "paused"
    assert [(p["step"], p["key"], p["pause_reason"]) for p in item["paused_instances"]] == [("report", None, "before")]


def test_parameters_injected_by_papermill_reach_the_workflow(db_url: str, tmp_path: Path) -> None:
    res = nbflow_run(db_url, "run", str(ETL), "--output", str(tmp_path / "out.ipynb"),
                     "-p", "n", "6", "-p", "stop_at", "None", "-p", "log_path", str(tmp_path / "ran.log"))
    assert res.exit_code == EXIT_SUCCEEDED, res.output
    run = only_run(db_url)
    assert run.id in res.stdout and "succeeded" in res.stdout
    assert run.params == {"n": 6}
    assert run.output("report") == sum(x * x for x in range(6))
    assert "report = 55" in shown(cell_outputs(tmp_path / "out.ipynb", "after the wait"))


def test_a_failed_run_gives_exit_code_4(db_url: str, tmp_path: Path) -> None:
    res = nbflow_run(db_url, "run", str(ETL), "--output", str(tmp_path / "out.ipynb"),
                     "-p", "n", "many", "-p", "log_path", str(tmp_path / "ran.log"))  # range("many") raises
    assert res.exit_code == EXIT_FAILED, res.output
    assert only_run(db_url).status == "failed"
    assert "failed" in res.stdout


def test_fail_on_pause_stops_the_notebook_with_run_paused_and_exit_code_3(db_url: str, tmp_path: Path) -> None:
    out = tmp_path / "out.ipynb"
    res = nbflow_run(db_url, "run", str(ETL), "--output", str(out), "--fail-on-pause",
                     "-p", "log_path", str(tmp_path / "ran.log"))
    assert res.exit_code == EXIT_PAUSED, res.output
    assert "RunPaused" in res.output
    (error,) = [o for o in cell_outputs(out, "nbflow.batch.finish(run)") if o["output_type"] == "error"]
    run = only_run(db_url)
    assert error["ename"] == "RunPaused" and run.id in error["evalue"]
    assert run.id in shown(cell_outputs(out, "nbflow.batch.finish(run)"))  # still shown before raising
    assert cell_outputs(out, "after the wait") == []  # the cells below the wait did not run
    assert run.status == "paused"


def test_plain_papermill_fails_at_a_pause_with_nbflow_fail_on_pause(db_url: str, tmp_path: Path) -> None:
    import papermill
    from papermill.exceptions import PapermillExecutionError

    log = str(tmp_path / "ran.log")
    with pytest.raises(PapermillExecutionError) as failed:  # NBFLOW_DB is in the environment (db_url)
        papermill.execute_notebook(str(ETL), str(tmp_path / "out.ipynb"), cwd=str(tmp_path), progress_bar=False,
                                   parameters={"log_path": log, "nbflow_fail_on_pause": True})
    assert failed.value.ename == RunPaused.__name__
    assert only_run(db_url).status == "paused"


def test_break_options_reach_a_workflow_started_with_the_magics(db_url: str, tmp_path: Path) -> None:
    out = tmp_path / "out.ipynb"
    res = nbflow_run(db_url, "run", str(MAGICS), "--output", str(out), "--break", "enrich:1",
                     "-p", "log_path", str(tmp_path / "ran.log"))
    assert res.exit_code == EXIT_PAUSED, res.output
    run = only_run(db_url)
    assert [i.label for i in run.instances(status="paused")] == ["enrich:1"]
    assert "enrich:1" in res.stdout
    waited = shown(cell_outputs(out, "%nbflow run --wait"))
    assert run.id in waited and "enrich:1  before" in waited and "nbflow-static" in waited


# ---------------------------------------------------------------------------------- resuming
def test_resume_force_finishes_a_paused_batch_run_without_running_a_succeeded_instance_twice(
    db_url: str, tmp_path: Path
) -> None:
    run = paused_etl(db_url, tmp_path)
    res = nbflow_cli(db_url, "resume", run.id, "--force")
    assert res.returncode == 0, res.stderr
    assert run.status == "succeeded"
    assert run.output("report") == 0 + 1 + 4 + 9
    assert ran(tmp_path / "ran.log") == Counter({"load": 1, "enrich:0": 1, "enrich:1": 1, "enrich:2": 1,
                                                 "enrich:3": 1, "report": 1})


def test_resume_with_the_notebook_attaches_to_the_stored_run_and_replays_its_checkpoints(
    db_url: str, tmp_path: Path
) -> None:
    log = str(tmp_path / "ran.log")
    res = nbflow_run(db_url, "run", str(MAGICS), "--output", str(tmp_path / "out.ipynb"), "--break", "enrich:1",
                     "-p", "log_path", log)
    assert res.exit_code == EXIT_PAUSED, res.output
    run = only_run(db_url)
    out = tmp_path / "resumed.ipynb"
    res = nbflow_run(db_url, "resume", run.id, "--notebook", str(MAGICS), "--output", str(out),
                     "-p", "log_path", log, "--force")
    assert res.exit_code == EXIT_SUCCEEDED, res.output
    assert only_run(db_url).id == run.id  # attached: no new run
    assert run.status == "succeeded" and run.output("total") == 1 + 11 + 21
    assert ran(tmp_path / "ran.log") == Counter({"load": 1, "enrich:0": 1, "enrich:1": 1, "enrich:2": 1,
                                                 "total": 1})
    assert "after the wait: succeeded" in shown(cell_outputs(out, "after the wait"))
    assert [e.kind for e in run.history()].count("taken_over") == 1


def test_a_second_notebook_attaches_to_the_batch_run_and_resumes_it(db_url: str, tmp_path: Path) -> None:
    from nbclient import NotebookClient

    run = paused_etl(db_url, tmp_path)
    nb = nbformat.read(ATTACH, as_version=4)
    params = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    params.source = f"run_id = {run.id!r}"
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    debugged = shown(cell_outputs_of(nb, "nbflow.attach(run_id)"))
    assert "paused: ['report']" in debugged and run.id in debugged  # the debug view of the batch run
    resumed = shown(cell_outputs_of(nb, "run.resume()"))
    assert "status: succeeded" in resumed and "report: 14" in resumed
    assert run.status == "succeeded"
    assert ran(tmp_path / "ran.log")["load"] == 1 and ran(tmp_path / "ran.log")["report"] == 1


def cell_outputs_of(nb: Any, contains: str) -> list[dict[str, Any]]:
    return list(next(c for c in nb.cells if c.cell_type == "code" and contains in c.source).outputs)


def test_operator_actions_taken_while_the_batch_process_is_gone_are_applied_on_resume(
    db_url: str, tmp_path: Path
) -> None:
    log = str(tmp_path / "ran.log")
    run = paused_etl(db_url, tmp_path, "-p", "stop_at", "enrich")  # every enrich item paused before its body
    assert len(run.instances("enrich", status="paused")) == 4
    for args in (
        ["skip", run.id, "enrich:0", "--output", '{"id": 0, "x": 0, "y": 100}', "--force"],
        ["set", run.id, "enrich:1", "--inputs", '{"item": {"id": 1, "x": 5}}', "--reason", "bad row", "--force"],
        ["breakpoint", "rm", "--run", run.id, "enrich"],
    ):
        res = nbflow_cli(db_url, *args)
        assert res.returncode == 0, res.stderr
    res = nbflow_run(db_url, "resume", run.id, "--notebook", str(ETL), "--output", str(tmp_path / "resumed.ipynb"),
                     "-p", "log_path", log, "-p", "stop_at", "enrich", "--force")
    assert res.exit_code == EXIT_SUCCEEDED, res.output
    assert run.instance("enrich", 0).status == "skipped"
    assert run.instance("enrich", 1).output == {"id": 1, "x": 5, "y": 25}
    assert run.output("report") == 100 + 25 + 4 + 9
    assert ran(tmp_path / "ran.log") == Counter({"load": 1, "enrich:1": 1, "enrich:2": 1, "enrich:3": 1,
                                                 "report": 1})


def test_a_killed_kernel_leaves_the_run_interrupted_and_it_resumes_to_the_right_result(
    db_url: str, tmp_path: Path
) -> None:
    flag, log = tmp_path / "slow.flag", tmp_path / "ran.log"
    result: dict[str, Result] = {}
    batch = threading.Thread(target=lambda: result.setdefault("res", nbflow_run(
        db_url, "run", str(KILLABLE), "--output", str(tmp_path / "out.ipynb"),
        "-p", "flag_path", str(flag), "-p", "log_path", str(log),
    )))
    batch.start()
    deadline = time.monotonic() + 90
    while not flag.exists() and batch.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert flag.exists(), "the slow step never started"
    os.kill(int(flag.read_text()), signal.SIGKILL)  # the kernel, mid-step
    batch.join(timeout=120)
    res = result["res"]
    assert res.exit_code == EXIT_FAILED, res.output  # the notebook failed: its kernel died
    run = only_run(db_url)
    assert run.id in res.stdout and "interrupted" in res.stdout
    assert run.status == "running" and run.interrupted
    assert run.instance("first").status == "succeeded"

    res2 = nbflow_cli(db_url, "resume", run.id, "--force")
    assert res2.returncode == 0, res2.stderr
    assert run.status == "succeeded" and run.output("last") == 42
    assert ran(log) == Counter({"first": 1, "slow": 1, "last": 1})


# ---------------------------------------------------------------------------------- the Python helper
def _etl(db_url: str, log: list[str]) -> nbflow.Workflow:
    wf = nbflow.Workflow("api_batch", store=db_url)

    @wf.step
    def load(n):  # type: ignore[no-untyped-def]
        log.append("load")
        return list(range(n))

    @wf.foreach("load")
    def double(item):  # type: ignore[no-untyped-def]
        log.append(f"double:{item}")
        return item * 2

    @wf.step
    def total(double):  # type: ignore[no-untyped-def]
        log.append("total")
        return sum(double)

    return wf


def test_run_or_resume_attaches_to_the_run_named_by_nbflow_resume(db_url: str) -> None:
    log: list[str] = []
    wf = _etl(db_url, log)
    first = run_or_resume(wf, params={"n": 3}, namespace={"nbflow_breakpoints": ["total"]})
    assert first.wait(30) == "paused" and [i.step for i in first.instances(status="paused")] == ["total"]
    stop_all()  # what the batch process does as it exits: the run is left paused, with no owner

    again = run_or_resume(_etl(db_url, log), params={"n": 3}, namespace={"nbflow_resume": first.id})
    assert again.id == first.id
    assert again.wait(30) == "succeeded" and again.output("total") == 6
    assert sorted(log) == sorted(["load", "double:0", "double:1", "double:2", "total"])
    assert len(Store.open(db_url).run_rows()) == 1
