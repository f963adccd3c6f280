"""A run's rich display in a notebook: the static view (an SVG of the DAG, text) always, and the live
widget where a front end runs it. Apart from :mod:`nbflow.notebook.widget` so that a batch run's
display (papermill, ``nbflow run``: the static view only) does not import anywidget and ipywidgets."""
from __future__ import annotations

import os
import warnings
from typing import TYPE_CHECKING, Any

from .._compat import get_ipython
from . import render

if TYPE_CHECKING:
    from ..run import Run


def widgets_supported() -> bool:
    """True in an IPython kernel (where a comm can reach a front end), False in a terminal or a script."""
    try:
        ip = get_ipython()
    except ImportError:
        return False
    return ip is not None and getattr(ip, "kernel", None) is not None


def frontend_connected() -> bool:
    """False when the cell being run was sent by a batch executor (papermill, nbclient, ``nbflow run``,
    ``jupyter nbconvert --execute``), which runs no JavaScript: it asks with ``allow_stdin`` false
    (it cannot answer ``input()``), where JupyterLab, Notebook, VS Code and consoles ask with true.
    ``NBFLOW_WIDGET=live`` or ``static`` decides instead (e.g. ``live`` for Voila)."""
    choice = os.environ.get("NBFLOW_WIDGET", "").strip().lower()
    if choice in ("live", "static"):
        return choice == "live"
    if choice:
        warnings.warn(f"NBFLOW_WIDGET={os.environ['NBFLOW_WIDGET']!r} is not 'live' or 'static': ignored (unset it to "
                      "let nbflow choose)", stacklevel=2)
    try:
        kernel: Any = getattr(get_ipython(), "kernel", None)
        parent: Any = kernel.get_parent()  # the request of the cell being run (ipykernel >= 6)
        allow_stdin = parent.get("content", {}).get("allow_stdin")
    except Exception:  # noqa: BLE001 - no kernel, or one without get_parent: assume a front end, as before
        return True
    return allow_stdin is not False


def mimebundle(run: Run, include: Any = None, exclude: Any = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """``Run._repr_mimebundle_``: the widget view plus a static ``text/html`` (SVG or summary) and
    ``text/plain``, so outputs saved without JavaScript still show the DAG. A batch executor gets the
    static view only (:func:`frontend_connected`): no widget, so no widget state in the saved notebook."""
    data: dict[str, Any] = dict(render.static_bundle(run))
    meta: dict[str, Any] = {}
    if widgets_supported() and frontend_connected():
        try:
            from .widget import widget_for  # anywidget and ipywidgets: only for a live view

            bundle = widget_for(run)._repr_mimebundle_()
            assert bundle is not None  # anywidget returns None only for a widget without a view name
            wdata, wmeta = bundle
        except Exception as exc:  # noqa: BLE001 - a display must not raise: the static copy still shows
            data["text/plain"] += f"\n(the live view is unavailable: {type(exc).__name__}: {exc})"
        else:
            wdata.pop("text/plain", None)
            data.update(wdata)
            meta.update(wmeta or {})
    return data, meta


__all__ = ["frontend_connected", "mimebundle", "widgets_supported"]
