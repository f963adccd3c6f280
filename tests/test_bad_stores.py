"""Bad stores fail in one line: a corrupt, truncated or read-only file, a folder, a path under a file and a
newer schema raise :class:`nbflow.StoreError` naming the file and what to do, and the CLI prints that line
(exit 1, no traceback). Each bad store here is a real file made the way users end up with one."""
from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

import nbflow
from nbflow import StoreError, Workflow
from tests.test_cli import cli

STORE_SCRIPT = """
import sys

import nbflow


def hello():
    return "hi"


for i in range(int(sys.argv[2])):
    wf = nbflow.Workflow(f"wf{i}", store=sys.argv[1])
    wf.step(hello)
    assert wf.run().wait(timeout=60) == "succeeded"
"""


def real_store(path: Path, runs: int = 30) -> Path:
    """A store at *path* with *runs* finished runs, made by a process that has exited (as users have one)."""
    proc = subprocess.run([sys.executable, "-c", STORE_SCRIPT, f"sqlite:///{path}", str(runs)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    with contextlib.closing(sqlite3.connect(path)) as conn:  # the WAL copied into the file, as a clean close does
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert not path.with_name(path.name + "-wal").exists()
    return path


def garbage(tmp_path: Path) -> str:
    path = tmp_path / "nbflow.db"
    path.write_bytes(b"these bytes are not a SQLite database\n" * 300)
    return f"sqlite:///{path}"


def truncated(tmp_path: Path) -> str:
    path = real_store(tmp_path / "nbflow.db")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return f"sqlite:///{path}"


def read_only(tmp_path: Path) -> str:
    """SQLite's read-only URL: the tests run as root, for whom chmod 0444 does not stop writes."""
    path = real_store(tmp_path / "nbflow.db", runs=1)
    return f"sqlite:///file:{path}?mode=ro&uri=true"


def folder(tmp_path: Path) -> str:
    (tmp_path / "nbflow.db").mkdir()
    return f"sqlite:///{tmp_path / 'nbflow.db'}"


def under_a_file(tmp_path: Path) -> str:
    (tmp_path / "notes.txt").write_text("a regular file\n")
    return f"sqlite:///{tmp_path / 'notes.txt' / 'runs' / 'nbflow.db'}"


def newer_schema(tmp_path: Path) -> str:
    path = real_store(tmp_path / "nbflow.db", runs=1)
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("UPDATE alembic_version SET version_num = '0042_from_the_future'")
    return f"sqlite:///{path}"


def listing(folder: Path, sqlite_sides: bool = True) -> dict[str, bytes | None]:
    """Every path under *folder* with its bytes (None for a folder): to see that nothing changed.
    *sqlite_sides* False leaves out the -wal and -shm files SQLite makes even to read a store."""
    return {
        str(p.relative_to(folder)): None if p.is_dir() else p.read_bytes() for p in sorted(folder.rglob("*"))
        if sqlite_sides or not p.name.endswith(("-wal", "-shm"))
    }


def refused(make: Callable[[Path], str], tmp_path: Path, use: Callable[[str], object]) -> StoreError:
    """The StoreError that *use* raises on the store *make* builds; the folder is unchanged by it."""
    url = make(tmp_path)
    before = listing(tmp_path)
    with pytest.raises(StoreError) as err:
        use(url)
    assert "\n" not in str(err.value)
    assert listing(tmp_path) == before
    return err.value


def run_hello(url: str) -> nbflow.Run:
    wf = Workflow("x", store=url)

    @wf.step
    def hello() -> str:
        return "hi"

    return wf.run()


# ---------------------------------------------------------------------------------- Python
def test_a_file_that_is_not_a_database_is_refused_naming_it(tmp_path: Path) -> None:
    err = refused(garbage, tmp_path, lambda url: nbflow.runs(store=url))
    assert str(err).startswith(f"the store {tmp_path / 'nbflow.db'} is not a SQLite database (SQLite: file is not")
    assert "move this file away to start a new store" in str(err)
    assert isinstance(err.__cause__, sqlite3.DatabaseError)


def test_a_truncated_store_is_refused_as_damaged(tmp_path: Path) -> None:
    err = refused(truncated, tmp_path, lambda url: nbflow.runs(store=url))
    assert str(err).startswith(f"the store {tmp_path / 'nbflow.db'} is damaged: it is truncated (")
    assert "restore it from a backup" in str(err)


def test_a_read_only_store_can_be_read_but_starting_a_run_is_refused(tmp_path: Path) -> None:
    url = read_only(tmp_path)
    assert [r.workflow_name for r in nbflow.runs(store=url)] == ["wf0"]
    with pytest.raises(StoreError) as err:
        run_hello(url)
    message = str(err.value)
    assert message.startswith(f"the store {tmp_path / 'nbflow.db'} is read-only (SQLite: attempt to write a readonly")
    assert "make the file and its folder writable" in message and "\n" not in message
    assert isinstance(err.value.__cause__, sqlite3.OperationalError)
    assert [r.workflow_name for r in nbflow.runs(store=url)] == ["wf0"]


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                    reason="root writes through chmod 0444; the read-only store is tested with SQLite's mode=ro URL")
def test_a_store_chmod_read_only_is_refused_for_a_new_run(tmp_path: Path) -> None:
    path = real_store(tmp_path / "nbflow.db", runs=1)
    path.chmod(0o444)
    tmp_path.chmod(0o555)
    try:
        with pytest.raises(StoreError, match=re.escape(f"the store {path} ")):
            run_hello(f"sqlite:///{path}")
    finally:
        tmp_path.chmod(0o755)
        path.chmod(0o600)


def test_a_read_only_url_to_a_missing_store_creates_nothing(tmp_path: Path) -> None:
    url = f"sqlite:///file:{tmp_path / 'new' / 'nbflow.db'}?mode=ro&uri=true"
    with pytest.raises(StoreError, match=r"does not exist, and mode=ro opens an existing store only"):
        nbflow.runs(store=url)
    assert list(tmp_path.iterdir()) == []


def test_a_folder_at_the_store_path_is_refused_with_a_file_path_to_use(tmp_path: Path) -> None:
    err = refused(folder, tmp_path, run_hello)
    where = tmp_path / "nbflow.db"
    assert str(err) == (f"the store {where} is a folder, not a database file; point --db or NBFLOW_DB at a file, "
                        f"e.g. sqlite:///{where / 'nbflow.db'}")


def test_a_store_path_under_a_regular_file_is_refused_and_creates_nothing(tmp_path: Path) -> None:
    err = refused(under_a_file, tmp_path, run_hello)
    assert str(err) == (f"cannot create the store {tmp_path / 'notes.txt' / 'runs' / 'nbflow.db'}: "
                        f"{tmp_path / 'notes.txt'} is a file, not a folder; choose a path in a folder")


def test_a_store_with_an_unknown_schema_revision_is_refused_and_left_alone(tmp_path: Path) -> None:
    err = refused(newer_schema, tmp_path, run_hello)
    assert str(err).startswith(f"the store {tmp_path / 'nbflow.db'} has schema revision '0042_from_the_future', "
                               "written by a newer nbflow")


def test_damage_found_after_opening_is_the_same_one_line_error(tmp_path: Path) -> None:
    """The instances table's first page overwritten: the store opens and lists runs, then the query
    that meets the damage (Python and the CLI) says so in one line."""
    path = real_store(tmp_path / "nbflow.db", runs=1)
    with contextlib.closing(sqlite3.connect(path)) as conn:
        page = conn.execute("PRAGMA page_size").fetchone()[0]
        root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'instances'").fetchone()[0]
    with open(path, "r+b") as fh:
        fh.seek((root - 1) * page)
        fh.write(b"\xff" * page)
    url = f"sqlite:///{path}"
    (run,) = nbflow.runs(store=url)
    with pytest.raises(StoreError, match="^" + re.escape(f"the store {path} is damaged")):
        run.instances("hello")
    res = cli(url, "show", run.id)
    assert (res.returncode, res.stderr.count("\n"), "Traceback" in res.stderr) == (1, 1, False)
    assert res.stderr.startswith(f"Error: the store {path} is damaged")


# ---------------------------------------------------------------------------------- CLI
@pytest.mark.parametrize(("make", "args", "says"), [
    (garbage, ["runs"], "is not a SQLite database"),
    (truncated, ["runs"], "is damaged"),
    (read_only, ["breakpoint", "add", "hello", "--workflow", "wf0"], "is read-only"),
    (folder, ["runs"], "is a folder"),
    (under_a_file, ["runs"], "is a file, not a folder"),
    (newer_schema, ["runs", "-o", "json"], "has schema revision '0042_from_the_future'"),
], ids=["garbage", "truncated", "read-only", "folder", "under-a-file", "newer-schema"])
def test_the_cli_says_what_is_wrong_with_the_store_in_one_line(
    tmp_path: Path, make: Callable[[Path], str], args: list[str], says: str
) -> None:
    url = make(tmp_path)
    sides = make is not read_only
    before = listing(tmp_path, sides)
    res = cli(url, *args)
    assert res.returncode == 1, res.stderr
    assert res.stdout == ""
    (line,) = res.stderr.splitlines()
    assert line.startswith("Error: ") and says in line
    assert str(tmp_path / ("notes.txt" if make is under_a_file else "nbflow.db")) in line
    assert "Traceback" not in res.stderr
    assert listing(tmp_path, sides) == before
