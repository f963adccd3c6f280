"""The IPython magics in a real kernel (jupyter_client): ``%%step`` cells become steps, ``%nbflow``
starts runs and operates on them; the test process watches the same SQLite store."""
from __future__ import annotations

import os
import re
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.manager import KernelManager, start_new_kernel

import nbflow
from nbflow import Run, Store
from nbflow.engine.lifecycle import stop_all
from nbflow.run import resume_pinned


@dataclass
class Cell:
    """What a cell showed: its reply status and every output message."""

    status: str
    outputs: list[dict[str, Any]] = field(default_factory=list)

    def stream(self, name: str | None = None) -> str:
        return "".join(
            o["content"]["text"] for o in self.outputs
            if o["msg_type"] == "stream" and (name is None or o["content"]["name"] == name)
        )

    @property
    def errors(self) -> list[dict[str, Any]]:
        return [o["content"] for o in self.outputs if o["msg_type"] == "error"]

    @property
    def shown(self) -> str:
        """Everything a user would read in the cell's output area (text forms)."""
        parts = [self.stream()]
        for o in self.outputs:
            if o["msg_type"] in ("execute_result", "display_data"):
                parts.append(o["content"]["data"].get("text/plain", ""))
            elif o["msg_type"] == "error":
                parts.append("\n".join(o["content"]["traceback"]))
        return "\n".join(parts)


class Kernel:
    def __init__(self, km: KernelManager, kc: BlockingKernelClient, url: str) -> None:
        self.km, self.kc, self.url = km, kc, url

    def __call__(self, code: str, timeout: float = 30) -> Cell:
        cell = Cell("?")

        def hook(msg: dict[str, Any]) -> None:
            if msg["msg_type"] in ("stream", "execute_result", "display_data", "error"):
                cell.outputs.append(msg)

        reply = self.kc.execute_interactive(textwrap.dedent(code).strip("\n"), output_hook=hook, timeout=timeout)
        cell.status = reply["content"]["status"]
        return cell

    def ok(self, code: str, timeout: float = 30) -> Cell:
        cell = self(code, timeout)
        assert cell.status == "ok", cell.shown
        return cell

    def value(self, expr: str) -> str:
        return self.ok(f"print({expr})").stream("stdout").strip()

    def run(self, run_id: str) -> Run:
        return Run(Store.open(self.url), run_id)


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kernel]:
    """One kernel for the module, its store a fresh SQLite file (NBFLOW_DB); each test uses its own workflow."""
    root = tmp_path_factory.mktemp("magics")
    url = f"sqlite:///{root / 'nbflow.db'}"
    env = {**os.environ, "NBFLOW_DB": url}
    km, kc = start_new_kernel(kernel_name="python3", env=env, cwd=str(root), startup_timeout=60)
    k = Kernel(km, kc, url)
    try:
        k.ok("%load_ext nbflow")
        yield k
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def wait_status(run: Run, wanted: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if run.status == wanted:
            return
        time.sleep(0.05)
    raise AssertionError(f"run {run.id} is {run.status}, not {wanted}")


def define_etl(k: Kernel, workflow: str) -> None:
    k.ok(f"%nbflow workflow {workflow}")
    k.ok("""
        %%step load
        rows = [{"id": 10 * i, "x": i} for i in range(n)]
        rows
    """)
    k.ok("""
        %%step enrich --foreach load --key item['id']
        {**item, "y": item["x"] ** 2}
    """)
    k.ok("""
        %%step report
        sum(r["y"] for r in enrich)
    """)


# ---------------------------------------------------------------------------------- tests
def test_break_pauses_in_store_and_a_later_cell_resumes(kernel: Kernel) -> None:
    define_etl(kernel, "etl_break")
    started = kernel.ok("%nbflow run -p n=4 --break enrich:20")
    run = kernel.run(kernel.value("nbflow_run.id"))
    assert run.id in started.shown  # the cell displays the run it started
    wait_status(run, "paused")
    assert [(i.key, i.status) for i in run.instances("enrich", status="paused")] == [(20, "paused")]
    assert run.instance("enrich", 20).inputs == {"item": {"id": 20, "x": 2}}

    kernel.ok("%nbflow resume enrich:20")
    assert kernel.value("nbflow_run.wait(30)") == "succeeded"
    assert run.output("load") == [{"id": 10 * i, "x": i} for i in range(4)]
    assert [r["y"] for r in run.output("enrich")] == [0, 1, 4, 9]
    assert run.output("report") == 14


def test_step_inputs_are_steps_and_run_parameters_and_globals_stay_globals(kernel: Kernel) -> None:
    kernel.ok("%nbflow workflow inputs")
    kernel.ok("""
        import math
        def helper(v):
            return v + 1
        total = "a user variable named like a later step"
    """)
    kernel.ok("""
        %%step final
        math.sqrt(helper(total) + offset)
    """)  # total is a step defined below: an input even though the namespace has a variable of that name
    kernel.ok("""
        %%step total
        start * 2
    """)
    kernel.ok("%nbflow run -p start=4 -p offset=0 --wait")
    run = kernel.run(kernel.value("nbflow_run.id"))
    assert run.status == "succeeded"
    assert run.output("final") == 3.0
    assert run.instance("final").inputs == {"total": 8, "offset": 0}


def test_a_run_parameter_is_an_input_even_if_the_notebook_has_a_variable_of_that_name(kernel: Kernel) -> None:
    kernel.ok("%nbflow workflow shadowed")
    kernel.ok("limit = 100")
    kernel.ok("""
        %%step capped
        min(limit, 7)
    """)
    kernel.ok("%nbflow run --wait")  # no such run parameter: the notebook's variable is read
    assert kernel.run(kernel.value("nbflow_run.id")).output("capped") == 7
    kernel.ok("%nbflow run -p limit=3 --wait")
    run = kernel.run(kernel.value("nbflow_run.id"))
    assert run.output("capped") == 3
    assert run.instance("capped").inputs == {"limit": 3}


def test_run_parameters_are_python_literals_or_plain_strings(kernel: Kernel) -> None:
    kernel.ok("%nbflow workflow literals")
    kernel.ok("""
        %%step kinds
        return {"n": type(n).__name__, "who": who, "rows": rows}
    """)
    kernel.ok("%nbflow run -p n=5 -p who=ada -p rows=[1, 2] --wait")
    run = kernel.run(kernel.value("nbflow_run.id"))
    assert run.params == {"n": 5, "who": "ada", "rows": [1, 2]}
    assert run.output("kinds") == {"n": "int", "who": "ada", "rows": [1, 2]}


def test_redefined_cell_step_runs_its_new_code_on_resume(kernel: Kernel) -> None:
    kernel.ok("%nbflow workflow redefine")
    kernel.ok("""
        %%step base
        n + 1
    """)
    kernel.ok("""
        %%step double
        base * 2
    """)
    kernel.ok("%nbflow run -p n=4 --break double")
    run = kernel.run(kernel.value("nbflow_run.id"))
    wait_status(run, "paused")
    kernel.ok("""
        %%step double
        base * 3
    """)
    kernel.ok("%nbflow resume")
    assert kernel.value("nbflow_run.wait(30)") == "succeeded"
    assert run.output("double") == 15
    changed = [e for e in run.history() if e.kind == "code_changed"]
    assert changed and "base * 3" in changed[-1].data["diffs"]["double"]


def test_failing_cell_step_traceback_names_the_cell_line(kernel: Kernel) -> None:
    kernel.ok("%nbflow workflow failing")
    kernel.ok("""
        %%step boom
        x = 1
        y = x + 1
        raise ValueError(f"bad value {y}")
    """)
    kernel.ok("%nbflow run --wait")
    run = kernel.run(kernel.value("nbflow_run.id"))
    assert run.status == "failed"
    err = run.instances("boom")[0].error
    assert err is not None and err.type == "ValueError" and err.message == "bad value 2"
    # the cell's 4th line (after the %%step line) is the raise, shown with its text
    frame = re.search(r'File "([^"]+)", line (\d+), in boom\n\s+(.*)\n', err.traceback)
    assert frame, err.traceback
    assert frame.group(2) == "4"
    assert frame.group(3) == 'raise ValueError(f"bad value {y}")'
    assert "magics.py" not in err.traceback


def test_bad_magic_arguments_give_usage_and_no_traceback(kernel: Kernel) -> None:
    kernel.ok("%nbflow workflow usage")
    bad_step = kernel("""
        %%step sloppy --retries many
        1
    """)
    bad_run = kernel("%nbflow run --bogus")
    bad_param = kernel("%nbflow run -p novalue")
    for cell in (bad_step, bad_run, bad_param):
        assert "UsageError" in cell.stream("stderr") and "usage:" in cell.stream("stderr")
        assert not cell.errors and "Traceback" not in cell.shown
    assert "--retries" in bad_step.stream("stderr") and "many" in bad_step.stream("stderr")
    assert "novalue" in bad_param.stream("stderr")
    kernel.ok("from nbflow.notebook import current_workflow")
    assert kernel.value("list(current_workflow().steps)") == "[]"  # nothing was defined


def test_a_cell_step_name_longer_than_the_store_holds_is_a_one_line_error(kernel: Kernel) -> None:
    kernel.ok("%nbflow workflow long_cell_names")
    long = kernel(f"""
        %%step {"s" * 201}
        1
    """)
    (err,) = long.errors
    assert err["ename"] == "DefinitionError" and len(err["traceback"]) == 1
    assert "201 characters long; the store holds at most 200: shorten it" in err["traceback"][0]
    kernel.ok("from nbflow.notebook import current_workflow")
    assert kernel.value("list(current_workflow().steps)") == "[]"


def test_nbflow_errors_are_one_line_messages(kernel: Kernel) -> None:
    define_etl(kernel, "errors")
    kernel.ok("%nbflow run -p n=2 --break report --wait")
    refused = kernel("%nbflow resume enrich:99")
    assert refused.status == "error"
    (err,) = refused.errors
    assert err["ename"] == "CommandRefused"
    assert len(err["traceback"]) == 1 and "Traceback" not in err["traceback"][0]
    assert "enrich" in err["traceback"][0] and "99" in err["traceback"][0]
    missing = kernel("%nbflow run")  # n is a run parameter nobody gave
    (err,) = missing.errors
    assert err["ename"] == "DefinitionError" and len(err["traceback"]) == 1 and "'n'" in err["traceback"][0]


def test_step_prints_are_captured_not_shown_in_cells(kernel: Kernel) -> None:
    kernel.ok("%nbflow workflow chatty")
    defined = kernel.ok("""
        %%step talk
        print("hello from the step")
        42
    """)
    started = kernel.ok("%nbflow run --wait")
    later = kernel.ok("print(nbflow_run.wait(30))")
    for cell in (defined, started, later):
        assert "hello from the step" not in cell.shown
    run = kernel.run(kernel.value("nbflow_run.id"))
    assert run.output("talk") == 42
    assert "hello from the step" in run.instance("talk").logs


def test_conditional_breakpoint_pauses_matching_items_and_unbreak_resumes_them(kernel: Kernel) -> None:
    define_etl(kernel, "conditional")
    kernel.ok("%nbflow break enrich --if \"item['x'] >= 2\"")
    kernel.ok("%nbflow run -p n=4")
    run = kernel.run(kernel.value("nbflow_run.id"))
    wait_status(run, "paused")
    assert sorted(i.key for i in run.instances("enrich", status="paused")) == [20, 30]
    kernel.ok("%nbflow unbreak enrich")  # what the breakpoint alone held resumes
    assert kernel.value("nbflow_run.wait(30)") == "succeeded"
    assert run.output("report") == 0 + 1 + 4 + 9


def test_skip_gives_a_paused_instance_its_output(kernel: Kernel) -> None:
    define_etl(kernel, "skipping")
    kernel.ok("%nbflow run -p n=3 --break enrich:20")
    run = kernel.run(kernel.value("nbflow_run.id"))
    wait_status(run, "paused")
    kernel.ok("""%nbflow skip enrich:20 --output {"id": 20, "x": 2, "y": 100}""")
    assert kernel.value("nbflow_run.wait(30)") == "succeeded"
    assert run.instance("enrich", 20).status == "skipped"
    assert run.output("report") == 0 + 1 + 100


def test_runs_lists_the_workflow_runs_and_show_displays_the_current_run(kernel: Kernel) -> None:
    kernel.ok("%nbflow workflow listing")
    kernel.ok("""
        %%step one
        1
    """)
    kernel.ok("%nbflow run --wait")
    run_id = kernel.value("nbflow_run.id")
    listed = kernel.ok("%nbflow runs")
    assert run_id in listed.shown and "succeeded" in listed.shown and "listing" in listed.shown
    shown = kernel.ok("%nbflow show")
    assert run_id in shown.shown


def test_attach_takes_over_a_run_of_another_process_with_the_cells_code(kernel: Kernel) -> None:
    # a run started (and left paused) by another process, with the same steps written as functions
    wf = nbflow.Workflow("attached", kernel.url)

    @wf.step
    def load(n):
        return list(range(n))

    @wf.step
    def total(load):
        return sum(load)

    paused = wf.run(params={"n": 3}, breakpoints=["total"])
    assert paused.wait(20) == "paused"
    stop_all()  # this process lets go of it: the run is interrupted

    kernel.ok("%nbflow workflow attached")
    kernel.ok("""
        %%step load
        list(range(n))
    """)
    kernel.ok("""
        %%step total
        sum(load) * 10
    """)
    attached = kernel.ok(f"%nbflow attach {paused.id}")
    assert paused.id in attached.shown
    assert kernel.value("nbflow_run.id") == paused.id
    kernel.ok("%nbflow resume total")
    assert kernel.value("nbflow_run.wait(30)") == "succeeded"
    assert paused.output("total") == 30  # today's code (the cells), not the functions it started with


def test_cell_steps_resume_with_pinned_code_outside_the_notebook(kernel: Kernel) -> None:
    kernel.ok("%nbflow workflow pinned")
    kernel.ok("""
        import math
        def scale(v):
            return v * 100
    """)
    kernel.ok("""
        %%step root
        math.isqrt(n)
    """)
    kernel.ok("""
        %%step scaled
        scale(root)
    """)
    kernel.ok("%nbflow run -p n=49 --break scaled --wait")
    run_id = kernel.value("nbflow_run.id")
    kernel.ok("from nbflow.engine.lifecycle import stop_all; stop_all()")  # the notebook lets go of the run

    # this process has neither the cells nor `scale`: the pinned code carries them
    run = resume_pinned(Store.open(kernel.url), run_id)
    run.resume("scaled")
    assert run.wait(30) == "succeeded"
    assert run.output("scaled") == 700
