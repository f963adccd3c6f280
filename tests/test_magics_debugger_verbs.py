"""The magic twins of issue 17's engine verbs, in a real kernel: ``%nbflow step STEP[:KEY]`` steps
over a paused instance; ``%nbflow break ... --log EXPR`` adds a logpoint and ``--hit-count N`` a
breakpoint that acts from its Nth hit on. The test process reads the same SQLite store."""
from __future__ import annotations

from collections.abc import Iterator

import pytest
from kernels import Kernel, start, wait_status

from nbflow import Run, Workflow
from nbflow.states import STEPPED_OVER


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kernel]:
    yield from start(tmp_path_factory.mktemp("magics_verbs"))


def define_chain(k: Kernel, workflow: str) -> None:
    """load -> enrich (foreach keyed by id) -> double (foreach over enrich)."""
    k.ok(f"%nbflow workflow {workflow}")
    k.ok("""
        %%step load
        [{"id": i, "x": i} for i in range(n)]
    """)
    k.ok("""
        %%step enrich --foreach load --key item['id']
        {**item, "y": item["x"] * 10}
    """)
    k.ok("""
        %%step double --foreach enrich --key item['id']
        item["y"] * 2
    """)


def started(k: Kernel, line: str) -> Run:
    k.ok(line)
    return k.run()


def test_step_steps_over_a_foreach_item_and_pauses_only_the_item_that_consumes_it(kernel: Kernel) -> None:
    define_chain(kernel, "magic_step")
    run = started(kernel, "%nbflow run -p n=5 --break enrich:3")
    wait_status(run, "paused")

    shown = kernel.ok("%nbflow step enrich:3")

    assert "stepped over enrich:3; pausing before: double (the item made from enrich:3)" in shown.stream()
    wait_status(run, "paused")
    held = run.instances("double", status="paused")
    assert [(v.key, v.pause_reason, v.held_by) for v in held] == [(3, "before: step over enrich:3", [STEPPED_OVER])]


def test_break_log_adds_a_logpoint_that_records_each_value_and_pauses_nothing(kernel: Kernel) -> None:
    define_chain(kernel, "magic_log")
    shown = kernel.ok("%nbflow break enrich --log \"item['x'] * 100\"")
    assert "logpoint" in shown.stream() and "logs item['x'] * 100" in shown.stream()
    [bp] = Workflow("magic_log", store=kernel.url).breakpoints.list()
    assert (bp.action, bp.expression) == ("log", "item['x'] * 100")

    run = started(kernel, "%nbflow run -p n=6")
    wait_status(run, "succeeded")
    logged = sorted((e.key, e.data["value"]) for e in run.history() if e.kind == "logpoint")
    assert logged == [(i, i * 100) for i in range(6)]


def test_break_hit_count_passes_the_first_hits_and_pauses_from_the_nth_on(kernel: Kernel) -> None:
    define_chain(kernel, "magic_hits")
    shown = kernel.ok("%nbflow break enrich --hit-count 3")
    assert "from hit 3 on" in shown.stream()

    run = started(kernel, "%nbflow run -p n=10")
    wait_status(run, "paused")
    assert len(run.instances("enrich", status="paused")) == 8


def test_break_hit_count_below_one_is_a_usage_error(kernel: Kernel) -> None:
    define_chain(kernel, "magic_hits_bad")
    refused = kernel("%nbflow break enrich --hit-count 0")
    assert refused.status == "error"
    assert "expected a whole number >= 1, got '0'" in refused.shown
