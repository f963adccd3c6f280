"""The "Resume here" endpoint: ``POST /nbflow/api/runs/<id>/takeover`` starts a worker process that takes over a
run whose owner is gone (a papermill batch run that paused and exited, a crashed kernel) with the
code pinned in the store, and drives it: commands from the sidebar are then applied live.

The worker (``python -m nbflow.server.worker RUN``, the server's store in ``NBFLOW_DB``) runs until
the run is finished, or has stayed paused with nothing happening for :data:`IDLE_EXIT_S`; then it
gives the run up (it stays resumable). Its output goes to ``<store dir>/workers/<run>.log`` when the
store is a SQLite file (else it is discarded).
"""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from jupyter_server.auth.decorator import authorized
from tornado import web

from .. import views
from ..engine.lifecycle import check_supplied
from ..errors import DefinitionError
from ..states import RunStatus
from ..store.codec import private_dirs
from .handlers import ApiHandler, _http, _translate

IDLE_EXIT_S = 1800.0
"""A worker whose run stays paused this long with no change gives it up and exits."""

STARTED_WAIT_S = 20.0
"""How long the request waits for the worker to hold the run before answering 202."""


def _log_path(url: str, run_id: str) -> Path | None:
    from ..store.urls import sqlite_file

    db = sqlite_file(url)
    return None if db is None else db.resolve().parent / "workers" / f"{run_id}.log"


def start_worker(url: str, run_id: str, actor: str | None = None) -> subprocess.Popen[bytes]:
    """Start ``python -m nbflow.server.worker RUN`` on store *url*, detached from the server."""
    env = dict(os.environ, NBFLOW_DB=url, PYTHONUNBUFFERED="1")
    if actor:
        env["NBFLOW_ACTOR"] = actor
    log = _log_path(url, run_id)
    out: Any = subprocess.DEVNULL
    if log is not None:
        private_dirs(log.parent)
        # Owner-only, like the store: a worker's log holds step output.
        out = os.fdopen(os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab")
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "nbflow.server.worker", run_id],
            env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    finally:
        if out is not subprocess.DEVNULL:
            out.close()
    threading.Thread(target=proc.wait, name=f"nbflow-worker-reaper-{proc.pid}", daemon=True).start()  # no zombie
    return proc


class TakeoverHandler(ApiHandler):
    """``POST /nbflow/api/runs/<id>/takeover``: "Resume here". 409 when the run is finished or its
    owner is alive; else a worker process takes it over: 200 ``{"state": "started", "pid", "owner"}``
    once it holds the run, 202 ``{"state": "starting"}`` if it has not yet."""

    @web.authenticated
    @authorized
    @_translate
    async def post(self, run_id: str) -> None:
        def check() -> None:
            row = self.store.run_row(run_id)
            if RunStatus(row["status"]).terminal:
                raise _http(409, f"run {run_id} is {row['status']}; there is nothing to resume")
            owner = views.owner_view(row)
            if owner["alive"]:
                raise _http(409, f"run {run_id} is driven by a live process ({owner['text']}); send it commands")
            try:
                check_supplied(self.store, row)
            except DefinitionError as exc:  # the worker would refuse it too, in its log only
                raise _http(409, str(exc)) from None

        await asyncio.to_thread(check)
        proc = start_worker(self.settings["nbflow_db"], run_id, self.actor)
        deadline = time.monotonic() + STARTED_WAIT_S
        while time.monotonic() < deadline:
            row = await asyncio.to_thread(self.store.run_row, run_id)
            owner = views.owner_view(row)
            if owner["alive"] and owner["pid"] == proc.pid:
                self.reply({"state": "started", "run": run_id, "pid": proc.pid, "owner": owner})
                return
            code = proc.poll()
            if code is not None:
                raise _http(409, f"the worker for run {run_id} exited at once (code {code}); see the server's "
                                 "nbflow worker log")
            await asyncio.sleep(0.1)
        self.reply({"state": "starting", "run": run_id, "pid": proc.pid}, 202)


def main(argv: list[str] | None = None) -> int:
    """The worker: take RUN over with its pinned code and drive it until finished or idle."""
    from ..engine.lifecycle import stop_all
    from ..run import resume_pinned
    from ..store import Store

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m nbflow.server.worker RUN", file=sys.stderr)
        return 2
    run_id = args[0]
    store = Store.open(os.environ.get("NBFLOW_DB"))
    run = resume_pinned(store, run_id)
    print(f"nbflow worker {os.getpid()}: took over run {run_id}", flush=True)
    token, idle_since = None, time.monotonic()
    try:
        while True:
            status = run.wait(timeout=5.0)
            if status.terminal:
                break
            now = views.change_token(store, run_id)
            if now != token:
                token, idle_since = now, time.monotonic()
            elif status != RunStatus.RUNNING and time.monotonic() - idle_since > IDLE_EXIT_S:
                print(f"nbflow worker: run {run_id} idle for {IDLE_EXIT_S:.0f}s; giving it up", flush=True)
                break
            if status != RunStatus.RUNNING:
                time.sleep(1.0)
    finally:
        stop_all()
    print(f"nbflow worker: run {run_id} is {run.status}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
