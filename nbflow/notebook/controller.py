"""The debugger view's controller: one home for what the notebook widget and the JupyterLab sidebar
show and do. Both surfaces are thin transports over it: the widget calls :meth:`Controller.act`
from its anywidget command (:meth:`nbflow.notebook.widget.RunWidget.act`), the sidebar through
``POST /nbflow/api/runs/<run>/actions/<name>`` (:mod:`nbflow.server.controller`).

A controller holds the view's state (the selected step, its page of instances and their filters,
the selected instance: :meth:`Controller.view` as plain JSON, restored with ``view=``) and computes
the state the view draws (:meth:`Controller.state`: summary, DAG, one page of rows, one
instance's detail). Every action takes plain JSON arguments and returns plain JSON
(:meth:`Controller.act`): ``{"ok", "text", "action", "command"}``. Operator actions are written
through :func:`nbflow.commands.submit`, the one command path the ``Run`` verbs take too; their
names and payload fields are the verbs' (:data:`nbflow.verbs.VERBS`). It never touches the
scheduler or the store's tables: it reads through :mod:`nbflow.views`.

Actions and their arguments (``key``: an instance's key as the rows show it; ``keys``: several):

* navigation (``text`` is None): ``refresh``, ``select_step {step}`` (null: none),
  ``page {offset}`` or ``{delta}`` (pages), ``filter {status, text, group, watch}`` (``status`` may be
  ``problems``: paused, failed, waiting or retrying, what a step with any opens on; ``group`` an error
  group's id; ``watch`` ``{index, text}``: rows whose watch column holds the text), ``sort {by, desc}``
  (``item``, ``duration`` or ``watch:N``), ``select_instance {step, key}``, ``close_instance``,
  ``show_errors {on}`` (the Errors view: the step's errors grouped by cause), ``select {keys | group |
  filter}`` (what the bulk verbs act on; ``{}`` clears it) and ``toggle {key}`` (tick one row);
* expressions over an instance's inputs (and ``output``): ``watch_add {expr}``, ``watch_remove {index}``
  (watch columns), ``preview_edit {input, expr}`` (a bulk edit's first results, in ``preview``, and
  ``count``) and ``edit_selected {input, expr, reason}`` (one ``set_inputs`` with a value per selected
  instance);
* every verb of the table that names instances, a step or the run (:data:`VERB_ACTIONS`), with
  ``step``, ``key`` or ``keys`` as its target asks (or ``selected``: the selection, as one command), the
  verb's payload fields and ``reason``:
  ``resume {step, key | keys}`` (no step: every paused instance of the run; so does ``resume_all``),
  ``retry``, ``skip {output}``, ``set_inputs {inputs}`` (only the inputs that differ are sent on),
  ``set_output {value}``, ``approve {step, comment, payload}``, ``reject {step, comment}``,
  ``cancel``. An edited value may come as the editor's JSON text in ``json`` instead (parsed here,
  strictly: big integers keep their digits). A verb added to the table is an action with no code here;
* breakpoints: ``add_breakpoint {step, key, when, condition, expression, hit_count}`` (for every run of
  the workflow; an ``expression`` makes it a logpoint, ``hit_count`` N acts from the Nth hit on),
  ``remove_breakpoint {step, key}`` (of the workflow and of this run); no step: the selected one;
* ``step_over {step, key}`` is a verb of the table like the others;
* ``debug_cell {step, key}`` (no step: the selected instance): in the kernel that shows the widget,
  binds the instance's inputs as the notebook's variables (:func:`nbflow.notebook.debug.prepare`) and
  answers ``debug_cell {target, code, bound}`` (the cell the front end inserts); without a kernel (the
  sidebar) it is refused, saying to run ``%nbflow debug STEP:KEY`` in a notebook;
* history (issue 18): ``travel {event}`` (navigation: *event* a position 1..N in the run's history, null:
  live) shows the run as it was right after that event (:func:`nbflow.views.run_state_at`): the
  summary's counts, the DAG and the table are of that moment, ``history.at`` says which event, and every
  action that would change the run is refused until ``travel {event: null}``; ``diff {on}`` (navigation)
  opens the "vs parent" panel of a fork (``diff``: the parent's outputs against this run's, by
  :meth:`nbflow.Run.diff`, with both runs' parameters and code versions); ``fork {step, keys |
  selected}`` starts ``run.fork(step, keys=...)`` in this process (the view's run must carry its
  workflow, as a run started or attached in the notebook does) and answers ``fork {run, parent,
  from_step, keys}``.
"""
from __future__ import annotations

import functools
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from .. import verbs, views
from .._util import current_actor, parse_json, plural
from ..breakpoints import check_condition, json_key, key_text
from ..commands import CommandResult, add_breakpoint, check_breakpoint, check_target, remove_breakpoints, submit
from ..errors import CommandRefused, NbflowError, UnknownRunError
from ..run import Run
from ..states import PauseReason, RunStatus, label
from ..triage import Expression
from ..verbs import Verb
from . import debug

PAGE_SIZE = 20
"""Rows on one page of the instance table (the page drives its height: no scroll box in a notebook output)."""

NAVIGATION = ("refresh", "select_step", "page", "filter", "select_instance", "close_instance", "show_errors",
              "select", "toggle", "sort", "travel", "diff")
"""Actions that change what is shown, not the run: they need only ``read`` on the server."""

CODE_ACTIONS = ("watch_add", "watch_remove", "preview_edit", "edit_selected")
"""Actions that evaluate a person's expression (a watch column, a bulk edit): on the server they need
the right to execute code, as a breakpoint condition does."""

WATCH_LIMIT = 6
"""Watch columns one view holds."""

_SURFACE_TARGETS = (verbs.Target.INSTANCES, verbs.Target.STEP, verbs.Target.RUN)
VERB_ACTIONS = (*(v.name for v in verbs.VERBS.values() if v.target in _SURFACE_TARGETS), "resume_all")
"""The operator verbs the view offers: every verb of the table that names instances, a step or the
run, in table order (``resume_all``: resume with no step). A verb added to the table is an action
here with no code of its own."""

BREAKPOINT_ACTIONS = ("add_breakpoint", "remove_breakpoint")

DEBUG_CELL = "debug_cell"
"""Bind an instance's inputs in the kernel that shows the view and answer the cell to insert (widget only)."""

FORK = "fork"
"""Start a fork of the run from a step (its chosen items) in this process: needs the run's workflow."""

ACTIONS = NAVIGATION + CODE_ACTIONS + VERB_ACTIONS + BREAKPOINT_ACTIONS + (DEBUG_CELL, FORK)
"""Every action, in the order they are listed."""

CHANGING_ACTIONS = (*VERB_ACTIONS, *BREAKPOINT_ACTIONS, "edit_selected", DEBUG_CELL, FORK)
"""What a view of the past refuses (``travel``): every action that writes to the run or acts on its
instances as they are now."""

DIFF_ENTRIES_SHOWN = 50
"""Entries of each section (changed, added, removed) the "vs parent" panel ships; ``omitted`` counts the rest."""
DIFF_VALUE_CHARS = 300
"""The text of each before/after value the panel ships (a longer one is cut, as the table's cells are)."""
MARKS_SHOWN = 500
"""Marks (run-level events, pauses, failures) the scrubber ships at most."""

SUMMARY_FIELDS = ("id", "workflow", "version", "status", "interrupted", "owner", "progress", "counts",
                  "break_on_error", "stepped_over", "created", "updated", "finished", "forked_from")

NODE_BREAKPOINT_FIELDS = ("id", "key", "when", "condition", "scope", "state", "held", "action", "expression",
                          "hit_count", "hits", "one_shot", "origin", "label")
"""What each DAG node's ``breakpoints`` carry of :func:`nbflow.views.run_state`'s breakpoints."""

ERROR_GROUPS_SHOWN = 12
"""Error groups the view ships (the largest; ``groups_omitted`` counts the others): its state stays small."""
TRACEBACK_CHARS = 1200
"""The end of each group's example traceback the view ships (where the error was raised)."""

_T = TypeVar("_T")


class _Recent:
    """Values kept for reuse by every controller of the process (the sidebar builds one per request),
    each with the stamp of the run it was computed for; the least recently used go first."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._kept: OrderedDict[tuple[Any, ...], tuple[Any, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[Any, ...], stamp: Any, compute: Callable[[], _T]) -> _T:
        """The value kept for *key* at *stamp*, or *compute*'s (kept, outside the lock: two misses at
        once only compute twice)."""
        with self._lock:
            hit = self._kept.get(key)
            if hit is not None and hit[0] == stamp:
                self._kept.move_to_end(key)
                return cast("_T", hit[1])
        value = compute()
        with self._lock:
            self._kept[key] = (stamp, value)
            self._kept.move_to_end(key)
            while len(self._kept) > self.size:
                self._kept.popitem(last=False)
        return value


SHARED_VIEWS = 64
"""Error groups and timelines kept for reuse in this process (by store, run and step)."""
_VIEWS = _Recent(SHARED_VIEWS)
WATCH_ORDERS_KEPT = 8
"""Watch-column orders kept for reuse (each the items and keys of up to WATCH_EVAL_LIMIT instances)."""
_WATCH_ORDERS = _Recent(WATCH_ORDERS_KEPT)
MARKS_REFRESH_S = 5.0
"""How stale the scrubber's marks of a changing run may be (its range always ends at the newest event)."""
_MARKS: OrderedDict[tuple[str, str], tuple[Any, float, dict[str, Any]]] = OrderedDict()
_MARKS_LOCK = threading.Lock()

PREVIEW_ROWS = 5
"""Instances a bulk edit's preview shows."""


@dataclass
class _View:
    step: str | None = None
    sel: tuple[str, str | None] | None = None  # (step, key text)
    offset: int = 0
    status: str = ""
    text: str = ""
    group: str = ""  # an error group's id: the table shows that group
    errors: bool = False  # the Errors view is open
    sort: str = "item"  # "item", "duration" or "watch:N"
    desc: bool = False
    watch: list[str] = field(default_factory=list)  # watch column expressions
    wfilter: tuple[int, str] | None = None  # keep rows whose watch column N's text holds this text
    chosen: str = "none"  # what the bulk verbs act on: "none", "keys", "group" or "filter"
    chosen_keys: list[str | None] = field(default_factory=list)
    chosen_group: str = ""
    at: int | None = None  # the event (1-based position in the run's history) the view shows; None: live
    compare: bool = False  # the "vs parent" panel is open


class Controller:
    """The actions and the view state of the debugger view of one run."""

    def __init__(self, run: Run, *, page_size: int = PAGE_SIZE, view: Mapping[str, Any] | None = None,
                 resume_hint: str = "wf.attach", actor: str | None = None, shell: Any = None) -> None:
        self.run = run
        self.shell = shell
        """The IPython shell of the kernel that shows the view (the widget), where ``debug_cell`` binds an
        instance's inputs; None without one (the sidebar): ``summary.kernel`` is False and it is refused."""
        self.actor = actor or current_actor()
        """Who this surface acts as (``summary.actor``): the OS user in a notebook, the Jupyter user on the server."""
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
        self._at_detail: dict[str, Any] | None = None  # the selected instance at the event shown
        self._at_stamp: tuple[Any, ...] | None = None
        self._command: dict[str, Any] | None = None  # the command the action in progress wrote
        self._extra: dict[str, Any] = {}  # more fields of the answer in progress (a bulk edit's preview)
        self.forks: dict[str, Run] = {}
        """The runs this view forked (by id): handles whose scheduler lives in this process."""
        self._handlers: dict[str, Callable[[Mapping[str, Any]], str | None]] = {
            name: getattr(self, f"_on_{name}")
            for name in (*NAVIGATION, *CODE_ACTIONS, *BREAKPOINT_ACTIONS, DEBUG_CELL, FORK)
        }
        for name in VERB_ACTIONS:
            self._handlers[name] = functools.partial(self._verb, "resume" if name == "resume_all" else name)
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
                "offset": v.offset, "status": v.status, "text": v.text, "group": v.group, "errors": v.errors,
                "sort": v.sort, "desc": v.desc, "watch": list(v.watch),
                "watch_filter": None if v.wfilter is None else {"index": v.wfilter[0], "text": v.wfilter[1]},
                "chosen": {"kind": v.chosen, "keys": list(v.chosen_keys), "group": v.chosen_group},
                **({"at": v.at} if v.at is not None else {}), **({"compare": True} if v.compare else {})}

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
        self._v = _View(step, sel, offset, status if status in _FILTERS else "", text[:200])
        v = self._v
        v.group = _text_field(view, "group", 40)
        v.errors = bool(view.get("errors"))
        sort = view.get("sort") or "item"
        v.sort = sort if isinstance(sort, str) and _valid_sort(sort, len(view.get("watch") or [])) else "item"
        v.desc = bool(view.get("desc"))
        watch = view.get("watch") or []
        if not isinstance(watch, list) or not all(isinstance(w, str) for w in watch):
            raise NbflowError("view.watch must be a list of expressions")
        v.watch = [w[:500] for w in watch[:WATCH_LIMIT]]
        wf = view.get("watch_filter")
        if wf is not None:
            if not isinstance(wf, Mapping) or not isinstance(wf.get("text"), str):
                raise NbflowError("view.watch_filter must be {index, text} or null")
            index = _int(wf.get("index"), "view.watch_filter.index")
            v.wfilter = (index, wf["text"][:200]) if 0 <= index < len(v.watch) else None
        chosen = view.get("chosen") or {}
        if not isinstance(chosen, Mapping):
            raise NbflowError("view.chosen must be {kind, keys, group}")
        kind = chosen.get("kind") or "none"
        keys = chosen.get("keys") or []
        if kind not in ("none", "keys", "group", "filter") or not isinstance(keys, list):
            raise NbflowError("view.chosen.kind must be none, keys, group or filter, and keys a list")
        v.chosen, v.chosen_keys, v.chosen_group = kind, [key_text(k) for k in keys], _text_field(chosen, "group", 40)
        at = view.get("at")
        v.at = None if at is None else _position(at, "view.at")
        v.compare = bool(view.get("compare"))

    def _select_step(self, step: str | None) -> None:
        watch = self._v.watch if step is not None and step == self._v.step else []
        self._v = _View(watch=watch, at=self._v.at, compare=self._v.compare)  # the moment shown stays
        if step is None:
            return
        node = next((n for n in self._nodes if n["step"] == step), None)
        if node is None:
            raise NbflowError(f"run {self.run.id} has no step {step!r}")
        self._v.step = step
        if node["kind"] != "foreach":
            self._v.sel = (step, None)  # a task has one instance: open it
        elif any(node["counts"].get(s) for s in views.PROBLEM_STATUSES):
            self._v.status = views.PROBLEMS  # what needs a person first

    # -- what the view draws ----------------------------------------------------------------------
    def state(self, force: bool = True) -> dict[str, Any]:
        """``summary``, ``dag``, ``selected_step``, ``instances`` (one page, with its watch columns),
        ``selected`` and ``detail`` (the selected instance), ``errors`` (the selected step's error groups,
        when the Errors view is open), ``selection`` (what the bulk verbs act on), ``timeline`` (the
        selected step's durations and attempts over time), ``history`` (the scrubber: the run's event
        count, its marks, and ``at``, the event shown, None when live) and ``diff`` (the "vs parent"
        panel, None when closed), read from the store. Without *force* the detail is re-read only when
        the instance changed. At an event, the counts, the DAG, the page and the detail are of that moment."""
        state = views.run_state(self.store, self.run.id)
        self.status = state["status"]
        history = self._history()
        v = self._v
        if v.at is not None and v.at > history["total"]:
            v.at = None  # the view state came from another run's history: show this one live
        past = None if v.at is None else self._past(v.at)
        bps: dict[str, list[dict[str, Any]]] = {}
        for b in state["breakpoints"]:
            bps.setdefault(b["step"], []).append({k: b[k] for k in NODE_BREAKPOINT_FIELDS})
        then = {} if past is None else {n["step"]: n for n in past["dag"]["nodes"]}
        nodes = [{**n, "breakpoints": bps.get(n["step"], []),
                  **({k: then[n["step"]][k] for k in ("counts", "status", "total")} if n["step"] in then else {})}
                 for n in state["dag"]["nodes"]]
        self._nodes = nodes
        summary = {k: state[k] for k in SUMMARY_FIELDS}
        if past is not None:
            summary.update(status=past["status"], counts=past["counts"], progress=past["progress"])
        summary["params"] = _small(state["params"])
        summary["actor"] = self.actor
        summary["kernel"] = self.shell is not None
        summary["forkable"] = self._workflow_here()
        if v.step is not None and v.step not in {n["step"] for n in nodes}:
            v.step, v.sel = None, None
        page = self._page() if v.step is not None else {}
        detail = None
        if v.sel is not None and v.at is not None:
            detail = self._detail_at(v.at, *v.sel)
        elif v.sel is not None:
            detail = self._live_detail(*v.sel, force)
        errors = None
        if v.errors and v.step is not None and v.at is None:  # error groups are of now
            errors = self._cached("errors", lambda step: views.error_groups(
                self.store, self.run.id, step, limit=ERROR_GROUPS_SHOWN, traceback_chars=TRACEBACK_CHARS))
        timeline = None
        if v.step is not None:
            timeline = self._cached("timeline", lambda step: views.timeline(self.store, self.run.id, step))
        return {
            "summary": summary, "dag": {"nodes": nodes, "edges": state["dag"]["edges"]},
            "selected_step": v.step, "instances": page,
            "selected": None if v.sel is None else {"step": v.sel[0], "key": (detail or {"key": v.sel[1]})["key"]},
            "detail": detail, "errors": errors, "selection": self._selection(errors, page), "timeline": timeline,
            "history": {**history, "at": None if past is None else {**past["at"], "of": history["total"]}},
            "diff": self._diff() if v.compare else None,
        }

    # -- history: the scrubber, a moment of the past, a fork's diff -------------------------------
    def _history(self) -> dict[str, Any]:
        """The scrubber's range and marks (:func:`nbflow.views.history_marks`). While the run changes the
        marks are read again at most every :data:`MARKS_REFRESH_S` (a 200,000-event history takes a few
        hundred ms, as much as the rest of a refresh); the range's end is always the newest event."""
        key, token, now = (self.store.url, self.run.id), self.run_updated(), time.monotonic()
        with _MARKS_LOCK:
            kept = _MARKS.get(key)
        settled = bool(self.status) and RunStatus(self.status).terminal  # its last marks are shown whole
        if kept is not None and (kept[0] == token or (not settled and now - kept[1] < MARKS_REFRESH_S)):
            marks = kept[2]
        else:
            marks = views.history_marks(self.store, self.run.id)
            with _MARKS_LOCK:
                _MARKS[key] = (token, now, marks)
                while len(_MARKS) > SHARED_VIEWS:
                    _MARKS.popitem(last=False)
        total = int(marks["total"])
        if kept is not None and marks is kept[2] and kept[0] != token:
            newest = self.store.event_rows(self.run.id, limit=1)  # the marks are a little behind: not the range
            total = max(total, int(newest[0]["n"])) if newest else total
        return {"total": total, "marks": list(marks["marks"])[:MARKS_SHOWN]}

    def _past(self, n: int) -> dict[str, Any]:
        """The run right after its *n*-th event (:func:`nbflow.views.run_state_at`): the past never
        changes, so it is read once per process (its ``at.of``, the events then, does: :meth:`state`
        gives the history's total now)."""
        return _VIEWS.get((self.store.url, self.run.id, "", f"at:{n}"), n,
                          lambda: views.run_state_at(self.store, self.run.id, n))

    def _detail_at(self, n: int, step: str, key: str | None) -> dict[str, Any]:
        """The selected instance as it was right after event *n* (:meth:`nbflow.Run.at`): its status,
        attempts, pause, error, inputs and output then, its history up to that event, and no verbs.
        Its detail now (what the past is cut from) is kept while the instance does not change."""
        if self._at_stamp != (n, step, key) or self._at_detail is None:
            now = self._live_detail(step, key, force=False)
            self._at_detail = self._read_detail_at(n, step, key, None if now.get("missing") else now)
            self._at_stamp = (n, step, key)
        return self._at_detail

    def _read_detail_at(self, n: int, step: str, key: str | None, now: dict[str, Any] | None) -> dict[str, Any]:
        moment = self.run.at(n)
        try:
            then = moment.instance(step, key)
        except NbflowError:
            then = None
        if now is None or then is None:  # it did not exist yet at that event
            return {"step": step, "key": key if now is None else now["key"], "missing": True, "at": True}
        event_id, when = int(moment.event.id), views.iso(moment.event.ts) or ""
        status = str(then.status)
        output, _ = views.value_view(then.output)
        inputs = {name: views.value_view(value)[0] for name, value in (then.inputs or {}).items()}
        attempts = []
        for made in now.get("attempts", []):
            if made.get("attempt") is not None and made["attempt"] > (then.attempts or 0):
                continue  # made after that moment
            running = bool(made.get("finished")) and str(made["finished"]) > when  # it ended after that moment
            attempts.append({**made, "outcome": None, "finished": None, "error": None, "traceback": None}
                            if running else made)
        return {
            **now, "status": status, "attempt": then.attempts, "pause_reason": then.pause_reason,
            "pause": PauseReason.parse(then.pause_reason).as_json() if then.pause_reason else None,
            "error": None if then.error is None else {"type": then.error.type, "message": then.error.message,
                                                      "traceback": then.error.traceback},
            "started_at": views.iso(then.started_at), "finished_at": views.iso(then.finished_at),
            "inputs": inputs, "readonly_inputs": list(inputs), "output": output, "output_editable": False,
            "has_output": status in ("succeeded", "skipped"), "held_by": list(then.held_by or []), "verbs": [],
            "token": None, "history": [e for e in now.get("history", []) if int(e["id"]) <= event_id],
            "attempts": attempts, "logged": [], "code_changed": False, "at": True,
        }

    def _diff(self) -> dict[str, Any] | None:
        """The "vs parent" panel: what this run changed against the run it was forked from
        (:meth:`nbflow.Run.diff` of the parent with this run), the fork's step and keys, and both runs'
        parameters and code versions; None for a run that is no fork."""
        row = self.store.run_row(self.run.id)
        parent_id = row["parent_run_id"]
        if parent_id is None:
            return None
        return _VIEWS.get((self.store.url, self.run.id, "", "diff"), self.run_updated(),
                          lambda: self._read_diff(str(parent_id), row))

    def _read_diff(self, parent_id: str, row: Mapping[str, Any]) -> dict[str, Any]:
        parent = Run(self.store, parent_id)
        found = parent.diff(self.run)
        created = self.store.event_rows(self.run.id, kinds=["run_created"], limit=1)
        data = _event_json(created[0]["data"]) if created else {}
        out: dict[str, Any] = {
            "parent": parent_id, "fork": data.get("fork") if isinstance(data, dict) else None,
            "runs": [{"id": parent_id, "version": parent._row_cache["version"], "params": _small(parent.params)},
                     {"id": self.run.id, "version": row["version"], "params": _small(self.run.params)}],
            "counts": {section: len(found.get(section, [])) for section in ("changed", "added", "removed")},
        }
        for section in ("changed", "added", "removed"):
            entries = list(found.get(section, []))
            out[section] = [{"step": e["step"], "key": e["key"], "before": _small(e["before"], DIFF_VALUE_CHARS),
                             "after": _small(e["after"], DIFF_VALUE_CHARS)} for e in entries[:DIFF_ENTRIES_SHOWN]]
            out[f"{section}_omitted"] = max(len(entries) - DIFF_ENTRIES_SHOWN, 0)
        return out

    def _workflow_here(self) -> bool:
        """The view's run carries its workflow's code (started or attached here): it can be forked."""
        return self.run._wf is not None

    def _live_detail(self, step: str, key: str | None, force: bool) -> dict[str, Any]:
        """The instance's detail now; without *force*, re-read only when the instance or its code changed
        (its values are decoded then)."""
        change = views.code_changes(self.store, self.run.id).get(step)  # a hot fix changes no instance row
        stamp = (step, key, views.instance_stamp(self.store, self.run.id, step, key),
                 None if change is None else change.ts)
        if force or stamp != self._detail_stamp or self._detail is None:
            self._detail = views.instance_detail(self.store, self.run.id, step, key, user_keys=True) or {
                "step": step, "key": key, "missing": True,
            }
            self._detail_stamp = stamp
        return self._detail

    def _cached(self, what: str, compute: Callable[[str], dict[str, Any]]) -> dict[str, Any]:
        """A view of the selected step, recomputed only when the run changed (:class:`_Recent`)."""
        step = self._v.step
        assert step is not None
        return _VIEWS.get((self.store.url, self.run.id, step, what), self.run_updated(), lambda: compute(step))

    def run_updated(self) -> Any:
        """The run row's last update (a cheap stamp of everything its owner wrote)."""
        return views.change_token(self.store, self.run.id)

    def _page(self) -> dict[str, Any]:
        v = self._v
        assert v.step is not None
        if v.at is not None:
            return self._page_at(v.at)
        watch = [Expression(w, "watch expression") for w in v.watch]
        store_sort = v.sort if v.sort in ("item", "duration") else "item"
        try:
            page = views.instance_page(
                self.store, self.run.id, v.step, status=v.status or None, text=v.text or None, offset=v.offset,
                limit=self.page_size, user_keys=True, group=v.group or None, sort=store_sort, desc=v.desc,
            )
        except NbflowError:  # the group the table showed is gone (its instances were retried): show the step
            v.group = ""
            self._filter_moved()
            page = views.instance_page(
                self.store, self.run.id, v.step, status=v.status or None, text=v.text or None, offset=v.offset,
                limit=self.page_size, user_keys=True, sort=store_sort, desc=v.desc,
            )
        if v.status == views.PROBLEMS and not page["total"] and not (v.text or v.group or v.wfilter):
            v.status = ""  # every problem is solved: the table shows the step again
            self._filter_moved()
            return self._page()
        if (v.sort.startswith("watch:") or v.wfilter is not None) and page["total"] > WATCH_EVAL_LIMIT:
            v.sort, v.wfilter = "item", None  # the matches grew past what a watch column orders: plain order
            self._filter_moved()
        if v.sort.startswith("watch:") or v.wfilter is not None:
            page = self._watch_sorted(page, watch)
        elif watch:
            items = [r["item"] for r in page["rows"]]
            for row, cells in zip(page["rows"], views.watch_values(self.store, self.run.id, v.step, items, watch)):
                row["watch"] = cells
        v.offset = page["offset"]
        node = next((n for n in self._nodes if n["step"] == v.step), {})
        page.update(status=v.status, text=v.text, group=v.group, sort={"by": v.sort, "desc": v.desc},
                    watch_filter=None if v.wfilter is None else {"index": v.wfilter[0], "text": v.wfilter[1]},
                    columns=[{"expr": w} for w in v.watch], inputs=list(node.get("inputs") or []))
        return page

    def _page_at(self, event: int) -> dict[str, Any]:
        """The page as of the *event*-th event (:func:`nbflow.views.instance_page` with ``at``): the status
        and text filters and the order apply; error groups and watch columns are of now, so they wait for live."""
        v = self._v
        assert v.step is not None
        store_sort = v.sort if v.sort in ("item", "duration") else "item"
        page = views.instance_page(self.store, self.run.id, v.step, status=v.status or None, text=v.text or None,
                                   offset=v.offset, limit=self.page_size, user_keys=True, sort=store_sort,
                                   desc=v.desc, at=event)
        if v.status == views.PROBLEMS and not page["total"] and not v.text:
            page = views.instance_page(self.store, self.run.id, v.step, offset=v.offset, limit=self.page_size,
                                       user_keys=True, sort=store_sort, desc=v.desc, at=event)
            page["status"] = ""
        for row in page["rows"]:
            row["verbs"] = []  # the past is read-only
        v.offset = page["offset"]
        node = next((n for n in self._nodes if n["step"] == v.step), {})
        page.setdefault("status", v.status)
        page.update(text=v.text, group="", sort={"by": store_sort, "desc": v.desc}, watch_filter=None,
                    columns=[], inputs=list(node.get("inputs") or []))
        return page

    def _filter_moved(self) -> None:
        """The view changed the table's filter itself: "all matching the filter" meant the old one."""
        if self._v.chosen == "filter":
            self._v.chosen = "none"

    def _watch_sorted(self, page: dict[str, Any], watch: list[Expression]) -> dict[str, Any]:
        """The page when the table is sorted or filtered by a watch column: its instances, in the order
        :meth:`_watch_order` gives, read again by item with this page's watch cells."""
        v = self._v
        assert v.step is not None
        order = self._watch_order(page["total"], watch)
        total = len(order)
        start = min(v.offset, max((total - 1) // self.page_size * self.page_size, 0))
        items = [item for item, _ in order[start:start + self.page_size]]
        rows = views.instance_views(self.store, self.run.id, v.step, items, user_keys=True)
        for row, cells in zip(rows, views.watch_values(self.store, self.run.id, v.step, items, watch)):
            row["watch"] = cells
        return {**page, "total": total, "offset": start, "rows": rows}

    def _watch_order(self, total: int, watch: list[Expression]) -> list[tuple[int, str | None]]:
        """``(item, key text)`` of every instance the filters match, narrowed by the watch filter and in
        the watch column's order: the expressions are evaluated over the matching instances a chunk at a
        time, where the data is, once per change of the run (kept for the process's controllers: the
        sidebar builds one per request; only items and keys are kept). Refused over more than
        :data:`WATCH_EVAL_LIMIT` instances."""
        v = self._v
        assert v.step is not None
        if total > WATCH_EVAL_LIMIT:
            raise NbflowError(_too_many(total))
        key = (self.store.url, self.run.id, v.step, v.status, v.text, v.group, v.wfilter, v.sort, v.desc,
               tuple(v.watch))
        return _WATCH_ORDERS.get(key, self.run_updated(), lambda: self._evaluate_order(total, watch))

    def _evaluate_order(self, total: int, watch: list[Expression]) -> list[tuple[int, str | None]]:
        v = self._v
        assert v.step is not None
        found: list[tuple[int, str | None, dict[str, Any] | None]] = []
        col = int(v.sort.split(":", 1)[1]) if v.sort.startswith("watch:") else None
        reader = views.value_reader(self.store, self.run.id)  # upstream values decoded once, for every chunk
        for offset in range(0, total, WATCH_SORT_CHUNK):
            chunk = views.instance_page(
                self.store, self.run.id, v.step, status=v.status or None, text=v.text or None, offset=offset,
                limit=WATCH_SORT_CHUNK, user_keys=True, group=v.group or None,
            )["rows"]
            cells = views.watch_values(self.store, self.run.id, v.step, [r["item"] for r in chunk], watch, reader)
            for r, c in zip(chunk, cells):
                if v.wfilter is not None:
                    fcol, text = v.wfilter
                    if text not in (c[fcol]["text"] or c[fcol]["error"] or ""):
                        continue
                found.append((r["item"], key_text(r["key"]), c[col] if col is not None else None))
        if col is not None:
            found.sort(key=lambda f: _sort_key(f[2] or {}), reverse=v.desc)
        return [(item, key) for item, key, _ in found]

    def _selection(self, errors: Mapping[str, Any] | None, page: Mapping[str, Any]) -> dict[str, Any]:
        """What the bulk verbs act on now, with how many instances and a label for people."""
        v = self._v
        out: dict[str, Any] = {"kind": v.chosen, "keys": [], "group": "", "count": 0, "label": "nothing selected"}
        if v.step is None or v.chosen == "none":
            return out
        if v.chosen == "keys":
            n = len(v.chosen_keys)
            out.update(keys=v.chosen_keys[:200], count=n,
                       label=f"{_plural(n, 'instance')} of {v.step}" if n else "nothing selected")
        elif v.chosen == "group":
            group = next((g for g in (errors or {}).get("groups", []) if g["id"] == v.chosen_group), None)
            if group is None:  # not among the groups shipped: look it up among all
                group = views.error_group(self.store, self.run.id, v.step, v.chosen_group)
            if group is None:
                return {**out, "group": v.chosen_group, "label": "the group is gone (nothing left in it)"}
            out.update(group=group["id"], count=group["count"],
                       label=f"{_plural(group['count'], 'instance')} of {v.step} ({group['type']})")
        else:
            n = int(page.get("total", 0))  # the page's count of every match: no keys read
            out.update(count=n, label=f"all {_plural(n, 'instance')} of {v.step} matching the filter")
        return out

    def selected_keys(self) -> list[str | None]:
        """The key texts of what the bulk verbs act on now; refused when nothing is selected."""
        v = self._v
        if v.step is None:
            raise NbflowError("select a step first")
        if v.chosen == "keys":
            keys = list(v.chosen_keys)
        elif v.chosen == "group":
            keys = views.group_keys(self.store, self.run.id, v.step, v.chosen_group)
        elif v.chosen == "filter" and v.wfilter is not None:  # what the table shows, watch filter too
            total = views.instance_page(self.store, self.run.id, v.step, status=v.status or None, text=v.text or None,
                                        limit=1, group=v.group or None)["total"]
            watch = [Expression(w, "watch expression") for w in v.watch]
            keys = [k for _, k in self._watch_order(total, watch)]
        elif v.chosen == "filter":
            keys = views.filter_keys(self.store, self.run.id, v.step, status=v.status or None, text=v.text or None,
                                     group=v.group or None)
        else:
            keys = []
        if not keys:
            raise NbflowError("nothing selected: tick rows, choose an error group or select all matching the filter")
        return keys

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
        self._extra = {}
        if self._v.at is not None and name in CHANGING_ACTIONS:
            return {**out, "ok": False, "code": str(verbs.Refusal.STATE),
                    "text": f"{name} refused: the view shows run {self.run.id} as it was at event {self._v.at} "
                            "(the past is read-only); press Live to act on the run as it is now"}
        try:
            text = handler(args)
        except UnknownRunError as exc:
            return {**out, "ok": False, "code": str(verbs.Refusal.NOT_FOUND), "text": _text_of(exc)}
        except CommandRefused as exc:
            return {**out, "ok": False, "code": exc.code, "text": _text_of(exc)}
        except (NbflowError, ValueError, TypeError, KeyError) as exc:
            return {**out, "ok": False, "code": str(verbs.Refusal.INVALID), "text": _text_of(exc)}
        return {**out, "text": text, "command": self._command, **self._extra}

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
        if status and status not in _FILTERS:
            raise NbflowError(f"unknown status {status!r}; statuses are: {', '.join(_FILTERS)}")
        group = self._group_id(_text_field(m, "group", 40)) if m.get("group") else ""
        wfilter = m.get("watch")
        if wfilter is not None:
            if not isinstance(wfilter, Mapping) or not str(wfilter.get("text") or ""):
                raise NbflowError("watch must be {index, text}: the watch column and the text its values hold")
            index = _int(wfilter.get("index"), "watch.index")
            if not 0 <= index < len(self._v.watch):
                raise NbflowError(f"no watch column {index}; there are {len(self._v.watch)}")
            if self._v.step is not None:
                self._check_watch_total(status, str(m.get("text") or ""), group)
            self._v.wfilter = (index, str(wfilter["text"])[:200])
        else:
            self._v.wfilter = None
        self._v.status = status
        self._v.text = str(m.get("text") or "")[:200]
        self._v.group = group
        self._v.offset = 0
        if self._v.chosen == "filter":
            self._v.chosen = "none"  # "all matching" meant the old filter

    def _on_show_errors(self, m: Mapping[str, Any]) -> None:
        if self._v.step is None:
            raise NbflowError("select a step first: the Errors view groups one step's errors")
        self._v.errors = bool(m.get("on", not self._v.errors))

    def _on_select(self, m: Mapping[str, Any]) -> None:
        """Choose what the bulk verbs act on: ``keys``, an error ``group``, ``filter`` (all matching) or nothing."""
        v = self._v
        if v.step is None:
            raise NbflowError("select a step first")
        if m.get("group"):
            v.chosen, v.chosen_group, v.chosen_keys = "group", self._group_id(_text_field(m, "group", 40)), []
        elif m.get("filter"):
            v.chosen, v.chosen_group, v.chosen_keys = "filter", "", []
        elif m.get("keys") is not None:
            keys = m["keys"]
            if not isinstance(keys, list):
                raise NbflowError("keys must be a list of keys")
            chosen = list(dict.fromkeys(key_text(k) for k in keys))
            if chosen:
                check_target(self.store, self.store.run_row(self.run.id), v.step, chosen)  # unknown keys: refused
            v.chosen, v.chosen_group, v.chosen_keys = "keys", "", chosen
        else:
            v.chosen, v.chosen_group, v.chosen_keys = "none", "", []

    def _group_id(self, group: str) -> str:
        """An error group's id from its id or its number now (a number ranks anew as groups change:
        the selection keeps the group it named)."""
        step = self._v.step
        if step is None:
            raise NbflowError("select a step first")
        return str(views.resolve_group(self.store, self.run.id, step, group)["id"])

    def _on_toggle(self, m: Mapping[str, Any]) -> None:
        """Tick or untick one row (a group or filter selection becomes the ticked rows)."""
        v = self._v
        if v.step is None:
            raise NbflowError("select a step first")
        if m.get("key") is None:
            raise NbflowError("toggle needs the key of the row to tick")
        key = key_text(m["key"])
        check_target(self.store, self.store.run_row(self.run.id), v.step, [key])  # an unknown key: refused
        if v.chosen != "keys":
            v.chosen, v.chosen_group, v.chosen_keys = "keys", "", []
        if key in v.chosen_keys:
            v.chosen_keys.remove(key)
        else:
            v.chosen_keys.append(key)

    def _on_sort(self, m: Mapping[str, Any]) -> None:
        by = str(m.get("by") or "item")
        if not _valid_sort(by, len(self._v.watch)):
            raise NbflowError(f"cannot sort by {by!r}: sort by item, duration or watch:N (a watch column from 0)")
        if by.startswith("watch:"):
            self._check_watch_total(self._v.status, self._v.text, self._v.group)
        self._v.sort, self._v.desc, self._v.offset = by, bool(m.get("desc")), 0

    def _check_watch_total(self, status: str, text: str, group: str) -> None:
        """Refuse to order or filter by a watch column over more instances than it may evaluate."""
        assert self._v.step is not None
        total = views.instance_page(self.store, self.run.id, self._v.step, status=status or None, text=text or None,
                                    limit=1, group=group or None)["total"]
        if total > WATCH_EVAL_LIMIT:
            raise NbflowError(_too_many(total))

    # history
    def _on_travel(self, m: Mapping[str, Any]) -> None:
        """Show the run right after event *event* (its 1-based position in the history); null: live."""
        event = m.get("event")
        if event is None:
            self._v.at = None
            return
        n = _position(event, "event")
        total = self._history()["total"]
        if n > total:
            raise NbflowError(f"run {self.run.id} has {_plural(total, 'event')}: travel to an event from 1 to "
                              f"{total}, or to null (live)")
        self._v.at = n

    def _on_diff(self, m: Mapping[str, Any]) -> None:
        """Open (``on`` true, the default when closed) or close the "vs parent" panel of a fork."""
        on = bool(m.get("on", not self._v.compare))
        if on and self.store.run_row(self.run.id)["parent_run_id"] is None:
            raise NbflowError(f"run {self.run.id} is no fork: it has no parent run to compare with")
        self._v.compare = on

    def _on_fork(self, m: Mapping[str, Any]) -> str:
        """``run.fork(step, keys=...)`` in this process: the chosen items of a foreach (``keys``, or the
        ``selected`` ones), or the whole step (no keys); answers ``fork {run, parent, from_step, keys}``."""
        step = _step_arg(m) or self._v.step
        if step is None:
            raise NbflowError("fork needs the step to fork from: {step, keys}, or select a step first")
        if m.get("selected"):
            if step != self._v.step:
                raise NbflowError(f"the selection is of {self._v.step}, not {step}")
            keys: list[str | None] | None = self.selected_keys()
        else:
            keys = self._keys(m)
        if not self._workflow_here():
            where = f"{label(step, keys[0])}" if keys and len(keys) == 1 else step
            raise CommandRefused(
                f"forking run {self.run.id} needs its workflow's code, and this view has none: in a notebook, "
                f"`wf.attach('{self.run.id}').fork('{step}', keys=[...])`; in a terminal, `nbflow fork {self.run.id} "
                f"{where}`", verbs.Refusal.INVALID)
        new = self.run.fork(step, keys=list(keys)) if keys else self.run.fork(step)
        self.forks[new.id] = new
        self._extra = {"fork": {"run": new.id, "parent": self.run.id, "from_step": step, "keys": keys}}
        what = f"{_plural(len(keys), 'item')} of {step}" if keys else f"step {step}"
        return f"forked run {new.id} from run {self.run.id}, re-running {what} and what depends on it"

    # expressions: watch columns and bulk edits
    def _on_watch_add(self, m: Mapping[str, Any]) -> str:
        ex = Expression(m.get("expr"), "watch expression")
        if len(self._v.watch) >= WATCH_LIMIT:
            raise NbflowError(f"at most {WATCH_LIMIT} watch columns: remove one first")
        self._v.watch.append(ex.text[:500])
        return f"watching {ex.text}"

    def _on_watch_remove(self, m: Mapping[str, Any]) -> None:
        index = _int(m.get("index"), "index")
        if not 0 <= index < len(self._v.watch):
            raise NbflowError(f"no watch column {index}; there are {len(self._v.watch)}")
        del self._v.watch[index]
        if self._v.sort.startswith("watch:"):
            self._v.sort = "item"
        self._v.wfilter = None

    def _edits(self, m: Mapping[str, Any], limit: int | None) -> tuple[list[str | None], list[views.Edit], str]:
        step = self._v.step
        if step is None:
            raise NbflowError("select a step first")
        name = str(m.get("input") or "item")
        ex = Expression(m.get("expr"), "edit expression")
        keys = self.selected_keys()
        return keys, views.edits(self.store, self.run.id, step, keys, name, ex.evaluate, limit), name

    def _on_preview_edit(self, m: Mapping[str, Any]) -> str:
        keys, found, name = self._edits(m, PREVIEW_ROWS)
        self._extra = {"count": len(keys), "preview": [
            {"key": e.key, "old": _small(e.old, 2000),
             **({"error": e.error} if e.error else {"new": _small(e.new, 2000)})}
            for e in found
        ]}
        bad = sum(1 for e in found if e.error)
        return (f"{name} of {_plural(len(keys), 'instance')} would change" + (f"; {bad} of the first {len(found)} "
                "fail" if bad else ""))

    def _on_edit_selected(self, m: Mapping[str, Any]) -> str:
        keys, found, name = self._edits(m, None)
        failed = [e for e in found if e.error is not None]
        if failed:
            raise NbflowError(f"the expression fails for {len(failed)} of {len(found)} instances "
                              f"(first: {label(self._v.step, failed[0].key)}: {failed[0].error}); nothing was changed")
        payload = {"inputs": {e.key: {name: e.new} for e in found}, "by_key": True}
        res = submit(self.store, self.run.id, "set_inputs", self._v.step, keys, payload, _reason(m))
        return self._result(res, "edit_selected")

    def _on_select_instance(self, m: Mapping[str, Any]) -> None:
        step = m.get("step") or self._v.step
        if step is None:
            raise NbflowError("select a step first")
        self._v.sel = (str(step), key_text(m.get("key")))

    def _on_close_instance(self, m: Mapping[str, Any]) -> None:
        self._v.sel = None

    # operator verbs: one handler for every verb of the table that names instances, a step or the run
    def _verb(self, name: str, m: Mapping[str, Any]) -> str:
        """Write verb *name* through the command path: its target from ``step``/``key``/``keys``, its
        payload from the verb's own fields (:data:`nbflow.verbs.VERBS`), an edited value from ``json``."""
        v = verbs.verb(name)
        step: str | None = None
        keys: list[str | None] | None = None
        if v.target != verbs.Target.RUN:
            step = _step_arg(m)  # commands.check judges what is missing or does not fit
            if v.target == verbs.Target.INSTANCES:
                if m.get("selected"):
                    if step is not None and step != self._v.step:
                        raise NbflowError(f"the selection is of {self._v.step}, not {step}")
                    step, keys = self._v.step, self.selected_keys()
                else:
                    keys = self._keys(m)
                if keys is None and m.get("key") is not None:
                    keys = [key_text(m["key"])]
        payload = _payload(v, m)
        if name == "set_inputs" and step is not None and "inputs" in payload:
            payload["inputs"] = self._changed_inputs(step, keys, payload["inputs"])
        res = submit(self.store, self.run.id, name, step, keys, payload or None, _reason(m))
        return self._result(res, name)

    def _keys(self, m: Mapping[str, Any]) -> list[str | None] | None:
        keys = m.get("keys")
        if keys is None:
            return None
        if not isinstance(keys, list):
            raise NbflowError("keys must be a list of keys")
        if not keys:
            raise NbflowError("no instance selected: tick the rows to resume")
        return [key_text(k) for k in keys]

    def _changed_inputs(self, step: str, keys: list[str | None] | None, new: Any) -> dict[str, Any]:
        """Of the edited inputs of one instance, those that differ from its current ones (an input
        that is not editable JSON is never sent back unchanged)."""
        if not isinstance(new, dict):
            raise NbflowError("the inputs must be a JSON object of input name to value, e.g. {\"item\": {...}}")
        if keys is not None and len(keys) != 1:
            return new
        detail = views.instance_detail(self.store, self.run.id, step, None if keys is None else keys[0]) or {}
        current = detail.get("inputs", {})
        readonly = set(detail.get("readonly_inputs", []))
        changed = {k: v for k, v in new.items() if k not in current or (k not in readonly and current[k] != v)}
        if not changed:
            raise NbflowError("nothing changed: the edited inputs equal the current ones")
        return changed

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

    # debug an instance in a cell
    def _on_debug_cell(self, m: Mapping[str, Any]) -> str:
        """Bind the instance's inputs (``item``, upstream steps, parameters, ``ctx``) in the kernel's
        namespace and answer ``debug_cell {target, code, bound}``: the cell the front end inserts below."""
        step = _step_arg(m)
        if step is None and self._v.sel is not None:
            step, key = self._v.sel
        else:
            key = key_text(m.get("key"))
        if step is None:
            raise NbflowError("debug_cell needs the instance: {step, key}, or select one first")
        if self.shell is None:
            raise CommandRefused(
                f"debugging {label(step, key)} in a cell needs a notebook's kernel, and this view has none: run "
                f"`%nbflow debug {label(step, key)}` in a notebook cell (after `%load_ext nbflow`, with "
                f"`wf.attach('{self.run.id}')` or the run's workflow defined there)", verbs.Refusal.INVALID)
        cell = debug.prepare(self.run, step, key, self.shell)
        self._extra = {"debug_cell": {"target": cell.target, "code": cell.code, "bound": list(cell.bound)}}
        return f"inputs of {cell.target} bound: {', '.join(cell.bound)}"

    # breakpoints
    def _on_add_breakpoint(self, m: Mapping[str, Any]) -> str:
        step, key = self._bp_target(m)
        condition = m.get("condition")
        if isinstance(condition, str):
            condition = condition.strip() or None  # the form's empty field: no condition
        condition = check_condition(condition)
        expression = m.get("expression")
        if isinstance(expression, str):
            expression = expression.strip() or None  # the form's empty field: a pausing breakpoint
        hit_count = m.get("hit_count")
        if hit_count in ("", None):
            hit_count = None
        elif isinstance(hit_count, str) and hit_count.strip().isdigit():
            hit_count = int(hit_count)  # the form's text field
        workflow = self.run.workflow_name
        row = self.store.run_row(self.run.id)
        # for every run of the workflow, checked against this run's definition; refused once it finished
        bp = check_breakpoint(self.store, workflow, row, step, key, m.get("when") or "before", condition,
                              run_scoped=False, action="log" if expression is not None else "pause",
                              expression=expression, hit_count=hit_count)
        made = add_breakpoint(self.store, workflow, bp)
        cond = f", if {condition}" if condition else ""
        hits = f", from hit {hit_count} on" if hit_count is not None else ""
        what = f"logpoint #{made.id} ({expression})" if expression is not None else f"breakpoint #{made.id}"
        return f"{what} set on {label(step, key)} ({bp.when}{cond}{hits}) for every run of {workflow!r}"

    def _bp_target(self, m: Mapping[str, Any]) -> tuple[str, str | None]:
        step = _step_arg(m) or self._v.step  # the form under the graph acts on the selected step
        if step is None:
            raise NbflowError("no step given and none selected")
        return step, json_key(m.get("key"))

    def _on_remove_breakpoint(self, m: Mapping[str, Any]) -> str:
        step, key = self._bp_target(m)
        removed = 0
        for scope in (None, self.run.id):  # the workflow's and this run's own
            try:
                removed += remove_breakpoints(self.store, self.run.workflow_name, step, key, run_id=scope)
            except CommandRefused as exc:
                if exc.code != verbs.Refusal.NOT_FOUND:
                    raise
        if not removed:
            raise CommandRefused(f"no breakpoint on {label(step, key)} to remove", str(verbs.Refusal.NOT_FOUND))
        return f"removed {removed} breakpoint(s) on {label(step, key)}"




_FILTERS = (*views.STATUSES, views.PROBLEMS)
"""A page's status filters: each status, or what needs a person (``problems``)."""

WATCH_EVAL_LIMIT = 20_000
"""Instances a watch column may be sorted or filtered over (each evaluated in Python)."""

WATCH_SORT_CHUNK = 500
"""Instances evaluated at a time when the table is sorted by a watch column."""


def _too_many(total: int) -> str:
    return (f"sorting or filtering by a watch column evaluates it for every matching instance, and {total:,} "
            f"match: narrow the table's filter (a status, a text, an error group) to {WATCH_EVAL_LIMIT:,} or "
            "fewer first")


def _text_field(m: Mapping[str, Any], name: str, limit: int) -> str:
    value = m.get(name) or ""
    if not isinstance(value, (str, int)) or isinstance(value, bool):
        raise NbflowError(f"{name} must be a string")
    return str(value)[:limit]


def _valid_sort(by: str, columns: int) -> bool:
    if by in ("item", "duration"):
        return True
    head, _, n = by.partition(":")
    return head == "watch" and n.isdigit() and int(n) < columns


def _sort_key(cell: Mapping[str, Any]) -> tuple[int, Any]:
    """Watch cells in order: numbers by value, then texts, then errors."""
    value = cell.get("value")
    if cell.get("error"):
        return (3, cell["error"])
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, value)
    return (1, cell.get("text") or "")


def _plural(n: int, word: str) -> str:
    return plural(n, word)


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


def _position(value: Any, name: str) -> int:
    """An event's 1-based position in the run's history."""
    n = _int(value, name)
    if n < 1:
        raise NbflowError(f"{name} must be an event's position in the history, from 1 (or null: live)")
    return n


def _event_json(text: str | None) -> Any:
    return json.loads(text) if text else {}


def _reason(m: Mapping[str, Any]) -> str | None:
    return _short(m, "reason")


def _short(m: Mapping[str, Any], field: str) -> str | None:
    """A short free-text field (a reason, a comment), stripped; None when empty."""
    value = m.get(field)
    return None if value is None else (str(value).strip()[:2000] or None)


def _step_arg(m: Mapping[str, Any]) -> str | None:
    step = m.get("step")
    if step in (None, ""):
        return None
    if not isinstance(step, str):
        raise NbflowError("step must be a step name")
    return step


def _edited_field(v: Verb) -> str | None:
    """The payload field an editor's JSON text stands for: ``payload`` (an approval's output), else
    the one field a verb requires (skip's ``output``, set_inputs' ``inputs``, set_output's ``value``)."""
    if "payload" in v.payload:
        return "payload"
    return v.payload[0] if v.required == 1 else None


def _payload(v: Verb, m: Mapping[str, Any]) -> dict[str, Any]:
    """The verb's payload from the action's arguments: its own fields, an edited value as the editor's
    JSON text in ``json`` (parsed here, strictly; blank text is no value), comments as short text."""
    payload = {f: m[f] for f in v.payload if f in m}
    text = m.get("json")
    if text is not None and not (isinstance(text, str) and not text.strip()):
        field = _edited_field(v)
        if field is None:
            raise NbflowError(f"{v.name} takes no JSON value")
        if not isinstance(text, str):
            raise NbflowError("json must be JSON text")
        try:
            payload[field] = parse_json(text)
        except ValueError as exc:  # a JSONDecodeError, or NaN/Infinity/a lone surrogate
            raise NbflowError(f"invalid JSON: {exc}; nothing was changed") from None
    if "comment" in payload:
        payload["comment"] = _short(payload, "comment")
    return payload


def _text_of(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _small(value: Any, limit: int = 4000) -> Any:
    shown, _ = views.value_view(value, limit)
    return shown


__all__ = ["ACTIONS", "DEBUG_CELL", "NAVIGATION", "PAGE_SIZE", "VERB_ACTIONS", "Controller"]
