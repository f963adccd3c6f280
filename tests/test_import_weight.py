"""What a process pays to start (issue 19): ``import nbflow`` and ``nbflow --help`` import neither the
store's SQL toolkit nor the notebook side, and the lazy names and commands are the same as eager ones.
Each import check runs in a fresh interpreter (this one has imported everything already)."""
from __future__ import annotations

import subprocess
import sys

import click
import pytest

import nbflow
from nbflow import cli

HEAVY = ("sqlalchemy", "alembic", "IPython", "anywidget", "ipywidgets", "dask", "pandas")


def imported_after(code: str, *modules: str) -> list[str]:
    """Which of *modules* a fresh interpreter holds after running *code*."""
    probe = f"{code}\nimport sys\nprint('imported:', *(m for m in {modules!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return out.stdout.splitlines()[-1].split()[1:]


def test_import_nbflow_imports_no_sql_toolkit_kernel_widget_or_dask() -> None:
    assert imported_after("import nbflow", *HEAVY, "cloudpickle", "click", "rich") == []


def test_nbflow_help_imports_neither_the_store_nor_rich() -> None:
    code = "from nbflow.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass"
    assert imported_after(code, *HEAVY, "rich", "cloudpickle", "nbflow.store") == []


def test_nbflow_runs_imports_neither_the_engine_nor_run_nor_the_notebook_side(db_url: str) -> None:
    wf = nbflow.Workflow("listed", store=db_url)

    @wf.step
    def one() -> int:
        return 1

    listed = wf.run()
    assert listed.wait() == "succeeded"
    code = (f"from nbflow.cli import main\ntry:\n    main(['--db', {db_url!r}, 'runs'])\nexcept SystemExit:\n    pass")

    assert imported_after(code, "nbflow.engine.scheduler", "nbflow.engine.lifecycle", "nbflow.run", "rich.live",
                          "IPython", "alembic", "papermill", "anywidget") == []


def test_every_public_name_is_the_object_its_module_defines() -> None:
    for name in nbflow.__all__:
        value = getattr(nbflow, name)
        module = getattr(value, "__module__", "nbflow")
        assert getattr(sys.modules[module], name) is value, name
    assert set(nbflow.__all__) <= set(dir(nbflow))


def test_the_submodules_import_nbflow_used_to_load_are_still_attributes() -> None:
    for name in ("engine", "store", "run", "views", "workflow", "commands", "frames", "timetravel"):
        assert name in dir(nbflow)
        assert getattr(nbflow, name) is sys.modules[f"nbflow.{name}"]


def test_an_unknown_name_of_the_package_is_an_attribute_error_naming_it() -> None:
    with pytest.raises(AttributeError, match="has no attribute 'not_a_name'"):
        getattr(nbflow, "not_a_name")  # noqa: B009 - the name is the point


def test_a_run_imported_by_its_module_shows_the_notebook_display() -> None:
    """``from nbflow.run import Run`` (not the package's names) still gets the widget's display."""
    code = "from nbflow.run import _display\nprint(_display[0].__name__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["_notebook_display"]


def test_the_help_listing_of_each_command_is_its_own_short_help() -> None:
    """``nbflow --help`` lists the table's text without importing the commands: it must be what each
    command would show itself, at every width the listing may truncate to."""
    real = cli.all_commands()
    for name, (_module, help_text) in cli.COMMANDS.items():
        stub = click.Command(name, help=help_text, short_help=cli.SHORT_HELP.get(name))
        for limit in range(10, 200):
            assert stub.get_short_help_str(limit) == real[name].get_short_help_str(limit), (name, limit)


def test_every_command_the_modules_define_is_in_the_table() -> None:
    import importlib

    defined = {
        command.name: module
        for module in sorted({m for m, _ in cli.COMMANDS.values()})
        for command in importlib.import_module(f"nbflow.cli.{module}").COMMANDS
    }
    assert defined == {name: module for name, (module, _) in cli.COMMANDS.items()}
