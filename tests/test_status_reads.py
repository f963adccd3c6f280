"""Reading a run's status never waits for the scheduler's turn: not from user code the scheduler runs
(a foreach key function), not while a flush waits for the database's write lock."""
from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import nbflow


@pytest.mark.timeout(60)  # before the fix this deadlocked: the key function waited for its own turn
def test_a_key_function_that_reads_the_run_status_does_not_stall_the_run(tmp_path: Path) -> None:
    wf = nbflow.Workflow("keyfn", store=f"sqlite:///{tmp_path / 'key.db'}")
    holder: list[nbflow.Run] = []
    seen: list[str] = []
    started = threading.Event()

    @wf.step
    def load() -> list[int]:
        started.wait(10)
        return [1, 2, 3]

    def key(item: int) -> int:
        if holder:
            seen.append(str(holder[0].status))  # user code run inside the scheduler's turn
        return item

    @wf.foreach("load", key=key)
    def enrich(item: int) -> int:
        return item * 2

    run = wf.run()
    holder.append(run)
    started.set()
    assert run.wait(30) == "succeeded"
    assert seen and set(seen) == {"running"}
    assert run.output("enrich") == [2, 4, 6]


def test_wait_and_status_answer_while_a_flush_waits_for_the_write_lock(tmp_path: Path) -> None:
    db = tmp_path / "lat.db"
    wf = nbflow.Workflow("lat", store=f"sqlite:///{db}")
    go = threading.Event()

    @wf.step
    def a() -> int:
        go.wait(10)
        return 1

    @wf.step
    def b(a: int) -> int:
        return a + 1

    run = wf.run()
    locked, release = threading.Event(), threading.Event()

    def hold() -> None:  # another process writing (the CLI, a second kernel)
        con = sqlite3.connect(db, timeout=30)
        con.execute("BEGIN IMMEDIATE")
        locked.set()
        release.wait(30)
        con.rollback()
        con.close()

    holder = threading.Thread(target=hold, daemon=True)
    holder.start()
    assert locked.wait(10)
    go.set()  # a finishes: the flush of its output now waits for the write lock
    time.sleep(0.5)
    answers: dict[str, Any] = {}

    def read() -> None:
        answers["wait"] = run.wait(timeout=0.2)
        answers["status"] = run.status

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(5)  # the lock is held until release: a read that waited for the turn would still hang
    stuck = reader.is_alive()
    release.set()
    holder.join(10)
    assert not stuck, "run.wait(timeout=0.2) or run.status waited for the scheduler's flush"
    assert answers == {"wait": "running", "status": "running"}
    assert run.wait(30) == "succeeded"
