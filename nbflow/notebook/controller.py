"""The debugger view's controller: one home for what the notebook widget and the JupyterLab sidebar
show and do. Both surfaces are thin transports over it: the widget calls :meth:`Controller.act`
from its anywidget command (:meth:`nbflow.notebook.widget.RunWidget.act`), the sidebar through
``POST /nbflow/api/runs/<run>/actions/<name>`` (:mod:`nbflow.server.controller`).

A controller holds the view's state (the selected step, its page of instances and their filters,
the selected instance: :meth:`Controller.view` as plain JSON, restored with ``view=``) and computes
the state the view draws (:meth:`Controller.state`: summary, DAG, one page of rows, one
instance's detail). Every action takes plain JSON arguments and returns plain JSON
(:meth:`Controller.act`): ``{"ok", "text", "action", "command"}``. Operator actions go through
the ``Run`` verbs (the one command path of :mod:`nbflow.commands`); their names and payload
fields are the verbs' (:data:`nbflow.verbs.VERBS`).

Actions and their arguments (``key``: an instance's key as the rows show it; ``keys``: several):

* navigation (``text`` is None): ``refresh``, ``select_step {step}`` (null: none),
  ``page {offset}`` or ``{delta}`` (pages), ``filter {status, text}``, ``select_instance {step, key}``,
  ``close_instance``;
* verbs: ``resume {step, key | keys, reason}`` (no step: every paused instance of the run; so does
  ``resume_all``), ``retry {step, key | keys, reason}``, ``skip {step, key | keys, output, reason}``,
  ``set_inputs {step, key, inputs, reason}`` (only the inputs that differ are sent on),
  ``set_output {step, key, value, reason}``, ``approve {step, comment, payload, reason}``,
  ``reject {step, comment, reason}``, ``cancel {reason}``. An edited value may come as the editor's
  JSON text in ``json`` instead (parsed here, strictly: big integers keep their digits);
* breakpoints: ``add_breakpoint {step, key, when, condition}`` (for every run of the workflow),
  ``remove_breakpoint {step, key}`` (of the workflow and of this run).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .. import verbs, views
from .._util import parse_json
from ..breakpoints import Breakpoint, key_text, validate
from ..commands import CommandResult, add_breakpoint, remove_breakpoints
from ..errors import CommandRefused, NbflowError, UnknownRunError
from ..run import Run
from ..states import RunStatus, When

PAGE_SIZE = 20
"""Rows on one page of the instance table (the page drives its height: no scroll box in a notebook output)."""

NAVIGATION = ("refresh", "select_step", "page", "filter", "select_instance", "close_instance")
"""Actions that change what is shown, not the run: they need only ``read`` on the server."""

VERB_ACTIONS = ("resume", "resume_all", "approve", "reject", "retry", "skip", "set_inputs", "set_output", "cancel")
"""Actions that are operator verbs (``resume_all``: resume with no step)."""

BREAKPOINT_ACTIONS = ("add_breakpoint", "remove_breakpoint")

ACTIONS = NAVIGATION + VERB_ACTIONS + BREAKPOINT_ACTIONS
"""Every action, in the order they are listed."""

SUMMARY_FIELDS = ("id", "workflow", "version", "status", "interrupted", "owner", "progress", "counts",
                  "break_on_error", "created", "updated", "finished", "forked_from")


@dataclass
class _View:
    step: str | None = None
    sel: tuple[str, str | None] | None = None  # (step, key text)
    offset: int = 0
    status: str = ""
    text: str = ""


class Controller:
    """The actions and the view state of the debugger view of one run."""

    def __init__(self, run: Run, *, page_size: int = PAGE_SIZE, view: Mapping[str, Any] | None = None,
                 resume_hint: str = "wf.attach") -> None:
        self.run = run
        self.store = run.store
        self.page_size = page_size
        self.resume_hint = resume_hint
        """What else than ``nbflow resume RUN`` applies a queued command, in its message."""
        self.status = ""
        """The run's status as of the last :meth:`state`."""
        self.pending: dict[int, str] = {}
        """Commands written for an owner in another process, not yet known applied: id -> action."""
        self._v = _View()
        self._nodes: list[dict[str, Any]] = []
        self._detail: dict[str, Any] | None = None
        self._detail_stamp: tuple[Any, ...] | None = None
        self._command: dict[str, Any] | None = None  # the command the action in progress wrote
        self._handlers: dict[str, Callable[[Mapping[str, Any]], str | None]] = {
            name: getattr(self, f"_on_{name}") for name in ACTIONS
        }
        if view is None:
            state = views.run_state(self.store, run.id)
            first = _first_interesting_step(state["dag"]["nodes"])
            self._nodes = state["dag"]["nodes"]
            if first is not None:
                self._select_step(first)
        else:
            self._restore(view)

    # -- the view state ---------------------------------------------------------------------------
    def view(self) -> dict[str, Any]:
        """The view state as plain JSON (pass it back as ``view=`` to a new controller)."""
        v = self._v
        return {"step": v.step, "instance": None if v.sel is None else {"step": v.sel[0], "key": v.sel[1]},
                "offset": v.offset, "status": v.status, "text": v.text}

    def _restore(self, view: Mapping[str, Any]) -> None:
        if not isinstance(view, Mapping):
            raise NbflowError("the view must be a JSON object (what the last answer gave)")
        step, inst = view.get("step"), view.get("instance")
        offset, status, text = view.get("offset", 0), view.get("status") or "", view.get("text") or ""
        if step is not None and not isinstance(step, str):
            raise NbflowError("view.step must be a step name or null")
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise NbflowError("view.offset must be a whole number from 0")
        if not isinstance(status, str) or not isinstance(text, str):
            raise NbflowError("view.status and view.text must be strings")
        sel = None
        if inst is not None:
            if not isinstance(inst, Mapping) or not isinstance(inst.get("step"), str):
                raise NbflowError("view.instance must be {step, key} or null")
            sel = (str(inst["step"]), key_text(inst.get("key")))
        self._v = _View(step, sel, offset, status if status in views.STATUSES else "", text[:200])

    def _select_step(self, step: str | None) -> None:
        self._v = _View()
        if step is None:
            return
        node = next((n for n in self._nodes if n["step"] == step), None)
        if node is None:
            raise NbflowError(f"run {self.run.id} has no step {step!r}")
        self._v.step = step
        if node["kind"] != "foreach":
            self._v.sel = (step, None)  # a task has one instance: open it

    # -- what the view draws ----------------------------------------------------------------------
    def state(self, force: bool = True) -> dict[str, Any]:
        """``summary``, ``dag``, ``selected_step``, ``instances`` (one page), ``selected`` and ``detail``
        (the selected instance), read from the store. Without *force* the detail is re-read only when
        the instance changed."""
        state = views.run_state(self.store, self.run.id)
        self.status = state["status"]
        bps: dict[str, list[dict[str, Any]]] = {}
        for b in state["breakpoints"]:
            bps.setdefault(b["step"], []).append(
                {k: b[k] for k in ("id", "key", "when", "condition", "scope", "state", "held")}
            )
        nodes = [{**n, "breakpoints": bps.get(n["step"], [])} for n in state["dag"]["nodes"]]
        self._nodes = nodes
        summary = {k: state[k] for k in SUMMARY_FIELDS}
        summary["params"] = _small(state["params"])
        v = self._v
        if v.step is not None and v.step not in {n["step"] for n in nodes}:
            v.step, v.sel = None, None
        page = self._page() if v.step is not None else {}
        detail = None
        if v.sel is not None:
            step, key = v.sel
            stamp = (step, key, views.instance_stamp(self.store, self.run.id, step, key))
            if force or stamp != self._detail_stamp:  # values are decoded only when the instance changed
                self._detail = views.instance_detail(self.store, self.run.id, step, key, user_keys=True) or {
                    "step": step, "key": key, "missing": True,
                }
                self._detail_stamp = stamp
            detail = self._detail
        return {
            "summary": summary, "dag": {"nodes": nodes, "edges": state["dag"]["edges"]},
            "selected_step": v.step, "instances": page,
            "selected": None if v.sel is None else {"step": v.sel[0], "key": (detail or {"key": v.sel[1]})["key"]},
            "detail": detail,
        }

    def _page(self) -> dict[str, Any]:
        v = self._v
        assert v.step is not None
        page = views.instance_page(
            self.store, self.run.id, v.step, status=v.status or None, text=v.text or None, offset=v.offset,
            limit=self.page_size, user_keys=True,
        )
        v.offset = page["offset"]
        page.update(status=v.status, text=v.text)
        return page

    # -- actions ----------------------------------------------------------------------------------
    def act(self, name: str, args: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Apply one action. The answer: ``ok`` (False: refused or invalid, and nothing changed),
        ``text`` (what to tell the person; None after navigation), ``action``, ``code`` (a
        :class:`nbflow.verbs.Refusal` value when refused) and ``command`` (``{id, state}`` when a
        command was written: ``applied``, ``queued`` for an owner that is not running, ``sent`` to a
        live owner in another process)."""
        out: dict[str, Any] = {"ok": True, "text": None, "action": name, "command": None}
        handler = self._handlers.get(name) if isinstance(name, str) else None
        if handler is None:
            return {**out, "ok": False, "code": str(verbs.Refusal.INVALID),
                    "text": f"unknown action {name!r}; actions are: {', '.join(ACTIONS)}"}
        if args is None:
            args = {}
        if not isinstance(args, Mapping):
            return {**out, "ok": False, "code": str(verbs.Refusal.INVALID),
                    "text": f"the arguments of {name} must be a JSON object"}
        self._command = None
        try:
            text = handler(args)
        except UnknownRunError as exc:
            return {**out, "ok": False, "code": str(verbs.Refusal.NOT_FOUND), "text": _text_of(exc)}
        except CommandRefused as exc:
            return {**out, "ok": False, "code": exc.code, "text": _text_of(exc)}
        except (NbflowError, ValueError, TypeError, KeyError) as exc:
            return {**out, "ok": False, "code": str(verbs.Refusal.INVALID), "text": _text_of(exc)}
        return {**out, "text": text, "command": self._command}

    def settle(self) -> list[dict[str, Any]]:
        """The answers of :attr:`pending` commands that their owner applied since (and forgets them)."""
        done = []
        for cid, action in list(self.pending.items()):
            row = self.store.command_row(cid)
            if row["applied_at"] is None:
                continue
            del self.pending[cid]
            done.append(self.applied(cid, action, row))
        return done

    @staticmethod
    def applied(cid: int, action: str, row: Mapping[str, Any]) -> dict[str, Any]:
        """The answer for command *cid* once its owner applied it (*row*: its command row)."""
        ok = row["result"] == "ok"
        text = row["message"] or ("done" if ok else "refused")
        return {"ok": ok, "text": text if ok else f"refused: {text}", "action": action,
                "command": {"id": cid, "state": "applied" if ok else "refused"},
                **({} if ok else {"code": str(verbs.Refusal.STATE)})}

    # navigation
    def _on_refresh(self, m: Mapping[str, Any]) -> None:
        return None

    def _on_select_step(self, m: Mapping[str, Any]) -> None:
        step = m.get("step")
        if not self._nodes:
            self._nodes = views.run_state(self.store, self.run.id)["dag"]["nodes"]
        self._select_step(None if step in (None, "") else str(step))

    def _on_page(self, m: Mapping[str, Any]) -> None:
        if "offset" in m:
            self._v.offset = max(_int(m["offset"], "offset"), 0)
        else:
            self._v.offset = max(self._v.offset + _int(m.get("delta", 0), "delta") * self.page_size, 0)

    def _on_filter(self, m: Mapping[str, Any]) -> None:
        status = str(m.get("status") or "")
        if status and status not in views.STATUSES:
            raise NbflowError(f"unknown status {status!r}; statuses are: {', '.join(views.STATUSES)}")
        self._v.status = status
        self._v.text = str(m.get("text") or "")[:200]
        self._v.offset = 0

    def _on_select_instance(self, m: Mapping[str, Any]) -> None:
        step = m.get("step") or self._v.step
        if step is None:
            raise NbflowError("select a step first")
        self._v.sel = (str(step), key_text(m.get("key")))

    def _on_close_instance(self, m: Mapping[str, Any]) -> None:
        self._v.sel = None

    # operator verbs (return the message text)
    def _target(self, m: Mapping[str, Any]) -> tuple[str, str | None]:
        v = self._v
        step = m.get("step") or (v.sel[0] if v.sel is not None else None) or v.step
        if not step:
            raise NbflowError("no step given and none selected")
        return str(step), key_text(m.get("key"))

    def _keys(self, m: Mapping[str, Any]) -> list[str | None] | None:
        keys = m.get("keys")
        if keys is None:
            return None
        if not isinstance(keys, list):
            raise NbflowError("keys must be a list of keys")
        if not keys:
            raise NbflowError("no instance selected: tick the rows to resume")
        return [key_text(k) for k in keys]

    def _result(self, res: CommandResult, action: str) -> str:
        if res.applied:
            self._command = {"id": res.id, "state": str(verbs.CommandState.APPLIED)}
            return res.message or "done"
        if self.run.interrupted:
            self._command = {"id": res.id, "state": str(verbs.CommandState.QUEUED)}
            return (f"queued as command #{res.id}: no live process drives run {self.run.id}; "
                    f"`nbflow resume {self.run.id}` (or {self.resume_hint}) will apply it")
        self.pending[res.id] = action
        self._command = {"id": res.id, "state": str(verbs.CommandState.SENT)}
        return f"sent as command #{res.id}; waiting for the run's owner to apply it"

    def _on_resume(self, m: Mapping[str, Any]) -> str:
        if not m.get("step") and m.get("keys") is None and m.get("key") is None:
            return self._on_resume_all(m)
        step, key = self._target(m)
        keys = self._keys(m)
        res = (self.run.resume(step, keys=keys, reason=_reason(m)) if keys is not None
               else self.run.resume(step, key=key, reason=_reason(m)))
        return self._result(res, "resume")

    def _on_resume_all(self, m: Mapping[str, Any]) -> str:
        step = m.get("step")
        return self._result(self.run.resume(str(step) if step else None, reason=_reason(m)), "resume")

    def _on_retry(self, m: Mapping[str, Any]) -> str:
        step, key = self._target(m)
        keys = self._keys(m)
        res = (self.run.retry(step, keys=keys, reason=_reason(m)) if keys is not None
               else self.run.retry(step, key=key, reason=_reason(m)))
        return self._result(res, "retry")

    def _on_skip(self, m: Mapping[str, Any]) -> str:
        step, key = self._target(m)
        output = _json_arg(m, "output")
        keys = self._keys(m)
        res = (self.run.skip(step, keys=keys, output=output, reason=_reason(m)) if keys is not None
               else self.run.skip(step, key=key, output=output, reason=_reason(m)))
        return self._result(res, "skip")

    def _on_set_inputs(self, m: Mapping[str, Any]) -> str:
        step, key = self._target(m)
        new = _json_arg(m, "inputs")
        if not isinstance(new, dict):
            raise NbflowError("the inputs must be a JSON object of input name to value, e.g. {\"item\": {...}}")
        detail = views.instance_detail(self.store, self.run.id, step, key) or {}
        current = detail.get("inputs", {})
        readonly = set(detail.get("readonly_inputs", []))
        changed = {k: v for k, v in new.items() if k not in current or (k not in readonly and current[k] != v)}
        if not changed:
            raise NbflowError("nothing changed: the edited inputs equal the current ones")
        return self._result(self.run.set_inputs(step, key=key, reason=_reason(m), **changed), "set_inputs")

    def _on_set_output(self, m: Mapping[str, Any]) -> str:
        step, key = self._target(m)
        value = _json_arg(m, "value")
        return self._result(self.run.set_output(step, key=key, value=value, reason=_reason(m)), "set_output")

    def _on_approve(self, m: Mapping[str, Any]) -> str:
        step, _ = self._target(m)
        text = m.get("json")
        payload = _json_arg(m, "payload") if isinstance(text, str) and text.strip() else m.get("payload")
        comment = _short(m, "comment") or _reason(m)
        return self._result(self.run.approve(step, comment=comment, payload=payload, reason=_reason(m)), "approve")

    def _on_reject(self, m: Mapping[str, Any]) -> str:
        step, _ = self._target(m)
        comment = _short(m, "comment") or _reason(m)
        return self._result(self.run.reject(step, comment=comment, reason=_reason(m)), "reject")

    def _on_cancel(self, m: Mapping[str, Any]) -> str:
        return self._result(self.run.cancel(reason=_reason(m)), "cancel")

    # breakpoints
    def _on_add_breakpoint(self, m: Mapping[str, Any]) -> str:
        step, key = self._target(m)
        when_text = str(m.get("when") or "before")
        try:
            when = When(when_text)
        except ValueError:
            raise NbflowError(f"breakpoint when={when_text!r}: use 'before', 'after' or 'error'") from None
        condition = str(m.get("condition") or "").strip() or None
        workflow = self.run.workflow_name
        row = self.store.run_row(self.run.id)
        bp = Breakpoint(step, key, when, condition, workflow=workflow)
        validate(bp, self.store.definition(row["workflow"], row["version"])["steps"])
        if RunStatus(row["status"]).terminal:
            raise CommandRefused(f"run {self.run.id} is {row['status']}; the breakpoint would apply to later runs "
                                 "only — add it with wf.breakpoints.add(...)", str(verbs.Refusal.FINISHED))
        made = add_breakpoint(self.store, workflow, bp)
        cond = f", if {condition}" if condition else ""
        return f"breakpoint #{made.id} set on {_label(step, key)} ({when}{cond}) for every run of {workflow!r}"

    def _on_remove_breakpoint(self, m: Mapping[str, Any]) -> str:
        step, key = self._target(m)
        removed = 0
        for scope in (None, self.run.id):
            try:
                removed += remove_breakpoints(self.store, self.run.workflow_name, step, key, run_id=scope)
            except NbflowError:
                pass
        if not removed:
            raise CommandRefused(f"no breakpoint on {_label(step, key)} to remove", str(verbs.Refusal.NOT_FOUND))
        return f"removed {removed} breakpoint(s) on {_label(step, key)}"


def _label(step: str, key: str | None) -> str:
    return step if key is None else f"{step}:{key}"


def _first_interesting_step(nodes: list[dict[str, Any]]) -> str | None:
    """The first step something waits on a person in (paused, failed or waiting), if any."""
    for n in nodes:
        if n["counts"].get("paused") or n["counts"].get("failed") or n["counts"].get("waiting"):
            return str(n["step"])
    return None


def _int(value: Any, name: str) -> int:
    if isinstance(value, bool):
        raise NbflowError(f"{name} must be a whole number")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise NbflowError(f"{name} must be a whole number") from None


def _reason(m: Mapping[str, Any]) -> str | None:
    return _short(m, "reason")


def _short(m: Mapping[str, Any], field: str) -> str | None:
    """A short free-text field (a reason, a comment), stripped; None when empty."""
    value = m.get(field)
    return None if value is None else (str(value).strip()[:2000] or None)


def _json_arg(m: Mapping[str, Any], field: str) -> Any:
    """The value of an edit: the verb's payload *field*, or the editor's JSON text in ``json`` (parsed
    here, strictly)."""
    text = m.get("json")
    if text is not None:
        if not isinstance(text, str):
            raise NbflowError("json must be JSON text")
        try:
            return parse_json(text)
        except ValueError as exc:  # a JSONDecodeError, or NaN/Infinity/a lone surrogate
            raise NbflowError(f"invalid JSON: {exc}; nothing was changed") from None
    if field in m:
        return m[field]
    raise NbflowError(f"the action has no {field!r} (or JSON text in 'json')")


def _text_of(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _small(value: Any, limit: int = 4000) -> Any:
    shown, _ = views.value_view(value, limit)
    return shown


__all__ = ["ACTIONS", "NAVIGATION", "PAGE_SIZE", "VERB_ACTIONS", "Controller"]
