"""The layers of nbflow's modules (issue 15), read from the real import graph (grimp, the graph
import-linter checks): imports inside functions count, imports only for type checking do not."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

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


# --- the import-linter contracts of pyproject.toml ([tool.importlinter]) --------------------------
ROOT = Path(__file__).resolve().parent.parent


def lint_imports(project: Path) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` (the real command) over *project*'s nbflow/ with its pyproject.toml."""
    exe = Path(sys.executable).with_name("lint-imports")
    return subprocess.run(
        [str(exe) if exe.exists() else "lint-imports", "--no-cache", "--config", str(project / "pyproject.toml")],
        cwd=project, env={**os.environ, "PYTHONPATH": str(project)}, capture_output=True, text=True, timeout=300,
        check=False,
    )


@pytest.fixture
def copy_of_the_package(tmp_path: Path) -> Path:
    """nbflow/ and pyproject.toml copied, so a test can break a layer without touching the tree."""
    shutil.copytree(ROOT / "nbflow", tmp_path / "nbflow", ignore=shutil.ignore_patterns("static", "labextension",
                                                                                         "__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_every_import_contract_is_kept_with_no_exceptions_listed() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    assert len(config["contracts"]) == 4
    assert all("ignore_imports" not in c for c in config["contracts"])
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 4 kept, 0 broken." in result.stdout


def test_a_lazy_import_that_closes_a_cycle_breaks_the_contract(copy_of_the_package: Path) -> None:
    """An import inside a function counts: the engine reaching back up to commands is refused."""
    apply = copy_of_the_package / "nbflow" / "engine" / "apply.py"
    apply.write_text(apply.read_text() + "\n\ndef _up() -> None:\n    from .. import commands  # noqa: F401\n")
    result = lint_imports(copy_of_the_package)
    assert result.returncode == 1
    assert "No import cycles among nbflow's modules and packages BROKEN" in result.stdout
    assert "The engine imports neither the surfaces nor the front doors" in result.stdout.split("Broken contracts")[1]


def test_sql_outside_the_store_breaks_the_contract(copy_of_the_package: Path) -> None:
    views = copy_of_the_package / "nbflow" / "views.py"
    views.write_text(views.read_text() + "\n\nimport sqlalchemy  # noqa: E402, F401\n")
    result = lint_imports(copy_of_the_package)
    assert result.returncode == 1
    assert "nbflow.views -> sqlalchemy" in result.stdout
