"""JSON views of stored runs, shared by every surface (the CLI's ``-o json``, the widget, the
Jupyter server extension). They only read the store, through its query helpers; the field names
are public (docs/cli.md documents each one): add fields freely, never rename or drop one."""
from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import Any

from ._util import jsonable
from .breakpoints import Breakpoint
from .commands import allowed_verbs
from .engine.lifecycle import owner_alive, owner_text
from .run import TASK_ITEM, Run
from .states import InstanceStatus, RunStatus
from .store import Store

STATUSES: tuple[str, ...] = tuple(s.value for s in InstanceStatus)
"""Every instance status, in the order of DESIGN.md section 3 (the keys of ``counts``)."""

BREAK_ON_ERROR_ID = 0
"""The id that stands for the run's ``break_on_error`` flag in an instance's ``held_by``."""


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


class _Status:
    """Duck-typed stand-in for the scheduler's instance, for :func:`nbflow.commands.allowed_verbs`."""

    __slots__ = ("pause_reason", "status")

    def __init__(self, status: str, pause_reason: str | None) -> None:
        self.status = InstanceStatus(status)
        self.pause_reason = pause_reason


def verbs(status: str, pause_reason: str | None) -> list[str]:
    """The operator verbs an instance in this state accepts (as the owner would judge them)."""
    return allowed_verbs(_Status(status, pause_reason))  # type: ignore[arg-type]


def instance_view(r: Mapping[str, Any]) -> dict[str, Any]:
    """One instance row as JSON (no values: inputs and outputs can be large or pickled)."""
    return {
        "step": r["step"],
        "item": None if r["item"] == TASK_ITEM else r["item"],
        "key": r["key"],
        "status": r["status"],
        "attempt": r["attempt"],
        "pause_reason": r["pause_reason"],
        "error": {"type": r["error_type"], "message": r["error_message"] or ""} if r["error_type"] else None,
        "held_by": json.loads(r["held_by"]) if r["held_by"] else [],
        "verbs": verbs(r["status"], r["pause_reason"]),
        "started_at": iso(r["started_at"]),
        "finished_at": iso(r["finished_at"]),
    }


def breakpoint_view(row: Mapping[str, Any]) -> dict[str, Any]:
    """A breakpoint's definition (``nbflow breakpoint list``); :func:`run_view` adds its state in one run."""
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
    }


def run_summary(store: Store, row: Mapping[str, Any]) -> dict[str, Any]:
    """One line of ``nbflow runs``."""
    counts = Counter(r["status"] for r in store.instance_rows(row["id"]))
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
        "paused": counts.get(InstanceStatus.PAUSED.value, 0),
        "failed": counts.get(InstanceStatus.FAILED.value, 0),
        "progress": _progress(counts),
    }


def run_view(
    store: Store, run_id: str, *, status: Iterable[str] | None = None, limit: int | None = None
) -> dict[str, Any]:
    """The debug view of one run (``nbflow show RUN -o json``): DAG with counts, breakpoints with
    their state, instances. *status* and *limit* only narrow the ``instances`` list; counts,
    breakpoints and progress always cover the whole run."""
    row = store.run_row(run_id)
    definition = store.definition(row["workflow"], row["version"])
    order = list(definition["order"])
    rank = {s: n for n, s in enumerate(order)}
    rows = sorted(store.instance_rows(run_id), key=lambda r: (rank.get(r["step"], len(order)), r["item"]))
    owner = owner_view(row)
    options = json.loads(row["options"] or "{}")

    counts: dict[str, Counter[str]] = {s: Counter() for s in order}
    holding: dict[int, list[str | None]] = {}
    for r in rows:
        counts.setdefault(r["step"], Counter())[r["status"]] += 1
        if r["status"] == InstanceStatus.PAUSED and r["held_by"]:
            for bid in json.loads(r["held_by"]):
                holding.setdefault(bid, []).append(r["key"])

    nodes = []
    for s in order:
        spec = definition["steps"][s]
        c = counts[s]
        nodes.append({
            "step": s,
            "kind": spec["kind"],
            "foreach": spec.get("foreach"),
            "upstream": list(spec.get("upstream", [])),
            "counts": {st: c.get(st, 0) for st in STATUSES},
            "total": sum(c.values()),
        })

    breakpoints = []
    for b in store.breakpoint_rows(row["workflow"], run_id):
        view = breakpoint_view(b)
        held = holding.get(b["id"], [])
        view["state"] = "hit" if held else "set"
        view["holding"] = held
        breakpoints.append(view)

    wanted = None if status is None else {str(s) for s in status}
    chosen = [r for r in rows if wanted is None or r["status"] in wanted]
    listed = chosen if limit is None else chosen[: max(limit, 0)]
    all_counts: Counter[str] = Counter(r["status"] for r in rows)
    return {
        "id": row["id"],
        "workflow": row["workflow"],
        "version": row["version"],
        "status": row["status"],
        "interrupted": _interrupted(row, owner["alive"]),
        "owner": owner,
        "params": _params(store, row),
        "break_on_error": {
            "enabled": bool(options.get("break_on_error")),
            "holding": holding.get(BREAK_ON_ERROR_ID, []),
        },
        "created": iso(row["created_at"]),
        "updated": iso(row["updated_at"]),
        "finished": iso(row["finished_at"]),
        "forked_from": row["parent_run_id"],
        "progress": _progress(all_counts),
        "counts": {st: all_counts.get(st, 0) for st in STATUSES},
        "dag": {"nodes": nodes, "edges": [list(e) for e in definition["edges"]]},
        "breakpoints": breakpoints,
        "instances": [instance_view(r) for r in listed],
        "instances_omitted": len(rows) - len(listed),
    }


def history_view(store: Store, run_id: str, after: int = 0) -> list[dict[str, Any]]:
    """The run's events, oldest first (``nbflow history RUN -o json``)."""
    store.run_row(run_id)  # an unknown run is an error, not an empty history
    out = []
    for r in store.event_rows(run_id, after_id=after):
        try:
            data = json.loads(r["data"]) if r["data"] else {}
        except ValueError:
            data = {"text": r["data"]}
        out.append({
            "id": r["id"], "ts": iso(r["ts"]), "kind": r["kind"], "step": r["step"], "key": r["key"],
            "actor": r["actor"], "data": data,
        })
    return out


def paused_instances(run: Run) -> list[dict[str, Any]]:
    """The paused instances of a run, as JSON (what `nbflow resume` prints after driving a run)."""
    return [instance_view(r) for r in run.store.instance_rows(run.id, status=InstanceStatus.PAUSED)]


__all__ = [
    "BREAK_ON_ERROR_ID", "STATUSES", "breakpoint_view", "history_view", "instance_view", "iso", "owner_view",
    "paused_instances", "run_summary", "run_view", "verbs",
]
