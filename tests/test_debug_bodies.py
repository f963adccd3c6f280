"""The cell `%nbflow debug` (and Debug in a cell) makes of a decorated function's body when the body
cannot stand as a cell by itself: a one-line def, a final return sharing its line, a multi-line string
less indented than the body. Each becomes the def and a call, and running that cell on the bound
inputs gives the instance's output. A real IPython shell, as the kernel has."""
from __future__ import annotations

from collections.abc import Iterator

import pytest
from IPython.core.interactiveshell import InteractiveShell

import nbflow
from nbflow.notebook import debug

WAIT_S = 60


@pytest.fixture
def shell() -> Iterator[InteractiveShell]:
    ip = InteractiveShell.instance()
    yield ip
    InteractiveShell.clear_instance()


def load(n): return list(range(n))


def enrich(item, factor=3): return item * factor


def report(enrich):
    query = """
select *
from t"""
    x = 1; return sum(enrich) + x + len(query) * 0  # noqa: E702 - two statements on one line is what this tests


@pytest.fixture
def paused(db_url: str) -> tuple[nbflow.Workflow, nbflow.Run]:
    wf = nbflow.Workflow("bodies", store=db_url)
    wf.step(load)
    wf.foreach("load")(enrich)
    wf.step(report)
    run = wf.run(params={"n": 3}, breakpoints=["report"])
    assert run.wait(timeout=WAIT_S) == "paused"
    return wf, run


@pytest.mark.parametrize(("step", "key", "call", "value"), [
    ("load", None, "load(n=n)", [0, 1, 2]),
    ("enrich", 1, "enrich(item=item, factor=factor)", 3),
    ("report", None, "report(enrich=enrich)", 10),
])
def test_a_body_that_cannot_stand_alone_is_debugged_as_its_def_and_a_call(
    paused: tuple[nbflow.Workflow, nbflow.Run], shell: InteractiveShell, step: str, key: int | None, call: str,
    value: object,
) -> None:
    wf, run = paused

    cell = debug.prepare(run, step, key, shell, workflow=wf)

    assert cell.code.startswith(f"def {step}(") and cell.code.endswith("\n" + call)
    result = shell.run_cell(cell.code)
    assert result.error_in_exec is None and result.result == value
