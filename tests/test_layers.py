"""The layers of nbflow's modules (issue 15), read from the real import graph (grimp, the graph
import-linter checks): imports inside functions count, imports only for type checking do not."""
from __future__ import annotations

import sys

import grimp
import pytest

from nbflow import definition
from nbflow.store import schema

ENGINE = "nbflow.engine"
FRONT_DOORS = ("nbflow.workflow", "nbflow.run")
PURE = {"nbflow.states", "nbflow.errors", "nbflow._util", "nbflow._compat"}
"""What nbflow.definition may import from nbflow."""


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("nbflow", include_external_packages=True, exclude_type_checking_imports=True)


def chains(graph: grimp.ImportGraph, importers: set[str], imported: str) -> list[str]:
    """Each importer that reaches *imported*, with its shortest chain of imports."""
    found = []
    for importer in sorted(importers):
        chain = graph.find_shortest_chain(importer=importer, imported=imported)
        if chain is not None:
            found.append(" -> ".join(chain))
    return found


def test_the_engine_imports_neither_workflow_nor_run(graph: grimp.ImportGraph) -> None:
    """The engine takes definitions and returns run ids; Workflow and Run are front doors on top of it."""
    engine = {ENGINE, *graph.find_descendants(ENGINE)}
    for front in FRONT_DOORS:
        assert chains(graph, engine, front) == []


def test_definition_imports_nothing_but_states_errors_util_and_the_standard_library(
    graph: grimp.ImportGraph,
) -> None:
    imported = graph.find_modules_directly_imported_by("nbflow.definition")
    ours = {m for m in imported if m.split(".")[0] == "nbflow"}
    assert ours <= PURE
    outside = {m for m in imported if m.split(".")[0] != "nbflow"}
    assert {m for m in outside if m not in sys.stdlib_module_names} == set()
    # ... and nothing it reaches through them is the store, the engine or a front door
    below = graph.find_upstream_modules("nbflow.definition")
    assert {m for m in below if m.startswith("nbflow.")} <= PURE


@pytest.mark.parametrize("module", ["nbflow.breakpoints", "nbflow.signals"])
def test_breakpoints_and_signals_import_no_commands(graph: grimp.ImportGraph, module: str) -> None:
    assert chains(graph, {module}, "nbflow.commands") == []


def test_lifecycle_writes_no_sql_of_its_own(graph: grimp.ImportGraph) -> None:
    """Creating runs, pinning versions and claiming ownership are in nbflow.store.runs."""
    imported = graph.find_modules_directly_imported_by("nbflow.engine.lifecycle")
    assert "sqlalchemy" not in imported
    assert "nbflow.store.schema" not in imported


@pytest.mark.parametrize("module", ["nbflow.definition", "nbflow.workflow", "nbflow.breakpoints", "nbflow.signals"])
def test_definitions_workflow_breakpoints_and_signals_are_in_no_import_cycle(
    graph: grimp.ImportGraph, module: str
) -> None:
    back = [m for m in graph.find_modules_directly_imported_by(module)
            if m.startswith("nbflow") and graph.find_shortest_chain(importer=m, imported=module)]
    assert back == []


def test_definition_name_limits_are_the_store_columns() -> None:
    """nbflow.definition does not read the schema; its limits must still be what the columns hold."""
    for table in (schema.instances, schema.step_code, schema.breakpoints):
        assert table.c.step.type.length == definition.STEP_NAME_MAX
    for column in (schema.workflows.c.name, schema.runs.c.workflow, schema.breakpoints.c.workflow):
        assert column.type.length == definition.WORKFLOW_NAME_MAX


def test_pinned_steps_pickle_under_the_names_they_always_had() -> None:
    """A step's pinned bytes take part in the version hash and are read by other processes: the classes
    that moved to nbflow.definition still pickle as nbflow.workflow's, so versions did not change."""
    import cloudpickle

    import nbflow.workflow

    for cls in (definition.StepSpec, definition.Backoff):
        assert cls.__module__ == "nbflow.workflow"
        assert getattr(nbflow.workflow, cls.__qualname__) is cls
    assert b"nbflow.definition" not in cloudpickle.dumps(definition.Backoff())
