"""A long run's folded history is kept in the store (issue 18's cold ``run.at()``): the next process that
travels reads it back instead of folding every event again, extends it with the events since, and folds
again when the row is missing, damaged or cannot be written (a read-only store). Real runs, real SQLite
files, a real second Python process."""
from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import nbflow
from nbflow import timetravel
from nbflow.store import replay
from tests.sidefx import Trail
from tests.test_time_travel import WAIT_S, failing, gated

pytestmark = pytest.mark.timeout(120)

# Every event of a travel, as a user reads it: the run's status, the counts, each instance's status.
MOMENTS = """
import json, sys
import nbflow
from nbflow import timetravel
from nbflow.store import replay

read = []
heads = replay.heads
def counted(store, run_id, after_id, upto):
    rows = heads(store, run_id, after_id, upto)
    read.append(len(rows))
    return rows
replay.heads = counted
timetravel.PREPARE_EVENTS = int(sys.argv[2])
run = nbflow.runs(sys.argv[1], limit=1)[0]
seen = []
for n in range(1, len(run.history()) + 1):
    then = run.at(n)
    seen.append([str(then.status), then.counts(), sorted(f"{i.step}:{i.key}={i.status}" for i in then.instances())])
print(json.dumps({"moments": seen, "heads_read": sum(read)}))
"""


@pytest.fixture
def kept(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Histories of 3 events or more are kept (100,000-item runs have 200,000: the tests use small ones)."""
    monkeypatch.setattr(timetravel, "PREPARE_EVENTS", 3)
    timetravel._INDEXES.clear()
    yield
    timetravel._INDEXES.clear()


def moments(run: nbflow.Run) -> list[Any]:
    out = []
    for n in range(1, len(run.history()) + 1):
        then = run.at(n)
        out.append([str(then.status), then.counts(), sorted(f"{i.step}:{i.key}={i.status}" for i in then.instances())])
    return out


def another_process(db_url: str) -> dict[str, Any]:
    """What a new Python process sees traveling through the store's one run (and how many event heads it read)."""
    out = subprocess.run([sys.executable, "-c", MOMENTS, db_url, str(timetravel.PREPARE_EVENTS)],
                         capture_output=True, text=True, check=True, timeout=25)
    return dict(json.loads(out.stdout))


def kept_rows(db_url: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db_url.removeprefix("sqlite:///")) as conn:
        return conn.execute("SELECT run_id, upto, length(data) FROM travel_folds").fetchall()


def test_the_next_process_reads_the_kept_fold_and_sees_the_same_moments(kept: None, db_url: str,
                                                                         tmp_path: Path) -> None:
    run = failing(db_url, Trail(str(tmp_path / "trail")))
    here = moments(run)
    assert [(r[0], r[1]) for r in kept_rows(db_url)] == [(run.id, run.history()[-1].id)]

    there = another_process(db_url)

    assert there["moments"] == here
    assert there["heads_read"] == 0  # no event folded again
    assert here[next(n for n, e in enumerate(run.history()) if e.kind == "run_paused")][0] == "paused"


def test_a_kept_fold_is_extended_with_the_events_after_it(kept: None, db_url: str) -> None:
    run = gated(db_url, "before")
    paused_at = len(run.history())
    assert str(run.at(paused_at).instance("total").status) == "paused"
    upto = kept_rows(db_url)[0][1]
    run.resume("total")
    assert run.wait(timeout=WAIT_S) == "succeeded"
    since = [e for e in run.history() if e.id > upto]

    there = another_process(db_url)

    assert there["heads_read"] == len(since)  # the new events only
    assert there["moments"] == moments(run)
    assert there["moments"][-1][2] == ["numbers:None=succeeded", "total:None=succeeded"]


@pytest.mark.parametrize("damage", ["replaced", "last_byte", "cut_short", "in_the_middle"])
def test_a_damaged_kept_fold_is_folded_again(kept: None, db_url: str, tmp_path: Path, damage: str) -> None:
    run = failing(db_url, Trail(str(tmp_path / "trail")))
    here = moments(run)
    path = db_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as conn:
        data = bytearray(conn.execute("SELECT data FROM travel_folds").fetchone()[0])
        if damage == "replaced":
            data = bytearray(b"\x00\x01 not a fold")
        elif damage == "cut_short":
            del data[-5:]
        else:  # a flipped byte: in the last snapshot (decompressed only when a moment needs it), or midway
            data[-1 if damage == "last_byte" else len(data) // 2] ^= 0xFF
        conn.execute("UPDATE travel_folds SET data = ?", (bytes(data),))

    there = another_process(db_url)

    assert there["moments"] == here
    assert there["heads_read"] == len([e for e in run.history() if e.kind != "logpoint"])
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT data FROM travel_folds").fetchone()[0] != bytes(data)  # kept again


def test_a_store_whose_write_lock_is_held_travels_without_waiting_for_it(kept: None, db_url: str,
                                                                         tmp_path: Path) -> None:
    run = failing(db_url, Trail(str(tmp_path / "trail")))
    here = moments(run)
    timetravel._INDEXES.clear()
    with sqlite3.connect(db_url.removeprefix("sqlite:///")) as conn:
        conn.execute("DELETE FROM travel_folds")
        conn.commit()
        conn.execute("BEGIN IMMEDIATE")  # another connection's transaction holds the write lock
        try:
            there = another_process(db_url)  # within its timeout, well under the store's 30 s busy timeout
        finally:
            conn.rollback()

    assert there["moments"] == here
    assert kept_rows(db_url) == []


def test_a_read_only_store_travels_without_keeping_a_fold(kept: None, db_url: str, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(timetravel, "PREPARE_EVENTS", 10**9)
    run = failing(db_url, Trail(str(tmp_path / "trail")))
    here = moments(run)
    timetravel._INDEXES.clear()
    monkeypatch.setattr(timetravel, "PREPARE_EVENTS", 3)
    path = db_url.removeprefix("sqlite:///")
    read_only = nbflow.Run(nbflow.Store.open(f"sqlite:///file:{path}?mode=ro&uri=true"), run.id)
    tries: list[int] = []
    save = replay.save_fold
    def counted(*args: Any, **kwargs: Any) -> bool:
        tries.append(1)
        return save(*args, **kwargs)

    monkeypatch.setattr(replay, "save_fold", counted)

    assert moments(read_only) == here
    assert moments(read_only) == here
    assert kept_rows(db_url) == []
    assert len(tries) == 1  # tried once, not at every travel


def test_the_kept_fold_is_a_cache_of_what_folding_gives(kept: None, db_url: str, tmp_path: Path) -> None:
    run = failing(db_url, Trail(str(tmp_path / "trail")))
    ix, b = timetravel.index(run.store, run.id)
    row = run.store.run_row(run.id)
    back = timetravel._Index.unpacked(ix.packed(), run.id, run.store.definition(row["workflow"], row["version"]), b)
    assert back is not None
    for n in range(b.total + 1):
        assert back.statuses_at(b.low + n) == ix.statuses_at(b.low + n)
    assert back.number == ix.number and [back.chain(i) for i in range(len(ix.items))] == [
        ix.chain(i) for i in range(len(ix.items))]
    assert replay.saved_fold(run.store, run.id, timetravel.FOLD_FORMAT) is not None
