"""The store: file permissions, Alembic schema, refusing a newer schema, codecs, artifacts,
NBFLOW_DB, and outputs committed together with their instance's success."""
from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from http import HTTPStatus
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

import nbflow
from nbflow import Store, StoreError, Workflow
from nbflow.store import schema

TIMEOUT = 60


def db_path(db_url: str) -> Path:
    return Path(db_url.removeprefix("sqlite:///"))


def rows(db_url: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    """Read the store with the stdlib driver, as an outside tool would."""
    with sqlite3.connect(db_path(db_url)) as conn:
        return conn.execute(sql, args).fetchall()


def hello_run(name: str, store: str | None = None) -> nbflow.Run:
    """A finished run of a one-step workflow *name* (``hello`` returns "hi") in *store* (None: the default)."""
    wf = Workflow(name, store)

    @wf.step
    def hello() -> str:
        return "hi"

    run = wf.run()
    assert run.wait(timeout=TIMEOUT) == "succeeded"
    return run


def test_store_file_is_readable_by_its_owner_only(db_url: str) -> None:
    Store.open(db_url)
    mode = stat.S_IMODE(os.stat(db_path(db_url)).st_mode)
    assert mode == 0o600, oct(mode)


def test_store_side_files_and_artifacts_are_owner_only(db_url: str) -> None:
    wf = Workflow("private", db_url)

    @wf.step
    def secret() -> str:
        return "s" * (300 * 1024)  # large enough for an artifact file

    run = wf.run()
    assert run.wait(timeout=TIMEOUT) == "succeeded"
    folder = db_path(db_url).parent
    files = [p for p in folder.rglob("*") if p.is_file()]
    assert any(p.parent.name == "sha256" for p in files)
    assert {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in files} == {p.name: oct(0o600) for p in files}


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The most permissive umask (0): whatever nbflow makes owner-only, it makes so itself."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> str:
    return oct(stat.S_IMODE(path.stat().st_mode))


def test_folders_a_new_store_creates_are_owner_only_and_the_users_own_keep_their_mode(
    tmp_path: Path, open_umask: None
) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o755)
    store = home / "project" / ".nbflow"
    wf = Workflow("private_folders", f"sqlite:///{store / 'nbflow.db'}")

    @wf.step
    def secret() -> str:
        return "s" * (300 * 1024)  # large enough for an artifact file

    assert wf.run().wait(timeout=TIMEOUT) == "succeeded"
    created = [home / "project", store, store / "artifacts", store / "artifacts" / "sha256"]
    assert [mode(p) for p in created] == [oct(0o700)] * len(created)
    assert mode(home) == oct(0o755)
    files = [p for p in store.rglob("*") if p.is_file()]
    assert any(p.parent.name == "sha256" for p in files)
    assert {p.name: mode(p) for p in files} == {p.name: oct(0o600) for p in files}


def test_migrations_build_exactly_the_declared_schema(db_url: str) -> None:
    store = Store.open(db_url)
    with store.engine.connect() as conn:
        ctx = MigrationContext.configure(conn)
        assert ctx.get_current_revision() == schema.SCHEMA_HEAD
        assert compare_metadata(ctx, schema.metadata) == []


def test_reopening_a_current_store_keeps_its_data(db_url: str) -> None:
    run = hello_run("kept", db_url)
    fresh = Store(db_url)  # a second open of the same file, as another process would do
    try:
        assert [r["id"] for r in fresh.run_rows()] == [run.id]
    finally:
        fresh.dispose()


def test_a_process_opening_a_store_at_the_current_schema_does_not_import_alembic(db_url: str) -> None:
    """Reading the schema's revision is one query; importing alembic for it cost each command ~0.1 s."""
    hello_run("head", db_url)
    code = ("import sys; from nbflow import Store; s = Store(sys.argv[1]); "
            "print(len(s.run_rows()), 'alembic' in sys.modules)")

    out = subprocess.run([sys.executable, "-c", code, db_url], capture_output=True, text=True, check=True)

    assert out.stdout.split() == ["1", "False"]


def _snapshot(path: Path) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    with sqlite3.connect(path) as conn:
        return (
            conn.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall(),
            conn.execute("SELECT version_num FROM alembic_version").fetchall(),
            conn.execute("SELECT * FROM future_table").fetchall(),
        )


def test_store_from_a_newer_schema_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "newer.db"
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY)")
        conn.execute("INSERT INTO alembic_version VALUES ('0042_from_the_future')")
        conn.execute("CREATE TABLE future_table (id INTEGER PRIMARY KEY, note TEXT)")
        conn.execute("INSERT INTO future_table (note) VALUES ('keep me')")
    before = _snapshot(path)
    url = f"sqlite:///{path}"

    with pytest.raises(StoreError) as err:
        Store.open(url)
    message = str(err.value)
    assert "0042_from_the_future" in message
    assert "newer" in message
    assert str(path) in message

    with pytest.raises(StoreError):  # the public entry points give the same clear error
        nbflow.runs(url)
    assert _snapshot(path) == before


def test_large_value_goes_to_an_artifact_file_and_reads_back(db_url: str) -> None:
    wf = Workflow("big", db_url)
    big = {"rows": ["x" * 1000 + str(i) for i in range(300)]}  # about 300 KiB as JSON

    @wf.step
    def produce() -> dict[str, list[str]]:
        return big

    @wf.step
    def measure(produce: dict[str, list[str]]) -> int:
        return sum(len(r) for r in produce["rows"])

    run = wf.run()
    assert run.wait(timeout=TIMEOUT) == "succeeded"
    [(codec, ref)] = rows(db_url, "SELECT output_codec, output FROM instances WHERE step = 'produce'")
    ref = bytes(ref).decode()
    assert codec == "ref"
    assert ref.startswith("res://sha256/")
    digest = ref.removeprefix("res://sha256/")
    artifact = db_path(db_url).parent / "artifacts" / "sha256" / digest
    assert artifact.is_file() and artifact.stat().st_size > 256 * 1024
    assert rows(db_url, "SELECT codec FROM blobs WHERE hash = ?", digest) == [("json",)]
    assert run.output("produce") == big
    assert run.output("measure") == sum(len(r) for r in big["rows"])


def test_foreach_items_returning_the_same_large_value_at_once_all_succeed(db_url: str) -> None:
    """Eight workers write the same artifact together: each gets the one file, none trips on another's."""
    wf = Workflow("same_big", db_url)

    @wf.step
    def items() -> list[int]:
        return list(range(8))

    @wf.foreach("items")
    def blow_up(item: int, n: int) -> str:
        return "x" * n

    for n in range(3_000_000, 3_000_003):  # three runs, each writing a value not stored yet
        run = wf.run(params={"n": n}, max_workers=8)
        assert run.wait(timeout=TIMEOUT) == "succeeded", [i.error for i in run.instances("blow_up")]
    folder = db_path(db_url).parent / "artifacts" / "sha256"
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) == sorted(
        r[0] for r in rows(db_url, "SELECT hash FROM blobs")
    )
    assert len(rows(db_url, "SELECT hash FROM blobs")) == 3
    assert [p.name for p in folder.iterdir() if p.name.endswith(".tmp")] == []


def test_small_value_stays_in_the_database(db_url: str) -> None:
    wf = Workflow("small", db_url)

    @wf.step
    def produce() -> str:
        return "x" * 1000

    run = wf.run()
    assert run.wait(timeout=TIMEOUT) == "succeeded"
    assert rows(db_url, "SELECT output_codec FROM instances") == [("json",)]
    assert not (db_path(db_url).parent / "artifacts").exists()


def test_codec_is_recorded_json_or_pickle(db_url: str) -> None:
    wf = Workflow("codecs", db_url)

    @wf.step
    def as_json() -> dict[str, Any]:
        return {"a": [1, 2.5, None, "t"], "ok": True}

    @wf.step
    def as_pickle() -> set[int]:
        return {1, 2}

    @wf.step
    def tuple_too() -> tuple[int, int]:
        return (1, 2)

    @wf.step
    def nothing() -> None:
        return None

    run = wf.run()
    assert run.wait(timeout=TIMEOUT) == "succeeded"
    codecs = dict(rows(db_url, "SELECT step, output_codec FROM instances"))
    assert codecs == {"as_json": "json", "as_pickle": "pickle", "tuple_too": "pickle", "nothing": "json"}
    [(text,)] = rows(db_url, "SELECT output FROM instances WHERE step = 'as_json'")
    assert bytes(text).decode() == '{"a":[1,2.5,null,"t"],"ok":true}'  # readable by any tool


def test_dict_subclasses_and_enums_keep_their_type_downstream_and_in_the_store(db_url: str) -> None:
    """JSON would read a defaultdict back as a plain dict: on another process (or after a resume)
    the step below would then fail on the missing key."""
    wf = Workflow("subclasses", db_url, executor="processes")

    @wf.step
    def groups() -> defaultdict[str, list[int]]:
        return defaultdict(list, {"a": [1]})

    @wf.step
    def counts() -> Counter[str]:
        return Counter("abb")

    @wf.step
    def status() -> HTTPStatus:
        return HTTPStatus.OK

    @wf.step
    def use(groups: defaultdict[str, list[int]]) -> list[int]:
        groups["missing"].append(2)
        return groups["missing"]

    run = wf.run()
    assert run.wait(timeout=TIMEOUT) == "succeeded", run.instance("use").error
    assert run.output("use") == [2]
    reread = nbflow.Run(Store.open(db_url), run.id)
    assert type(reread.output("counts")) is Counter and reread.output("counts")["b"] == 2
    assert reread.output("status") is HTTPStatus.OK
    assert dict(rows(db_url, "SELECT step, output_codec FROM instances")) == {
        "groups": "pickle", "counts": "pickle", "status": "pickle", "use": "json"}


def test_nbflow_db_is_used_when_no_store_is_given(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    assert os.environ["NBFLOW_DB"] == db_url
    run = hello_run("from-env")
    assert rows(db_url, "SELECT id, workflow, status FROM runs") == [(run.id, "from-env", "succeeded")]
    assert [r.id for r in nbflow.runs()] == [run.id]
    assert not (workdir / ".nbflow").exists()


def test_a_new_store_has_small_pages_and_an_existing_one_keeps_its_own(tmp_path: Path) -> None:
    """1 KiB pages make a step's commit cheaper (bench/ B1); a file made with other pages still works."""
    Store.open(f"sqlite:///{tmp_path / 'new.db'}")
    old = tmp_path / "old.db"
    with sqlite3.connect(old) as conn:
        conn.execute("PRAGMA page_size=4096")
        conn.execute("CREATE TABLE notes (text TEXT)")
    assert hello_run("on-old-pages", f"sqlite:///{old}").output("hello") == "hi"
    page_size = "PRAGMA page_size"
    assert rows(f"sqlite:///{tmp_path / 'new.db'}", page_size) == [(1024,)]
    assert rows(f"sqlite:///{old}", page_size) == [(4096,)]


def test_a_path_in_nbflow_db_is_refused_with_the_url_to_write_instead(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NBFLOW_DB", str(tmp_path / "n.db"))
    with pytest.raises(StoreError, match=r"NBFLOW_DB must be a SQLAlchemy URL, got '/.*n\.db'.*sqlite:///"):
        nbflow.runs()
    assert list(tmp_path.iterdir()) == []


def test_a_status_filter_that_is_not_a_status_is_an_error_not_an_empty_list(db_url: str) -> None:
    run = hello_run("filters", db_url)
    with pytest.raises(nbflow.NbflowError, match="'succeded' is not a status of a run; use one of: running, paused"):
        nbflow.runs(db_url, status="succeded")
    with pytest.raises(nbflow.NbflowError, match="'done' is not a status of an instance; use one of: pending"):
        run.instances("hello", status=["succeeded", "done"])
    assert [r.id for r in nbflow.runs(db_url, status="succeeded")] == [run.id]
    assert [i.status for i in run.instances("hello", status="succeeded")] == ["succeeded"]


def test_default_store_is_under_dot_nbflow_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NBFLOW_DB", raising=False)
    monkeypatch.chdir(tmp_path)
    run = hello_run("default-place")
    url = f"sqlite:///{tmp_path / '.nbflow' / 'nbflow.db'}"
    assert rows(url, "SELECT id FROM runs") == [(run.id,)]


def test_output_is_committed_with_the_move_to_succeeded(db_url: str) -> None:
    """Watch the store from outside while a run writes it: no output without success, no success without output."""
    wf = Workflow("atomic", db_url)

    @wf.step
    def items() -> list[int]:
        return list(range(300))

    @wf.foreach("items")
    def square(item: int) -> int:
        time.sleep(0.001)
        return item * item

    @wf.step
    def total(square: list[int]) -> int:
        return sum(square)

    run = wf.run(max_workers=4)
    snapshots = 0
    seen_statuses: set[str] = set()
    conn = sqlite3.connect(db_path(db_url), timeout=30)
    try:
        deadline = time.monotonic() + TIMEOUT
        while True:
            finished = rows(db_url, "SELECT status FROM runs")[0][0] != "running"
            state = conn.execute("SELECT status, output_codec, output FROM instances").fetchall()
            snapshots += 1
            for status, codec, output in state:
                seen_statuses.add(status)
                if status == "succeeded":
                    assert codec is not None and output is not None, "a succeeded instance without its output"
                else:
                    assert codec is None and output is None, f"an output on a {status} instance"
            if finished or time.monotonic() > deadline:
                break
    finally:
        conn.close()
    assert run.wait(timeout=TIMEOUT) == "succeeded"
    assert run.output("total") == sum(i * i for i in range(300))
    assert snapshots > 1 and "succeeded" in seen_statuses


def test_store_engine_uses_wal(db_url: str) -> None:
    store = Store.open(db_url)
    with store.engine.connect() as conn:
        assert conn.execute(sa.text("PRAGMA journal_mode")).scalar() == "wal"


def test_processes_opening_a_fresh_store_at_once_agree_on_one_schema_and_secret(
    store_url: str, tmp_path: Path
) -> None:
    """One process migrates the new store; the others wait for it, find the schema and share its secret."""
    from procs import run_at_once

    script = "import sys, nbflow; print(nbflow.Store.open(sys.argv[1]).secret.decode())"
    outs = run_at_once(script, [store_url], 6, tmp_path)
    assert len({out.strip() for out in outs}) == 1
    store = Store.open(store_url)
    assert store.secret.decode() == outs[0].strip()
    with store.engine.connect() as conn:
        assert MigrationContext.configure(conn).get_current_revision() == schema.SCHEMA_HEAD
