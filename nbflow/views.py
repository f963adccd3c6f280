"""JSON views of stored runs, shared by every surface (the CLI's ``-o json``, the widget, the
Jupyter server extension). They only read the store, through its reads (``Store``'s rows,
:mod:`nbflow.store.queries`, :class:`~nbflow.store.reader.ValueReader`), and shape JSON; the field names
are public (README.md's "JSON reference" documents each one): add fields freely, never rename or drop one."""
from __future__ import annotations

import json
import math
import threading
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any, Generic, NamedTuple, Protocol, TypeVar

from . import timetravel
from ._jsontext import to_json_text
from ._util import jsonable
from .breakpoints import Action, Breakpoint, key_value
from .definition import StoredDefinition
from .engine.owners import owner_alive, owner_text
from .errors import NbflowError
from .states import BREAK_ON_ERROR, STEPPED_OVER, TASK_ITEM, InstanceStatus, PauseReason, RunStatus, label
from .store import Store, queries, replay
from .store.codec import JSON
from .store.queries import change_token, instance_counts, instance_stamp
from .store.reader import ValueReader
from .triage import Expression, failing_line, group_id
from .verbs import allowed_verbs

STATUSES: tuple[str, ...] = tuple(s.value for s in InstanceStatus)
"""Every instance status, in the order of DESIGN.md section 3 (the keys of ``counts``)."""

PROBLEMS = "problems"
"""The filter of a page that keeps what needs a person: :data:`PROBLEM_STATUSES`."""
PROBLEM_STATUSES: tuple[str, ...] = ("paused", "failed", "waiting", "retrying")


def iso(ts: float | None) -> str | None:
    """An epoch time as ISO 8601 in UTC with milliseconds, e.g. ``2025-01-31T09:15:02.120+00:00``."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds")


def owner_view(row: Mapping[str, Any]) -> dict[str, Any]:
    """Who drives the run: ``host``/``pid`` (None when nobody holds it), ``alive``, and a ``text`` for people."""
    return {
        "host": row["owner_host"] if row["owner_id"] else None,
        "pid": row["owner_pid"] if row["owner_id"] else None,
        "alive": owner_alive(row),
        "text": owner_text(row),
    }


def _interrupted(row: Mapping[str, Any], alive: bool) -> bool:
    return not RunStatus(row["status"]).terminal and not alive


def _params(store: Store, row: Mapping[str, Any]) -> Any:
    try:
        return jsonable(store.decode(row["params_codec"], row["params"]) or {})
    except Exception as exc:  # noqa: BLE001 - a pickled parameter whose class cannot be imported here
        return {"<unavailable>": f"{type(exc).__name__}: {exc}"}


def _progress(counts: Mapping[str, int]) -> dict[str, int]:
    total = sum(counts.values())
    done = sum(n for s, n in counts.items() if InstanceStatus(s).terminal)
    return {"done": done, "total": total}


def shown_key(r: Mapping[str, Any]) -> Any:
    """An instance row's key as the widget ships it: an int key as a number (JSON carries it unchanged,
    and it reads and addresses as its text does), any other key as its text."""
    if r.get("key_codec") == JSON:
        value = key_value(r["key"], r["key_codec"], r["key_value"])
        if type(value) is int:
            return value
    return r["key"]


def instance_view(r: Mapping[str, Any], *, user_key: bool = False) -> dict[str, Any]:
    """One instance row as JSON (no values: inputs and outputs can be large or pickled). ``key`` is the
    key's text (what ``-o json`` prints and addresses use); with *user_key*, :func:`shown_key`."""
    return {
        "step": r["step"],
        "item": None if r["item"] == TASK_ITEM else r["item"],
        "key": shown_key(r) if user_key else r["key"],
        "status": r["status"],
        "attempt": r["attempt"],
        "pause_reason": r["pause_reason"],
        "pause": PauseReason.parse(r["pause_reason"]).as_json() if r["pause_reason"] else None,
        "error": {"type": r["error_type"], "message": r["error_message"] or ""} if r["error_type"] else None,
        "held_by": json.loads(r["held_by"]) if r["held_by"] else [],
        "verbs": allowed_verbs(r["status"], r["pause_reason"]),
        "started_at": iso(r["started_at"]),
        "finished_at": iso(r["finished_at"]),
        "duration_s": _duration(r),
        "next_attempt_at": iso(r.get("next_attempt_at")),  # when a retrying instance tries again
        "deadline": iso(r.get("deadline")),  # when a waiting instance times out
    }


def _duration(r: Mapping[str, Any]) -> float | None:
    """How long the instance's last attempt ran, in seconds (None until it finished)."""
    if r["started_at"] is None or r["finished_at"] is None:
        return None
    return round(max(float(r["finished_at"]) - float(r["started_at"]), 0.0), 6)


def breakpoint_view(row: Mapping[str, Any], hits: int = 0) -> dict[str, Any]:
    """A breakpoint's definition (``nbflow breakpoint list``), with *hits* (how many instances of one run
    reached it and matched: 0 for a workflow listing) and its ``label``; :func:`run_view` adds its state
    in one run."""
    bp = Breakpoint.from_row(row)
    return {
        "id": bp.id,
        "workflow": bp.workflow,
        "scope": bp.scope,
        "run_id": bp.run_id,
        "step": bp.step,
        "key": bp.key,
        "when": str(bp.when),
        "condition": bp.condition,
        "created_by": bp.created_by,
        "created_at": iso(row["created_at"]),
        "action": str(bp.action),
        "expression": bp.expression,
        "hit_count": bp.hit_count,
        "one_shot": bp.one_shot,
        "origin": bp.origin,
        "hits": hits,
        "label": breakpoint_label(bp, hits),
    }


def breakpoint_label(bp: Breakpoint, hits: int = 0) -> str:
    """What a person reads in the breakpoints box: ``before enrich if item['x'] > 3``, ``log item['x'] ·
    before enrich``, ``before enrich · hit 3 of >= 3``, ``step over enrich:3 (one-shot)``."""
    if bp.one_shot:
        return f"{bp.origin or f'{bp.when} {label(bp.step, bp.key)}'} (one-shot)"
    text = f"{bp.when} {label(bp.step, bp.key)}" + (f" if {bp.condition}" if bp.condition else "")
    if bp.action == Action.LOG:
        text = f"log {bp.expression} · {text}"
    if bp.hit_count is not None:
        text += f" · hit {hits} of >= {bp.hit_count}"
    return text


def breakpoints_list(store: Store, workflow: str | None = None, run_id: str | None = None) -> list[dict[str, Any]]:
    """``nbflow breakpoint list -o json``: the breakpoints of a workflow, of a run (its workflow's and
    its own, with that run's ``hits``), or with neither, of every workflow with runs plus those of
    unfinished runs (a run-scoped one with its run's ``hits``; a workflow-scoped one's are 0)."""
    if run_id is not None:
        row = store.run_row(run_id)
        hits = store.breakpoint_hits(run_id)
        return [breakpoint_view(b, hits.get(b["id"], 0)) for b in store.breakpoint_rows(row["workflow"], run_id)]
    if workflow is not None:
        return [breakpoint_view(b) for b in store.breakpoint_rows(workflow)]
    seen: dict[int, Mapping[str, Any]] = {}
    all_runs = store.run_rows()
    for name in dict.fromkeys(r["workflow"] for r in all_runs):
        for b in store.breakpoint_rows(name):
            seen[b["id"]] = b
    own: dict[int, int] = {}
    for r in all_runs:
        if not RunStatus(r["status"]).terminal:
            mine = [b for b in store.breakpoint_rows(r["workflow"], r["id"]) if b["run_id"] is not None]
            hits = store.breakpoint_hits(r["id"]) if mine else {}
            for b in mine:
                seen[b["id"]] = b
                own[b["id"]] = hits.get(b["id"], 0)
    return [breakpoint_view(seen[i], own.get(i, 0)) for i in sorted(seen)]


def _run_fields(row: Mapping[str, Any]) -> dict[str, Any]:
    """The run's own fields, shared by every view of a run."""
    owner = owner_view(row)
    return {
        "id": row["id"],
        "workflow": row["workflow"],
        "version": row["version"],
        "status": row["status"],
        "interrupted": _interrupted(row, owner["alive"]),
        "owner": owner,
        "created": iso(row["created_at"]),
        "updated": iso(row["updated_at"]),
        "finished": iso(row["finished_at"]),
        "forked_from": row["parent_run_id"],
        "executor": json.loads(row["options"] or "{}").get("executor") or "threads",
    }


def run_summary(store: Store, row: Mapping[str, Any]) -> dict[str, Any]:
    """One line of ``nbflow runs`` (counts from one GROUP BY: the sidebar polls this)."""
    return run_summaries(store, [row])[0]


def run_summaries(store: Store, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """:func:`run_summary` of each of *rows*, their counts from one query (``nbflow runs``)."""
    counts = queries.status_counts_of_runs(store, [row["id"] for row in rows])
    return [_summary(row, Counter(counts.get(row["id"], {}))) for row in rows]


def _summary(row: Mapping[str, Any], counts: Counter[str]) -> dict[str, Any]:
    return {
        **_run_fields(row),
        "paused": counts.get(InstanceStatus.PAUSED.value, 0),
        "failed": counts.get(InstanceStatus.FAILED.value, 0),
        "progress": _progress(counts),
    }


_NODE_ORDER = ("paused", "failed", "waiting", "running", "retrying", "ready", "pending")
_NODE_ALIAS = {"retrying": "running", "ready": "running"}


def node_status(counts: Mapping[str, int]) -> str:
    """One status for a DAG node from its per-status counts (``dag.nodes[].status``, the colour every
    surface draws): what needs a person first (paused, failed), then what is moving, then how it ended.
    A step without instances is ``pending``."""
    if not sum(counts.values()):
        return "pending"
    for s in _NODE_ORDER:
        if counts.get(s):
            return _NODE_ALIAS.get(s, s)
    for s in ("succeeded", "skipped"):
        if counts.get(s):
            return s
    return "cancelled"


class CodeChange(NamedTuple):
    """The newest ``code_changed`` event that names a step: when (epoch ``ts``) and its JSON ``view``."""

    ts: float
    view: dict[str, Any]


_S = TypeVar("_S")


class _Folded(Generic[_S]):
    """What the views keep of the runs' events of one *kind*, each run's folded in (*fold*, from
    *make*'s empty value) as they come: events are only ever appended, so each read asks the store only
    for the events newer than the last one it read (the history of a 100,000-instance run is read once,
    not at every refresh of the widget). Process-wide, by store and run; the least recently used runs
    are dropped first. What :meth:`get` returns is shared: read it, never change it."""

    def __init__(self, kind: str, make: Callable[[], _S], fold: Callable[[_S, queries.EventText], None],
                 size: int) -> None:
        self.kind, self.make, self.fold, self.size = kind, make, fold, size
        self._kept: OrderedDict[tuple[str, str], tuple[int, _S]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, store: Store, run_id: str) -> _S:
        key = (str(store.url), run_id)
        with self._lock:
            hit = self._kept.get(key)
            last, state = hit if hit is not None else (0, self.make())
            last, events = queries.events_of_kind(store, run_id, self.kind, last)
            for ev in events:
                self.fold(state, ev)
            self._kept[key] = (last, state)
            self._kept.move_to_end(key)
            while len(self._kept) > self.size:
                self._kept.popitem(last=False)
            return state


RUNS_FOLDED = 32
"""Runs whose code changes and logged values the views keep folded (:class:`_Folded`)."""


def _fold_change(out: dict[str, CodeChange], ev: queries.EventText) -> None:
    data = _event_data(ev.data)
    if not isinstance(data, dict):
        return
    found, named, text = data.get("diffs"), data.get("steps"), data.get("diff")
    diffs: dict[str, Any] = found if isinstance(found, dict) else {}
    steps: list[Any] = named if isinstance(named, list) else list(diffs)
    whole = text if isinstance(text, str) else ""
    for step in steps:
        diff = diffs.get(step)
        out[str(step)] = CodeChange(float(ev.ts), {
            "at": iso(ev.ts), "old_version": data.get("old_version"), "new_version": data.get("new_version"),
            "diff": diff if isinstance(diff, str) else whole,
        })


def _no_changes() -> dict[str, CodeChange]:
    return {}


_CHANGES = _Folded("code_changed", _no_changes, _fold_change, RUNS_FOLDED)


def code_changes(store: Store, run_id: str) -> dict[str, CodeChange]:
    """Per step, the newest ``code_changed`` event of the run that names it (a hot fix, or a takeover with
    new code): ``{"at", "old_version", "new_version", "diff"}``, ``diff`` that step's unified diff. Reads
    the event's ``steps`` and ``diff`` and its ``diffs`` (``{step: diff}``), whichever it carries."""
    return dict(_CHANGES.get(store, run_id))


Logged = dict[tuple[str | None, str | None], dict[str, Any]]
"""(step, key text) -> logpoint expression -> its newest value."""


LOGGED_VALUE_CHARS = 200
"""A logged value a page's rows carry (``logged``) whose JSON is longer than this is shown as
``{"truncated": ..., "chars": n}`` (:func:`value_view`'s stand-in; the instance detail has it whole)."""


def _fold_logged(out: Logged, ev: queries.EventText) -> None:
    data = _event_data(ev.data)
    if isinstance(data, dict) and isinstance(data.get("expression"), str):
        value = data.get("value")
        if len(ev.data or "") > LOGGED_VALUE_CHARS:  # the event's whole text bounds its value's
            value, _ = value_view(value, LOGGED_VALUE_CHARS)
        out.setdefault((ev.step, ev.key), {})[data["expression"]] = value


def _nothing_logged() -> Logged:
    return {}


_LOGGED = _Folded("logpoint", _nothing_logged, _fold_logged, RUNS_FOLDED)


def _debugging(store: Store, run_id: str, rows: Sequence[Mapping[str, Any]], shown: Sequence[dict[str, Any]],
               changes: Mapping[str, CodeChange] | None = None) -> None:
    """Add to each *shown* instance (*rows*: their rows, in that order) ``logged`` (the newest value of
    each logpoint expression over it) and ``code_changed`` (its last attempt started before the newest
    code change of its step: it ran the old code). Only the run's events added since the last read are
    read (:class:`_Folded`)."""
    if not rows:
        return
    changes = code_changes(store, run_id) if changes is None else changes
    logged = _LOGGED.get(store, run_id)
    for r, v in zip(rows, shown):
        change = changes.get(r["step"])
        v["logged"] = dict(logged.get((r["step"], r["key"]), {}))
        v["code_changed"] = change is not None and r["started_at"] is not None and float(r["started_at"]) < change.ts


def _base_view(
    store: Store, row: Mapping[str, Any], definition: StoredDefinition, per_step: Mapping[str, Mapping[str, int]],
    changes: Mapping[str, CodeChange],
) -> dict[str, Any]:
    """The fields :func:`run_view` and :func:`run_state` share: the run, the DAG with counts and each
    step's newest code change, progress."""
    from .engine.pinning import Use  # cloudpickle: only for the views that show a run's steps

    all_counts: Counter[str] = Counter()
    nodes = []
    for s in definition.order:
        spec = definition.steps[s]
        c = per_step.get(s, {})
        all_counts.update(c)
        nodes.append({
            "step": s,
            "kind": spec.kind.value,
            "foreach": spec.foreach,
            "upstream": list(spec.upstream),
            "inputs": list(spec.inputs),  # what set_inputs may change (every parameter but ctx)
            "counts": {st: c.get(st, 0) for st in STATUSES},
            "total": sum(c.values()),
            "status": node_status(c),
            "uses": [{**u, "text": Use.from_json(u).describe()} for u in spec.uses],
            "code_change": dict(changes[s].view) if s in changes else None,
        })
    return {
        **_run_fields(row),
        "params": _params(store, row),
        "break_on_error": {"enabled": bool(json.loads(row["options"] or "{}").get("break_on_error"))},
        "progress": _progress(all_counts),
        "counts": {st: all_counts.get(st, 0) for st in STATUSES},
        "dag": {"nodes": nodes, "edges": [list(e) for e in definition.edges]},
    }


def run_view(
    store: Store, run_id: str, *, status: Iterable[str] | None = None, limit: int | None = None
) -> dict[str, Any]:
    """The debug view of one run (``nbflow show RUN -o json``): DAG with counts, breakpoints with
    their state, instances. *status* and *limit* only narrow the ``instances`` list; counts,
    breakpoints and progress always cover the whole run."""
    row = store.run_row(run_id)
    definition = store.definition(row["workflow"], row["version"])
    order = list(definition.order)
    rank = {s: n for n, s in enumerate(order)}
    rows = sorted(store.instance_rows(run_id), key=lambda r: (rank.get(r["step"], len(order)), r["item"]))

    counts: dict[str, Counter[str]] = {s: Counter() for s in order}
    holding: dict[int, list[str | None]] = {}
    for r in rows:
        counts.setdefault(r["step"], Counter())[r["status"]] += 1
        if r["status"] == InstanceStatus.PAUSED and r["held_by"]:
            for bid in json.loads(r["held_by"]):
                holding.setdefault(bid, []).append(r["key"])

    changes = code_changes(store, run_id)
    view = _base_view(store, row, definition, counts, changes)
    view["break_on_error"]["holding"] = holding.get(BREAK_ON_ERROR, [])
    view["stepped_over"] = {"holding": holding.get(STEPPED_OVER, []), "instances": [
        {"step": r["step"], "key": r["key"]} for r in rows
        if r["status"] == InstanceStatus.PAUSED and r["held_by"] and STEPPED_OVER in json.loads(r["held_by"])
    ]}
    view["breakpoints"] = []
    hits = store.breakpoint_hits(run_id)
    for b in store.breakpoint_rows(row["workflow"], run_id):
        bp = breakpoint_view(b, hits.get(b["id"], 0))
        held = holding.get(b["id"], [])
        bp["state"] = "hit" if held else "set"
        bp["holding"] = held
        view["breakpoints"].append(bp)

    wanted = None if status is None else {str(s) for s in status}
    chosen = [r for r in rows if wanted is None or r["status"] in wanted]
    listed = chosen if limit is None else chosen[: max(limit, 0)]
    view["instances"] = [instance_view(r) for r in listed]
    _debugging(store, run_id, listed, view["instances"], changes)
    view["instances_omitted"] = len(rows) - len(listed)
    return view


def _event_data(text: str | None) -> Any:
    """An event's ``data``: its JSON, or ``{"text": ...}`` for text that is not JSON."""
    try:
        return json.loads(text) if text else {}
    except ValueError:
        return {"text": text}


def history_view(
    store: Store, run_id: str, after: int = 0, *, step: str | None = None, key: str | None = None,
    kinds: Iterable[str] | None = None, limit: int | None = None,
) -> list[dict[str, Any]]:
    """The run's events, oldest first (``nbflow history RUN -o json``), narrowed as
    :meth:`Store.event_rows` says; ``n`` numbers each among all the run's events, from 1."""
    store.run_row(run_id)  # an unknown run is an error, not an empty history
    return [
        {"id": r["id"], "n": r["n"], "ts": iso(r["ts"]), "kind": r["kind"], "step": r["step"], "key": r["key"],
         "actor": r["actor"], "data": _event_data(r["data"])}
        for r in store.event_rows(run_id, after_id=after, step=step, key=key, kinds=kinds, limit=limit)
    ]


class _RunHandle(Protocol):
    """What :func:`paused_instances` reads of a ``Run``: its store and id."""

    @property
    def store(self) -> Store: ...

    @property
    def id(self) -> str: ...


def paused_instances(run: _RunHandle) -> list[dict[str, Any]]:
    """The paused instances of a run, as JSON (what `nbflow resume` prints after driving a run)."""
    return [instance_view(r) for r in run.store.instance_rows(run.id, status=InstanceStatus.PAUSED)]


__all__ = [
    "PROBLEMS",
    "PROBLEM_STATUSES",
    "STATUSES",
    "CodeChange",
    "Edit",
    "accepting_keys",
    "breakpoint_label",
    "breakpoint_view",
    "breakpoints_list",
    "change_token",
    "code_changes",
    "edits",
    "error_group",
    "error_groups",
    "filter_keys",
    "group_keys",
    "history_marks",
    "history_view",
    "instance_counts",
    "instance_detail",
    "instance_page",
    "instance_page_at",
    "instance_stamp",
    "instance_view",
    "instance_views",
    "iso",
    "owner_view",
    "paused_instances",
    "run_state",
    "run_state_at",
    "run_summaries",
    "run_summary",
    "run_view",
    "shown_key",
    "timeline",
    "value_reader",
    "value_view",
    "watch_names",
    "watch_values",
]


# ------------------------------------------------------------------ light views for live surfaces
# The widget (and anything that refreshes often) must cost the same for 10 or 10,000 instances:
# counts come from GROUP BY queries, instances from one page, values from one instance only.

def run_state(store: Store, run_id: str) -> dict[str, Any]:
    """:func:`run_view` without instance rows, for surfaces that refresh often: the same fields, with
    ``instances`` empty (``instances_omitted`` says how many exist), and each breakpoint's ``holding``
    replaced by ``held`` (how many instances it holds) — page through instances with :func:`instance_page`."""
    row = store.run_row(run_id)
    definition = store.definition(row["workflow"], row["version"])
    held = queries.held_counts(store, run_id)
    view = _base_view(store, row, definition, instance_counts(store, run_id), code_changes(store, run_id))
    view["break_on_error"]["held"] = held.get(BREAK_ON_ERROR, 0)
    view["stepped_over"] = {"held": held.get(STEPPED_OVER, 0)}
    view["breakpoints"] = []
    hits = store.breakpoint_hits(run_id)
    for b in store.breakpoint_rows(row["workflow"], run_id):
        bp = breakpoint_view(b, hits.get(b["id"], 0))
        bp["held"] = held.get(b["id"], 0)
        bp["state"] = "hit" if bp["held"] else "set"
        view["breakpoints"].append(bp)
    view["instances"] = []
    view["instances_omitted"] = sum(view["counts"].values())
    return view


def _statuses(status: str | Iterable[str] | None) -> str | list[str] | None:
    """A page filter's statuses, with :data:`PROBLEMS` standing for :data:`PROBLEM_STATUSES`."""
    if status == PROBLEMS:
        return list(PROBLEM_STATUSES)
    return status if status is None or isinstance(status, str) else list(status)


def _signature(store: Store, run_id: str, step: str, group: str | None) -> str | None:
    """The signature of the step's error group *group* (see :func:`resolve_group`); None for no group."""
    return None if group in (None, "") else str(resolve_group(store, run_id, step, str(group))["signature"])


def resolve_group(store: Store, run_id: str, step: str, group: str) -> dict[str, Any]:
    """:func:`error_group`, and an unknown group refused naming the groups there are."""
    found = error_group(store, run_id, step, group)
    if found is None:
        groups = queries.error_groups(store, run_id, step)
        have = ", ".join(f"{n} ({group_id(g.signature)})" for n, g in enumerate(groups, 1)) or "none"
        raise NbflowError(f"step {step!r} of run {run_id} has no error group {group!r}; its groups are: {have}")
    return found


def error_group(store: Store, run_id: str, step: str, group: str) -> dict[str, Any] | None:
    """The step's error group *group* (its id, or its number from 1, as ranked now): ``n``, ``id``,
    ``signature``, ``type``, ``count``; None when there is none (one GROUP BY, over every group)."""
    for n, g in enumerate(queries.error_groups(store, run_id, step), 1):
        gid = group_id(g.signature)
        if group in (gid, str(n)):
            return {"n": n, "id": gid, "signature": g.signature, "type": g.signature.partition(": ")[0],
                    "count": g.size}
    return None


def instance_page(
    store: Store, run_id: str, step: str, *, status: str | Iterable[str] | None = None, text: str | None = None,
    offset: int = 0, limit: int = 50, user_keys: bool = False, group: str | None = None, sort: str = "item",
    desc: bool = False, at: Any = None,
) -> dict[str, Any]:
    """One page of a step's instances (no values), narrowed by *status* (:data:`PROBLEMS` for what needs
    a person), by *text* (found in the key, the pause reason or the error) and by an error *group* (id or
    number), in item order or by duration (*sort*, *desc*); ``total`` counts every match. *user_keys*: see
    :func:`instance_view`. *at* (an event id or position): the page as it was right after that event
    (:func:`instance_page_at`); None: now."""
    offset, limit = max(int(offset), 0), max(int(limit), 1)
    if sort not in queries.SORTS:
        raise NbflowError(f"cannot sort by {sort!r}; sorts are: {', '.join(queries.SORTS)}")
    if at is not None:
        return instance_page_at(store, run_id, step, at, status=status, text=text, offset=offset, limit=limit,
                                user_keys=user_keys, group=group, sort=sort, desc=desc)
    page = queries.instance_page(store, run_id, step, status=_statuses(status), text=text, offset=offset, limit=limit,
                                 signature=_signature(store, run_id, step, group), sort=sort, desc=desc)
    shown = [instance_view(r, user_key=user_keys) for r in page.rows]
    _debugging(store, run_id, page.rows, shown)
    return {"step": step, "offset": page.offset, "limit": limit, "total": page.total, "rows": shown}


def instance_views(store: Store, run_id: str, step: str, items: Iterable[int], *,
                   user_keys: bool = False) -> list[dict[str, Any]]:
    """The instances of *step* at *items*, in that order, as :func:`instance_view` shows them (no values)."""
    wanted = list(items)
    rows = {r["item"]: r for r in store.instance_rows(run_id, step, items=wanted)}
    found = [rows[i] for i in wanted if i in rows]
    shown = [instance_view(r, user_key=user_keys) for r in found]
    _debugging(store, run_id, found, shown)
    return shown


def filter_keys(store: Store, run_id: str, step: str, *, status: str | Iterable[str] | None = None,
                text: str | None = None, group: str | None = None) -> list[str | None]:
    """The key texts of every instance of *step* a page filter (see :func:`instance_page`) matches."""
    return queries.filter_keys(store, run_id, step, status=_statuses(status), text=text,
                               signature=_signature(store, run_id, step, group))


def accepting_keys(store: Store, run_id: str, step: str, verb: str) -> list[str | None]:
    """The key texts of *step*'s instances whose state accepts *verb* now (the verb table's rule)."""
    return [r["key"] for r in queries.instance_states(store, run_id, step)
            if verb in allowed_verbs(r["status"], r["pause_reason"])]


def group_keys(store: Store, run_id: str, step: str, group: str) -> list[str | None]:
    """The key texts of the instances in error group *group* (its id or number) of *step*."""
    signature = _signature(store, run_id, step, group)
    assert signature is not None
    return queries.group_keys(store, run_id, step, signature)


GROUP_KEYS_SHOWN = 20
"""Keys listed per error group in :func:`error_groups` (``keys_omitted`` counts the others)."""


def error_groups(store: Store, run_id: str, step: str, limit: int | None = 50, keys: int | None = GROUP_KEYS_SHOWN,
                 traceback_chars: int | None = None) -> dict[str, Any]:
    """The step's failed, error-paused and retrying instances grouped by error signature
    (:func:`nbflow.triage.error_signature`), the largest group first: for each its number ``n`` and
    ``id`` (what ``--group`` takes), the exception ``type``, the first example's ``message`` and
    ``traceback``, the masked ``signature`` and failing ``line``, ``count`` and per-status counts, and
    its first *keys* keys (None: all of them; *limit* groups, None: all; *traceback_chars*: keep only the
    traceback's end, where it was raised). Grouping and counts come from one GROUP BY: the same for
    100,000 instances."""
    row = store.run_row(run_id)
    definition = store.definition(row["workflow"], row["version"])
    if step not in definition.steps:
        raise NbflowError(f"run {run_id} has no step {step!r}; steps are: {', '.join(definition.order)}")
    all_groups = queries.error_groups(store, run_id, step)
    shown = all_groups if limit is None else all_groups[:max(limit, 0)]
    examples = queries.group_examples(store, run_id, step, [g.first_item for g in shown])
    out = []
    for n, g in enumerate(shown, 1):
        ex = examples.get(g.first_item) or {}
        some = queries.group_keys(store, run_id, step, g.signature, limit=keys)
        type_ = g.signature.partition(": ")[0]
        out.append({
            "n": n, "id": group_id(g.signature), "step": step, "type": ex.get("error_type") or type_,
            "message": ex.get("error_message") or "", "signature": g.signature,
            "line": failing_line(ex.get("error_traceback") or ""),
            "count": g.size, "statuses": g.statuses,
            "traceback": _tail(ex.get("error_traceback") or "", traceback_chars),
            "first_key": shown_key(ex) if ex else None, "keys": some, "keys_omitted": max(g.size - len(some), 0),
        })
    return {"step": step, "total": sum(g.size for g in all_groups), "groups": out,
            "groups_omitted": max(len(all_groups) - len(shown), 0)}


def _tail(text: str, chars: int | None) -> str:
    return text if chars is None or len(text) <= chars else "…" + text[-chars:]


TIMELINE_BINS = 48


def _quantile(values: list[float], q: float) -> float | None:
    """The *q* quantile of sorted *values* (nearest rank: the smallest value with at least *q* of them
    at or below it), None when there are none."""
    if not values:
        return None
    return round(values[max(math.ceil(q * len(values)) - 1, 0)], 6)


_BIN_FIELDS = {"started": "started", "succeeded": "succeeded", "failed": "failed", "attempt_failed": "failed",
               "retrying": "retried", "paused": "paused", "waiting": "waiting"}


def timeline(store: Store, run_id: str, step: str, bins: int = TIMELINE_BINS) -> dict[str, Any]:
    """A step's time at a glance: how many instances finished an attempt, their durations' median, p95
    and max, how many retries, pauses and waits, and a compact timeline of *bins* time bins counting the
    attempts started, succeeded, failed, retried, paused and waiting in each (one GROUP BY over the
    step's events: the same for 10,000 items)."""
    d = queries.durations(store, run_id, step)
    counts: Counter[str] = Counter()
    strip: list[dict[str, Any]] = []
    if d.start is not None and d.end is not None:
        span = max(d.end - d.start, 1e-6)
        n_bins = max(min(bins, 200), 1)
        width = span / n_bins
        strip = [{"t": iso(d.start + i * width), **dict.fromkeys(dict.fromkeys(_BIN_FIELDS.values()), 0)}
                 for i in range(n_bins)]
        for b, kind, n in queries.event_bins(store, run_id, step, d.start, width):
            field = _BIN_FIELDS[kind]
            strip[min(max(b, 0), n_bins - 1)][field] += n
            counts[field] += n
    return {
        "step": step, "count": len(d.values), "median_s": _quantile(d.values, 0.5), "p95_s": _quantile(d.values, 0.95),
        "max_s": round(d.values[-1], 6) if d.values else None,
        "retries": counts["retried"], "pauses": counts["paused"], "waits": counts["waiting"],
        "start": iso(d.start), "end": iso(d.end), "bins": strip,
    }


WATCH_TEXT_CHARS = 80
"""A watch cell's text is cut to this many characters (its value is shipped only when it is short)."""


def watch_values(store: Store, run_id: str, step: str, items: Iterable[int], exprs: Iterable[Expression],
                 reader: ValueReader | None = None) -> list[list[dict[str, Any]]]:
    """Each watch expression evaluated over each instance of *items* (one page), in that order: over
    its inputs by name and, when it has one, its ``output``. A cell is ``{"value", "text", "error"}``:
    ``value`` only when it is short JSON. Pass one *reader* for many pages: upstream values are then
    decoded once."""
    exprs = list(exprs)
    items = list(items)
    if not exprs or not items:
        return [[] for _ in items]
    reader = reader or ValueReader(store, store.run_row(run_id))
    rows = {r["item"]: r for r in store.instance_rows(run_id, step, items=items)}
    out = []
    for item in items:
        row = rows.get(item)
        names = watch_names(reader, row) if row is not None else {}
        out.append([_cell(ex, names) if row is not None else {"value": None, "text": "", "error": "no such instance"}
                    for ex in exprs])
    return out


def _cell(ex: Expression, names: Mapping[str, Any]) -> dict[str, Any]:
    try:
        value = ex.evaluate(names)
    except Exception as exc:  # noqa: BLE001 - a person's expression: its error is the cell's text
        return {"value": None, "text": "", "error": f"{type(exc).__name__}: {exc}"[:200]}
    text = to_json_text(value)
    if text is None:
        return {"value": None, "text": repr(value)[:WATCH_TEXT_CHARS], "error": None}
    return {"value": value if len(text) <= WATCH_TEXT_CHARS else None, "text": text[:WATCH_TEXT_CHARS], "error": None}


class Edit(NamedTuple):
    """One instance's input before and after a bulk edit (``error``: why its new value could not be made)."""

    key: str | None
    old: Any
    new: Any
    error: str | None


def edits(store: Store, run_id: str, step: str, keys: Iterable[str | None], input_name: str,
          fn: Callable[[Mapping[str, Any]], Any], limit: int | None = None) -> list[Edit]:
    """The new value of input *input_name* of each instance of *keys* (at most *limit*), from *fn*
    called with the instance's inputs by name: what a bulk edit would write. Reads the step's rows once."""
    row = store.run_row(run_id)
    reader = ValueReader(store, row)
    spec = reader.definition.steps.get(step)
    if spec is None:
        raise NbflowError(f"run {run_id} has no step {step!r}; steps are: {', '.join(reader.definition.order)}")
    if input_name not in spec.inputs:
        raise NbflowError(f"step {step!r} takes no input named {input_name!r}; its inputs are: "
                          f"{', '.join(sorted(spec.inputs)) or 'none'}")
    wanted = list(keys)[:limit] if limit is not None else list(keys)
    by_key = queries.rows_by_key(store, run_id, step, wanted)
    out = []
    for key in wanted:
        r = by_key.get(key)
        if r is None:
            raise NbflowError(f"step {step!r} has no instance with key {key}")
        names = reader.inputs(r)
        old = names.get(input_name)
        try:
            out.append(Edit(key, old, fn(names), None))
        except Exception as exc:  # noqa: BLE001 - a person's expression: its error is named per instance
            out.append(Edit(key, old, None, f"{type(exc).__name__}: {exc}"[:300]))
    return out


def value_reader(store: Store, run_id: str) -> ValueReader:
    """A reader of the run's values that decodes each upstream value once (for :func:`watch_values`)."""
    return ValueReader(store, store.run_row(run_id))


def watch_names(reader: ValueReader, row: Mapping[str, Any]) -> dict[str, Any]:
    """What an expression over an instance sees: its inputs by name and ``output`` when it has one."""
    names = dict(reader.shown_inputs(row))
    if row["output_codec"] is not None:
        names["output"] = reader.value(row)
    return names


VALUE_LIMIT_CHARS = 64 * 1024
"""Values whose JSON text is longer than this are shown truncated (and cannot be edited in place)."""


def value_view(value: Any, limit: int = VALUE_LIMIT_CHARS) -> tuple[Any, bool]:
    """``(shown, editable)``: the value itself when it is JSON and not too long, else a stand-in
    (``{"repr": ...}`` or ``{"truncated": ..., "chars": n}``) that must not be written back."""
    text = to_json_text(value)
    if text is None:
        return {"repr": repr(value)[:2000]}, False
    if len(text) > limit:
        return {"truncated": text[: min(limit, 4000)], "chars": len(text)}, False
    return value, True


ATTEMPT_EVENTS = ("started", "attempt_failed", "retrying", "succeeded", "failed", "timed_out", "interrupted")


def instance_detail(
    store: Store, run_id: str, step: str, key: str | None, history_limit: int = 200, *, user_keys: bool = False,
) -> dict[str, Any] | None:
    """Everything about one instance (``None`` when it does not exist yet): :func:`instance_view`'s
    fields (*user_keys*: its ``key`` as :func:`shown_key`) plus ``inputs``/``output`` (see
    :func:`value_view`; ``readonly_inputs`` lists inputs that are not editable JSON), the error with its
    traceback, ``logs``, ``attempts`` and its ``history`` (newest *history_limit* events). Reads only
    this instance and the steps it reads."""
    run_row = store.run_row(run_id)
    row, events = queries.instance_with_events(store, run_id, step, key)
    if row is None:
        return None
    view = instance_view(row, user_key=user_keys)
    reader = ValueReader(store, run_row)  # reads the steps this instance's inputs come from, when asked
    inputs: dict[str, Any] = {}
    readonly: list[str] = []
    for name, value in reader.shown_inputs(row).items():
        inputs[name], ok = value_view(value)
        if not ok:
            readonly.append(name)
    output, output_ok = value_view(reader.value(row))
    logs: str = row["logs"] or ""
    history = [
        {"id": r["id"], "n": r["n"], "ts": iso(r["ts"]), "kind": r["kind"], "actor": r["actor"],
         "data": _event_data(r["data"])}
        for r in events
    ]
    attempts: list[dict[str, Any]] = []
    for h in history:
        if h["kind"] not in ATTEMPT_EVENTS:
            continue
        started = h["kind"] == "started"
        if started or not attempts:  # an outcome without a start: inputs that could not be resolved
            attempts.append({"attempt": h["data"].get("attempt"), "started": h["ts"] if started else None,
                             "outcome": None, "error": None, "traceback": None, "finished": None})
        if not started and attempts[-1]["outcome"] is None:
            attempts[-1].update(outcome=h["kind"], error=h["data"].get("error"), traceback=h["data"].get("traceback"),
                                finished=h["ts"])
    view.update({
        "inputs": inputs,
        "readonly_inputs": readonly,
        "output": output,
        "output_editable": output_ok,
        "has_output": row["output_codec"] is not None,
        "error": None if not row["error_type"] else {
            "type": row["error_type"], "message": row["error_message"] or "", "traceback": row["error_traceback"] or "",
        },
        "logs": logs[-VALUE_LIMIT_CHARS:],
        "logs_truncated": len(logs) > VALUE_LIMIT_CHARS,
        "token": row["token"] if row["status"] == "waiting" else None,  # a waiting instance's signal token
        "attempts": attempts,
        "history": history[-history_limit:],
        "history_omitted": max(len(history) - history_limit, 0),
        "last_event": events[-1]["id"] if events else 0,
    })
    change = code_changes(store, run_id).get(step)
    view["code_changed"] = change is not None and row["started_at"] is not None and float(row["started_at"]) < change.ts
    view["code_diff"] = change.view["diff"] if change is not None else None
    view["logged"] = [
        {"expression": h["data"].get("expression"), "value": value_view(h["data"].get("value"))[0],
         "when": h["data"].get("when"),
         "at": h["ts"], "error": h["data"].get("error")}
        for h in history if h["kind"] == "logpoint" and isinstance(h["data"], dict)
    ]
    return view


# ------------------------------------------------------------------ time travel: the run as it was
# A run's history folded once per process (nbflow.timetravel): any event's counts and pages then cost
# about what the live ones do, for 100,000 instances.

def at_view(m: timetravel.Moment) -> dict[str, Any]:
    """Where a view of the past stands: the event's ``id``, ``n`` (1-based position), ``ts``, ``kind``,
    ``step``, ``key`` (its text) and ``of`` (how many events the run has now)."""
    e = m.event
    return {"id": m.event_id, "n": m.n, "ts": iso(e["ts"]), "kind": e["kind"], "step": e["step"], "key": e["key"],
            "of": m.bounds.total}


def run_state_at(store: Store, run_id: str, event: Any) -> dict[str, Any]:
    """:func:`run_state` as it was right after *event* (an event id, or its 1-based position ``n``):
    the run's ``status`` then (from its ``run_*`` events), ``counts``, ``progress`` and each DAG node's
    ``counts``/``status``/``total`` then (a foreach not yet expanded has none), each node's newest code
    change before it, and ``at`` (:func:`at_view`). ``instances`` and ``breakpoints`` are empty: page
    with :func:`instance_page` and *at*. An unknown event is refused, naming the range."""
    row = store.run_row(run_id)
    definition = store.definition(row["workflow"], row["version"])
    m = timetravel.moment(store, run_id, event)
    ts = float(m.event["ts"])
    changes = {s: c for s, c in code_changes(store, run_id).items() if c.ts <= ts}
    view = _base_view(store, row, definition, m.counts(), changes)
    view["status"] = m.run_status
    view["interrupted"] = False
    view["finished"] = None if not RunStatus(m.run_status).terminal else view["finished"]
    view["breakpoints"] = []
    view["instances"] = []
    view["instances_omitted"] = sum(view["counts"].values())
    view["at"] = at_view(m)
    return view


def instance_page_at(
    store: Store, run_id: str, step: str, at: Any, *, status: str | Iterable[str] | None = None,
    text: str | None = None, offset: int = 0, limit: int = 50, user_keys: bool = False, group: str | None = None,
    sort: str = "item", desc: bool = False,
) -> dict[str, Any]:
    """One page of *step*'s instances as they were right after event *at* (an id or a position):
    :func:`instance_page`'s shape (rows of :func:`instance_view`, ``verbs`` empty: the past is read-only)
    plus ``at``. *status* narrows by the status then, *text* (in any case) by the key or the pause
    reason or error message then, as live; *sort* ``duration`` puts the instances finished then first,
    by their duration as stored now. Error groups are of the run now (refused)."""
    row = store.run_row(run_id)
    definition = store.definition(row["workflow"], row["version"])
    if step not in definition.steps:
        raise NbflowError(f"run {run_id} has no step {step!r}; steps are: {', '.join(definition.order)}")
    if group not in (None, ""):
        raise NbflowError("error groups are of the run now: page the past without group=")
    if sort not in queries.SORTS:
        raise NbflowError(f"cannot sort by {sort!r}; sorts are: {', '.join(queries.SORTS)}")
    offset, limit = max(int(offset), 0), max(int(limit), 1)
    m = timetravel.moment(store, run_id, at)
    wanted = _statuses(status)
    statuses = [wanted] if isinstance(wanted, str) else wanted
    if sort == "duration":
        total, offset, numbers = _by_duration(store, m, step, statuses, text, offset, limit, desc)
    else:
        total, offset, numbers = m.page(step, statuses, text, offset, limit, desc)
    rows = timetravel.rows_at(store, m, step, numbers)
    shown = []
    for r in rows:
        v = instance_view(r, user_key=user_keys)
        v.update(verbs=[], logged={}, code_changed=False)
        shown.append(v)
    return {"step": step, "offset": offset, "limit": limit, "total": total, "rows": shown, "at": at_view(m)}


_FINISHED = frozenset({"succeeded", "failed", "skipped", "cancelled"})


def _by_duration(store: Store, m: timetravel.Moment, step: str, statuses: list[str] | None, text: str | None,
                 offset: int, limit: int, desc: bool) -> tuple[int, int, list[int]]:
    """A page of the past by duration: the instances finished then first, by their last attempt's
    duration (as stored now: one re-run since shows its new duration), then the others, in item order."""
    numbers = m.numbers(step, statuses, text)
    took = replay.durations(store, m.index.run_id, step)
    names = m.index.statuses_named(m.status, numbers)
    items = m.index.items

    def order(i: int) -> tuple[int, float, int]:
        d = took.get(items[i]) if names[i] in _FINISHED else None
        return (1, 0.0, items[i]) if d is None else (0, -d if desc else d, items[i])

    numbers.sort(key=order)
    total = len(numbers)
    if offset >= total and total:
        offset = (total - 1) // limit * limit
    return total, offset, numbers[offset:offset + limit]


MARK_KINDS = ("run_created", "taken_over", "code_changed", "expanded", "command", "deadline_exceeded",
              "scheduler_stopped", *timetravel.RUN_KINDS)
"""The run-level events a history scrubber marks (with the instances' pauses and failures)."""
MARKS_MAX = 500
"""Marks of each sort :func:`history_marks` returns at most (the first ones)."""


def history_marks(store: Store, run_id: str, limit: int = MARKS_MAX) -> dict[str, Any]:
    """What a history scrubber marks on its range 1..``total``: the run-level events (creation, status
    changes, takeovers, code changes, expansions, operator commands) and the instances' pauses and
    failures, the first *limit* of each, oldest first: ``{"total", "marks": [{"n", "id", "kind", "step",
    "key", "ts"}], "truncated"}`` (``truncated``: some pauses or failures were left out). A long history
    starts being folded in the background (``timetravel.prepare``): the scrubber's first move is then fast."""
    store.run_row(run_id)  # an unknown run is an error
    b = replay.bounds(store, run_id)
    runs = replay.marks(store, run_id, MARK_KINDS, limit)
    insts = replay.marks(store, run_id, ("paused", "failed"), limit)
    found = sorted([*runs, *insts], key=lambda r: int(r["id"]))
    timetravel.prepare(store, run_id, b.total)  # a long history is folded ahead of the scrubber's first move
    return {
        "total": b.total,
        "marks": [{"n": int(r["n"]), "id": int(r["id"]), "kind": r["kind"], "step": r["step"], "key": r["key"],
                   "ts": iso(r["ts"])} for r in found],
        "truncated": len(insts) >= limit or len(runs) >= limit,
    }
