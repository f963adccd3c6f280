"""Tornado handlers of the Jupyter server extension.

Two kinds of endpoint:

* ``/nbflow/api/...`` (:class:`ApiHandler` subclasses): Jupyter authentication on every method,
  Jupyter's XSRF protection on every mutating one (a browser session must send the ``_xsrf``
  cookie back as ``X-XSRFToken``; a token in the ``Authorization`` header is the non-browser path),
  and the authorizer's ``read``/``write`` on the resource ``nbflow``. Commands go through
  :func:`nbflow.commands.submit` with the Jupyter user as the actor; payloads are JSON only, so no
  pickle ever comes from the network.
* ``/nbflow/signal/<token>`` (:class:`SignalHandler`): no Jupyter login and no XSRF (external
  systems call it), but only a token signed with the store's secret is accepted, each once, before
  its deadline; the body is size- and rate-limited.

Every error is ``{"message": ...}`` with a status code (400 bad input, 403 not allowed, 404 unknown
run/step/key, 409 refused by the run's state, 413/429 limits); never a traceback.
"""
from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import json
import re
import time
from collections import deque
from collections.abc import Callable, Mapping
from http.client import responses
from typing import Any

from jupyter_server.auth.decorator import allow_unauthenticated, authorized
from jupyter_server.base.handlers import APIHandler, JupyterHandler
from jupyter_server.utils import ensure_async
from tornado import web
from tornado.web import HTTPError

from .. import views
from .._util import current_actor, dumps, parse_json, set_actor
from ..breakpoints import check_condition, json_key, parse_target
from ..commands import (
    CommandResult,
    add_breakpoint,
    await_applied,
    breakpoint_scope,
    check_breakpoint,
    check_target,
    remove_breakpoints,
    signal,
    submit,
)
from ..errors import CommandRefused, DefinitionError, NbflowError, StoreError, UnknownRunError
from ..signals import SignalRefused, read_token
from ..states import InstanceStatus, RunStatus
from ..states import label as states_label
from ..store import Store, urls
from ..verbs import HTTP_STATUS, VERBS, CommandState, Refusal, Target, signal_outcome

COMMAND_VERBS = tuple(v.name for v in VERBS.values() if v.target in (Target.INSTANCES, Target.STEP, Target.RUN))
"""The verbs ``POST runs/<id>/commands`` accepts: those of the table that name instances, a step or the run."""

APPLY_WAIT_S = 10.0
"""How long a request waits for a live owner to apply a command before answering ``202 sent``."""

QUERY_INT_MAX = 2**53 - 1
"""The largest number a query argument (limit, offset, after) takes: exact in JSON, within SQL's 64-bit integers."""

PAGE_MAX = 1000
"""The most instances one ``GET runs/<id>/instances`` page holds (``?limit=``)."""

SIGNAL_MAX_BYTES = 1024 * 1024
"""The largest signal body accepted (413 beyond)."""

SIGNAL_DRAIN_BYTES = 16 * SIGNAL_MAX_BYTES
"""A body over the limit is read to its end and dropped, up to this size, so that the client, still sending,
gets its 413 instead of a reset connection; a body declared larger is answered 413 at once, and a chunked one
that grows larger is cut off by the server."""

SIGNAL_RATE = (120, 60.0)
"""At most this many signal requests per client address per this many seconds (429 beyond)."""

_SIGNAL_HITS: dict[str, deque[float]] = {}
"""Recent signal request times per client address (the rate limit)."""

_CODES = frozenset(r.value for r in Refusal)


def _http(status: int, message: str) -> HTTPError:
    """An HTTPError whose message is shown as is (``%`` in it is not a format)."""
    return HTTPError(status, "%s", message)


def _status(code: str) -> int:
    """The HTTP status of a refusal code (:data:`nbflow.verbs.HTTP_STATUS`; 409 for one it does not know)."""
    return HTTP_STATUS[Refusal(code)] if code in _CODES else 409


def _translate(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn nbflow's errors into HTTP errors with their message (no traceback)."""

    @functools.wraps(fn)
    async def inner(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            out = fn(self, *args, **kwargs)
            if inspect.isawaitable(out):
                out = await out
            return out
        except HTTPError:
            raise
        except UnknownRunError as exc:
            raise _http(404, str(exc)) from None
        except SignalRefused as exc:
            raise _http(409, str(exc)) from None
        except CommandRefused as exc:
            raise _http(_status(exc.code), str(exc)) from None
        except DefinitionError as exc:
            raise _http(400, str(exc)) from None
        except StoreError as exc:
            raise _http(503, str(exc)) from None
        except NbflowError as exc:
            raise _http(400, str(exc)) from None

    return inner


class _JsonErrors:
    """``write_error`` as ``{"message": ...}``: the HTTPError's own message, else a generic one."""

    def write_error(self: Any, status_code: int, **kwargs: Any) -> None:
        message = responses.get(status_code, "error")
        exc_info = kwargs.get("exc_info")
        if exc_info and isinstance(exc_info[1], HTTPError):
            e = exc_info[1]
            if e.log_message:
                try:
                    message = e.log_message % e.args if e.args else e.log_message
                except (TypeError, ValueError):
                    message = e.log_message
        elif exc_info:
            message = "internal error in the nbflow server extension; see the Jupyter server log"
        self.set_header("Content-Type", "application/json")
        self.finish(dumps({"message": message}))


def _open_store(settings: Mapping[str, Any]) -> Store:
    url = settings.get("nbflow_db")
    try:
        return Store.open(url)
    except NbflowError:
        raise
    except Exception as exc:  # noqa: BLE001 - a driver or file error: say which store, never its password
        raise StoreError(f"cannot open the nbflow store {urls.shown(url)}: {type(exc).__name__}") from None


def _json_body(raw: bytes, *, allow_empty: bool = False) -> Any:
    if not raw.strip():
        if allow_empty:
            return None
        raise _http(400, "the request body must be JSON; it is empty")
    try:
        return parse_json(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _http(400, f"the request body is not valid JSON ({exc})") from None
    except ValueError as exc:  # NaN, Infinity or a lone surrogate: Python's parser takes them, RFC 8259 does not
        raise _http(400, f"the request body is refused: {exc}") from None


# ---------------------------------------------------------------------------------- who acts
_ANONYMOUS_ID = re.compile(r"[0-9a-f]{32}")


def jupyter_actor(user: Any, provider: Any) -> str:
    """The actor of the sidebar's commands: the Jupyter user's ``name`` from the server's identity
    provider (JupyterHub's, or one a deployment configures). jupyter_server's own providers, when no
    identity is configured (one shared token, or no auth), make up an anonymous user per browser (a
    random hex ``username``, the name ``Anonymous <moon>``); that user is the person who runs the
    server, so the actor is the OS user running it (``NBFLOW_ACTOR`` if set): what the notebook's
    kernel records for the same person (:func:`nbflow._util.current_actor`)."""
    username = getattr(user, "username", None)
    if not isinstance(username, str):
        return str(user)
    name = getattr(user, "name", None) or username
    made_up = (type(provider).__module__.startswith("jupyter_server.") and _ANONYMOUS_ID.fullmatch(username)
               and str(name).startswith("Anonymous "))
    if made_up:
        return contextvars.Context().run(current_actor)  # not a surface's actor set in this context
    return str(name)


# ---------------------------------------------------------------------------------- REST API
class ApiHandler(_JsonErrors, APIHandler):
    """Base of ``/nbflow/api/``: the store, JSON replies, the Jupyter user as actor."""

    auth_resource = "nbflow"

    @property
    def store(self) -> Store:
        return _open_store(self.settings)

    @property
    def actor(self) -> str:
        """Who the sidebar acts as (the actor of its commands): see :func:`jupyter_actor`."""
        return jupyter_actor(self.current_user, self.identity_provider)

    def reply(self, value: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(dumps(value))

    def body_object(self, allowed: tuple[str, ...]) -> dict[str, Any]:
        body = _json_body(self.request.body)
        if not isinstance(body, dict):
            raise _http(400, "the request body must be a JSON object")
        extra = sorted(set(body) - set(allowed))
        if extra:
            raise _http(400, f"unknown field(s) {', '.join(map(repr, extra))}; fields are: {', '.join(allowed)}")
        return body

    def int_arg(self, name: str, default: int | None, high: int = QUERY_INT_MAX) -> int | None:
        """A whole-number query argument from 0 to *high*; anything else is a 400 naming the range."""
        text = self.get_query_argument(name, None)
        if text in (None, ""):
            return default
        try:
            value: int | None = int(text)
        except ValueError:
            value = None
        if value is None or not 0 <= value <= high:
            shown = text if len(text) <= 40 else text[:40] + "..."
            raise _http(400, f"query argument {name!r} must be a whole number from 0 to {high}, got {shown!r}")
        return value

    def list_arg(self, name: str) -> list[str]:
        """Repeated or comma-separated query values."""
        return [v for text in self.get_query_arguments(name) for v in text.split(",") if v]

    def statuses(self, name: str, known: tuple[str, ...]) -> list[str]:
        wanted = self.list_arg(name)
        bad = [s for s in wanted if s not in known]
        if bad:
            raise _http(400, f"unknown status {', '.join(map(repr, bad))}; statuses are: {', '.join(known)}")
        return wanted


RUN_STATUSES = tuple(s.value for s in RunStatus)
INSTANCE_STATUSES = tuple(s.value for s in InstanceStatus)


class RunsHandler(ApiHandler):
    """``GET /nbflow/api/runs?workflow=&status=&limit=``: the same list as ``nbflow runs -o json``
    (newest first; ``limit`` defaults to 50, 0 means all)."""

    @web.authenticated
    @authorized
    @_translate
    async def get(self) -> None:
        workflow = self.get_query_argument("workflow", None) or None
        status = self.statuses("status", RUN_STATUSES)
        limit = self.int_arg("limit", 50)

        def work() -> list[dict[str, Any]]:
            store = self.store
            rows = store.run_rows(workflow=workflow, status=status or None, limit=limit or None)
            return views.run_summaries(store, rows)

        self.reply(await asyncio.to_thread(work))


class RunHandler(ApiHandler):
    """``GET /nbflow/api/runs/<id>``: ``nbflow show RUN -o json`` (``?status=&limit=`` narrow the
    instance list); ``?light=1``: :func:`nbflow.views.run_state` (no instance rows); ``?at=E`` (an event
    id or its position in the history): :func:`nbflow.views.run_state_at`, the run right after that event."""

    @web.authenticated
    @authorized
    @_translate
    async def get(self, run_id: str) -> None:
        light = self.get_query_argument("light", "") not in ("", "0", "false")
        status = self.statuses("status", INSTANCE_STATUSES)
        limit = self.int_arg("limit", None)
        at = self.int_arg("at", None)

        def work() -> dict[str, Any]:
            if at is not None:
                return views.run_state_at(self.store, run_id, at)
            if light:
                return views.run_state(self.store, run_id)
            return views.run_view(self.store, run_id, status=status or None, limit=limit)

        self.reply(await asyncio.to_thread(work))


class HistoryHandler(ApiHandler):
    """``GET /nbflow/api/runs/<id>/history?after=N``: ``nbflow history RUN -o json``."""

    @web.authenticated
    @authorized
    @_translate
    async def get(self, run_id: str) -> None:
        after = self.int_arg("after", 0) or 0
        self.reply(await asyncio.to_thread(views.history_view, self.store, run_id, after))


class MarksHandler(ApiHandler):
    """``GET /nbflow/api/runs/<id>/marks``: what a history scrubber marks (:func:`nbflow.views.history_marks`)."""

    @web.authenticated
    @authorized
    @_translate
    async def get(self, run_id: str) -> None:
        self.reply(await asyncio.to_thread(views.history_marks, self.store, run_id))


class InstancesHandler(ApiHandler):
    """``GET /nbflow/api/runs/<id>/instances?step=&status=&text=&offset=&limit=&at=``: one page of a
    step's instances (:func:`nbflow.views.instance_page`); ``limit`` is at most 1000 (0: the default 50);
    ``at``: the page as it was right after that event (an id or a position)."""

    @web.authenticated
    @authorized
    @_translate
    async def get(self, run_id: str) -> None:
        step = self.get_query_argument("step", None)
        if not step:
            raise _http(400, "name the step: ?step=STEP")
        status = self.statuses("status", INSTANCE_STATUSES)
        text = self.get_query_argument("text", None) or None
        offset = self.int_arg("offset", 0) or 0
        limit = self.int_arg("limit", 50, PAGE_MAX) or 50
        at = self.int_arg("at", None)

        def work() -> dict[str, Any]:
            store = self.store
            check_target(store, store.run_row(run_id), step)
            return views.instance_page(store, run_id, step, status=status or None, text=text, offset=offset,
                                       limit=limit, at=at)

        self.reply(await asyncio.to_thread(work))


class InstanceHandler(ApiHandler):
    """``GET /nbflow/api/runs/<id>/instances/<step>/<key>`` (a task step: ``.../instances/<step>``):
    everything about one instance (:func:`nbflow.views.instance_detail`)."""

    @web.authenticated
    @authorized
    @_translate
    async def get(self, run_id: str, step: str, key: str | None = None) -> None:
        def work() -> dict[str, Any]:
            store = self.store
            check_target(store, store.run_row(run_id), step)
            detail = views.instance_detail(store, run_id, step, key)
            if detail is None:
                label = states_label(step, key)
                raise _http(404, f"run {run_id} has no instance {label} (yet)")
            return detail

        self.reply(await asyncio.to_thread(work))


class CommandsHandler(ApiHandler):
    """``POST /nbflow/api/runs/<id>/commands`` with ``{"verb", "step", "keys", "payload", "reason"}``:
    one operator command of :data:`COMMAND_VERBS`, checked by :func:`nbflow.commands.check` (its
    refusal codes map to 400, 404 and 409 by :data:`nbflow.verbs.HTTP_STATUS`) and written by
    :func:`nbflow.commands.submit`, authored by the Jupyter user.

    ``payload`` is a JSON object (``{"output": ...}`` for skip, ``{"inputs": {...}}`` for set_inputs,
    ``{"value": ...}`` for set_output, ``{"comment", "payload"}`` for approve/reject); it is stored
    as JSON, never unpickled. With a live owner the reply waits (up to 10 s) for its answer: 200
    ``applied`` or 409 with the refusal; 202 ``sent`` if it has not answered yet, 202 ``queued``
    when the run has no live owner (applied when the run is resumed)."""

    FIELDS = ("verb", "step", "keys", "payload", "reason")

    @web.authenticated
    @authorized
    @_translate
    async def post(self, run_id: str) -> None:
        body = self.body_object(self.FIELDS)
        verb = body.get("verb")
        if verb not in COMMAND_VERBS:
            raise _http(400, f"unknown verb {verb!r}; verbs are: {', '.join(COMMAND_VERBS)}")
        step = body.get("step")
        if step is not None and not isinstance(step, str):
            raise _http(400, "'step' must be a string or null")
        keys = body.get("keys")
        if keys is not None and (
            not isinstance(keys, list) or any(isinstance(k, bool) or not isinstance(k, (str, int)) for k in keys)
        ):
            raise _http(400, "'keys' must be a list of keys (strings or integers) or null")
        keys = None if keys is None else [str(k) for k in keys]
        payload = body.get("payload")
        if payload is not None and not isinstance(payload, dict):
            raise _http(400, "'payload' must be a JSON object or null")
        reason = body.get("reason")
        if reason is not None and not isinstance(reason, str):
            raise _http(400, "'reason' must be a string or null")
        actor = self.actor

        def work() -> CommandResult:
            return submit(self.store, run_id, verb, step, keys, payload, reason, actor=actor, wait=False)

        res = await asyncio.to_thread(work)
        out: dict[str, Any] = {"id": res.id, "run": run_id, "verb": verb, "step": step, "keys": keys, "actor": actor}
        if res.state == CommandState.QUEUED:
            self.reply({**out, "state": "queued", "message": (
                f"run {run_id} has no live owner; the command is applied when the run is resumed")}, 202)
            return
        answer = (await asyncio.to_thread(await_applied, self.store, [res.id], APPLY_WAIT_S)).get(res.id)
        if answer is None:
            self.reply({**out, "state": "sent", "message": "the owner has not applied it yet; see the history"}, 202)
        elif answer.state == CommandState.REFUSED:
            raise _http(_status(answer.code), answer.message or "refused by the run's owner")
        else:
            self.reply({**out, "state": "applied", "message": answer.message})


class BreakpointsHandler(ApiHandler):
    """``/nbflow/api/breakpoints``: list (GET ``?workflow=W`` or ``?run=RUN``, neither: all), add
    (POST ``{"workflow"|"run", "step", "key", "when", "condition", "expression", "hit_count"}``; an
    ``expression`` makes a logpoint), remove (DELETE
    ``?workflow=W|run=RUN&step=S[&key=K]``), as ``nbflow breakpoint list|add|rm -o json`` do.

    A condition is Python code that the run's owner evaluates. It is accepted only from an
    authenticated Jupyter user (with XSRF protection) whom the authorizer also allows to
    ``execute`` on ``kernels``, i.e. someone who could already run code in this server; such a
    user gains nothing by it. So is a logpoint's expression. Without either, ``write`` on ``nbflow``
    is enough."""

    FIELDS = ("workflow", "run", "step", "key", "when", "condition", "expression", "hit_count")

    @web.authenticated
    @authorized
    @_translate
    async def get(self) -> None:
        workflow = self.get_query_argument("workflow", None) or None
        run_id = self.get_query_argument("run", None) or None
        if workflow is not None and run_id is not None:
            raise _http(400, "pass at most one of ?workflow= or ?run=")

        def work() -> list[dict[str, Any]]:
            return views.breakpoints_list(self.store, workflow, run_id)

        self.reply(await asyncio.to_thread(work))

    @web.authenticated
    @authorized
    @_translate
    async def post(self) -> None:
        body = self.body_object(self.FIELDS)
        step = body.get("step")
        if not isinstance(step, str) or not step:
            raise _http(400, "'step' is required: a step name, or 'step:key'")
        key = json_key(body.get("key"))
        condition = check_condition(body.get("condition"))  # refused (400) before the code permission is asked
        expression, hit_count = body.get("expression"), body.get("hit_count")
        if condition is not None or expression is not None:
            allowed = await ensure_async(self.authorizer.is_authorized(self, self.current_user, "execute", "kernels"))
            if not allowed:
                raise _http(403, "a breakpoint condition or logpoint expression is code; only users allowed to "
                                 "execute code in this server may set one")
        if key is None and ":" in step:
            step, key = parse_target(step)
        when = body.get("when") or "before"
        actor = self.actor

        def work() -> dict[str, Any]:
            set_actor(actor)  # this thread's context only
            store = self.store
            name, row = breakpoint_scope(store, body.get("workflow"), body.get("run"))
            bp = check_breakpoint(store, name, row, step, key, when, condition,
                                  action="log" if expression is not None else "pause", expression=expression,
                                  hit_count=hit_count)
            created = add_breakpoint(store, name, bp, bp.run_id)
            for b in store.breakpoint_rows(name, bp.run_id):
                if b["id"] == created.id:
                    return views.breakpoint_view(b)
            return views.breakpoint_view({  # removed again meanwhile: describe what was added
                "id": created.id, "workflow": name, "run_id": bp.run_id, "step": created.step, "key": created.key,
                "when": str(created.when), "condition": created.condition, "created_by": created.created_by,
                "created_at": time.time(), "action": str(created.action), "expression": created.expression,
                "hit_count": created.hit_count, "one_shot": created.one_shot, "origin": created.origin,
            })

        self.reply(await asyncio.to_thread(work), 201)

    @web.authenticated
    @authorized
    @_translate
    async def delete(self) -> None:
        workflow = self.get_query_argument("workflow", None) or None
        run_id = self.get_query_argument("run", None) or None
        target = self.get_query_argument("step", None)
        if not target:
            raise _http(400, "name the step: ?step=STEP (and &key=KEY for one item)")
        key = self.get_query_argument("key", None)
        step, tkey = parse_target(target)
        key = key if key is not None else tkey
        actor = self.actor

        def work() -> dict[str, Any]:
            set_actor(actor)
            store = self.store
            name, _row = breakpoint_scope(store, workflow, run_id)
            n = remove_breakpoints(store, name, step, key, run_id)
            return {"removed": n, "workflow": name, "run_id": run_id, "step": step, "key": key}

        self.reply(await asyncio.to_thread(work))


# ---------------------------------------------------------------------------------- signal callback
@web.stream_request_body
class SignalHandler(_JsonErrors, JupyterHandler):
    """``POST /nbflow/signal/<token>`` with a JSON body (the payload; empty means null): deliver an
    external signal. No Jupyter login and no XSRF check (callers are other systems, not browsers
    with a session): the signed token is the credential. Replies: 200 ``{"result": "delivered" |
    "duplicate" | "received", "message"}``; 202 ``queued``/``sent`` when no live owner answered;
    403 a forged or foreign token (nothing written); 409 a wait that timed out or a finished run;
    400 invalid JSON; 413 a body over 1 MB; 429 too many requests from one address."""

    def check_xsrf_cookie(self) -> None:
        """No XSRF for this endpoint only: it uses no cookie, so there is no session to forge."""

    async def prepare(self) -> None:  # type: ignore[override]
        await super().prepare()
        self._chunks: list[bytes] = []
        self._size = 0
        if self.request.method != "POST":
            return
        limit, window = SIGNAL_RATE
        now = time.monotonic()
        if len(_SIGNAL_HITS) > 10_000:  # forget idle addresses
            for ip in [ip for ip, h in _SIGNAL_HITS.items() if not h or h[-1] < now - window]:
                del _SIGNAL_HITS[ip]
        hits = _SIGNAL_HITS.setdefault(self.request.remote_ip or "?", deque())
        while hits and hits[0] < now - window:
            hits.popleft()
        if len(hits) >= limit:
            raise _http(429, "too many signal requests from this address; try again later")
        hits.append(now)
        length = self.request.headers.get("Content-Length")
        if length is not None and length.isdigit() and int(length) > SIGNAL_DRAIN_BYTES:
            raise self._too_large()
        self.request.connection.set_max_body_size(SIGNAL_DRAIN_BYTES)  # type: ignore[union-attr]

    def data_received(self, chunk: bytes) -> None:
        """Keep the body up to the limit; past it, count and drop (``post`` answers 413)."""
        self._size += len(chunk)
        if self._size <= SIGNAL_MAX_BYTES:
            self._chunks.append(chunk)
        else:
            self._chunks.clear()

    @staticmethod
    def _too_large() -> HTTPError:
        return _http(413, f"the signal body is larger than {SIGNAL_MAX_BYTES} bytes")

    def reply(self, value: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(dumps(value))

    @allow_unauthenticated
    @_translate
    async def post(self, token: str) -> None:
        if self._size > SIGNAL_MAX_BYTES:
            raise self._too_large()
        payload = _json_body(b"".join(self._chunks), allow_empty=True)
        actor = f"signal endpoint ({self.request.remote_ip})"

        def work() -> tuple[Any, bool, Store]:
            store = _open_store(self.settings)
            try:
                run_id, _step, _item, _name = read_token(store.secret, token)
            except SignalRefused as exc:  # forged, truncated or from another store: nothing is written
                raise _http(403, str(exc)) from None
            res = signal(token, payload, store, actor=actor)  # SignalRefused here: a finished wait -> 409
            alive = res.applied or views.owner_view(store.run_row(run_id))["alive"]
            return res, alive, store

        res, alive, store = await asyncio.to_thread(work)
        if res.applied:
            self.reply({"result": str(signal_outcome(res.message)), "message": res.message})
            return
        if not alive:
            self.reply({"result": "queued", "message": "the run has no live owner; the signal is delivered when "
                                                       "the run is resumed"}, 202)
            return
        answer = (await asyncio.to_thread(await_applied, store, [res.id], APPLY_WAIT_S)).get(res.id)
        if answer is None:
            self.reply({"result": "sent", "message": "the run's owner has not applied it yet"}, 202)
        elif answer.state == CommandState.REFUSED:
            raise _http(409, answer.message or "refused")
        else:
            self.reply({"result": str(signal_outcome(answer.message)), "message": answer.message})


def handlers() -> list[tuple[str, type[web.RequestHandler]]]:
    """URL patterns (relative to the server's base URL) and their handlers."""
    run = r"nbflow/api/runs/([^/]+)"
    return [
        (r"nbflow/api/runs", RunsHandler),
        (run, RunHandler),
        (run + r"/history", HistoryHandler),
        (run + r"/marks", MarksHandler),
        (run + r"/instances", InstancesHandler),
        (run + r"/instances/([^/]+)", InstanceHandler),
        (run + r"/instances/([^/]+)/([^/]+)", InstanceHandler),
        (run + r"/commands", CommandsHandler),
        (r"nbflow/api/breakpoints", BreakpointsHandler),
        (r"nbflow/signal/([^/]+)", SignalHandler),
    ]
