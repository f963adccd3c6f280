"""Who drives a run: this process's schedulers by run id, and whether a run's owner is alive.

Apart from :mod:`.lifecycle` (which registers the schedulers it starts here) so that reading a run's
owner, as ``nbflow runs`` and every view do, imports neither the scheduler nor the pinning of code."""
from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .._util import HOST, now, pid_alive, process_started_at
from ..states import RunStatus

if TYPE_CHECKING:
    from .scheduler import Scheduler

LEASE_S = 15.0
"""A run whose owner on another host has not heartbeat for this long is interrupted."""

_live: dict[str, Scheduler] = {}
_live_lock = threading.Lock()


def live(run_id: str) -> Scheduler | None:
    """The scheduler driving *run_id* in this process, if any."""
    sched = _live.get(run_id)
    return sched if sched is not None and sched.alive() else None


def owner_alive(row: Mapping[str, Any]) -> bool:
    """Whether the run's owner still drives it. Same host: by pid (at once); other hosts: by lease."""
    if not row["owner_id"]:
        return False
    if row["owner_host"] == HOST:
        if row["owner_pid"] == os.getpid():
            sched = live(row["id"])
            return sched is not None and sched.owner_id == row["owner_id"]
        pid = int(row["owner_pid"] or 0)
        if not pid_alive(pid):
            return False
        # A process that started after the owner's last heartbeat is not the owner: its pid was reused
        # (a restarted container or machine hands out the same low pids again). The 2 s allow for
        # start times known to the second.
        started = process_started_at(pid)
        return started is None or row["heartbeat_at"] is None or started <= row["heartbeat_at"] + 2.0
    return row["heartbeat_at"] is not None and now() - row["heartbeat_at"] < LEASE_S


def owner_text(row: Mapping[str, Any]) -> str:
    """Who drives the run, for people: ``pid 123 on host``; ``nobody`` for an unfinished run no
    process holds (a batch run that paused and exited); ``none: the run is finished`` once it is."""
    if RunStatus(row["status"]).terminal:
        return "none: the run is finished"
    return f"pid {row['owner_pid']} on {row['owner_host']}" if row["owner_id"] else "nobody"
