"""Pinned code is code: a step that reads the notebook's connections or large data runs, and the
store keeps neither; a resume elsewhere supplies them (the notebook again) or says what it needs;
a step's traceback shows its source lines wherever its pinned code ran."""
from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import nbflow
from nbflow import DefinitionError, Workflow
from nbflow.batch import EXIT_PAUSED, EXIT_SUCCEEDED
from nbflow.cli import cli

NOTEBOOK = Path(__file__).parent / "notebooks" / "uses_notebook.ipynb"
"""conn (a sqlite3 connection) and big (5 million ints) in the notebook; step total reads both."""
WAIT_S = 60


def nbflow_cli(db_url: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """`nbflow --db URL ARGS...` in a new process: an operator after the notebook's kernel is gone."""
    return subprocess.run([sys.executable, "-m", "nbflow", "--db", db_url, *args], cwd=cwd,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120, check=False)


def nbflow_here(db_url: str, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--db", db_url, *args], catch_exceptions=False)


@pytest.fixture
def sqlite_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'store' / 'nbflow.db'}"
    monkeypatch.setenv("NBFLOW_DB", url)
    monkeypatch.chdir(tmp_path)
    return url


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    c = sqlite3.connect(tmp_path / "orders.db", check_same_thread=False)
    c.execute("CREATE TABLE orders (amount INTEGER)")
    c.executemany("INSERT INTO orders VALUES (?)", [(10,), (20,), (12,)])
    c.commit()
    yield c
    c.close()


def orders_workflow(url: str, conn: sqlite3.Connection, **options: object) -> Workflow:
    wf = Workflow("orders", url, **options)  # type: ignore[arg-type]

    @wf.step
    def total() -> int:
        (orders,) = conn.execute("SELECT sum(amount) FROM orders").fetchone()
        return int(orders)

    return wf


def store_bytes(url: str) -> int:
    folder = Path(url.removeprefix("sqlite:///")).parent
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def test_a_step_reading_a_notebook_connection_runs(sqlite_url: str, conn: sqlite3.Connection) -> None:
    run = orders_workflow(sqlite_url, conn).run()
    assert run.wait(timeout=WAIT_S) == "succeeded"
    assert run.output("total") == 42


def test_the_run_names_what_its_step_uses_from_the_notebook(sqlite_url: str, conn: sqlite3.Connection) -> None:
    run = orders_workflow(sqlite_url, conn).run()
    assert run.wait(timeout=WAIT_S) == "succeeded"
    node = json.loads(nbflow_here(sqlite_url, "show", run.id, "-o", "json").output)["dag"]["nodes"][0]
    assert [(u["name"], u["type"], u["reason"]) for u in node["uses"]] == [("conn", "sqlite3.Connection",
                                                                              "unpicklable")]
    text = nbflow_here(sqlite_url, "show", run.id).output
    assert "total uses from the notebook (not stored with the run's code): conn (sqlite3.Connection)" in text


def test_other_notebook_objects_run_too(sqlite_url: str) -> None:
    ready, lock = threading.Event(), threading.Lock()
    ready.set()
    wf = Workflow("objects", sqlite_url)

    @wf.step
    def guarded() -> bool:
        with lock:
            return ready.is_set()

    run = wf.run()
    assert run.wait(timeout=WAIT_S) == "succeeded" and run.output("guarded") is True


def test_large_notebook_data_is_not_copied_into_the_store(sqlite_url: str) -> None:
    big = list(range(5_000_000))  # ~25 MB pickled
    wf = Workflow("large", sqlite_url)

    @wf.step
    def count() -> int:
        return len(big)

    first = wf.run()
    assert first.wait(timeout=WAIT_S) == "succeeded"
    before = store_bytes(sqlite_url)
    big.append(-1)  # the data changed, the code did not
    second = wf.run()
    assert second.wait(timeout=WAIT_S) == "succeeded" and second.output("count") == 5_000_001
    assert store_bytes(sqlite_url) < before + (1 << 20)
    assert second.version == first.version
    node = json.loads(nbflow_here(sqlite_url, "show", second.id, "-o", "json").output)["dag"]["nodes"][0]
    assert [(u["name"], u["type"], u["reason"]) for u in node["uses"]] == [("big", "list", "large")]
    assert node["uses"][0]["text"].startswith("big (list, ") and "MB)" in node["uses"][0]["text"]


def test_small_captured_values_are_still_pinned_with_the_code(sqlite_url: str) -> None:
    threshold = {"min": 5}
    wf = Workflow("small", sqlite_url)

    @wf.step
    def over() -> int:
        return threshold["min"]

    run = wf.run()
    assert run.wait(timeout=WAIT_S) == "succeeded"
    threshold["min"] = 9
    resumed = nbflow_cli(sqlite_url, "show", run.id, "-o", "json")
    assert json.loads(resumed.stdout)["dag"]["nodes"][0]["uses"] == []
    assert wf.run().version != run.version  # a changed captured value is other code


@pytest.mark.parametrize("executor", ["processes"])
def test_a_remote_executor_refuses_a_step_using_a_notebook_connection(
    sqlite_url: str, conn: sqlite3.Connection, executor: str
) -> None:
    wf = orders_workflow(sqlite_url, conn, executor=executor)
    with pytest.raises(DefinitionError) as err:
        wf.run()
    assert "step 'total' uses conn (sqlite3.Connection) from the notebook" in str(err.value)
    assert f"executor={executor!r}" in str(err.value) and "inside the step" in str(err.value)
    assert nbflow.runs(store=sqlite_url) == []  # nothing was written


def test_the_dask_executor_refuses_it_too(sqlite_url: str, conn: sqlite3.Connection, dask_address: str) -> None:
    wf = orders_workflow(sqlite_url, conn, executor=nbflow.DaskExecutor(dask_address))
    with pytest.raises(DefinitionError, match="step 'total' uses conn .* executor='dask'"):
        wf.run()


# ----------------------------------------------------------------- a batch run, resumed elsewhere
def paused_batch(sqlite_url: str, tmp_path: Path) -> str:
    res = nbflow_here(sqlite_url, "run", str(NOTEBOOK), "--output", str(tmp_path / "out.ipynb"),
                      "-p", "db_file", str(tmp_path / "orders.db"))
    assert res.exit_code == EXIT_PAUSED, res.output
    (run,) = nbflow.runs(store=sqlite_url)
    return run.id


def test_resuming_without_the_notebook_names_the_step_and_what_it_needs(sqlite_url: str, tmp_path: Path) -> None:
    run_id = paused_batch(sqlite_url, tmp_path)
    res = nbflow_cli(sqlite_url, "resume", run_id, "--force")
    assert res.returncode == 1
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert "step 'total'" in res.stderr and "conn (sqlite3.Connection)" in res.stderr
    assert f"nbflow resume {run_id} --notebook NB" in res.stderr
    assert nbflow.Run(nbflow.Store.open(sqlite_url), run_id).status == "paused"  # nothing changed


def test_resuming_with_the_notebook_supplies_them(sqlite_url: str, tmp_path: Path) -> None:
    run_id = paused_batch(sqlite_url, tmp_path)
    res = nbflow_here(sqlite_url, "resume", run_id, "--notebook", str(NOTEBOOK), "--output",
                      str(tmp_path / "resumed.ipynb"), "-p", "db_file", str(tmp_path / "orders.db"), "--force")
    assert res.exit_code == EXIT_SUCCEEDED, res.output
    run = nbflow.Run(nbflow.Store.open(sqlite_url), run_id)
    assert run.output("total") == {"orders": 42, "count": 5_000_000}


# ----------------------------------------------------------------- tracebacks of pinned code
def test_a_resumed_run_shows_its_steps_source_lines_in_a_traceback(sqlite_url: str, tmp_path: Path) -> None:
    script = tmp_path / "job.py"
    script.write_text(
        "import sys\nimport nbflow\n\n"
        "wf = nbflow.Workflow('tb')\n\n\n"
        "@wf.step\n"
        "def parse():\n"
        "    value = '51,41'\n"
        "    return float(value)  # the line the traceback shows\n\n\n"
        "run = wf.run(breakpoints=['parse'])\n"
        "print(run.id, run.wait(timeout=60))\n"
    )
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, check=True,
                         env={**os.environ, "NBFLOW_DB": sqlite_url})
    run_id, status = out.stdout.split()
    assert status == "paused"
    script.unlink()  # the file is gone: the lines can only come from the pinned record
    res = nbflow_cli(sqlite_url, "resume", run_id, "--force", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    error = nbflow.Run(nbflow.Store.open(sqlite_url), run_id).instance("parse").error
    assert error.type == "ValueError"
    assert "return float(value)  # the line the traceback shows" in error.traceback


def test_taking_a_run_over_with_its_pinned_code_does_not_pickle_its_steps_again(
    sqlite_url: str, tmp_path: Path
) -> None:
    script = tmp_path / "job.py"
    pickled = tmp_path / "pickled.log"
    script.write_text(
        "import nbflow\n\n"
        f"LOG = {str(pickled)!r}\n\n\n"
        "class Counted:\n"
        "    def __reduce__(self):\n"
        "        with open(LOG, 'a') as f:\n"
        "            f.write('pickled\\n')\n"
        "        return (Counted, ())\n\n\n"
        "marker = Counted()\n"
        "wf = nbflow.Workflow('counted')\n\n\n"
        "@wf.step\n"
        "def step():\n"
        "    return type(marker).__name__\n\n\n"
        "run = wf.run(breakpoints=['step'])\n"
        "print(run.id, run.wait(timeout=60))\n"
    )
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, check=True,
                         env={**os.environ, "NBFLOW_DB": sqlite_url})
    run_id, status = out.stdout.split()
    pinned_once = pickled.read_text().count("pickled")
    assert status == "paused" and pinned_once >= 1
    res = nbflow_cli(sqlite_url, "resume", run_id, "--force", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert nbflow.Run(nbflow.Store.open(sqlite_url), run_id).output("step") == "Counted"
    assert pickled.read_text().count("pickled") == pinned_once  # loaded, run, never pickled again
