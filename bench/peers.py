"""nbflow beside DBOS Transact (Python, SQLite system database in WAL mode, synchronous=NORMAL as
nbflow's stores) on B1, B2 and B3, in
interleaved rounds, each measurement in a fresh process, with a floor (a raw sqlite3 transaction)
measured in the same rounds; prints medians and the ratios DBOS / nbflow.

DBOS is an optional install, not in the project's lock and never run by the tests; put it in a
venv of its own and name that venv's python (nbflow runs under this one):

    python3 -m venv /tmp/peers && /tmp/peers/bin/pip install -r bench/requirements-peers.txt
    python3 bench/peers.py --peer-python /tmp/peers/bin/python --rounds 5

- B1: a 1,000-step sequential chain of trivial steps, per step. nbflow: from ``wf.run()`` returning
  to the end (``b1_chain.py``; with run creation too); DBOS: a workflow calling a ``@DBOS.step``
  1,000 times, from ``start_workflow`` to its result.
- B2: a foreach of trivial items, end to end. nbflow: ``b2_foreach.py``; DBOS: a workflow that
  enqueues one child workflow (calling one step) per item on a queue and sums their results.
- B3: take over a 1,000-step chain killed (SIGKILL) in step 500, in a new process, to the next step
  starting. nbflow: ``wf.attach()`` with the store open (``b3_chain.py``); DBOS: ``DBOS.launch()``,
  which recovers the pending workflow (it includes DBOS's own start-up).
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlite_floor import floor_us

HERE = Path(__file__).resolve().parent
KILLED_AT = 500


# ------------------------------------------------------------------------------------ DBOS side
def _wal(path: Path) -> None:
    """A SQLite file in WAL mode (it stays so), as nbflow's stores are: DBOS then creates its tables."""
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode=WAL")
    con.close()


def _dbos_app(url: str) -> tuple[Any, dict[str, Any]]:
    """DBOS configured on *url* with B1's chain, B2's fan-out and B3's blocking chain registered. Its
    SQLite connections commit with ``synchronous=NORMAL``, as nbflow's do (in WAL mode a commit then
    does not wait for the disk; DBOS's default, FULL, does)."""
    import sqlalchemy as sa
    from dbos import DBOS

    @sa.event.listens_for(sa.engine.Engine, "connect")
    def _normal(dbapi_conn: Any, _record: Any) -> None:
        if isinstance(dbapi_conn, sqlite3.Connection):
            dbapi_conn.execute("PRAGMA synchronous=NORMAL")

    fns: dict[str, Any] = {"first": []}

    @DBOS.step()
    def inc(x: int) -> int:
        return x + 1

    @DBOS.workflow()
    def chain(n: int) -> int:
        x = 0
        for _ in range(n):
            x = inc(x)
        return x

    @DBOS.step()
    def square(i: int) -> int:
        return i * i

    @DBOS.workflow()
    def item(i: int) -> int:
        return square(i)

    @DBOS.workflow()
    def fan(n: int) -> int:
        handles = [fns["queue"].enqueue(item, i) for i in range(n)]
        return sum(h.get_result() for h in handles)

    @DBOS.step()
    def inc_or_block(x: int) -> int:
        if x == KILLED_AT:
            if os.environ.get("PEERS_OWNER"):
                time.sleep(3600)
            if not fns["first"]:
                fns["first"].append(time.perf_counter())
        return x + 1

    @DBOS.workflow()
    def blocking_chain(n: int) -> int:
        x = 0
        for _ in range(n):
            x = inc_or_block(x)
        return x

    fns.update(chain=chain, fan=fan, blocking_chain=blocking_chain)
    DBOS(config={"name": "peers", "system_database_url": url, "log_level": "ERROR"})
    return DBOS, fns


def dbos_b1(d: Path, n: int) -> float:
    _wal(d / "b1.db")
    dbos, fns = _dbos_app(f"sqlite:///{d}/b1.db")
    dbos.launch()
    t0 = time.perf_counter()
    result = dbos.start_workflow(fns["chain"], n).get_result()
    elapsed = time.perf_counter() - t0
    assert result == n
    dbos.destroy()
    return elapsed / n * 1e6


def dbos_b2(d: Path, n: int) -> float:
    _wal(d / "b2.db")
    dbos, fns = _dbos_app(f"sqlite:///{d}/b2.db")
    dbos.launch()
    fns["queue"] = dbos.register_queue("b2", worker_concurrency=8, polling_interval_sec=0.01)
    t0 = time.perf_counter()
    result = dbos.start_workflow(fns["fan"], n).get_result()
    elapsed = time.perf_counter() - t0
    assert result == sum(i * i for i in range(n))
    dbos.destroy()
    return elapsed


def dbos_owner(url: str, n: int) -> None:
    dbos, fns = _dbos_app(url)
    dbos.launch()
    handle = dbos.start_workflow(fns["blocking_chain"], n)
    print(handle.get_workflow_id(), flush=True)
    handle.get_result()


def dbos_b3(d: Path, n: int) -> float:
    db = d / "b3.db"
    _wal(db)
    url = f"sqlite:///{db}"
    child = subprocess.Popen([sys.executable, __file__, "--dbos-owner", "--db", url, "--steps", str(n)],
                             env={**os.environ, "PEERS_OWNER": "1"}, stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    wf_id = child.stdout.readline().strip()
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        con = sqlite3.connect(db, timeout=30)
        try:
            done = con.execute("SELECT count(*) FROM operation_outputs WHERE workflow_uuid=?", (wf_id,)).fetchone()[0]
        except sqlite3.OperationalError:
            done = 0
        con.close()
        if done >= KILLED_AT:
            break
        time.sleep(0.05)
    time.sleep(0.2)  # the owner is inside step KILLED_AT
    child.send_signal(signal.SIGKILL)
    child.wait()
    dbos, fns = _dbos_app(url)
    t0 = time.perf_counter()
    dbos.launch()  # recovers the pending workflow
    while not fns["first"]:
        time.sleep(0.0002)
    first = fns["first"][0] - t0
    assert dbos.retrieve_workflow(wf_id).get_result() == n
    dbos.destroy()
    return first * 1e3


# ------------------------------------------------------------------------------------ nbflow side
def nbflow_measure(bench: str, n: int) -> dict[str, float]:
    sys.path.insert(0, str(HERE))
    if bench == "b1":
        from b1_chain import nbflow_once

        total, execution = nbflow_once(n)
        return {"value": execution * 1e6, "with_run_creation": total * 1e6}
    if bench == "b2":
        from b2_foreach import once

        with tempfile.TemporaryDirectory() as d:
            return {"value": once(n, f"sqlite:///{d}/b2.db")}
    from b3_chain import once as b3_once

    return {"value": b3_once(n, False)["first_step_ms"]}


def dbos_measure(bench: str, n: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        value = {"b1": dbos_b1, "b2": dbos_b2, "b3": dbos_b3}[bench](d, n)
    return {"value": value}


# ------------------------------------------------------------------------------------ the rounds
UNITS = {"b1": "us_per_step", "b2": "seconds", "b3": "ms_to_next_step"}


def _one(python: str, system: str, bench: str, n: int, env: dict[str, str]) -> dict[str, float]:
    out = subprocess.run([python, __file__, "--once", system, bench, "--steps", str(n)], check=False,
                         capture_output=True, text=True, env=env, cwd=tempfile.gettempdir(), timeout=1800)
    if out.returncode != 0:
        raise SystemExit(f"{system} {bench} failed:\n{out.stderr[-3000:]}")
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--peer-python", default=sys.executable, help="a python with dbos installed")
    ap.add_argument("--benches", default="b1,b2,b3")
    ap.add_argument("--steps", type=int, default=1000, help="B1 and B3 chain length")
    ap.add_argument("--items", type=int, default=10_000, help="B2 items")
    ap.add_argument("--once", nargs=2, metavar=("SYSTEM", "BENCH"), help=argparse.SUPPRESS)
    ap.add_argument("--dbos-owner", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--db", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.dbos_owner:
        dbos_owner(args.db, args.steps)
        return
    if args.once:
        system, bench = args.once
        measure = nbflow_measure if system == "nbflow" else dbos_measure
        print(json.dumps(measure(bench, args.steps)), flush=True)
        return
    benches = args.benches.split(",")
    env = {**os.environ, "PYTHONPATH": str(HERE.parent)}
    rows: dict[tuple[str, str], list[dict[str, float]]] = {}
    floors: list[float] = []
    start_load = [round(x, 2) for x in os.getloadavg()]
    for r in range(args.rounds):
        floors.append(floor_us())
        for bench in benches:
            n = args.items if bench == "b2" else args.steps
            systems = [("nbflow", sys.executable), ("dbos", args.peer_python)]
            for system, python in systems if r % 2 == 0 else systems[::-1]:
                rows.setdefault((system, bench), []).append(_one(python, system, bench, n, env))
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    model = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                  if ln.startswith("model name")), "?")
    report: dict[str, Any] = {
        "bench": "peers", "rounds": args.rounds, "steps": args.steps, "items": args.items,
        "machine": {"nproc": os.cpu_count(), "cpu": model, "loadavg_start": start_load,
                    "loadavg_end": [round(x, 2) for x in os.getloadavg()]},
        "dbos_store": "SQLite file, journal_mode=WAL, synchronous=NORMAL (as nbflow's)",
        "floor_sqlite_txn_us_median": round(statistics.median(floors), 1), "results": {},
    }
    for bench in benches:
        nb = [x["value"] for x in rows[("nbflow", bench)]]
        db = [x["value"] for x in rows[("dbos", bench)]]
        entry: dict[str, Any] = {
            "unit": UNITS[bench],
            "nbflow_median": round(statistics.median(nb), 3), "dbos_median": round(statistics.median(db), 3),
            "nbflow_all": [round(x, 3) for x in nb], "dbos_all": [round(x, 3) for x in db],
            "dbos_over_nbflow_median_of_rounds": round(statistics.median(b / a for a, b in zip(nb, db)), 1),
        }
        if bench == "b1":
            entry["nbflow_with_run_creation_median"] = round(
                statistics.median(x["with_run_creation"] for x in rows[("nbflow", bench)]), 1)
            entry["nbflow_over_floor"] = round(statistics.median(nb) / statistics.median(floors), 2)
        report["results"][bench] = entry
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
