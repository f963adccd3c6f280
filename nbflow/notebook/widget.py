"""The live debugger widget: an anywidget whose ESM/CSS ship in ``static/`` (built from ``js/``).

State comes from :mod:`nbflow.views` (counts by GROUP BY, one page of instance rows, one
instance's detail), so a 10,000-item foreach ships counts and one page, never every row.
Actions arrive as custom messages from the browser and go through the ``Run`` verbs and
:mod:`nbflow.commands` (the one, audited command path). A daemon thread per widget watches the
run's change token and refreshes the traits, at most ~10 times a second, from one place
(:meth:`RunWidget.refresh`), until the run is finished or the widget is closed. The widget works
for runs owned by another process too: it reads the store and writes commands; the owner applies
them, and the widget reports the outcome when it sees it.

Messages from the browser (``model.send``; every one may carry ``req``, echoed in ``message``):
navigation ``select_step {step}``, ``page {offset}``, ``filter {status, text}``,
``select_instance {step, key}``, ``close_instance``, ``refresh``; actions ``resume {step, key | keys}``,
``resume_all``, ``retry {step, key}``, ``skip {step, key, json, reason}``, ``set_inputs {step, key,
json, reason}`` (only the inputs that differ are sent on), ``set_output {step, key, json, reason}``,
``approve {step, comment, json}`` (``json``: optional payload text, the gate's output),
``reject {step, comment}``, ``cancel {reason}``, ``add_breakpoint {step, key, when,
condition}`` (workflow-scoped), ``remove_breakpoint {step, key}``. ``json`` is the editor's text,
parsed again here.

The DOM (tests/test_browser.py relies on it): ``.nbflow-widget[data-run-id]
[data-status]``; ``status-badge``, ``progress``; ``g[data-testid=node][data-step]`` with
``bp-marker``; ``instances`` with ``instance-row[data-key]``, ``row-status``, ``select``;
``filter-status``, ``filter-text``, ``page-prev``, ``page-next``, ``page-info``; ``resume-selected``,
``resume-all``, ``cancel-run`` (two clicks: the first arms it); ``instance-panel`` with ``inputs``,
``output``, ``error``, ``logs``, ``attempts``, ``history`` and ``resume-one``, ``retry``, ``skip``
(opens the JSON editor for the output the skipped instance stands for), ``edit-inputs``,
``edit-output``, and for a waiting gate ``approve``, ``reject``, ``approval-comment``,
``approval-payload``, ``approval-error``; for a waiting signal ``token`` and ``copy-token``; ``json-editor``,
``reason``, ``json-save``, ``json-cancel``, ``json-error``;
``add-breakpoint``, ``bp-condition``, ``bp-when``, ``bp-key``, ``remove-breakpoint``; ``message``
(class ``error`` when refused); ``step-uses`` (what the chosen step reads from the notebook that is
not stored with the run's code)."""
from __future__ import annotations

import contextlib
import os
import threading
import time
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anywidget
import traitlets

from .. import views
from .._compat import get_ipython
from .._util import _actor, parse_json, set_actor
from ..breakpoints import Breakpoint, key_text, validate
from ..commands import CommandResult, add_breakpoint, remove_breakpoints
from ..errors import NbflowError
from ..run import Run
from ..states import RunStatus, When
from . import render

STATIC = Path(__file__).parent / "static"
PAGE_SIZE = 20  # the page drives the table's height (no scroll box inside the notebook output)
POLL_S = 0.1  # at most ~10 refreshes a second
BUSY_FACTOR = 6  # wait at least 6x as long as a refresh took: the watcher takes < ~15% of the process
FULL_REFRESH_S = 5.0  # re-read even without a change (an owner's lease can expire silently)


class RunWidget(anywidget.AnyWidget):
    """The debugger view of one run: header, DAG, a paged instance table, an instance panel, actions."""

    _esm = STATIC / "widget.js"
    _css = STATIC / "widget.css"

    run_id = traitlets.Unicode("").tag(sync=True)
    summary = traitlets.Dict().tag(sync=True)
    """id, workflow, version, status, interrupted, owner, progress, counts, break_on_error, params."""
    dag = traitlets.Dict().tag(sync=True)
    """nodes (step, kind, foreach, counts, total, status, breakpoints) and edges."""
    selected_step = traitlets.Unicode(None, allow_none=True).tag(sync=True)
    instances = traitlets.Dict().tag(sync=True)
    """One page of the selected step's instances: step, offset, limit, total, status, text, rows. A row's
    ``key`` is the user's key where JSON carries it unchanged (an int key is a number), else its text
    (:func:`nbflow.views.shown_key`); the browser sends it back as is, and it addresses by its text."""
    selected = traitlets.Dict(None, allow_none=True).tag(sync=True)
    """The selected instance's address: {step, key} (``key`` as the rows show it)."""
    detail = traitlets.Dict(None, allow_none=True).tag(sync=True)
    """The selected instance (:func:`nbflow.views.instance_detail`), or None."""
    message = traitlets.Dict().tag(sync=True)
    """The last action's result: seq, ok, text, action, req (the browser's request id)."""
    live = traitlets.Bool(False).tag(sync=True)

    def __init__(self, run: Run, *, live: bool = True, page_size: int = PAGE_SIZE, **kwargs: Any) -> None:
        self.run = run
        self.store = run.store
        self.page_size = page_size
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._token: tuple[Any, ...] | None = None
        self._status = ""
        self._step: str | None = None  # the selected step
        self._sel: dict[str, Any] | None = None  # the selected instance
        self._offset = 0
        self._filter_status = ""
        self._filter_text = ""
        self._seq = 0
        self._pending: dict[int, tuple[str, Any]] = {}  # command id -> (what, browser request id)
        self._thread: threading.Thread | None = None
        self._detail: dict[str, Any] | None = None
        self._detail_stamp: tuple[Any, ...] | None = None
        values = self._compute()
        first = _first_interesting_step(values["dag"]["nodes"])
        if first is not None:
            self._select_step(first, values["dag"]["nodes"])
            values = self._compute()
        super().__init__(run_id=run.id, **values, **kwargs)  # the first state goes out with the comm's open
        self.on_msg(self._on_msg)
        if live and not RunStatus(self._status).terminal:
            self.live = True
            self._thread = threading.Thread(target=self._watch, name=f"nbflow-widget-{run.id}", daemon=True)
            self._thread.start()

    # -- state ------------------------------------------------------------------------------------
    def refresh(self, force: bool = True) -> None:
        """Read the store and set every trait that changed, in one comm message: the one place the
        state traits are set (from the watcher thread or after an action). Without *force*, the
        selected instance's detail is re-read only when its row changed."""
        with self._lock:
            values = self._compute(force)
            with self.hold_sync():
                for name, value in values.items():
                    setattr(self, name, value)

    def _compute(self, force: bool = True) -> dict[str, Any]:
        """The state traits' values, read from the store (counts, one page, one instance)."""
        token = views.change_token(self.store, self.run.id)
        state = views.run_state(self.store, self.run.id)
        self._status = state["status"]
        bps: dict[str, list[dict[str, Any]]] = {}
        for b in state["breakpoints"]:
            bps.setdefault(b["step"], []).append(
                {k: b[k] for k in ("id", "key", "when", "condition", "scope", "state", "held")}
            )
        nodes = [
            {**n, "status": render.node_status(n["counts"]), "breakpoints": bps.get(n["step"], [])}
            for n in state["dag"]["nodes"]
        ]
        summary = {k: state[k] for k in (
            "id", "workflow", "version", "status", "interrupted", "owner", "progress", "counts",
            "break_on_error", "created", "updated", "finished", "forked_from",
        )}
        summary["params"] = _small(state["params"])
        if self._step is not None and self._step not in {n["step"] for n in nodes}:
            self._step, self._sel = None, None
        page = self._page() if self._step is not None else {}
        detail = None
        if self._sel is not None:
            step, key = self._sel["step"], self._sel["key"]
            stamp = (step, key, views.instance_stamp(self.store, self.run.id, step, key))
            if force or stamp != self._detail_stamp:  # values are decoded only when the instance changed
                self._detail = views.instance_detail(self.store, self.run.id, step, key, user_keys=True) or {
                    "step": step, "key": key, "missing": True,
                }
                self._detail_stamp = stamp
            detail = self._detail
        self._token = token
        return {
            "summary": summary, "dag": {"nodes": nodes, "edges": state["dag"]["edges"]},
            "selected_step": self._step, "instances": page,
            "selected": None if self._sel is None else {"step": self._sel["step"], "key": (detail or self._sel)["key"]},
            "detail": detail,
        }

    def _page(self) -> dict[str, Any]:
        assert self._step is not None
        page = views.instance_page(
            self.store, self.run.id, self._step, status=self._filter_status or None,
            text=self._filter_text or None, offset=self._offset, limit=self.page_size, user_keys=True,
        )
        self._offset = page["offset"]
        page.update(status=self._filter_status, text=self._filter_text)
        return page

    def _select_step(self, step: str | None, nodes: list[dict[str, Any]] | None = None) -> None:
        self._offset = 0
        self._filter_status = ""
        self._filter_text = ""
        self._sel = None
        if step is None:
            self._step = None
            return
        node = next((n for n in (nodes if nodes is not None else self.dag["nodes"]) if n["step"] == step), None)
        if node is None:
            raise NbflowError(f"run {self.run.id} has no step {step!r}")
        self._step = step
        if node["kind"] != "foreach":
            self._sel = {"step": step, "key": None}  # a task has one instance: open it

    # -- live updates -----------------------------------------------------------------------------
    def _watch(self) -> None:
        last_full = time.monotonic()
        errors = 0
        while not self._stop.is_set():
            t0 = time.monotonic()
            try:
                if self._pending:
                    self._check_pending()
                token = views.change_token(self.store, self.run.id)
                if token != self._token or t0 - last_full > FULL_REFRESH_S:
                    self.refresh(force=False)
                    last_full = t0
                errors = 0
                if RunStatus(self._status).terminal and not self._pending:
                    break  # the last update is sent; nothing will change any more
            except Exception as exc:  # noqa: BLE001 - a store hiccup must not kill the view; give up after many
                errors += 1
                if errors >= 50:
                    self._say(False, f"live updates stopped: {type(exc).__name__}: {exc}", "watch")
                    break
            spent = time.monotonic() - t0
            self._stop.wait(max(POLL_S, BUSY_FACTOR * spent))  # coalesce, and leave the GIL to the run
        with self._lock:
            self.live = False

    def close(self) -> None:
        """Stop the live updates and close the widget."""
        self._stop.set()
        super().close()

    def stop(self, timeout: float | None = 5.0) -> None:
        """Stop the live-update thread (the widget stays displayed, frozen)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _check_pending(self) -> None:
        for cid, (what, req) in list(self._pending.items()):
            row = self.store.command_row(cid)
            if row["applied_at"] is None:
                continue
            del self._pending[cid]
            ok = row["result"] == "ok"
            text = row["message"] or ("done" if ok else "refused")
            self._say(ok, text if ok else f"refused: {text}", what, req)

    # -- messages from the browser ---------------------------------------------------------------
    def _on_msg(self, _widget: Any, content: Any, _buffers: Any = None) -> None:
        self.handle_message(content)

    def handle_message(self, content: Mapping[str, Any]) -> None:
        """Apply one message from the browser (the same dicts ``model.send`` sends). A refused or
        invalid action sets :attr:`message` with ``ok`` False and changes nothing."""
        if not isinstance(content, Mapping) or not isinstance(content.get("action"), str):
            self._say(False, f"bad message {content!r}: expected {{'action': ...}}", "?")
            return
        action = content["action"]
        req = content.get("req")
        handler = getattr(self, f"_do_{action}", None)
        if handler is None:
            self._say(False, f"unknown action {action!r}", action, req)
            return
        actor = os.environ.get("JUPYTERHUB_USER") if not os.environ.get("NBFLOW_ACTOR") else None
        token = set_actor(actor) if actor else None
        try:
            with self._lock:
                text = handler(content)
                self.refresh()
                if text is not None:
                    self._say(True, text, action, req)
        except (NbflowError, ValueError, TypeError, KeyError) as exc:
            self._say(False, _refusal(exc), action, req)
            with contextlib.suppress(Exception):  # show the state as it is now, if the store answers
                self.refresh()
        except Exception as exc:  # noqa: BLE001 - never a traceback in the kernel's log for a click
            self._say(False, f"internal error: {type(exc).__name__}: {exc}", action, req)
        finally:
            if token is not None:
                _actor.reset(token)

    def _say(self, ok: bool, text: str, action: str, req: Any = None) -> None:
        with self._lock:
            self._seq += 1
            self.message = {"seq": self._seq, "ok": ok, "text": text, "action": action, "req": req}

    # navigation (return None: no message)
    def _do_refresh(self, m: Mapping[str, Any]) -> None:
        return None

    def _do_select_step(self, m: Mapping[str, Any]) -> None:
        step = m.get("step")
        self._select_step(None if step in (None, "") else str(step))

    def _do_page(self, m: Mapping[str, Any]) -> None:
        if "offset" in m:
            self._offset = max(int(m["offset"]), 0)
        else:
            self._offset = max(self._offset + int(m.get("delta", 0)) * self.page_size, 0)

    def _do_filter(self, m: Mapping[str, Any]) -> None:
        status = str(m.get("status") or "")
        if status and status not in views.STATUSES:
            raise NbflowError(f"unknown status {status!r}; statuses are: {', '.join(views.STATUSES)}")
        self._filter_status = status
        self._filter_text = str(m.get("text") or "")[:200]
        self._offset = 0

    def _do_select_instance(self, m: Mapping[str, Any]) -> None:
        step = m.get("step") or self._step
        if step is None:
            raise NbflowError("select a step first")
        self._sel = {"step": str(step), "key": key_text(m.get("key"))}

    def _do_close_instance(self, m: Mapping[str, Any]) -> None:
        self._sel = None

    # operator actions (return the message text)
    def _target(self, m: Mapping[str, Any]) -> tuple[str, str | None]:
        step = m.get("step") or (self._sel or {}).get("step") or self._step
        if not step:
            raise NbflowError("no step given and none selected")
        return str(step), key_text(m.get("key"))

    def _result(self, res: CommandResult, what: str, req: Any) -> str:
        if res.applied:
            return res.message or "done"
        self._pending[res.id] = (what, req)
        if self.run.interrupted:
            return (f"queued as command #{res.id}: no live process drives run {self.run.id}; "
                    f"`nbflow resume {self.run.id}` (or wf.attach) will apply it")
        return f"sent as command #{res.id}; waiting for the run's owner to apply it"

    def _do_resume(self, m: Mapping[str, Any]) -> str:
        step, key = self._target(m)
        if m.get("keys") is not None:
            keys = [key_text(k) for k in m["keys"]]
            if not keys:
                raise NbflowError("no instance selected: tick the rows to resume")
            return self._result(self.run.resume(step, keys=keys, reason=_reason(m)), "resume", m.get("req"))
        return self._result(self.run.resume(step, key=key, reason=_reason(m)), "resume", m.get("req"))

    def _do_resume_all(self, m: Mapping[str, Any]) -> str:
        step = m.get("step")
        return self._result(self.run.resume(step or None, reason=_reason(m)), "resume_all", m.get("req"))

    def _do_retry(self, m: Mapping[str, Any]) -> str:
        step, key = self._target(m)
        keys = m.get("keys")
        res = self.run.retry(step, keys=[key_text(k) for k in keys], reason=_reason(m)) if keys is not None \
            else self.run.retry(step, key=key, reason=_reason(m))
        return self._result(res, "retry", m.get("req"))

    def _do_skip(self, m: Mapping[str, Any]) -> str:
        step, key = self._target(m)
        output = _json_arg(m, "json", "output")
        return self._result(self.run.skip(step, key=key, output=output, reason=_reason(m)), "skip", m.get("req"))

    def _do_set_inputs(self, m: Mapping[str, Any]) -> str:
        step, key = self._target(m)
        new = _json_arg(m, "json", "inputs")
        if not isinstance(new, dict):
            raise NbflowError("the inputs must be a JSON object of input name to value, e.g. {\"item\": {...}}")
        detail = views.instance_detail(self.store, self.run.id, step, key) or {}
        current = detail.get("inputs", {})
        readonly = set(detail.get("readonly_inputs", []))
        changed = {k: v for k, v in new.items() if k not in current or (k not in readonly and current[k] != v)}
        if not changed:
            raise NbflowError("nothing changed: the edited inputs equal the current ones")
        return self._result(self.run.set_inputs(step, key=key, reason=_reason(m), **changed), "set_inputs",
                            m.get("req"))

    def _do_set_output(self, m: Mapping[str, Any]) -> str:
        step, key = self._target(m)
        value = _json_arg(m, "json", "value")
        return self._result(self.run.set_output(step, key=key, value=value, reason=_reason(m)), "set_output",
                            m.get("req"))

    def _do_approve(self, m: Mapping[str, Any]) -> str:
        step, _ = self._target(m)
        text = m.get("json")
        payload = _json_arg(m, "json", "payload") if isinstance(text, str) and text.strip() else m.get("payload")
        comment = _text(m, "comment") or _reason(m)
        res = self.run.approve(step, comment=comment, payload=payload, reason=_reason(m))
        return self._result(res, "approve", m.get("req"))

    def _do_reject(self, m: Mapping[str, Any]) -> str:
        step, _ = self._target(m)
        comment = _text(m, "comment") or _reason(m)
        return self._result(self.run.reject(step, comment=comment, reason=_reason(m)), "reject", m.get("req"))

    def _do_cancel(self, m: Mapping[str, Any]) -> str:
        return self._result(self.run.cancel(reason=_reason(m)), "cancel", m.get("req"))

    def _definition_steps(self) -> Mapping[str, Any]:
        row = self.store.run_row(self.run.id)
        steps: Mapping[str, Any] = self.store.definition(row["workflow"], row["version"])["steps"]
        return steps

    def _do_add_breakpoint(self, m: Mapping[str, Any]) -> str:
        step, key = self._target(m)
        when_text = str(m.get("when") or "before")
        try:
            when = When(when_text)
        except ValueError:
            raise NbflowError(f"breakpoint when={when_text!r}: use 'before', 'after' or 'error'") from None
        condition = (m.get("condition") or "").strip() or None
        bp = Breakpoint(step, key, when, condition, workflow=self.run.workflow_name)
        validate(bp, self._definition_steps())
        if RunStatus(self.run.status).terminal:
            raise NbflowError(f"run {self.run.id} is {self.run.status}; the breakpoint would apply to later runs only "
                              "— add it with wf.breakpoints.add(...)")
        made = add_breakpoint(self.store, self.run.workflow_name, bp)
        target = step + (f":{key}" if key is not None else "")
        cond = f", if {condition}" if condition else ""
        return f"breakpoint #{made.id} set on {target} ({when}{cond}) for every run of {self.run.workflow_name!r}"

    def _do_remove_breakpoint(self, m: Mapping[str, Any]) -> str:
        step, key = self._target(m)
        removed = 0
        for scope in (None, self.run.id):
            try:
                removed += remove_breakpoints(self.store, self.run.workflow_name, step, key, run_id=scope)
            except NbflowError:
                pass
        if not removed:
            raise NbflowError(f"no breakpoint on {step}{':' + key if key is not None else ''} to remove")
        return f"removed {removed} breakpoint(s) on {step}{':' + key if key is not None else ''}"


def _first_interesting_step(nodes: list[dict[str, Any]]) -> str | None:
    """The first step something waits on a person in (paused, failed or waiting), if any."""
    for n in nodes:
        if n["counts"].get("paused") or n["counts"].get("failed") or n["counts"].get("waiting"):
            return str(n["step"])
    return None


def _reason(m: Mapping[str, Any]) -> str | None:
    r = m.get("reason")
    if r is None:
        return None
    return str(r).strip()[:2000] or None


def _text(m: Mapping[str, Any], field: str) -> str | None:
    """A short free-text field of a message (a comment), stripped; None when empty."""
    value = m.get(field)
    return None if value is None else (str(value).strip()[:2000] or None)


def _json_arg(m: Mapping[str, Any], text_field: str, value_field: str) -> Any:
    """The value of an edit: JSON text from the editor (validated again here) or an already parsed value."""
    if text_field in m and m[text_field] is not None:
        text = m[text_field]
        if not isinstance(text, str):
            raise NbflowError(f"{text_field} must be JSON text")
        try:
            return parse_json(text)
        except ValueError as exc:  # a JSONDecodeError, or NaN/Infinity/a lone surrogate
            raise NbflowError(f"invalid JSON: {exc}; nothing was changed") from None
    if value_field in m:
        return m[value_field]
    raise NbflowError(f"the message has no {value_field!r} (or JSON text in {text_field!r})")


def _refusal(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _small(value: Any, limit: int = 4000) -> Any:
    shown, _ = views.value_view(value, limit)
    return shown


# -- display --------------------------------------------------------------------------------------
_widgets: weakref.WeakKeyDictionary[Run, RunWidget] = weakref.WeakKeyDictionary()


def widget_for(run: Run) -> RunWidget:
    """The run's widget (one per ``Run`` object, so displaying ``run`` twice shows two synced views)."""
    w = _widgets.get(run)
    if w is None or w.comm is None:
        w = RunWidget(run)
        _widgets[run] = w
    return w


def widgets_supported() -> bool:
    """True in an IPython kernel (where a comm can reach a front end), False in a terminal or a script."""
    try:
        ip = get_ipython()
    except ImportError:
        return False
    return ip is not None and getattr(ip, "kernel", None) is not None


def mimebundle(run: Run, include: Any = None, exclude: Any = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """``Run._repr_mimebundle_``: the widget view plus a static ``text/html`` (SVG or summary) and
    ``text/plain``, so outputs saved without JavaScript still show the DAG."""
    data: dict[str, Any] = dict(render.static_bundle(run))
    meta: dict[str, Any] = {}
    if widgets_supported():
        try:
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


__all__ = ["PAGE_SIZE", "RunWidget", "mimebundle", "widget_for", "widgets_supported"]
