"""The stdlib floor the step benches are read against: one raw sqlite3 WAL transaction (a 200-byte row,
``synchronous=NORMAL``, as nbflow's stores), what a step's commit cannot beat. No nbflow import, so a
bench's parent process can measure it beside the trees it runs in subprocesses."""
from __future__ import annotations

import sqlite3
import tempfile
import time
from pathlib import Path


def floor_once(n: int) -> float:
    """Seconds per transaction over *n* transactions in a fresh WAL file."""
    with tempfile.TemporaryDirectory() as d:
        con = sqlite3.connect(Path(d) / "floor.db", isolation_level=None)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=NORMAL")
        con.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)")
        row = b"x" * 200
        t0 = time.perf_counter()
        for i in range(n):
            con.execute("BEGIN")
            con.execute("INSERT INTO t (id, v) VALUES (?, ?)", (i, row))
            con.execute("COMMIT")
        elapsed = time.perf_counter() - t0
        con.close()
        return elapsed / n


def floor_us(n: int = 1000) -> float:
    """:func:`floor_once` in microseconds."""
    return floor_once(n) * 1e6
