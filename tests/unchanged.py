"""What a refused verb must leave as it was: the state a test snapshots before and compares after."""
from __future__ import annotations

from typing import Any

import nbflow


def snapshot(run: nbflow.Run) -> tuple[Any, ...]:
    """Every instance row, the non-command events, the breakpoints and the run's status."""
    store = run.store
    instances = [dict(r) for r in store.instance_rows(run.id)]
    events = [(e["kind"], e["step"], e["key"], e["data"]) for e in store.event_rows(run.id) if e["kind"] != "command"]
    bps = [dict(r) for r in store.breakpoint_rows(run.workflow_name, run.id)]
    return instances, events, bps, str(run.status)
