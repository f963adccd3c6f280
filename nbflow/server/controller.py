"""The debugger view's one endpoint: ``POST /nbflow/api/runs/<run>/actions/<name>``, the JupyterLab
sidebar's way to the same :class:`~nbflow.notebook.controller.Controller` the notebook widget
calls through its anywidget command. Every action of the view (navigation, the operator verbs,
breakpoints) is this one request; the sidebar's model only carries it.

Body ``{"args": {...}, "view": {...} | null}``: the action's arguments (as
:mod:`nbflow.notebook.controller` lists them) and the view state the last answer gave (null: a
first look, which opens the first step that waits on a person). Answer ``{"result", "state",
"view"}``: the controller's answer (``ok``, ``text``, ``action``, ``code``, ``command``), the
state the view draws (``summary``, ``dag``, ``selected_step``, ``instances``, ``selected``,
``detail``, ``live``) and the view state to send next time. A refused action answers with its
refusal's status (400 invalid, 404 not found, 409 refused by the state), with the same body and
the ``message`` every error of the API has. ``debug_cell`` is refused here (400): the sidebar has no
kernel to bind an instance's inputs in; its text says to run ``%nbflow debug STEP:KEY`` in a notebook. A
command sent to a live owner in another process is waited for up to
:data:`~nbflow.server.handlers.APPLY_WAIT_S`.

Like every ``/nbflow/api/`` endpoint it needs a Jupyter login and, being a POST, Jupyter's XSRF
protection; navigation needs ``read`` on ``nbflow``, every other action ``write``. Whatever
evaluates a person's expression needs ``execute`` on ``kernels`` too: a breakpoint with a condition
or a logpoint's expression (code the run's owner evaluates), the actions of
:data:`~nbflow.notebook.controller.CODE_ACTIONS` (watch columns, a bulk edit's preview and apply), and
any action whose view holds watch columns (every state read evaluates them, so a view is code as well
as state).
"""
from __future__ import annotations

import asyncio
from typing import Any

from jupyter_server.utils import ensure_async
from tornado import web

from .. import verbs
from .._util import set_actor
from ..commands import await_applied
from ..notebook.controller import CODE_ACTIONS, DEBUG_CELL, NAVIGATION, Controller
from ..run import Run
from ..states import RunStatus
from .handlers import APPLY_WAIT_S, ApiHandler, _http, _translate

RESUME_HINT = '"Resume here"'
"""What the sidebar offers, besides ``nbflow resume RUN``, to apply a queued command."""


class ActionHandler(ApiHandler):
    """``POST /nbflow/api/runs/<run>/actions/<name>``: one action of the debugger view (module docstring)."""

    async def _allowed(self, action: str, resource: str) -> bool:
        return bool(await ensure_async(self.authorizer.is_authorized(self, self.current_user, action, resource)))

    @web.authenticated
    @_translate
    async def post(self, run_id: str, name: str) -> None:
        # debug_cell only ever answers its refusal here (no kernel to bind inputs in): reading is enough
        need = "read" if name in NAVIGATION or name == DEBUG_CELL else "write"
        if not await self._allowed(need, self.auth_resource):
            raise _http(403, f"User is not authorized to {need} on resource: {self.auth_resource}.")
        body = self.body_object(("args", "view"))
        args, view = body.get("args"), body.get("view")
        if args is not None and not isinstance(args, dict):
            raise _http(400, "'args' must be a JSON object or null")
        if view is not None and not isinstance(view, dict):
            raise _http(400, "'view' must be the JSON object the last answer gave, or null")
        code = [(args or {}).get(f) for f in ("condition", "expression")]
        if (name == "add_breakpoint" and any(c not in (None, "") for c in code)
                and not await self._allowed("execute", "kernels")):
            raise _http(403, "a breakpoint condition or logpoint expression is code; only users allowed to execute "
                             "code in this server may set one")
        if (name in CODE_ACTIONS or (view or {}).get("watch")) and not await self._allowed("execute", "kernels"):
            raise _http(403, "watch columns and bulk edits are expressions evaluated in this server; only users "
                             "allowed to execute code here may use them")
        actor = self.actor

        def act() -> tuple[Controller, dict[str, Any]]:
            set_actor(actor)  # this thread's context only
            controller = Controller(Run(self.store, run_id), view=view, resume_hint=RESUME_HINT, actor=actor)
            return controller, controller.act(name, args)

        controller, answer = await asyncio.to_thread(act)
        command = answer.get("command") or {}
        if command.get("state") == verbs.CommandState.SENT:
            cid = command["id"]
            got = (await asyncio.to_thread(await_applied, controller.store, [cid], APPLY_WAIT_S)).get(cid)
            if got is not None:
                controller.pending.pop(cid, None)
                answer = Controller.applied(cid, name, {"result": got.result, "message": got.message})
        state = await asyncio.to_thread(controller.state)
        state["live"] = not RunStatus(state["summary"]["status"]).terminal
        status = 200
        if not answer["ok"]:
            try:
                status = verbs.HTTP_STATUS[verbs.Refusal(answer.get("code") or "state")]
            except ValueError:
                status = 409
        out = {"result": answer, "state": state, "view": controller.view()}
        self.reply(out if answer["ok"] else {"message": answer["text"], **out}, status)


def handlers() -> list[tuple[str, type[web.RequestHandler]]]:
    """The endpoint's URL pattern (relative to the server's base URL) and its handler."""
    return [(r"nbflow/api/runs/([^/]+)/actions/([^/]+)", ActionHandler)]
