"""Debug an instance in a cell (issue 17), in a real kernel (jupyter_client): ``%nbflow debug
STEP:KEY`` binds the instance's inputs as notebook variables and puts the step's body in a new cell
(the ``set_next_input`` payload of the execute reply); running that cell of a ``%%step`` step
redefines the step and shows the new body's value on those inputs; ``--pdb`` opens IPython's
debugger post-mortem (driven through the kernel's stdin requests)."""
from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from kernels import Kernel, start, wait_status

from nbflow import Run


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kernel]:
    """One kernel for the module, its store a fresh SQLite file; each test uses its own workflow."""
    yield from start(tmp_path_factory.mktemp("debug_cell"))




ENRICH = """\
%%step enrich --foreach load --key item['id']
if item["x"] == 3:
    raise ValueError(f"bad row {item['id']}")
{**item, "y": item["x"] * scale}"""


def paused_cell_run(k: Kernel, workflow: str) -> Run:
    """load -> enrich (cell steps; item 3 fails), paused on its error."""
    k.ok(f"%nbflow workflow {workflow}")
    k.ok("""
        %%step load
        [{"id": i, "x": i} for i in range(n)]
    """)
    k.ok(ENRICH)
    k.ok("%nbflow run -p n=5 -p scale=10 --break-on-error")
    run = k.run()
    wait_status(run, "paused")
    return run


def test_debug_binds_the_instance_inputs_as_notebook_variables(kernel: Kernel) -> None:
    run = paused_cell_run(kernel, "debug_bind")
    shown = kernel.ok("%nbflow debug enrich:3")
    assert "inputs of enrich:3 bound: item, scale, ctx" in shown.stream()
    assert kernel.value("item") == repr(run.instance("enrich", 3).inputs["item"]) == repr({"id": 3, "x": 3})
    assert kernel.value("scale") == "10"
    assert kernel.value("(ctx.run_id, ctx.step, ctx.key, ctx.item_index, ctx.attempt)") == repr(
        (run.id, "enrich", 3, 3, 1))


def test_debug_puts_the_cell_step_source_with_its_step_line_in_a_new_cell(kernel: Kernel) -> None:
    paused_cell_run(kernel, "debug_cell_text")
    shown = kernel.ok("%nbflow debug enrich:3")
    assert shown.next_input == ENRICH


def test_debug_sees_the_operators_edited_inputs(kernel: Kernel) -> None:
    run = paused_cell_run(kernel, "debug_edited")
    run.set_inputs("enrich", key=3, item={"id": 3, "x": 30})  # from this process: the kernel's scheduler applies it
    deadline = time.monotonic() + 30
    while run.instance("enrich", 3).inputs["item"]["x"] != 30 and time.monotonic() < deadline:
        time.sleep(0.05)
    kernel.ok("%nbflow debug enrich:3")
    assert kernel.value("item") == repr({"id": 3, "x": 30})


def test_running_the_debug_cell_redefines_the_step_and_shows_the_new_body_on_the_bound_inputs(kernel: Kernel) -> None:
    run = paused_cell_run(kernel, "debug_two_way")
    old_version = run.version
    cell = kernel.ok("%nbflow debug enrich:3").next_input
    assert cell is not None
    fixed = cell.replace('if item["x"] == 3:\n    raise ValueError(f"bad row {item[\'id\']}")\n', "")
    assert fixed != cell

    shown = kernel.ok(fixed)

    assert shown.result == repr({"id": 3, "x": 3, "y": 30})
    assert "enrich:3: the new body on its bound inputs" in shown.stream()
    changes = [e for e in run.history() if e.kind == "code_changed"]  # the hot fix, adopted at once
    assert [c.data["steps"] for c in changes] == [["enrich"]]
    assert changes[0].data["old_version"] == old_version
    assert '-    raise ValueError(f"bad row {item[\'id\']}")' in changes[0].data["diff"]
    assert run.status == "paused"

    kernel.ok("%nbflow retry enrich:3")
    assert kernel.value("nbflow_run.wait(30)") == "<RunStatus.SUCCEEDED: 'succeeded'>"
    assert run.instance("enrich", 3).output == {"id": 3, "x": 3, "y": 30}


def test_the_debug_cell_runs_on_the_notebook_variables_as_edited(kernel: Kernel) -> None:
    paused_cell_run(kernel, "debug_tweak")
    cell = kernel.ok("%nbflow debug enrich:3").next_input
    assert cell is not None
    kernel.ok("item = {'id': 3, 'x': 4}")
    assert kernel.ok(cell).result == repr({"id": 3, "x": 4, "y": 40})


def test_an_error_of_the_debug_cell_is_a_cell_error_that_percent_debug_opens_post_mortem(kernel: Kernel) -> None:
    paused_cell_run(kernel, "debug_error")
    cell = kernel.ok("%nbflow debug enrich:3").next_input
    assert cell is not None
    failed = kernel(cell)
    assert failed.status == "error"
    assert [(e["ename"], e["evalue"]) for e in failed.errors] == [("ValueError", "bad row 3")]

    post = kernel.ok("%debug", answers=["p item['x'] * 100", "q"])
    assert post.prompts  # the debugger asked
    assert "300" in post.stream()


def test_debug_ends_with_end_and_the_step_cell_then_only_defines(kernel: Kernel) -> None:
    paused_cell_run(kernel, "debug_end")
    cell = kernel.ok("%nbflow debug enrich:3").next_input
    assert cell is not None
    assert "debug session of enrich:3 ended" in kernel.ok("%nbflow debug --end").stream()
    again = kernel.ok(cell)  # redefines, runs nothing: no error although item 3 raises
    assert again.result == "" and again.stream() == ""
    assert "no instance is being debugged" in kernel.ok("%nbflow debug").stream()


def test_debug_pdb_opens_the_debugger_post_mortem_on_the_bodys_error(kernel: Kernel) -> None:
    paused_cell_run(kernel, "debug_pdb")
    shown = kernel.ok("%nbflow debug enrich:3 --pdb", answers=["p item['x'] * 100", "q"])
    out = shown.stream()
    assert "enrich:3 raised ValueError: bad row 3" in out
    assert shown.prompts  # the debugger asked on stdin
    assert "300" in out
    assert shown.next_input is None


def test_debug_pdb_without_an_error_shows_the_value(kernel: Kernel) -> None:
    paused_cell_run(kernel, "debug_pdb_ok")
    shown = kernel.ok("%nbflow debug enrich:2 --pdb")
    assert "enrich:2 ran without an error on its inputs; its value: {'id': 2, 'x': 2, 'y': 20}" in shown.stream()
    assert shown.prompts == []


def test_debug_of_a_decorated_step_puts_its_body_with_the_last_return_as_an_expression(kernel: Kernel) -> None:
    kernel.ok("""
        import nbflow
        wf = nbflow.Workflow("debug_decorated")

        @wf.step
        def load(n):
            return [{"id": i, "x": i} for i in range(n)]

        @wf.foreach("load", key=lambda item: item["id"])
        def enrich(item, load, factor=7):
            \"\"\"The doc string is left out.\"\"\"
            total = len(load)
            return {**item, "y": item["x"] * factor, "of": total}

        nbflow_run = wf.run({"n": 4}, breakpoints=["enrich:2"])
        nbflow_run.wait(30)
    """)
    shown = kernel.ok("%nbflow debug enrich:2")
    assert "bound: item, load, factor, ctx" in shown.stream()
    assert shown.next_input == 'total = len(load)\n{**item, "y": item["x"] * factor, "of": total}'
    assert kernel.ok(shown.next_input).result == repr({"id": 2, "x": 2, "y": 14, "of": 4})


def test_debug_of_a_step_that_returns_early_is_its_def_and_a_call(kernel: Kernel) -> None:
    kernel.ok("""
        import nbflow
        wf = nbflow.Workflow("debug_early")

        @wf.step
        def total(n, ctx):
            if n < 0:
                return 0
            return n * 2

        nbflow_run = wf.run({"n": 21}, breakpoints=["total"])
        nbflow_run.wait(30)
    """)
    shown = kernel.ok("%nbflow debug total")
    assert shown.next_input == (
        "def total(n, ctx):\n    if n < 0:\n        return 0\n    return n * 2\ntotal(n=n, ctx=ctx)")
    assert kernel.ok(shown.next_input).result == "42"


def test_ctx_in_a_debug_cell_saves_no_checkpoint_and_refuses_to_wait_for_a_signal(kernel: Kernel) -> None:
    paused_cell_run(kernel, "debug_ctx")
    kernel.ok("%nbflow debug enrich:3")
    assert "not saved" in kernel.ok("ctx.checkpoint({'done': 2})").stream()
    refused = kernel("ctx.wait_for_signal('go')")
    assert refused.status == "error"
    assert "cannot wait in a debug cell of enrich:3" in refused.errors[0]["evalue"]


def test_debug_of_a_foreach_without_a_key_names_what_to_write(kernel: Kernel) -> None:
    paused_cell_run(kernel, "debug_nokey")
    refused = kernel("%nbflow debug enrich")
    assert refused.status == "error"
    assert "step 'enrich' is a foreach: name one of its items, e.g. %nbflow debug enrich:KEY" in refused.shown
