"""nbflow: a workflow engine with a debugger built in, native to Jupyter."""
from __future__ import annotations

from typing import Any

from ._util import set_actor
from .breakpoints import Breakpoint
from .commands import CommandResult, signal
from .context import StepContext
from .engine.dask_executor import DaskExecutor
from .engine.lifecycle import owner_alive
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
from .run import ErrorGroup, ErrorInfo, Event, InstanceView, Run, resume_pinned, runs, use_display
from .signals import SignalRefused
from .states import InstanceStatus, RunStatus, StepKind, When
from .store import Store
from .workflow import Backoff, Workflow

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
    st = Store.open(store)
    row = st.run_row(run_id)
    if RunStatus(row["status"]).terminal or owner_alive(row):
        return Run(st, run_id)
    return resume_pinned(st, run_id)


def _notebook_display(run: Run, include: Any, exclude: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """A run's rich display: the live widget, a static SVG and text (imported on first display)."""
    from .notebook.widget import mimebundle

    return mimebundle(run, include, exclude)


use_display(_notebook_display)


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
