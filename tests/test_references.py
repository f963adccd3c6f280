"""What nbflow's source cites exists: the repository files its docstrings and comments send a reader to,
and the Store methods they name; none points at a folder of the machine it was written on."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from nbflow import Store

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted((ROOT / "nbflow").rglob("*.py"))


def mentions(pattern: str) -> list[tuple[str, str]]:
    """``(file:line, match)`` for each match of *pattern* in nbflow's Python source."""
    found = []
    for path in SOURCES:
        for n, line in enumerate(path.read_text().splitlines(), 1):
            found += [(f"{path.relative_to(ROOT)}:{n}", m.group(0)) for m in re.finditer(pattern, line)]
    return found


def test_the_sources_are_found() -> None:
    assert len(SOURCES) > 20 and ROOT / "nbflow" / "store" / "store.py" in SOURCES


def test_every_repository_file_the_source_cites_exists() -> None:
    cited = mentions(r"(?<![\w/.<>-])(?:docs|tests|notebooks|scripts|binder|bench|js|labextension)/[\w./-]*\w")
    assert cited  # e.g. tests/test_store.py
    missing = [f"{where}: {path}" for where, path in cited if not (ROOT / path).exists()]
    assert not missing, f"cited but not in the repository: {missing}"


def test_every_store_method_the_source_names_exists() -> None:
    named = mentions(r"\bStore\.[A-Za-z_]\w*")
    assert named  # e.g. Store.open
    missing = [f"{where}: {name}" for where, name in named if not hasattr(Store, name.removeprefix("Store."))]
    assert not missing, f"named but Store has no such attribute: {missing}"


@pytest.mark.parametrize("folder", ["/work/", "/home/", "/Users/", "/root/", "/tmp/"])
def test_no_source_points_at_a_folder_outside_the_repository(folder: str) -> None:
    outside = mentions(rf"(?<![\w.~-]){re.escape(folder)}\S*")
    assert not outside, f"paths outside the repository: {outside}"
