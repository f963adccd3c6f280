"""Shared fixtures: every test gets its own SQLite file, and no scheduler outlives its test."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from nbflow.engine.lifecycle import stop_all


@pytest.fixture
def db_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh store file; NBFLOW_DB points at it too, so nothing lands in the working directory."""
    url = f"sqlite:///{tmp_path / 'nbflow.db'}"
    monkeypatch.setenv("NBFLOW_DB", url)
    return url


@pytest.fixture(autouse=True)
def _stop_schedulers() -> Iterator[None]:
    yield
    stop_all(timeout=10)


# -- PostgreSQL (issue 8): a throwaway server for the session, a fresh database per test ---------
@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[object]:
    """A PostgreSQL cluster on loopback; skipped (with the reason) off CI when it cannot start, fails in CI."""
    import os

    from pg import PostgresUnavailable, start_cluster

    try:
        cluster = start_cluster()
    except PostgresUnavailable as exc:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is required in CI: {exc}")
        print(f"\nskipping PostgreSQL tests: {exc}")
        pytest.skip(f"PostgreSQL unavailable: {exc}")
    yield cluster
    cluster.stop()


@pytest.fixture
def pg_url(pg_cluster: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh PostgreSQL database (artifacts under tmp_path); NBFLOW_DB points at it too."""
    url = pg_cluster.create_database()  # type: ignore[attr-defined]
    monkeypatch.setenv("NBFLOW_DB", url)
    monkeypatch.setenv("NBFLOW_ARTIFACTS", str(tmp_path / "artifacts"))
    return url


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest) -> str:
    """The same test over a SQLite file and a PostgreSQL database."""
    return request.getfixturevalue("db_url" if request.param == "sqlite" else "pg_url")
