"""Issue 17's debugger verbs from the widget, in a real JupyterLab (Debian's chromium via Playwright).

The story: a run paused before its first task; "Step over" lets it go on and the panel follows to the
next task, paused before its body with its inputs shown; `o` on a foreach item held by a breakpoint
pauses only the item that consumes it (and, once, the task that needs the whole fan-out); a
logpoint's values are a column of the instance table.

Then what cannot fit in it: "Debug in a cell" puts the failed instance's body in a new cell below the
widget's, and redefining the step there (a hot fix) marks the instance "code changed" with the diff;
where no notebook takes the cell (the widget in an output view), a dialog offers the body to copy.
And the sidebar, over REST, for a run another process owns: the breakpoint a step over leaves on a
foreach not made yet is marked one-shot until it fires, and the panel follows to the item it pauses.

``NBFLOW_SCREENSHOTS=1`` also saves the story's view to docs/images/step-over.png (the README's)."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from browser.fixtures import ARTIFACTS
from browser.notebook import open_notebook, run_all_cells, wait_kernel_idle, write_notebook
from browser.server import JupyterServer

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

pytestmark = pytest.mark.timeout(240)

ROOT = Path(__file__).resolve().parents[1]
N = 5
STORY = textwrap.dedent('''
    import nbflow

    wf = nbflow.Workflow("step_over_story")

    @wf.step
    def load(n):
        return [{"id": i, "x": i} for i in range(n)]

    @wf.step
    def clean(load):
        return [r for r in load if r["x"] >= 0]

    @wf.foreach("clean", key=lambda item: item["id"])
    def enrich(item):
        return {**item, "y": item["x"] * 10}

    @wf.foreach("enrich", key=lambda item: item["id"])
    def double(item):
        return item["y"] * 2

    @wf.step
    def summary(enrich):
        return len(enrich)
''').lstrip()
STORY_RUN = (
    f'run = wf.run(params={{"n": {N}}}, breakpoints=["load", "enrich:3",\n'
    '    nbflow.Breakpoint("double", action="log", expression="item[\'y\']")])\nrun'
)
HOT_FIX = textwrap.dedent('''
    import nbflow

    wf = nbflow.Workflow("hot_fix_story")

    @wf.step
    def load(n):
        return [{"id": i, "x": i} for i in range(n)]

    @wf.foreach("load", key=lambda item: item["id"])
    def enrich(item):
        return {**item, "y": 12 // (item["x"] - 3)}
''').lstrip()
HOT_FIX_RUN = f'run = wf.run(params={{"n": {N}}}, break_on_error=True)\nrun'
FIXED = textwrap.dedent('''
    @wf.foreach("load", key=lambda item: item["id"])
    def enrich(item):
        return {**item, "y": 12 // max(item["x"] - 3, 1)}
''').strip()


def _wait_status(page: Page, status: str, timeout: float = 60_000) -> None:
    page.wait_for_function(
        "st => document.querySelector('.nbflow-widget')?.getAttribute('data-status') === st",
        arg=status, timeout=timeout)


def _wait_row(page: Page, key: str, status: str, timeout: float = 30_000) -> None:
    page.wait_for_function(
        """([key, status]) => {
            const td = document.querySelector(
                `.nbflow-widget tr[data-testid=instance-row][data-key="${key}"] [data-testid=row-status]`);
            return td !== null && td.textContent.trim() === status;
        }""",
        arg=[key, status], timeout=timeout)


def _open_step(page: Page, view: Locator, step: str) -> None:
    """Click the step's node; show every status (the table opens on the problems)."""
    view.locator(f"g[data-testid=node][data-step={step}]").click()
    view.locator(".nbf-step-title", has_text=step).wait_for()
    view.get_by_test_id("filter-status").select_option("")
    page.wait_for_function(
        "() => document.querySelector('.nbflow-widget [data-testid=filter-status]')?.value === ''")


def _panel_on(view: Locator, title: str, status: str) -> Locator:
    """The instance panel once it shows `title` (step[:key]) with `status`."""
    panel = view.get_by_test_id("instance-panel")
    panel.locator(".nbf-panel-title", has_text=title).wait_for(timeout=30_000)
    panel.locator(f".nbf-pill.nbf-st-{status}").wait_for(timeout=30_000)
    return panel


def _open_run(page: Page, jupyter: JupyterServer, name: str, cells: list[str]) -> Locator:
    write_notebook(jupyter.root / name, cells)
    open_notebook(page, jupyter, name)
    page.evaluate("() => { const s = window.jupyterapp.shell; if (!s.leftCollapsed) s.collapseLeft(); }")
    run_all_cells(page, jupyter)
    view = page.locator(".nbflow-widget")
    view.wait_for(timeout=30_000)
    _wait_status(page, "paused")
    return view


def _screenshot(page: Page, view: Locator) -> None:
    """The view as the story leaves it: in test-artifacts/, and in docs/images/ with NBFLOW_SCREENSHOTS
    (a page tall enough for the whole view, so no toolbar of JupyterLab covers its top)."""
    page.set_viewport_size({"width": 1400, "height": 1800})
    view.evaluate("e => e.scrollIntoView()")
    ARTIFACTS.mkdir(exist_ok=True)
    view.screenshot(path=str(ARTIFACTS / "step-over.png"))
    if os.environ.get("NBFLOW_SCREENSHOTS"):
        view.screenshot(path=str(ROOT / "docs" / "images" / "step-over.png"))


def test_step_over_by_button_and_by_key_pauses_the_consumers_and_a_logpoint_is_a_column(
        page: Page, jupyter: JupyterServer) -> None:
    view = _open_run(page, jupyter, "step_over.ipynb", [STORY, STORY_RUN])

    # paused before the first task: Step over lets it go on; the panel follows to the next task,
    # paused before its body with load's output as its input
    _open_step(page, view, "load")
    view.locator("tr[data-testid=instance-row]").first.click()
    panel = _panel_on(view, "load", "paused")
    panel.get_by_role("button", name="Step over", exact=True).click()
    panel = _panel_on(view, "clean", "paused")
    assert "step over load" in panel.get_by_test_id("why").inner_text()
    panel.get_by_test_id("inputs").filter(has_text='"x": 4').wait_for()
    assert "step over" in view.get_by_test_id("bp-stepped-over").inner_text()

    # the rest runs until enrich:3's breakpoint; o on its row steps over it: of double, only the item
    # made from its output pauses, and summary (which needs all of enrich) pauses once
    panel.get_by_role("button", name="Resume", exact=True).click()
    _open_step(page, view, "enrich")
    _wait_row(page, "3", "paused")
    view.locator("tr[data-testid=instance-row][data-key='3']").focus()
    page.keyboard.press("o")
    panel = _panel_on(view, "double:3", "paused")
    assert "step over enrich:3" in panel.get_by_test_id("why").inner_text()
    _open_step(page, view, "double")
    for key in ("0", "1", "2", "4"):
        _wait_row(page, key, "succeeded")
    assert view.locator("tr[data-testid=instance-row][data-key='3'] [data-testid=row-status]").inner_text() == "paused"
    page.wait_for_function(
        "() => document.querySelector('.nbflow-widget g[data-testid=node][data-step=summary]')"
        "?.getAttribute('data-status') === 'paused'", timeout=30_000)

    # the logpoint on double: its values, one column of the table
    head = view.get_by_test_id("log-column")
    assert head.inner_text() == "log: item['y']"
    page.wait_for_function(
        "() => document.querySelector(`.nbflow-widget tr[data-key='4'] [data-testid=log-cell]`)"
        "?.textContent === '40'", timeout=30_000)
    assert "log item['y']" in view.get_by_test_id("bp-list").inner_text()
    view.locator("tr[data-testid=instance-row][data-key='3']").click()
    _panel_on(view, "double:3", "paused").get_by_test_id("inputs").filter(has_text='"y": 30').wait_for()
    _screenshot(page, view)


def test_debug_in_a_cell_puts_the_body_below_the_widget_and_a_hot_fix_shows_its_diff(
        page: Page, jupyter: JupyterServer) -> None:
    view = _open_run(page, jupyter, "hot_fix.ipynb", [HOT_FIX, HOT_FIX_RUN])
    _open_step(page, view, "enrich")
    view.locator("tr[data-testid=instance-row][data-key='3']").click()
    panel = _panel_on(view, "enrich:3", "paused")

    # "Debug in a cell": the inputs are bound in the kernel, the body is a new cell below the widget's
    panel.get_by_role("button", name="Debug in a cell", exact=True).click()
    page.wait_for_function("() => window.jupyterapp.shell.currentWidget.content.widgets.length === 3",
                           timeout=30_000)
    sources = page.evaluate(
        "() => window.jupyterapp.shell.currentWidget.content.widgets.map(c => c.model.sharedModel.getSource())")
    assert sources[:2] == [HOT_FIX, HOT_FIX_RUN]
    assert '12 // (item["x"] - 3)' in sources[2]

    # the hot fix: the step redefined in that cell while the run is paused
    page.evaluate(
        """(src) => { const nb = window.jupyterapp.shell.currentWidget.content;
            nb.activeCellIndex = 2; nb.activeCell.model.sharedModel.setSource(src);
            return window.jupyterapp.commands.execute('notebook:run-cell'); }""", FIXED)
    wait_kernel_idle(page, jupyter)
    view.locator("tr[data-testid=instance-row][data-key='3'] [data-testid=code-changed]").wait_for(timeout=30_000)
    panel.get_by_test_id("panel-code-changed").wait_for(timeout=30_000)
    diff = panel.get_by_test_id("code-diff")
    diff.wait_for(timeout=30_000)
    assert any("12 // max(item" in line for line in diff.locator(".nbf-ud-add").all_inner_texts())
    assert any('12 // (item["x"] - 3)' in line for line in diff.locator(".nbf-ud-del").all_inner_texts())
    ARTIFACTS.mkdir(exist_ok=True)
    panel.screenshot(path=str(ARTIFACTS / "hot-fix.png"))

    panel.get_by_role("button", name="Retry", exact=True).click()
    _wait_status(page, "succeeded")

    # where no notebook takes the cell (the widget in an output view of its own), a dialog offers the body
    page.evaluate("""() => { const nb = window.jupyterapp.shell.currentWidget.content; nb.activeCellIndex = 1;
        return window.jupyterapp.commands.execute('notebook:create-output-view'); }""")
    alone = page.locator(".jp-LinkedOutputView .nbflow-widget")
    alone.get_by_role("button", name="Debug in a cell", exact=True).click()
    dialog = alone.get_by_role("dialog")
    assert "12 // max(item" in dialog.get_by_test_id("debug-code").input_value()  # the step as it is now
    assert dialog.get_by_role("button", name="Copy", exact=True).is_visible()
    assert page.evaluate("""() => { for (const w of window.jupyterapp.shell.widgets('main'))
        if (w.context && w.context.path === 'hot_fix.ipynb') return w.content.widgets.length; }""") == 3


def test_the_sidebar_marks_a_step_overs_breakpoint_one_shot_and_follows_to_the_item_it_pauses(
        page: Page, jupyter: JupyterServer, tmp_path: Path) -> None:
    script = tmp_path / "owner.py"
    script.write_text(STORY + textwrap.dedent('''
        import time
        from nbflow.states import RunStatus
        run = wf.run(params={"n": 5}, breakpoints=["enrich"])
        run.wait()
        print(run.id, flush=True)
        while not RunStatus(run.status).terminal:
            time.sleep(0.2)
    '''))
    owner = subprocess.Popen([sys.executable, str(script)], env=jupyter.env(), stdout=subprocess.PIPE, text=True,
                             cwd=tmp_path)
    try:
        assert owner.stdout is not None
        run_id = owner.stdout.readline().strip()
        assert run_id, "the owner process printed no run id"
        page.goto(jupyter.page_url("lab", "reset"))
        page.locator("#jupyterlab-splash").wait_for(state="detached", timeout=60_000)
        page.locator(".jp-SideBar [data-id='nbflow-runs']").click()
        page.locator(f"[data-testid=run-row][data-run-id='{run_id}']").click(timeout=15_000)
        view = page.locator(f".nbflow-lab-run[data-run-id='{run_id}'] .nbflow-widget")
        view.wait_for(timeout=15_000)
        view.locator("g[data-testid=node][data-step=enrich]").click()
        view.locator("tr[data-testid=instance-row][data-key='3']").click()
        panel = _panel_on(view, "enrich:3", "paused")
        assert panel.get_by_role("button", name="Debug in a cell").count() == 0  # no kernel here
        panel.get_by_role("button", name="Step over", exact=True).click()

        # double is made once all of enrich is done: till then the view shows it, with the one-shot
        # breakpoint the step over left on it
        view.locator(".nbf-step-title", has_text="double").wait_for(timeout=30_000)
        item = view.get_by_test_id("bp-item").filter(has=page.get_by_test_id("one-shot"))
        assert item.get_by_test_id("bp-label").inner_text() == "step over enrich:3"
        # the others go on; double:3 alone pauses, and the panel opens on it as it does
        view.get_by_role("button", name="Resume all paused", exact=True).click()
        panel = _panel_on(view, "double:3", "paused")
        assert "step over enrich:3" in panel.get_by_test_id("why").inner_text()
        page.wait_for_function(
            "css => document.querySelector(css)?.textContent.includes('4 succeeded')",
            arg=f".nbflow-lab-run[data-run-id='{run_id}'] g[data-testid=node][data-step=double]", timeout=30_000)
        assert view.get_by_test_id("bp-item").filter(has=page.get_by_test_id("one-shot")).count() == 0
    finally:
        owner.terminate()
        owner.wait(timeout=20)
