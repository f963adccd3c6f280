"""Pytest fixtures for the real-browser tests: one Jupyter server and one chromium per module, a page per test.

tests/conftest.py registers this module (`pytest_plugins`), so any test module can ask for them by name.
"""
from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from .server import JupyterServer

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def require_chromium() -> None:
    """Skip (with the reason) when Debian's chromium is missing, except in CI, where the test must run."""
    if not os.path.exists(CHROMIUM) and not os.environ.get("CI"):
        pytest.skip(f"{CHROMIUM} not found (run scripts/install-system-deps); browser tests skipped outside CI")


@pytest.fixture(scope="module")
def jupyter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterServer]:
    """A JupyterLab (+ Notebook 7) server on 127.0.0.1, a fresh token, root dir and NBFLOW_DB store."""
    require_chromium()
    server = JupyterServer(tmp_path_factory.mktemp("jupyter"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's chromium, headless, driven by Playwright (never a downloaded browser)."""
    require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Browser, jupyter: JupyterServer, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A fresh browser context and page. Console errors are printed (shown when the test fails); the page's
    last state is saved to `test-artifacts/<test>.png`; the test's kernels are shut down afterwards."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = context.new_page()
    console: list[str] = []
    pg.on("console", lambda m: console.append(f"{m.type}: {m.text}") if m.type in ("error", "warning") else None)
    pg.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
    try:
        yield pg
    finally:
        ARTIFACTS.mkdir(exist_ok=True)
        name = re.sub(r"[^\w.-]+", "_", request.node.name)
        try:
            pg.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
        except Exception as exc:  # noqa: BLE001 - a screenshot failure must not hide the test's own result
            print(f"screenshot failed: {exc}")
        if console:
            print("browser console:\n  " + "\n  ".join(console[-40:]))
        context.close()
        jupyter.shutdown_kernels()
