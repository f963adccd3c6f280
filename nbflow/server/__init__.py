"""The Jupyter server extension: a REST API over the store under ``/nbflow/api/`` and the
external callback endpoint ``/nbflow/signal/<token>`` (see :mod:`nbflow.server.handlers`), and the
debugger view's one action endpoint (:mod:`nbflow.server.controller`), and the widget's code and styles
under ``/nbflow/static/`` (:mod:`nbflow.server.static`)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "nbflow.server"}]


def store_url(root_dir: str | os.PathLike[str]) -> str:
    """The store a server uses: ``NBFLOW_DB``, else ``<root_dir>/.nbflow/nbflow.db``."""
    return os.environ.get("NBFLOW_DB") or f"sqlite:///{Path(root_dir).expanduser().resolve() / '.nbflow' / 'nbflow.db'}"


def _load_jupyter_server_extension(serverapp: Any) -> None:
    """Add the handlers to the server's web app (the store is opened on the first request)."""
    from jupyter_server.utils import url_path_join

    from .handlers import handlers

    web_app = serverapp.web_app
    url = store_url(serverapp.root_dir)
    web_app.settings["nbflow_db"] = url
    base = web_app.settings.get("base_url", "/")
    from .controller import handlers as controller_handlers
    from .static import handlers as static_handlers
    from .worker import TakeoverHandler

    routes = [*handlers(), *controller_handlers(), (r"nbflow/api/runs/([^/]+)/takeover", TakeoverHandler),
              *static_handlers()]
    web_app.add_handlers(".*$", [(url_path_join(base, pattern), cls) for pattern, cls in routes])
    from ..notebook.assets import SERVED_ENV, assets_id

    os.environ[SERVED_ENV] = assets_id()  # the kernels this server starts inherit it: their widgets carry a loader
    from ..store.urls import shown

    serverapp.log.info("nbflow: REST API at %snbflow/api/, store %s", base, shown(url))


# the older name, for jupyter_server < 2
load_jupyter_server_extension = _load_jupyter_server_extension
