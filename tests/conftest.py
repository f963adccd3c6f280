"""Shared fixtures: every test gets its own SQLite file, and no scheduler outlives its test."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nbflow import Run
from nbflow.engine.lifecycle import stop_all

pytest_plugins = ["api_server", "browser.fixtures"]
"""Fixtures that several modules use: ``server`` (a real jupyter server for the REST API) and, for the real-browser
tests, ``jupyter``, ``browser`` and ``page``."""

ENGINES = [f"{store}-{executor}" for store in ("sqlite", "postgres") for executor in ("threads", "processes", "dask")]
"""Store x executor: a module marked ``every_engine`` runs each of its ``db_url`` tests on all six."""


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "every_engine: run the module's db_url tests on every store x executor")
    config.addinivalue_line("markers", "threads_only(reason): the test observes the thread executor itself")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if metafunc.definition.get_closest_marker("every_engine") and "db_url" in metafunc.fixturenames:
        only = metafunc.definition.get_closest_marker("threads_only")
        engines = [e for e in ENGINES if not only or e.endswith("-threads")]
        metafunc.parametrize("engine", engines, indirect=True)


@pytest.fixture
def engine(request: pytest.FixtureRequest) -> str:
    """``store-executor``; outside the matrix, SQLite and threads."""
    return getattr(request, "param", "sqlite-threads")


@pytest.fixture
def db_url(engine: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> str:
    """A fresh store (a SQLite file, or a PostgreSQL database in the matrix); NBFLOW_DB points at it
    too, so nothing lands in the working directory. In the matrix, NBFLOW_EXECUTOR picks the executor."""
    store, executor = engine.split("-")
    if executor != "threads":
        monkeypatch.setenv("NBFLOW_EXECUTOR", executor)
    if executor == "dask":
        monkeypatch.setenv("NBFLOW_DASK_ADDRESS", request.getfixturevalue("dask_address"))
    if store == "postgres":
        return str(request.getfixturevalue("pg_url"))
    url = f"sqlite:///{tmp_path / 'nbflow.db'}"
    monkeypatch.setenv("NBFLOW_DB", url)
    return url


@pytest.fixture(scope="session")
def dask_address() -> Iterator[str]:
    """A Dask LocalCluster for the session: 2 worker processes with 2 threads each."""
    from distributed import LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=2, processes=True, dashboard_address=":0")
    yield cluster.scheduler_address
    cluster.close()


@pytest.fixture(autouse=True)
def _stop_schedulers() -> Iterator[None]:
    from nbflow.store import store as store_module

    with store_module._cache_lock:
        before = set(store_module._cache)
    yield
    stop_all(timeout=10)
    # Close the pooled connections of the stores this test opened (each its own SQLite file or PostgreSQL
    # database): ~5 descriptors a store, which 900 tests would leave open past select()'s limit of 1,024.
    with store_module._cache_lock:
        for key in [k for k in store_module._cache if k not in before]:
            store_module._cache.pop(key).dispose()


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
    return str(request.getfixturevalue("db_url" if request.param == "sqlite" else "pg_url"))


@pytest.fixture
def widgets() -> Iterator[Any]:
    """``widgets(run, **traits)``: a RunWidget on *run*, closed when the test ends."""
    from nbflow.notebook.widget import RunWidget

    made: list[RunWidget] = []

    def make(run: Run, **kwargs: Any) -> RunWidget:
        w = RunWidget(run, **kwargs)
        made.append(w)
        return w

    yield make
    for w in made:
        w.close()
