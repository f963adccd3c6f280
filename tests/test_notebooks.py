"""The example notebooks (notebooks/) run top to bottom headless, in a real kernel (nbclient), each in
its own working directory with NBFLOW_DB pointing at a fresh SQLite file; each test checks what a
reader of the executed notebook sees, and the store behind it. A notebook whose run waits for a
person has a next cell that does what the person would (through the API, the magics or the CLI)."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient
from shown import shown

import nbflow
from nbflow import Run, Store

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
WIDGET = "application/vnd.jupyter.widget-view+json"

TESTED: set[str] = set()


def covers(name: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Mark a test as the one that executes notebooks/NAME."""

    def mark(fn: Callable[..., None]) -> Callable[..., None]:
        TESTED.add(name)
        return fn

    return mark


# ---------------------------------------------------------------------------------- helpers
class Executed:
    """An executed notebook: the text a reader sees under each cell, and the store it used."""

    def __init__(self, nb: nbformat.NotebookNode, db_url: str) -> None:
        self.nb = nb
        self.store = Store.open(db_url)

    def cell(self, contains: str) -> nbformat.NotebookNode:
        for cell in self.nb.cells:
            if cell.cell_type == "code" and contains in cell.source:
                return cell
        raise AssertionError(f"no code cell contains {contains!r}")

    def shown(self, contains: str) -> str:
        """What the first code cell containing *contains* shows, as text (see shown.shown)."""
        return shown(self.cell(contains).get("outputs", []))

    def mimetypes(self, contains: str) -> set[str]:
        return {m for o in self.cell(contains).get("outputs", []) for m in o.get("data", {})}

    def runs(self, workflow: str) -> list[Run]:
        """The workflow's runs, oldest first."""
        return list(reversed(nbflow.runs(self.store, workflow=workflow)))


def execute(name: str, tmp_path: Path, db_url: str, before: dict[str, str] | None = None) -> Executed:
    """Run notebooks/NAME in a copy of notebooks/ under *tmp_path* (the kernel's working directory);
    NBFLOW_DB (set by the db_url fixture) reaches the kernel and the commands it starts. *before* maps
    a text of a code cell to code run just before that cell: what a person does meanwhile (a click)."""
    work = tmp_path / "notebooks"
    shutil.copytree(NOTEBOOKS, work)
    nb = nbformat.read(work / name, as_version=4)
    for contains, code in (before or {}).items():
        at = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code" and contains in c.source)
        nb.cells.insert(at, nbformat.v4.new_code_cell(code))
    # as in the person's JupyterLab, the runs display as the widget (nbclient alone gets the static view)
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(work)}}).execute(
        env={**os.environ, "NBFLOW_WIDGET": "live"})
    assert not (work / ".nbflow").exists(), "the notebook wrote a store of its own instead of using NBFLOW_DB"
    return Executed(nb, db_url)


def click(action: str, **args: Any) -> str:
    """Kernel code that does what a click in the displayed widget does: the action through the run's
    widget (``RunWidget.handle_message``, which applies it with the widget's Controller, as the ESM's
    ``act`` does), prints the answer, then waits until the run settles, as a person reads meanwhile."""
    return ("from nbflow.notebook.widget import widget_for as _widget_for\n"
            f"_answer = _widget_for(run).handle_message({{'action': {action!r}, **{args!r}}})\n"
            "print('clicked:', _answer['ok'], _answer['text'])\n"
            "run.wait()")


# ---------------------------------------------------------------------------------- the notebooks
@covers("00-quickstart.ipynb")
def test_quickstart_pauses_before_report_resumes_it_and_shows_the_revenue(tmp_path: Path, db_url: str) -> None:
    ex = execute("00-quickstart.ipynb", tmp_path, db_url)
    (run,) = ex.runs("quickstart")
    assert WIDGET in ex.mimetypes("%nbflow run -p n=12 --break report")  # the debugger widget is the cell's output
    paused = ex.shown("paused = run.instance")
    assert f"run {run.id} is paused" in paused and "report: paused before" in paused
    assert "12 line totals" in paused
    assert "resumed 1 instance" in ex.shown("%nbflow resume report")
    revenue = sum((1 + i % 3) * 2.5 * (i % 4) for i in range(12))
    done = ex.shown('run.output("report")')
    assert f"run {run.id} is succeeded" in done and f"{{'orders': 12, 'revenue': {revenue}}}" in done
    assert re.search(rf"{run.id}\s+quickstart\s+succeeded\s+0\s+14/14", ex.shown("%nbflow runs"))


def test_run_all_on_the_quickstart_shows_the_run_paused_at_report(tmp_path: Path, db_url: str) -> None:
    """Executed top to bottom, as "Run All" does, the cell that shows the debugger shows it paused at the
    breakpoint (its saved text and HTML: what a notebook saved without the widget's state shows)."""
    ex = execute("00-quickstart.ipynb", tmp_path, db_url)
    (run,) = ex.runs("quickstart")
    cell = ex.cell("%nbflow run -p n=12 --break report")
    (display,) = [o for o in cell.outputs if WIDGET in o.get("data", {})]
    text = display["data"]["text/plain"]
    assert f"nbflow run {run.id} of 'quickstart': paused, 13/14 done" in text
    assert re.search(r"report\s+task\s+1 paused", text) and "breakpoint #1 report (before, run): hit" in text, text
    assert ">PAUSED</span>" in display["data"]["text/html"]
    assert run.status == "succeeded"  # the next cells resumed it


def test_quickstart_after_the_user_clicked_resume_says_report_is_already_resumed_and_finishes(
    tmp_path: Path, db_url: str
) -> None:
    ex = execute("00-quickstart.ipynb", tmp_path, db_url, before={
        "%nbflow resume report": click("resume", step="report"),
    })
    (run,) = ex.runs("quickstart")
    assert "clicked: True resumed 1 instance" in ex.shown("_widget_for(run)")
    assert ex.shown("%nbflow resume report") == "report is already resumed (succeeded); nothing to do\n"
    assert f"run {run.id} is succeeded" in ex.shown('run.output("report")')
    assert [e.step for e in run.history() if e.kind == "resumed"] == ["report"]  # resumed once, by the click


@covers("01-develop-step-by-step.ipynb")
def test_develop_stops_at_every_step_finds_the_bug_and_the_fork_reuses_the_slow_step(
    tmp_path: Path, db_url: str
) -> None:
    ex = execute("01-develop-step-by-step.ipynb", tmp_path, db_url)
    first, fork, _debugged = ex.runs("develop")
    assert "paused at ['readings']" in ex.shown("run = nbflow_run")
    assert "stepped over readings; pausing before: celsius" in ex.shown("%nbflow step readings")
    assert ("celsius:Cairo before: step over readings {'city': 'Cairo', 'f': 95.0}"
            in ex.shown('run.instances("celsius", status="paused")'))
    assert "paused at ['summary']" in ex.shown('run.instance("summary").inputs["celsius"]')
    assert "'c': 113.4" in ex.shown('run.instance("summary").inputs["celsius"]')  # the bug, in summary's inputs
    assert "{'hottest': 'Cairo', 'max_c': 35.0, 'mean_c': 18.8}" in ex.shown("fixed = run.fork")
    assert f"from {first.id} reusing ['readings']" in ex.shown("created = fixed.history()[0]")
    assert "readings started 0 time(s) in the fork" in ex.shown("created = fixed.history()[0]")
    assert (first.status, fork.status) == ("cancelled", "succeeded")
    assert fork.output("celsius") == [{"city": "Oslo", "c": 5.0}, {"city": "Cairo", "c": 35.0},
                                      {"city": "Lima", "c": 20.0}, {"city": "Quito", "c": 15.0}]


def test_develop_debugs_the_failing_item_in_a_cell_and_the_hot_fix_retries_it_on_the_new_code(
    tmp_path: Path, db_url: str
) -> None:
    ex = execute("01-develop-step-by-step.ipynb", tmp_path, db_url)
    *_, debugged = ex.runs("develop")
    assert "paused at [('feels:Cairo', 'IndexError: list index out of range" in ex.shown(
        'print(run.wait(), "at", [(i.label, str(i.error))')
    assert "{'city': 'Cairo', 'c': 35.0}" in ex.shown("%nbflow debug feels:Cairo")  # item, bound in the notebook
    assert "{'city': 'Cairo', 'feels': 'hot'}" in ex.shown('["cold", "mild", "warm", "hot"]')  # the new body, run
    diff = ex.shown('[change] = [e for e in run.history() if e.kind == "code_changed"]')
    assert "['feels']" in diff and '-label = ["cold", "mild", "warm"]' in diff and '+label = ["cold", "mild"' in diff
    assert debugged.status == "succeeded"
    assert debugged.output("feels") == [{"city": "Oslo", "feels": "cold"}, {"city": "Cairo", "feels": "hot"},
                                        {"city": "Lima", "feels": "warm"}, {"city": "Quito", "feels": "mild"}]


def test_develop_after_the_user_resumed_in_the_widget_says_so_and_forks_as_before(
    tmp_path: Path, db_url: str
) -> None:
    ex = execute("01-develop-step-by-step.ipynb", tmp_path, db_url, before={
        "%nbflow step readings": click("step_over", step="readings"),
        "%nbflow resume celsius": click("resume_all"),
    })
    first, fork, _debugged = ex.runs("develop")
    assert "readings is already resumed (" in ex.shown("%nbflow step readings")
    assert "every celsius item is already resumed: ['succeeded']" in ex.shown("%nbflow resume celsius")
    assert "paused at ['summary']" in ex.shown('run.instance("summary").inputs["celsius"]')
    assert (first.status, fork.status) == ("cancelled", "succeeded")


@covers("02-debug-a-foreach.ipynb")
def test_foreach_with_17_failures_is_fixed_by_code_change_input_edit_and_skips(tmp_path: Path, db_url: str) -> None:
    ex = execute("02-debug-a-foreach.ipynb", tmp_path, db_url)
    (run,) = ex.runs("payments")
    assert "17 items paused on error; 983 succeeded" in ex.shown("items paused on error")
    assert "Counter({'ValueError': 13, 'TypeError': 4})" in ex.shown("inst.error.type")
    groups = ex.shown("groups = run.error_groups")  # three causes, largest first
    assert "1. 12 x ValueError: could not convert string to float: '9,9' @ parse:" in groups
    assert " 4 x TypeError: float() argument must be a string or a real number, not 'NoneType' @ parse:" in groups
    assert "3.  1 x ValueError: could not convert string to float: '9a.9' @ parse:" in groups
    assert "parse:666  amount='6O.66'" in ex.shown("for inst in paused:")
    assert "retrying 12 instances" in ex.shown("commas = ")
    cents = {i: round(float(f"{10 + i % 90}.{i % 100:02d}") * 100) for i in range(1000)}
    cents |= {666: 6066, 100: 0, 300: 0, 500: 0, 700: 0}  # the typo corrected to 60.66; no amount: skipped as 0
    assert f"succeeded | total: {sum(cents.values()) / 100}" in ex.shown("missing = ")
    assert "Counter({'succeeded': 996, 'skipped': 4})" in ex.shown("str(inst.status)")
    assert [i.key for i in run.instances("parse", status="skipped")] == [100, 300, 500, 700]
    assert run.instance("parse", key=666).output == {"id": 666, "cents": 6066}
    (edit,) = [e for e in run.history() if e.kind == "inputs_changed"]
    assert edit.data["reason"] == "typo in the export: O for 0" and edit.data["old"]["item"]["amount"] == "6O.66"


def test_foreach_after_the_user_retried_and_skipped_in_the_widget_acts_only_on_the_rest(
    tmp_path: Path, db_url: str
) -> None:
    commas = [i for i in range(1000) if i % 83 == 41]
    ex = execute("02-debug-a-foreach.ipynb", tmp_path, db_url, before={
        "commas = ": click("retry", step="parse", keys=commas),
        "missing = ": click("skip", step="parse", keys=[100, 300, 500, 700], output={"id": 0, "cents": 0}),
    })
    (run,) = ex.runs("payments")
    assert "12 of 12 no longer accept retry ({'succeeded': 12}); nothing to do" in ex.shown("commas = ")
    assert "retrying 1 instance" in ex.shown("key=666")  # the typo was left to the notebook
    done = ex.shown("missing = ")
    assert "4 of 4 no longer accept skip ({'skipped': 4}); nothing to do" in done
    cents = {i: round(float(f"{10 + i % 90}.{i % 100:02d}") * 100) for i in range(1000)}
    cents |= {666: 6066, 100: 0, 300: 0, 500: 0, 700: 0}
    assert f"succeeded | total: {sum(cents.values()) / 100}" in done
    assert sum(e.kind == "retry_requested" for e in run.history()) == 13  # 12 by the click, 1 by the notebook


@covers("03-fix-an-intermediate-value.ipynb")
def test_an_after_breakpoint_holds_the_bad_rate_until_it_is_corrected(tmp_path: Path, db_url: str) -> None:
    ex = execute("03-fix-an-intermediate-value.ipynb", tmp_path, db_url)
    (run,) = ex.runs("invoicing")
    assert ex.shown("inst.pause_reason").splitlines() == ["paused", "rate:JPY paused after with output 0.0"]
    feed = {"CHF": 1.13, "EUR": 1.08, "GBP": 1.27, "JPY": 0.0067, "SEK": 0.095}
    total = round(sum((100 + i) * feed[["EUR", "GBP", "JPY", "CHF", "SEK"][i % 5]] for i in range(500)), 2)
    assert f"succeeded | usd_total: {total}" in ex.shown("run.set_output")
    assert "('output_changed',\n  'JPY',\n  0.0,\n  0.0067," in ex.shown('e.kind == "output_changed"')
    assert run.output("rate") == [1.13, 1.08, 1.27, 0.0067, 0.095]
    assert "invoices ran 1 time(s)" in ex.shown("invoices ran")


def test_intermediate_value_after_the_user_edited_and_resumed_in_the_widget_says_so(
    tmp_path: Path, db_url: str
) -> None:
    edit = click("set_output", step="rate", key="JPY", value=0.0067, reason="from the bank's sheet")
    ex = execute("03-fix-an-intermediate-value.ipynb", tmp_path, db_url, before={
        "run.set_output": edit + "\n" + click("resume", step="rate", key="JPY"),
    })
    (run,) = ex.runs("invoicing")
    shown_ = ex.shown("run.set_output")
    assert "rate:JPY is already resumed (succeeded) with output 0.0067; nothing to do" in shown_
    assert "succeeded | usd_total: " in shown_
    (change,) = [e for e in run.history() if e.kind == "output_changed"]
    assert change.data["reason"] == "from the bank's sheet"  # the widget's edit, not a second one


@covers("04-approval-and-callback.ipynb")
def test_the_gate_is_approved_and_the_signal_from_another_process_finishes_the_run(
    tmp_path: Path, db_url: str
) -> None:
    ex = execute("04-approval-and-callback.ipynb", tmp_path, db_url)
    (run,) = ex.runs("release")
    assert "sign_off: waiting for approval" in ex.shown("gate = run.instance")
    assert "approved sign_off" in ex.shown("run.approve(")
    assert "smoke_tests is waiting" in ex.shown("token = run.instance")
    assert f"exit 0: delivered to smoke_tests of run {run.id}" in ex.shown("def external_system")
    assert "'app-1.4.0.tar.gz is live in eu-west: 12/12 smoke tests passed'" in ex.shown('run.output("announce")')
    again = ex.shown('token[:-6] + "AAAAAA"')
    assert "exit 0: duplicate" in again and "exit 1: refused: the signal token is not valid" in again
    assert run.output("smoke_tests") == {"passed": 12, "total": 12}  # the first payload stands
    assert run.output("sign_off") == {"region": "eu-west"}


def test_approval_after_the_user_approved_in_the_widget_says_so_and_the_callback_finishes(
    tmp_path: Path, db_url: str
) -> None:
    approve = click("approve", step="sign_off", comment="looks good", payload={"region": "eu-west"})
    ex = execute("04-approval-and-callback.ipynb", tmp_path, db_url, before={"run.approve(": approve})
    (run,) = ex.runs("release")
    assert "sign_off is already decided (succeeded, output {'region': 'eu-west'}); nothing to do" in ex.shown(
        "run.approve(")
    assert "12/12 smoke tests passed" in ex.shown('run.output("announce")')
    assert [e.data.get("comment") for e in run.history() if e.kind == "approved"] == ["looks good"]


@covers("05-papermill-batch.ipynb")
def test_the_batch_run_pauses_on_the_bad_item_and_the_cli_finishes_it(tmp_path: Path, db_url: str) -> None:
    ex = execute("05-papermill-batch.ipynb", tmp_path, db_url)
    (run,) = ex.runs("nightly")
    started = ex.shown("run pipelines/nightly.ipynb")
    assert "outcome: paused (exit 3)" in started and "exit code: 3" in started and "parse:13" in started
    assert f"{run.id} paused | a live owner: False" in ex.shown("nbflow.runs(workflow=")
    assert "invalid literal for" in ex.shown("show {run.id}")
    assert "queued" in ex.shown("skip {run.id}")
    assert f"took over run {run.id}" in ex.shown("resume {run.id} --force")
    assert f"{run.id} succeeded | total: {sum(3 * i for i in range(40) if i != 13)}" in ex.shown('run.output("total")')
    assert "parse ran 40 times for 40 items" in ex.shown('run.output("total")')
    assert run.instance("parse", key=13).status == "skipped" and run.instance("parse", key=13).output == 0


@covers("06-scale-out-dask-postgres.ipynb")
def test_scale_out_runs_steps_on_dask_workers_and_pauses_one_item(tmp_path: Path, db_url: str) -> None:
    if not hasattr(nbflow, "DaskExecutor"):
        pytest.skip("needs nbflow.DaskExecutor (issue 8)")
    pytest.importorskip("distributed", reason="needs dask.distributed (the [dask] extra)")
    ex = execute("06-scale-out-dask-postgres.ipynb", tmp_path, db_url)
    dask_run, local = ex.runs("scale_out")
    assert "Dask workers: 2" in ex.shown("LocalCluster(")
    assert f"store: {Store.open(db_url).display_url}" in ex.shown("store = os.environ")  # NBFLOW_PG_URL unset here
    assert "paused at ['crunch:3']" in ex.shown("items done on the cluster")
    assert "7 items done on the cluster" in ex.shown("items done on the cluster")
    shown = ex.shown('run.resume("crunch", key=3)')
    assert "succeeded | {'sum_sq': 21332533340000, 'workers': " in shown
    assert "crunching 5000 numbers on tcp://" in ex.shown('run.instance("crunch", key=0).logs')
    assert "succeeded | {'sum_sq': 21332533340000, 'workers': 1}" in ex.shown('executor="processes"')
    assert (dask_run.status, local.status) == ("succeeded", "succeeded")


def test_scale_out_after_the_user_resumed_crunch_3_in_the_widget_says_so(tmp_path: Path, db_url: str) -> None:
    if not hasattr(nbflow, "DaskExecutor"):
        pytest.skip("needs nbflow.DaskExecutor (issue 8)")
    pytest.importorskip("distributed", reason="needs dask.distributed (the [dask] extra)")
    ex = execute("06-scale-out-dask-postgres.ipynb", tmp_path, db_url, before={
        'run.resume("crunch", key=3)': click("resume", step="crunch", key=3),
    })
    shown_ = ex.shown('run.resume("crunch", key=3)')
    assert "crunch:3 is already resumed (succeeded); nothing to do" in shown_
    assert "succeeded | {'sum_sq': 21332533340000, 'workers': " in shown_


# ---------------------------------------------------------------------------------- the folder
@covers("07-history-and-what-if.ipynb")
def test_history_frames_the_run_travels_to_its_pause_forks_one_item_and_diffs_the_runs(
    tmp_path: Path, db_url: str
) -> None:
    ex = execute("07-history-and-what-if.ipynb", tmp_path, db_url)
    run, fork = ex.runs("prices")
    assert "paused | ['convert:37']" in ex.shown('breakpoints=["convert:37"]')
    assert "{'succeeded': 100} | mean eur: 11.91 | item 37: 11.04" in ex.shown('frame["eur"]')
    assert "run running; convert:37 paused (before); fee had 0 items then" in ex.shown("then = run.at(paused)")
    assert "ran again in the fork: ['convert:37', 'fee:37', 'total']" in ex.shown("ran_again = ")
    changed = ex.shown('diff = run.diff(fork)')
    assert "convert:37  {'id': 37, 'eur': 11.04} -> {'id': 37, 'eur': 91.08}" in changed
    assert "total  11.95 -> 12.75" in changed and "0 added, 0 removed" in changed
    assert "changed (3)" in ex.shown("!nbflow diff")
    assert fork.history()[0].data["fork"] == {"from_step": "convert", "keys": ["37"]}
    assert [e.data["reason"] for e in fork.history() if e.kind == "inputs_changed"] == ["the feed had the wrong quote"]
    assert (run.status, fork.status, fork.output("total")) == ("succeeded", "succeeded", 12.75)


def test_every_notebook_has_a_test() -> None:
    found = {p.name for p in NOTEBOOKS.glob("*.ipynb")}
    assert found, "notebooks/ has no notebooks"
    assert found == TESTED, f"untested: {sorted(found - TESTED)}; tests of missing notebooks: {sorted(TESTED - found)}"


def test_helper_notebooks_are_used_by_an_example() -> None:
    """Notebooks in subfolders (e.g. the batch pipeline) are run by a top-level one, not on their own."""
    texts = "\n".join(p.read_text() for p in NOTEBOOKS.glob("*.ipynb"))
    for helper in NOTEBOOKS.glob("*/*.ipynb"):
        assert str(helper.relative_to(NOTEBOOKS)) in texts, f"{helper} is used by no notebook"


def _git(*args: str) -> subprocess.CompletedProcess[str] | None:
    try:
        return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, encoding="utf-8",
                              timeout=60, check=False)
    except (OSError, subprocess.SubprocessError):  # no git here
        return None


def committed_text(path: Path) -> str | None:
    """*path* as the repository holds it (its staged copy: what a commit and a fresh clone get), so that a
    reader's outputs saved in the working tree are theirs alone; a notebook not added yet: the working tree's.
    None when the repository is not a git checkout."""
    top = _git("rev-parse", "--show-toplevel")
    if top is None or top.returncode != 0 or Path(top.stdout.strip()).resolve() != ROOT:
        return None
    staged = _git("show", f":{path.relative_to(ROOT).as_posix()}")
    return staged.stdout if staged is not None and staged.returncode == 0 else path.read_text()


@pytest.mark.parametrize("path", sorted(NOTEBOOKS.rglob("*.ipynb")), ids=lambda p: p.name)
def test_notebooks_are_saved_valid_and_without_outputs(path: Path) -> None:
    text = committed_text(path)
    nb = nbformat.reads(path.read_text() if text is None else text, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    assert nb.cells[0].cell_type == "markdown"  # each notebook starts by saying what it shows
    if text is None:
        pytest.skip(f"{ROOT} is not a git checkout, so the outputs saved in {path.name} may be a reader's own "
                    "and are not checked")
    stale: list[dict[str, Any]] = [c for c in nb.cells if c.cell_type == "code" and (c.outputs or c.execution_count)]
    assert not stale, f"{path.name} has saved outputs: clear them (e.g. jupyter nbconvert --clear-output --inplace)"
    assert json.loads(text)["nbformat"] == 4
