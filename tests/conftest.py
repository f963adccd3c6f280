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
