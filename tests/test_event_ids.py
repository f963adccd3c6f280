"""Event ids are per run (``runs.seq * EVENT_ID_SPAN + n``): a store from the previous schema is
renumbered without losing or reordering anything, concurrent creators get distinct run numbers,
and a scheduler whose ids were taken by another writer renumbers its events instead of failing."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext

import nbflow
from nbflow import Store, Workflow
from nbflow.store import schema

WAIT_S = 60
SPAN = schema.EVENT_ID_SPAN
MIGRATIONS = Path(nbflow.__file__).parent / "store" / "migrations"


def _alembic(url: str, verb: str, revision: str) -> None:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            cfg = Config()
            cfg.set_main_option("script_location", str(MIGRATIONS))
            cfg.attributes["connection"] = conn
            getattr(command, verb)(cfg, revision)
    finally:
        engine.dispose()


def _store_at_0002(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """A store as nbflow wrote it before per-run ids: two runs whose events interleave (global ids).
    Returns each run's events as (kind, step, data, ts) in the order they were written."""
    _alembic(url, "upgrade", "0002")
    engine = sa.create_engine(url)
    written: dict[str, list[tuple[Any, ...]]] = {"older": [], "newer": []}
    try:
        with engine.begin() as conn:
            for n, run_id in enumerate(["older", "newer"]):
                conn.execute(sa.text(
                    "INSERT INTO runs (id, workflow, version, options, status, created_at, updated_at) "
                    "VALUES (:id, 'wf', 'v1', '{}', 'succeeded', :ts, :ts)"
                ), {"id": run_id, "ts": 1000.0 + n})
            for i in range(6):  # older, newer, older, ... as two runs at once would have written them
                run_id = ["older", "newer"][i % 2]
                row = ("started" if i < 4 else "succeeded", f"s{i}", json.dumps({"attempt": 1, "i": i}), 2000.0 + i)
                conn.execute(sa.text(
                    "INSERT INTO events (run_id, step, kind, data, ts) VALUES (:run, :step, :kind, :data, :ts)"
                ), {"run": run_id, "step": row[1], "kind": row[0], "data": row[2], "ts": row[3]})
                written[run_id].append(row)
    finally:
        engine.dispose()
    return written


def _history(store: Store, run_id: str) -> list[tuple[Any, ...]]:
    return [(e["kind"], e["step"], e["data"], e["ts"]) for e in store.event_rows(run_id)]


def test_a_store_from_the_previous_schema_keeps_every_event_in_order(store_url: str) -> None:
    written = _store_at_0002(store_url)

    store = Store.open(store_url)  # migrates to head on open

    with store.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), schema.metadata) == []
        seqs = dict(conn.execute(sa.select(schema.runs.c.id, schema.runs.c.seq)).all())
        if conn.dialect.name == "postgresql":  # named as a fresh table's would be, for later migrations
            assert conn.execute(sa.text(
                "SELECT conname FROM pg_constraint WHERE conrelid = 'events'::regclass AND contype = 'p'"
            )).scalar() == "events_pkey"
    assert seqs == {"older": 1, "newer": 2}  # numbered in creation order
    for run_id, seq in seqs.items():
        assert _history(store, run_id) == written[run_id]
        ids = [e["id"] for e in store.event_rows(run_id)]
        assert ids == [seq * SPAN + n for n in range(1, len(ids) + 1)]
        assert [e["id"] for e in store.event_rows(run_id, after_id=ids[0])] == ids[1:]


def test_runs_after_a_migration_get_the_next_number_and_their_own_range(db_url: str) -> None:
    _store_at_0002(db_url)
    wf = Workflow("after_migration", db_url)

    @wf.step
    def one() -> int:
        return 1

    run = wf.run()
    assert run.wait(timeout=WAIT_S) == "succeeded"
    ids = [e.id for e in run.history()]
    assert ids == [3 * SPAN + n for n in range(1, len(ids) + 1)]
    assert [e.kind for e in run.history()][:3] == ["run_created", "started", "succeeded"]


def test_downgrade_to_the_previous_schema_keeps_the_events(store_url: str) -> None:
    written = _store_at_0002(store_url)
    Store.open(store_url).dispose()

    _alembic(store_url, "downgrade", "0002")

    engine = sa.create_engine(store_url)
    try:
        with engine.connect() as conn:
            for run_id, rows in written.items():
                got = conn.execute(sa.text(
                    "SELECT kind, step, data, ts FROM events WHERE run_id = :r ORDER BY id"
                ), {"r": run_id}).all()
                assert [tuple(r) for r in got] == rows
    finally:
        engine.dispose()
    store = Store(store_url)  # and up again
    try:
        assert [(e["kind"], e["step"], e["data"], e["ts"]) for e in store.event_rows("older")] == written["older"]
        with store.engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn), schema.metadata) == []
    finally:
        store.dispose()


def test_a_scheduler_whose_event_ids_were_taken_renumbers_and_goes_on(db_url: str) -> None:
    """An old owner still writing after a takeover takes ids this owner was about to use."""
    wf = Workflow("overtaken", db_url)

    @wf.step
    def first() -> int:
        return 1

    @wf.step
    def second(first: int) -> int:
        return first + 1

    run = wf.run(breakpoints=["second"])
    assert run.wait(timeout=WAIT_S) == "paused"
    store = Store.open(db_url)
    with store.engine.begin() as conn:
        taken = store.last_event_id(run.id, conn) + 1
        for n in range(3):  # the ids this owner would give its next events
            conn.execute(schema.events.insert().values(
                id=taken + n, run_id=run.id, kind="note", actor="old-owner", ts=0.0, data=None,
            ))

    run.resume("second")

    assert run.wait(timeout=WAIT_S) == "succeeded"
    assert run.output("second") == 2
    history = run.history()
    ids = [e.id for e in history]
    assert ids == sorted(set(ids))
    assert [e.kind for e in history].count("note") == 3
    assert [e.kind for e in history if e.id > taken + 2][-1] == "run_succeeded"


_CREATE = """
import sys, nbflow
wf = nbflow.Workflow("together", sys.argv[1])
@wf.step
def one():
    return 1
ids = [wf.run().id for _ in range(3)]
print(" ".join(ids))
"""


def test_processes_creating_runs_at_once_get_distinct_numbers(store_url: str, tmp_path: Path) -> None:
    from procs import run_at_once

    store = Store.open(store_url)  # the schema exists; the processes race only to create runs
    outs = run_at_once(_CREATE, [store_url], 8, tmp_path)
    run_ids = [r for out in outs for r in out.split()]
    with store.engine.connect() as conn:
        seqs = conn.execute(sa.select(schema.runs.c.seq).where(schema.runs.c.id.in_(run_ids))).scalars().all()
    assert sorted(seqs) == list(range(1, 25))
    for run_id in run_ids:
        assert store.event_rows(run_id)[0]["kind"] == "run_created"


def test_deliveries_to_a_finished_run_at_once_are_each_refused_and_recorded(store_url: str) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from nbflow.commands import submit_signal
    from nbflow.signals import SignalRefused

    wf = Workflow("finished", store_url)

    @wf.step
    def only() -> int:
        return 1

    run = wf.run()
    assert run.wait(timeout=WAIT_S) == "succeeded"
    store = Store.open(store_url)

    def deliver(n: int) -> str:
        try:
            submit_signal(store, f"token-{n}", run.id, "only", -1, "done", {"n": n})
        except SignalRefused:
            return "refused"
        return "accepted"

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(deliver, range(8)))

    assert outcomes == ["refused"] * 8
    refused = [e for e in run.history() if e.kind == "signal_refused"]
    assert len(refused) == 8
    assert len({e.id for e in run.history()}) == len(run.history())
