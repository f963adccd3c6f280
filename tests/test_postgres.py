"""The store on a real PostgreSQL server: the same code, migrations and ownership rules as on SQLite.

The server is a throwaway cluster started for the session (tests/pg.py); each test gets a fresh
database. Processes are real subprocesses (the helpers of test_attach.py).
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from test_attach import CHILD, V1, V1_TOTAL, Child, N, import_flow, owner, poll
from test_breakpoints import etl as bp_etl
from test_runs import etl

from nbflow import Run, Store
from nbflow.store import schema

WAIT_S = 30


@pytest.fixture
def pg_flow_dir(tmp_path: Path, pg_url: str) -> Path:
    """tmp_path holding flow.py, the child script and an open gate file; NBFLOW_DB is the PostgreSQL URL."""
    (tmp_path / "flow.py").write_text(V1)
    (tmp_path / "child.py").write_text(CHILD)
    (tmp_path / "gate").touch()
    return tmp_path


def _start(flow_dir: Path, breakpoints: list[str], gate: str = "gate") -> tuple[Child, str]:
    import json

    opts = {"params": {"n": N, "gate": str(flow_dir / gate)}, "breakpoints": breakpoints}
    child = Child(flow_dir, "start", json.dumps(opts))
    return child, child.line()


def test_etl_example_computes_the_report_on_each_store(store_url: str) -> None:
    run = etl(store_url).run(params={"n": 1000})
    assert run.wait(timeout=WAIT_S) == "succeeded"
    assert run.output("report") == sum(i * i for i in range(1000))
    assert len(run.instances("enrich", status="succeeded")) == 1000


def test_migrations_on_postgres_produce_the_schema_of_the_metadata(pg_url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    store = Store.open(pg_url)
    with store.engine.connect() as conn:
        ctx = MigrationContext.configure(conn)
        assert ctx.get_current_revision() == schema.SCHEMA_HEAD
        assert compare_metadata(ctx, schema.metadata) == []


def test_breakpoints_pause_resume_one_key_and_audited_set_inputs(pg_url: str) -> None:
    run = bp_etl(pg_url).run(params={"n": 50}, breakpoints=["enrich"])
    assert run.wait(timeout=WAIT_S) == "paused"
    assert len(run.instances("enrich", status="paused")) == 50

    run.resume("enrich", key=17)
    poll(lambda: run.instance("enrich", 17).status == "succeeded", "enrich:17 to succeed")
    assert [v.key for v in run.instances("enrich") if v.status != "paused"] == [17]
    assert run.instance("report").status == "pending"

    run.set_inputs("enrich", key=3, item={"id": 3, "x": 100}, reason="typo in row 3")
    run.resume()
    assert run.wait(timeout=WAIT_S) == "succeeded"
    assert run.instance("enrich", 3).output == {"id": 3, "x": 100, "y": 10000}
    changed = [e for e in run.history() if e.kind == "inputs_changed"]
    assert [e.key for e in changed] == [3]
    assert changed[0].data["old"] == {"item": {"id": 3, "x": 3}}
    assert run.output("report") == sum(i * i for i in range(50)) - 9 + 10000


def test_attach_after_the_owner_was_killed_reruns_no_committed_instance(pg_flow_dir: Path, pg_url: str) -> None:
    child, run_id = _start(pg_flow_dir, [], gate="closed-gate")
    stored = Run(Store.open(pg_url), run_id)
    poll(lambda: stored.instance("total").status == "running", "total to be running")
    child.kill()
    assert owner(pg_url, run_id)[1] == child.pid

    (pg_flow_dir / "closed-gate").touch()
    run = import_flow(pg_flow_dir).wf.attach(run_id)
    assert run.wait(timeout=WAIT_S) == "succeeded"
    assert run.output("total") == V1_TOTAL
    assert run.instance("total").attempts == 2
    assert [v.attempts for v in run.instances("square")] == [1] * N
    assert run.instance("load").attempts == 1


def test_two_processes_racing_to_take_over_an_interrupted_run_exactly_one_wins(pg_flow_dir: Path, pg_url: str) -> None:
    child, run_id = _start(pg_flow_dir, ["total"])
    assert child.line() == "paused"
    child.release()

    go = pg_flow_dir / "go"
    racers = [Child(pg_flow_dir, "attach", run_id, str(go), hold=True) for _ in range(2)]
    try:
        assert [r.line() for r in racers] == ["ready", "ready"]
        go.touch()
        results = {r.pid: r.line() for r in racers}
        winners = [pid for pid, text in results.items() if text == "won"]
        assert len(winners) == 1 and sum(t.startswith("lost") for t in results.values()) == 1, results
        assert owner(pg_url, run_id)[1] == winners[0]
        assert [e.kind for e in Run(Store.open(pg_url), run_id).history()].count("taken_over") == 1
    finally:
        for r in racers:
            r.release()


WRITER = """
import sys
from nbflow import Run, Store
url, run_id, who, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
run = Run(Store.open(url), run_id)
for i in range(n):
    run.set_inputs("total", gate=f"/nonexistent/{who}-{i}", reason=f"{who}-{i}")
print("done", flush=True)
"""


def test_concurrent_command_writers_never_lose_a_command(pg_flow_dir: Path, pg_url: str) -> None:
    """4 processes x 25 commands to a paused run: every command row is written and applied."""
    writers, per = 4, 25
    wf = import_flow(pg_flow_dir).wf
    run = wf.run(params={"n": N, "gate": str(pg_flow_dir / "gate")}, breakpoints=["total"])
    assert run.wait(timeout=WAIT_S) == "paused"
    (pg_flow_dir / "writer.py").write_text(WRITER)
    procs = [
        subprocess.Popen([sys.executable, str(pg_flow_dir / "writer.py"), pg_url, run.id, f"w{w}", str(per)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=pg_flow_dir)
        for w in range(writers)
    ]
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0] * writers, [err for _, err in outs]

    c = schema.commands
    store = Store.open(pg_url)

    def applied() -> list[sa.Row]:
        with store.engine.connect() as conn:
            return list(conn.execute(sa.select(c.c.reason, c.c.result).where(c.c.run_id == run.id,
                                                                               c.c.applied_at.is_not(None))))

    poll(lambda: len(applied()) == writers * per, "every command to be applied")
    rows = applied()
    assert sorted(r.reason for r in rows) == sorted(f"w{w}-{i}" for w in range(writers) for i in range(per))
    assert {r.result for r in rows} == {"ok"}
    changed = [e for e in run.history() if e.kind == "inputs_changed"]
    assert len(changed) == writers * per

    run.set_inputs("total", gate=str(pg_flow_dir / "gate"), reason="real gate")
    run.resume()
    assert run.wait(timeout=WAIT_S) == "succeeded"
    assert run.output("total") == V1_TOTAL


def test_runs_storing_the_same_large_output_at_once_both_succeed(pg_url: str) -> None:
    """A value over 256 KiB lives in an artifact file with one blob row, shared by every run that stores it."""
    from nbflow import Workflow

    wf = Workflow("big", pg_url)

    @wf.step
    def big(n: int) -> str:
        return "x" * n

    runs = [wf.run(params={"n": 300_000}) for _ in range(3)]
    assert [r.wait(timeout=WAIT_S) for r in runs] == ["succeeded"] * 3
    assert {len(r.output("big")) for r in runs} == {300_000}
    with Store.open(pg_url).engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(schema.blobs)).scalar() == 1
