"""nbflow: a workflow engine with a debugger built in, native to Jupyter."""
from __future__ import annotations

from importlib import import_module as _import_module
from typing import TYPE_CHECKING, Any

from ._util import DISPLAY as _DISPLAY
from ._util import set_actor

if TYPE_CHECKING:  # what the names below resolve to, for type checkers (at run time: on first use)
    from .breakpoints import Breakpoint
    from .commands import CommandResult, signal
    from .context import StepContext
    from .engine.dask_executor import DaskExecutor
    from .engine.lifecycle import owner_alive as owner_alive
    from .errors import (
        CommandRefused,
        CycleError,
        DefinitionError,
        ExecutorError,
        NbflowError,
        OwnershipError,
        RemoteError,
        SerializationError,
        StoreError,
        UnknownRunError,
    )
    from .frames import ValueRef
    from .run import ErrorGroup, ErrorInfo, Event, InstanceView, Run, runs
    from .run import resume_pinned as resume_pinned
    from .run import use_display as use_display
    from .signals import SignalRefused
    from .states import InstanceStatus, RunStatus, StepKind, When
    from .store import Store
    from .workflow import Backoff, Workflow

# The package's names and the module each comes from, imported on first use (PEP 562) so that
# ``import nbflow`` does not import SQLAlchemy, the engine or the notebook side: a CLI command, a
# batch run or a kernel imports only what it uses (bench/latency.py).
_LAZY = {
    "Breakpoint": "breakpoints",
    "CommandResult": "commands", "signal": "commands",
    "StepContext": "context",
    "DaskExecutor": "engine.dask_executor",
    "owner_alive": "engine.lifecycle",
    **dict.fromkeys((
        "CommandRefused", "CycleError", "DefinitionError", "ExecutorError", "NbflowError", "OwnershipError",
        "RemoteError", "SerializationError", "StoreError", "UnknownRunError",
    ), "errors"),
    "ValueRef": "frames",
    **dict.fromkeys(
        ("ErrorGroup", "ErrorInfo", "Event", "InstanceView", "Run", "resume_pinned", "runs", "use_display"), "run"
    ),
    "SignalRefused": "signals",
    **dict.fromkeys(("InstanceStatus", "RunStatus", "StepKind", "When"), "states"),
    "Store": "store",
    "Backoff": "workflow", "Workflow": "workflow",
}
# The submodules ``import nbflow`` used to import as a side effect: still reachable as attributes.
_SUBMODULES = frozenset((
    "_compat", "_jsontext", "breakpoints", "commands", "context", "definition", "diffs", "engine", "errors",
    "frames", "run", "signals", "states", "store", "timetravel", "triage", "verbs", "views", "workflow",
))
_HIDDEN = frozenset((
    "TYPE_CHECKING", "_import_module", "_DISPLAY", "_LAZY", "_SUBMODULES", "_HIDDEN", "__getattr__", "__dir__",
))

if not TYPE_CHECKING:  # type checkers see the imports above (a module __getattr__ would make any name Any)

    def __getattr__(name: str) -> Any:
        """A lazy name (or submodule) of the package, imported on first use and kept."""
        if name in _LAZY:
            value = getattr(_import_module(f"{__name__}.{_LAZY[name]}"), name)
        elif name in _SUBMODULES:
            value = _import_module(f"{__name__}.{name}")
        else:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        globals()[name] = value
        return value


def __dir__() -> list[str]:
    """The same names as when every one was imported eagerly."""
    return sorted((set(globals()) - _HIDDEN) | set(_LAZY) | _SUBMODULES)


__version__ = "0.1.0"

__all__ = [
    "Backoff",
    "Breakpoint",
    "CommandRefused",
    "CommandResult",
    "CycleError",
    "DaskExecutor",
    "DefinitionError",
    "ErrorGroup",
    "ErrorInfo",
    "Event",
    "ExecutorError",
    "InstanceStatus",
    "InstanceView",
    "NbflowError",
    "OwnershipError",
    "RemoteError",
    "Run",
    "RunStatus",
    "SerializationError",
    "SignalRefused",
    "StepContext",
    "StepKind",
    "Store",
    "StoreError",
    "UnknownRunError",
    "ValueRef",
    "When",
    "Workflow",
    "attach",
    "runs",
    "set_actor",
    "signal",
]


def attach(run_id: str, store: str | Store | None = None) -> Run:
    """Debug a stored run from here. If its owner is gone (a batch run that paused and exited, a
    crashed kernel), this process takes it over with the code pinned in the store; otherwise (a live
    owner, or a finished run) the handle reads the run and its verbs go to the owner."""
    from .engine.owners import owner_alive
    from .run import Run, resume_pinned
    from .states import RunStatus
    from .store import Store

    st = Store.open(store)
    row = st.run_row(run_id)
    if RunStatus(row["status"]).terminal or owner_alive(row):
        return Run(st, run_id)
    return resume_pinned(st, run_id)


def _notebook_display(run: Run, include: Any, exclude: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """A run's rich display: the live widget, a static SVG and text (imported on first display)."""
    from .notebook.display import mimebundle

    return mimebundle(run, include, exclude)


_DISPLAY[:] = [_notebook_display]  # what nbflow.run.use_display(_notebook_display) does, without importing Run


def load_ipython_extension(ip: object) -> None:
    """``%load_ext nbflow``: the ``%%step`` and ``%nbflow`` magics."""
    from .notebook.magics import load_ipython_extension as load

    load(ip)


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    """The Jupyter server extension (``nbflow.server``): the REST API and the signal endpoint."""
    return [{"module": "nbflow.server"}]


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    """The prebuilt JupyterLab extension (the "Workflow runs" sidebar), for ``jupyter labextension develop``;
    a wheel installs it under ``share/jupyter/labextensions/nbflow-labextension``."""
    return [{"src": "labextension", "dest": "nbflow-labextension"}]
