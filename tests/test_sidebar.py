"""The "Workflow runs" sidebar in a real JupyterLab (Debian chromium via Playwright): a run left paused
by a batch process that exited is listed as paused and interrupted; its panel shows the notebook
widget's debugger view; "Resume here" starts a worker that takes the run over, and resuming the one
paused instance from the view lets the run finish."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from browser.fixtures import ARTIFACTS
from browser.server import JupyterServer

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = pytest.mark.timeout(240)

WORKFLOW = textwrap.dedent('''
    from nbflow import Workflow
    from nbflow.batch import finish, run_or_resume

    wf = Workflow("sidebar_etl")

    @wf.step
    def load():
        return [1, 2, 3]

    @wf.foreach("load", key=lambda x: x)
    def enrich(item):
        return item * 10

    @wf.step
    def report(enrich):
        return sum(enrich)
''')


def paused_batch_run(server: JupyterServer, tmp: Path) -> str:
    """A papermill batch (`nbflow run NB --break enrich:2`) on the server's store: the notebook ends
    with its run paused, papermill exits, and nothing drives the run any more."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(WORKFLOW),
                nbformat.v4.new_code_cell("run = run_or_resume(wf)\nfinish(run)")]
    path = tmp / "batch_etl.ipynb"
    nbformat.write(nb, path)
    out = subprocess.run(
        [sys.executable, "-m", "nbflow", "--db", server.db_url, "run", str(path), "--break", "enrich:2", "-o", "json"],
        env=server.env(), capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL, check=False,
    )
    assert out.returncode == 3, out.stdout + out.stderr  # 3: a run is left paused
    (run,) = json.loads(out.stdout)["runs"]
    assert run["status"] == "paused", out.stdout
    return str(run["id"])


def open_sidebar(page: Page, server: JupyterServer) -> None:
    page.goto(server.page_url("lab", "reset"))
    page.locator("#jupyterlab-splash").wait_for(state="detached", timeout=60_000)
    page.locator(".jp-SideBar [data-id='nbflow-runs']").click()
    page.locator("#nbflow-runs").wait_for(state="visible")


def test_sidebar_lists_a_paused_batch_run_and_resumes_it_here(page: Page, jupyter: JupyterServer,
                                                              tmp_path: Path) -> None:
    run_id = paused_batch_run(jupyter, tmp_path)
    open_sidebar(page, jupyter)

    row = page.locator(f"[data-testid=run-row][data-run-id='{run_id}']")
    row.wait_for(timeout=15_000)
    assert row.get_attribute("data-status") == "paused"
    assert row.locator("[data-testid=run-paused]").inner_text() == "1 paused"
    assert row.locator("[data-testid=run-owner]").inner_text() == "interrupted"

    row.click()
    view = page.locator(f".nbflow-lab-run[data-run-id='{run_id}'] .nbflow-widget[data-run-id='{run_id}']")
    view.wait_for(timeout=15_000)
    assert view.locator("[data-testid=status-badge]").inner_text() == "PAUSED"
    assert view.locator("g[data-testid=node][data-step=enrich]").count() == 1

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "sidebar-paused.png"))
    page.locator(f".nbflow-lab-run[data-run-id='{run_id}'] [data-testid=resume-here]").click()
    row.locator("[data-testid=run-owner]", has_text="live").wait_for(timeout=30_000)  # the worker holds the run

    view.locator("tr[data-testid=instance-row][data-key='2']").click()
    view.locator("[data-testid=instance-panel]").wait_for()
    view.locator("[data-testid=resume-one]").click()

    view.locator("[data-testid=status-badge]", has_text="SUCCEEDED").wait_for(timeout=30_000)
    row.and_(page.locator("[data-status=succeeded]")).wait_for(timeout=15_000)
    page.screenshot(path=str(ARTIFACTS / "sidebar.png"))
    assert jupyter.api("GET", f"/nbflow/api/runs/{run_id}?light=1")["status"] == "succeeded"
