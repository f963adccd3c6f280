"""Jupyter authorizers for the REST API's tests (loaded by a test server with ``--ServerApp.authorizer_class``)."""
from __future__ import annotations

from typing import Any

from jupyter_server.auth import Authorizer


class NoCode(Authorizer):
    """Everything but running code: ``execute`` on ``kernels`` is refused (a user who may read and
    drive runs, but not have expressions evaluated in the server)."""

    def is_authorized(self, handler: Any, user: Any, action: str, resource: str) -> bool:
        return not (action == "execute" and resource == "kernels")
