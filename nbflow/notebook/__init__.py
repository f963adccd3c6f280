"""nbflow in Jupyter: IPython magics, the live debugger widget, and the static rendering of a run."""
from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    # lazy: importing the magics must not pull in anywidget/ipywidgets
    if name == "RunWidget":
        from .widget import RunWidget

        return RunWidget
    if name in ("current_workflow", "current_run", "select_workflow", "NbflowMagics", "load_ipython_extension"):
        from . import magics

        return getattr(magics, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
