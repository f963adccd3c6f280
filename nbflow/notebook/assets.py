"""The debugger view's code and styles, shipped once per page instead of in every widget's state.

The widget's ``_esm`` is :func:`loader_esm` (``static/loader.js``, ~2 KB): in the browser it loads
``static/widget.js`` and ``widget.css`` (~150 KB) from the Jupyter server extension's route
``<base_url>nbflow/static/<id>/<name>`` (:mod:`nbflow.server.handlers`), or, where that route is
missing or serves other files, from the kernel (:meth:`nbflow.notebook.widget.RunWidget.assets`).
``<id>`` is :func:`assets_id`, the digest of both files, so the browser caches them for good and a
server with another nbflow's files is never used."""
from __future__ import annotations

import functools
import hashlib
import os
import re
from pathlib import Path

STATIC = Path(__file__).parent / "static"
NAMES = ("widget.js", "widget.css")
"""The files the route serves: the built view (js/build.mjs writes them)."""
CONTENT_TYPES = {"widget.js": "text/javascript; charset=utf-8", "widget.css": "text/css; charset=utf-8"}
_PLACEHOLDER = "__NBFLOW_ASSETS_ID__"
_COMMENT_LINE = re.compile(r"^\s*(//.*|/\*\*.*\*/)\n", re.MULTILINE)


@functools.cache
def asset(name: str) -> bytes:
    """The bytes of one shipped file (*name* in :data:`NAMES`), read once per process."""
    if name not in NAMES:
        raise ValueError(f"unknown widget asset {name!r}: expected one of {', '.join(NAMES)}")
    return (STATIC / name).read_bytes()


@functools.cache
def assets_id() -> str:
    """The digest of the shipped files (16 hex digits): the route's version and the loader's."""
    h = hashlib.sha256()
    for name in NAMES:
        h.update(name.encode() + b"\0" + asset(name) + b"\0")
    return h.hexdigest()[:16]


@functools.cache
def loader_esm() -> str:
    """The widget's ``_esm``: ``static/loader.js`` with this build's :func:`assets_id`, without its
    comment lines, indentation and blank lines (it is what each saved widget state carries; the file
    has no multi-line string)."""
    text = _COMMENT_LINE.sub("", (STATIC / "loader.js").read_text(encoding="utf-8"))
    lines = (line.strip() for line in text.splitlines())
    return "\n".join(line for line in lines if line).replace(_PLACEHOLDER, assets_id()) + "\n"


SERVED_ENV = "NBFLOW_WIDGET_ASSETS"
"""Set by nbflow's Jupyter server extension, to :func:`assets_id`, in the environment the kernels it
starts inherit: such a kernel's widgets carry the loader, since their page can fetch the files."""


def served() -> bool:
    """True in a kernel started by a Jupyter server whose nbflow extension serves this build's files.
    Any other kernel (VS Code, Colab, a server without the extension or with another nbflow) puts the
    whole view in each widget's state, as before: its front end may have no route, and a kernel busy
    running a cell cannot answer the loader's ``assets`` command until the cell ends."""
    return os.environ.get(SERVED_ENV) == assets_id()


def assets_message() -> dict[str, str]:
    """The answer to the widget's ``assets`` command: the id and both files as text."""
    return {"id": assets_id(), "js": asset("widget.js").decode("utf-8"), "css": asset("widget.css").decode("utf-8")}


__all__ = ["CONTENT_TYPES", "NAMES", "SERVED_ENV", "STATIC", "asset", "assets_id", "assets_message", "loader_esm",
           "served"]
