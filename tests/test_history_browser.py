"""Issue 18's history in the debugger view, in a real JupyterLab (Debian's chromium via Playwright).

The story in a notebook: a run paused on enrich:3 and was resumed to the end. The scrubber's mark of
the pause takes the view back to it (the badge, the DAG and the table show it paused, a banner says
which event, the verbs are off); the step buttons and the keyboard move through the events; Live
returns to now. Then "Fork from here" on a ticked row, after the step's factor changed in the
notebook, starts a fork in the kernel, whose id the header shows; "Show it" shows the fork in the
widget, and its "vs parent" panel lists exactly the items whose output changed.
And the sidebar, over REST: the same scrubber for a run of the server's store.

``NBFLOW_SCREENSHOTS=1`` also saves the view at the pause to docs/images/history.png."""
from __future__ import annotations

import os
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from browser.fixtures import ARTIFACTS
from browser.notebook import open_notebook, run_all_cells, wait_kernel_idle, write_notebook
from browser.server import JupyterServer

import nbflow

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

pytestmark = pytest.mark.timeout(240)

ROOT = Path(__file__).resolve().parents[1]
STORY = textwrap.dedent('''
    import nbflow

    FACTOR = {"value": 10}
    wf = nbflow.Workflow("history_story")

    @wf.step
    def load(n):
        return list(range(1, n + 1))

    @wf.foreach("load", key=lambda item: item)
    def enrich(item):
        return item * FACTOR["value"]

    @wf.foreach("enrich")
    def double(item):
        return item * 2

    @wf.step
    def total(double):
        return sum(double)
''').lstrip()
RUN = 'run = wf.run(params={"n": 5}, breakpoints=["enrich:3"])\nrun'


def _wait_attr(page: Page, name: str, value: str, css: str = ".nbflow-widget", timeout: float = 30_000) -> None:
    page.wait_for_function(
        "([css, name, value]) => document.querySelector(css)?.getAttribute(name) === value",
        arg=[css, name, value], timeout=timeout)


def _wait_no_attr(page: Page, name: str, css: str = ".nbflow-widget", timeout: float = 30_000) -> None:
    page.wait_for_function(
        "([css, name]) => { const e = document.querySelector(css); return !!e && !e.hasAttribute(name); }",
        arg=[css, name], timeout=timeout)


def _row_status(view: Locator, key: str) -> str:
    return view.locator(f"tr[data-testid=instance-row][data-key='{key}'] [data-testid=row-status]").inner_text()


def _wait_row(page: Page, key: str, status: str, css: str = ".nbflow-widget") -> None:
    page.wait_for_function(
        """([css, key, status]) => {
            const row = `tr[data-testid=instance-row][data-key="${key}"]`;
            const td = document.querySelector(`${css} ${row} [data-testid=row-status]`);
            return td !== null && td.textContent.trim() === status;
        }""", arg=[css, key, status], timeout=30_000)


def _open_step(page: Page, view: Locator, step: str) -> None:
    view.locator(f"g[data-testid=node][data-step={step}]").click()
    view.locator(".nbf-step-title", has_text=step).wait_for()
    view.get_by_test_id("filter-status").select_option("")
    page.wait_for_function(
        "() => document.querySelector('.nbflow-widget [data-testid=filter-status]')?.value === ''")


def _screenshot(page: Page, view: Locator) -> None:
    message = view.get_by_test_id("message").first
    if message.inner_text():
        message.click()  # an earlier answer ("resumed 1 instance") is not what the picture shows
    page.set_viewport_size({"width": 1400, "height": 1800})
    view.evaluate("e => e.scrollIntoView()")
    ARTIFACTS.mkdir(exist_ok=True)
    view.screenshot(path=str(ARTIFACTS / "history.png"))
    if os.environ.get("NBFLOW_SCREENSHOTS"):
        view.screenshot(path=str(ROOT / "docs" / "images" / "history.png"))
    page.set_viewport_size({"width": 1400, "height": 1000})


def _run_cell(page: Page, jupyter: JupyterServer, index: int, source: str) -> None:
    page.evaluate(
        """([i, src]) => { const nb = window.jupyterapp.shell.currentWidget.content;
            nb.activeCellIndex = i; nb.activeCell.model.sharedModel.setSource(src);
            return window.jupyterapp.commands.execute('notebook:run-cell'); }""", [index, source])
    wait_kernel_idle(page, jupyter)


def test_the_scrubber_shows_the_pause_and_live_returns_and_a_fork_of_a_row_shows_its_changes(
        page: Page, jupyter: JupyterServer) -> None:
    write_notebook(jupyter.root / "history.ipynb", [STORY, RUN, "# the fix goes here"])
    open_notebook(page, jupyter, "history.ipynb")
    page.evaluate("() => { const s = window.jupyterapp.shell; if (!s.leftCollapsed) s.collapseLeft(); }")
    run_all_cells(page, jupyter)
    view = page.locator(".nbflow-widget")
    view.wait_for(timeout=30_000)
    _wait_attr(page, "data-status", "paused")
    view.get_by_role("button", name="Resume all paused", exact=True).click()
    _wait_attr(page, "data-status", "succeeded")
    _open_step(page, view, "enrich")
    _wait_row(page, "3", "succeeded")

    # the pause's mark: the run as it was then, read-only
    mark = view.locator("[data-testid=history-mark][data-kind=run_paused]")
    n = mark.get_attribute("data-n")
    assert n is not None
    mark.click()
    _wait_attr(page, "data-at", n)
    assert view.get_attribute("data-status") == "paused"
    banner = view.get_by_test_id("history-banner")
    assert f"Viewing event {n} of " in banner.inner_text() and "run_paused" in banner.inner_text()
    assert view.locator("g[data-testid=node][data-step=enrich]").get_attribute("data-status") == "paused"
    _wait_row(page, "3", "paused")
    assert {_row_status(view, k) for k in "1245"} == {"succeeded"}
    assert view.get_by_test_id("resume-all").is_disabled() and view.get_by_test_id("add-breakpoint").is_disabled()
    _screenshot(page, view)

    # a step back, a step forward, the keyboard on the range (Home: the first event)
    view.get_by_test_id("history-back").click()
    _wait_attr(page, "data-at", str(int(n) - 1))
    view.get_by_test_id("history-forward").click()
    _wait_attr(page, "data-at", n)
    view.get_by_test_id("history-range").focus()
    page.keyboard.press("Home")
    _wait_attr(page, "data-at", "1")
    assert "Viewing event 1 of" in banner.inner_text()

    # live: now again
    view.get_by_test_id("history-live").click()
    _wait_no_attr(page, "data-at")
    assert view.get_attribute("data-status") == "succeeded" and banner.is_hidden()
    _wait_row(page, "3", "succeeded")

    # the factor changes in the notebook; enrich:2 is forked: a new run, its id in the header
    _run_cell(page, jupyter, 2, 'FACTOR["value"] = 100')
    parent = view.get_attribute("data-run-id")
    view.locator("tr[data-testid=instance-row][data-key='2'] [data-testid=select]").check()
    page.wait_for_function(
        "() => document.querySelector('.nbflow-widget [data-testid=selection]')?.textContent.includes('1 instance')")
    view.get_by_test_id("fork-selected").click()
    view.get_by_role("dialog").get_by_role("button", name="Fork", exact=True).click()
    fork_id = view.get_by_test_id("fork-run-id").inner_text(timeout=30_000)
    assert fork_id and fork_id != parent
    view.get_by_test_id("open-fork").click()
    _wait_attr(page, "data-run-id", fork_id)
    _wait_attr(page, "data-status", "succeeded", timeout=60_000)
    assert view.get_by_test_id("forked-from").inner_text() == f"fork of {parent}"

    # vs parent: exactly the forked item, the item made from it and the total changed
    view.get_by_test_id("diff-parent").click()
    panel = view.get_by_test_id("diff-panel")
    panel.wait_for(timeout=30_000)
    entries = panel.locator("[data-testid=diff-entry][data-section=changed]")
    entries.first.wait_for()
    assert [(e.get_attribute("data-step"), e.get_attribute("data-key")) for e in entries.all()] == [
        ("enrich", "2"), ("double", "1"), ("total", "")]  # double's keys are the item indexes
    assert panel.get_by_test_id("diff-parent-id").inner_text() == parent
    ARTIFACTS.mkdir(exist_ok=True)
    panel.screenshot(path=str(ARTIFACTS / "vs-parent.png"))


def test_the_sidebar_has_the_scrubber_and_refuses_a_fork_it_has_no_code_for(
        page: Page, jupyter: JupyterServer) -> None:
    wf = nbflow.Workflow("history_sidebar", store=jupyter.db_url)

    @wf.step
    def load(n):
        return list(range(n))

    @wf.foreach("load", key=lambda item: item)
    def enrich(item):
        return item + 1

    run = wf.run(params={"n": 4}, breakpoints=["enrich:2"])
    assert run.wait(timeout=30) == "paused"
    run.resume("enrich", keys=[2])
    assert run.wait(timeout=30) == "succeeded"

    page.goto(jupyter.page_url("lab", "reset"))
    page.locator("#jupyterlab-splash").wait_for(state="detached", timeout=60_000)
    page.locator(".jp-SideBar [data-id='nbflow-runs']").click()
    page.locator(f"[data-testid=run-row][data-run-id='{run.id}']").click(timeout=15_000)
    css = f".nbflow-lab-run[data-run-id='{run.id}'] .nbflow-widget"
    view = page.locator(css)
    view.wait_for(timeout=15_000)
    view.locator("g[data-testid=node][data-step=enrich]").click()
    view.locator(".nbf-step-title", has_text="enrich").wait_for()

    mark = view.locator("[data-testid=history-mark][data-kind=run_paused]")
    n = mark.get_attribute("data-n")
    assert n is not None
    mark.click()
    _wait_attr(page, "data-at", n, css)
    assert view.get_attribute("data-status") == "paused"
    _wait_row(page, "2", "paused", css)
    view.get_by_test_id("history-live").click()
    _wait_no_attr(page, "data-at", css)
    _wait_row(page, "2", "succeeded", css)

    # no kernel and no code here: the fork is refused, saying what to run instead
    view.locator("tr[data-testid=instance-row][data-key='1'] [data-testid=select]").check()
    view.get_by_test_id("fork-selected").click()
    view.get_by_role("dialog").get_by_role("button", name="Fork", exact=True).click()
    page.wait_for_function(
        "([css, text]) => document.querySelector(`${css} [data-testid=dialog-error]`)?.textContent.includes(text)",
        arg=[css, f"nbflow fork {run.id} enrich:1"], timeout=15_000)
    assert len(nbflow.runs(jupyter.db_url, workflow="history_sidebar")) == 1
