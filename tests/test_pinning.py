"""Pinned code is code: a step that reads the notebook's connections or large data runs, and the
store keeps neither; a resume elsewhere supplies them (the notebook again) or says what it needs;
a step's traceback shows its source lines wherever its pinned code ran."""
from __future__ import annotations

import json
import linecache
import os
import re
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


class Notebook:
    """A notebook's namespace: cells run in it as in a kernel (``__name__ == "__main__"``), so its
    functions and classes are pickled by value, and its globals are the notebook's objects."""

    def __init__(self, url: str, **names: Any) -> None:
        self.ns: dict[str, Any] = {"__name__": "__main__", "nbflow": nbflow, "URL": url, **names}

    def cell(self, code: str) -> dict[str, Any]:
        code = textwrap.dedent(code)
        filename = f"<notebook cell {len(linecache.cache)}>"
        linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)  # as IPython does
        exec(compile(code, filename, "exec"), self.ns)  # noqa: S102
        return self.ns


ORDERS = """
wf = nbflow.Workflow("orders", URL, executor=EXECUTOR)


@wf.step
def total():
    (orders,) = conn.execute("SELECT sum(amount) FROM orders").fetchone()
    return int(orders)
"""


def orders(url: str, conn: sqlite3.Connection, executor: Any = None) -> Workflow:
    return Notebook(url, conn=conn, EXECUTOR=executor).cell(ORDERS)["wf"]  # type: ignore[no-any-return]


def store_bytes(url: str) -> int:
    folder = Path(url.removeprefix("sqlite:///")).parent
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def uses_of(url: str, run_id: str, step: str) -> list[tuple[str, str, str]]:
    nodes = json.loads(nbflow_here(url, "show", run_id, "-o", "json").output)["dag"]["nodes"]
    return [(u["name"], u["type"], u["reason"]) for n in nodes if n["step"] == step for u in n["uses"]]


def test_a_step_reading_a_notebook_connection_runs(sqlite_url: str, conn: sqlite3.Connection) -> None:
    run = orders(sqlite_url, conn).run()
    assert run.wait(timeout=WAIT_S) == "succeeded"
    assert run.output("total") == 42


def test_the_run_names_what_its_step_uses_from_the_notebook(sqlite_url: str, conn: sqlite3.Connection) -> None:
    run = orders(sqlite_url, conn).run()
    assert run.wait(timeout=WAIT_S) == "succeeded"
    assert uses_of(sqlite_url, run.id, "total") == [("conn", "sqlite3.Connection", "unpicklable")]
    text = nbflow_here(sqlite_url, "show", run.id).output
    assert "total uses from the notebook (not stored with the run's code): conn (sqlite3.Connection)" in text


def test_other_notebook_objects_run_too(sqlite_url: str) -> None:
    nb = Notebook(sqlite_url)
    nb.cell("""
        import threading
        ready, lock = threading.Event(), threading.Lock()
        ready.set()
        wf = nbflow.Workflow("objects", URL)

        @wf.step
        def guarded():
            with lock:
                return ready.is_set()

        run = wf.run()
    """)
    run = nb.ns["run"]
    assert run.wait(timeout=WAIT_S) == "succeeded" and run.output("guarded") is True
    assert [u[0] for u in uses_of(sqlite_url, run.id, "guarded")] == ["lock", "ready"]


@pytest.mark.parametrize("shape", ["class", "default", "helper", "closure"])
def test_a_connection_reached_through_notebook_code_is_a_use_too(
    sqlite_url: str, conn: sqlite3.Connection, shape: str
) -> None:
    code = {
        "class": "class Repo:\n    def total(self):\n        return conn.execute(SQL).fetchone()[0]\n\n"
                 "@wf.step\ndef total():\n    return Repo().total()\n",
        "default": "@wf.step\ndef total(c=conn):\n    return c.execute(SQL).fetchone()[0]\n",
        "helper": "def query():\n    return conn.execute(SQL).fetchone()[0]\n\n"
                  "@wf.step\ndef total():\n    return query()\n",
        "closure": "def make(c):\n    def total():\n        return c.execute(SQL).fetchone()[0]\n    return total\n\n"
                   "wf.step(make(conn))\n",
    }[shape]
    nb = Notebook(sqlite_url, conn=conn, SQL="SELECT sum(amount) FROM orders")
    nb.cell('wf = nbflow.Workflow("reached", URL)\n' + code + "run = wf.run()\n")
    run = nb.ns["run"]
    assert run.wait(timeout=WAIT_S) == "succeeded" and run.output("total") == 42
    assert [u[1] for u in uses_of(sqlite_url, run.id, "total")] == ["sqlite3.Connection"]


def test_an_attribute_named_like_a_notebook_global_is_not_a_use(sqlite_url: str) -> None:
    nb = Notebook(sqlite_url)
    nb.cell("""
        import types
        data = list(range(200_000))  # large, but the step only reads an attribute called data
        wf = nbflow.Workflow("attribute", URL)

        @wf.step
        def parse():
            resp = types.SimpleNamespace(data=[1, 2])
            return len(resp.data)

        run = wf.run()
    """)
    assert nb.ns["run"].wait(timeout=WAIT_S) == "succeeded"
    assert uses_of(sqlite_url, nb.ns["run"].id, "parse") == []


LARGE = """
wf = nbflow.Workflow("large", URL)


@wf.step
def count():
    return len(big)
"""


@pytest.mark.parametrize("shape", ["5 million ints", "200 strings of 100 KB"])
def test_large_notebook_data_is_not_copied_into_the_store(sqlite_url: str, shape: str) -> None:
    big = list(range(5_000_000)) if shape == "5 million ints" else ["x" * 100_000 + str(i) for i in range(200)]
    wf = Notebook(sqlite_url, big=big).cell(LARGE)["wf"]
    first = wf.run()
    assert first.wait(timeout=WAIT_S) == "succeeded"
    before = store_bytes(sqlite_url)
    big.append("-1")  # the data changed, the code did not
    second = wf.run()
    assert second.wait(timeout=WAIT_S) == "succeeded" and second.output("count") == len(big)
    assert store_bytes(sqlite_url) < before + (1 << 20)
    assert second.version == first.version
    assert uses_of(sqlite_url, second.id, "count") == [("big", "list", "large")]
    node = json.loads(nbflow_here(sqlite_url, "show", second.id, "-o", "json").output)["dag"]["nodes"][0]
    assert re.fullmatch(r"big \(list, (over 1|\d+) MB\)", node["uses"][0]["text"]), node["uses"][0]["text"]


def test_small_captured_values_are_still_pinned_with_the_code(sqlite_url: str) -> None:
    nb = Notebook(sqlite_url)
    nb.cell("""
        threshold = {"min": 5}
        wf = nbflow.Workflow("small", URL)

        @wf.step
        def over():
            return threshold["min"]

        run = wf.run()
    """)
    run = nb.ns["run"]
    assert run.wait(timeout=WAIT_S) == "succeeded"
    assert uses_of(sqlite_url, run.id, "over") == []
    nb.cell('threshold["min"] = 9')
    assert nb.ns["wf"].run().version != run.version  # a changed captured value is other code


def test_a_step_in_a_module_keeps_its_module_objects(
    sqlite_url: str, conn: sqlite3.Connection, tmp_path: Path
) -> None:
    """A step imported from a module (not a notebook) is pinned with its module: the module's own
    connection is no notebook use, and the processes executor runs it."""
    (tmp_path / "etl_module.py").write_text(
        "import sqlite3\nimport nbflow\n\n"  # noqa: S608 - a module's source, its one query fixed
        f"conn = sqlite3.connect({str(tmp_path / 'orders.db')!r}, check_same_thread=False)\n"
        "wf = nbflow.Workflow('module_step', executor='processes')\n\n\n"
        "@wf.step\n"
        "def total():\n"
        "    return conn.execute('SELECT sum(amount) FROM orders').fetchone()[0]\n"
    )
    script = tmp_path / "main.py"
    script.write_text("from etl_module import wf\nrun = wf.run()\nprint(run.id, run.wait(timeout=60))\n")
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, check=True,
                         cwd=tmp_path, env={**os.environ, "NBFLOW_DB": sqlite_url, "PYTHONPATH": str(tmp_path)})
    run_id, status = out.stdout.split()
    assert status == "succeeded", out.stderr
    assert nbflow.Run(nbflow.Store.open(sqlite_url), run_id).output("total") == 42
    assert uses_of(sqlite_url, run_id, "total") == []


@pytest.mark.parametrize("executor", ["processes"])
def test_a_remote_executor_refuses_a_step_using_a_notebook_connection(
    sqlite_url: str, conn: sqlite3.Connection, executor: str
) -> None:
    wf = orders(sqlite_url, conn, executor=executor)
    with pytest.raises(DefinitionError) as err:
        wf.run()
    assert "step 'total' uses conn (sqlite3.Connection) from the notebook" in str(err.value)
    assert f"executor={executor!r}" in str(err.value) and "inside the step" in str(err.value)
    assert nbflow.runs(store=sqlite_url) == []  # nothing was written


def test_the_dask_executor_refuses_it_too(sqlite_url: str, conn: sqlite3.Connection, dask_address: str) -> None:
    wf = orders(sqlite_url, conn, executor=nbflow.DaskExecutor(dask_address))
    with pytest.raises(DefinitionError, match=r"step 'total' uses conn .* executor='dask'"):
        wf.run()


def test_a_missing_notebook_object_fails_a_step_naming_it(sqlite_url: str) -> None:
    """Should pinned code without the notebook's objects run anyway (a step that reads one only on a
    branch the check did not foresee), touching one fails the step with a message naming it."""
    from nbflow.engine import pinning

    nb = Notebook(sqlite_url)
    nb.cell("""
        import threading
        lock = threading.Lock()
        wf = nbflow.Workflow("missing", URL)

        @wf.step
        def greet():
            return f"{lock}"
    """)
    data, _uses = pinning.pickle_step(nb.ns["wf"].steps["greet"])
    loaded = pinning.loads(data)
    with pytest.raises(NameError, match=r"lock \(_thread.lock\) comes from the notebook .* --notebook NB"):
        loaded.fn()


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


def test_nbflow_attach_of_such_a_run_refuses_too_and_says_how_to_attach_it(sqlite_url: str, tmp_path: Path) -> None:
    run_id = paused_batch(sqlite_url, tmp_path)
    with pytest.raises(DefinitionError) as err:
        nbflow.attach(run_id, store=sqlite_url)
    assert "step 'total'" in str(err.value) and "conn (sqlite3.Connection)" in str(err.value)
    assert f"wf.attach({run_id!r})" in str(err.value) and f"nbflow resume {run_id} --notebook NB" in str(err.value)
    assert nbflow.Run(nbflow.Store.open(sqlite_url), run_id).status == "paused"


def test_resuming_with_the_notebook_supplies_them(sqlite_url: str, tmp_path: Path) -> None:
    run_id = paused_batch(sqlite_url, tmp_path)
    res = nbflow_here(sqlite_url, "resume", run_id, "--notebook", str(NOTEBOOK), "--output",
                      str(tmp_path / "resumed.ipynb"), "-p", "db_file", str(tmp_path / "orders.db"), "--force")
    assert res.exit_code == EXIT_SUCCEEDED, res.output
    run = nbflow.Run(nbflow.Store.open(sqlite_url), run_id)
    assert run.output("total") == {"orders": 42, "count": 5_000_000}


# ----------------------------------------------------------------- tracebacks of pinned code
def paused_by_script(script: Path, url: str) -> str:
    """Run *script* (it starts a run that pauses, and prints its id and status) as its own process."""
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, check=True,
                         env={**os.environ, "NBFLOW_DB": url})
    run_id, status = out.stdout.split()
    assert status == "paused", out.stderr
    return run_id


def test_a_resumed_run_shows_its_steps_source_lines_in_a_traceback(sqlite_url: str, tmp_path: Path) -> None:
    script = tmp_path / "job.py"
    script.write_text(
        "import sys\nimport nbflow\n\n"
        "wf = nbflow.Workflow('tb')\n\n\n"
        "def to_number(text):\n"
        "    return float(text)  # the helper's line\n\n\n"
        "@wf.step\n"
        "def parse():\n"
        "    value = '51,41'\n"
        "    return float(value)  # the line the traceback shows\n\n\n"
        "@wf.step\n"
        "def other():\n"
        "    return to_number('12,5')\n\n\n"
        "run = wf.run(breakpoints=['parse', 'other'])\n"
        "print(run.id, run.wait(timeout=60))\n"
    )
    run_id = paused_by_script(script, sqlite_url)
    script.unlink()  # the file is gone: the lines can only come from the pinned record
    res = nbflow_cli(sqlite_url, "resume", run_id, "--force", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    run = nbflow.Run(nbflow.Store.open(sqlite_url), run_id)
    assert run.instance("parse").error.type == "ValueError"
    assert "return float(value)  # the line the traceback shows" in run.instance("parse").error.traceback
    traceback = run.instance("other").error.traceback  # the same file, a second step and its helper
    assert "return to_number('12,5')" in traceback and "return float(text)  # the helper's line" in traceback


@pytest.mark.parametrize("executor", ["processes", "dask"])
def test_a_notebook_helpers_traceback_shows_its_line_on_a_worker(
    sqlite_url: str, executor: str, request: pytest.FixtureRequest
) -> None:
    chosen: Any = nbflow.DaskExecutor(request.getfixturevalue("dask_address")) if executor == "dask" else executor
    nb = Notebook(sqlite_url, EXECUTOR=chosen)
    nb.cell("""
        class Parser:
            def number(self, text):
                return float(text)  # the method's line

        def to_number(text):
            return Parser().number(text)  # the helper's line

        wf = nbflow.Workflow("helper_tb", URL, executor=EXECUTOR)

        @wf.step
        def parse():
            return to_number("51,41")

        run = wf.run()
    """)
    run = nb.ns["run"]
    assert run.wait(timeout=WAIT_S) == "failed"
    traceback = run.instance("parse").error.traceback
    assert 'return to_number("51,41")' in traceback
    assert "return Parser().number(text)  # the helper's line" in traceback
    assert "return float(text)  # the method's line" in traceback
    assert "<dynamic-code>" not in traceback


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
    run_id = paused_by_script(script, sqlite_url)
    pinned_once = pickled.read_text().count("pickled")
    assert pinned_once >= 1
    res = nbflow_cli(sqlite_url, "resume", run_id, "--force", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert nbflow.Run(nbflow.Store.open(sqlite_url), run_id).output("step") == "Counted"
    assert pickled.read_text().count("pickled") == pinned_once  # loaded, run, never pickled again
