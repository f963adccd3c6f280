"""``GET /nbflow/static/<id>/<name>``: the debugger view's code and styles (``widget.js``,
``widget.css``), which the widget's loader imports once per page instead of carrying them in every
widget's state (:mod:`nbflow.notebook.assets`). ``<id>`` is the digest of the files this server has:
another id (a kernel with another nbflow) is a 404, and the loader asks its kernel instead. No login,
like JupyterLab's own extension files: they are the package's public files; cached for good."""
from __future__ import annotations

from jupyter_server.auth.decorator import allow_unauthenticated
from jupyter_server.base.handlers import JupyterHandler
from tornado import web

from ..notebook.assets import CONTENT_TYPES, NAMES, asset, assets_id

ROUTE = r"nbflow/static/([0-9a-f]{16})/([a-z.]+)"


class AssetHandler(JupyterHandler):
    """Serves one shipped file of this server's nbflow, under its digest."""

    @allow_unauthenticated
    def get(self, digest: str, name: str) -> None:
        if name not in NAMES or digest != assets_id():
            raise web.HTTPError(404, f"no widget asset {name!r} with id {digest}: this server has {assets_id()}")
        self.set_header("Content-Type", CONTENT_TYPES[name])
        self.set_header("Cache-Control", "public, max-age=31536000, immutable")
        self.finish(asset(name))


def handlers() -> list[tuple[str, type[web.RequestHandler]]]:
    """The route (relative to the server's base URL) and its handler."""
    return [(ROUTE, AssetHandler)]
