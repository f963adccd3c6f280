"""The debugger widget in a real browser: JupyterLab (and Notebook 7) on loopback, Debian's chromium via Playwright."""
from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from browser.fixtures import ARTIFACTS
from browser.notebook import open_notebook, run_all_cells, write_notebook
from browser.server import JupyterServer

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

pytestmark = pytest.mark.timeout(240)

ANYWIDGET_COUNTER = '''
import anywidget, traitlets

class Counter(anywidget.AnyWidget):
    _esm = """
    function render({ model, el }) {
      const b = document.createElement("button");
      b.className = "probe-counter";
      b.textContent = `count ${model.get("value")}`;
      b.onclick = () => { model.set("value", model.get("value") + 1); model.save_changes(); };
      const echo = document.createElement("span");
      echo.className = "probe-echo";
      model.on("change:value", () => { b.textContent = `count ${model.get("value")}`; });
      model.on("change:echoed", () => { echo.textContent = `echo ${model.get("echoed")}`; });
      el.append(b, echo);
    }
    export default { render };
    """
    value = traitlets.Int(0).tag(sync=True)
    echoed = traitlets.Int(0).tag(sync=True)

    @traitlets.observe("value")
    def _echo(self, change):
        self.echoed = change["new"] * 10

counter = Counter()
counter
'''


def test_an_anywidget_renders_and_talks_to_the_kernel_in_jupyterlab(page: Page, jupyter: JupyterServer) -> None:
    """The harness itself: a notebook runs, an anywidget shows, a click reaches the kernel and comes back."""
    write_notebook(jupyter.root / "probe.ipynb", [ANYWIDGET_COUNTER])
    open_notebook(page, jupyter, "probe.ipynb")
    run_all_cells(page, jupyter)
    button = page.locator("button.probe-counter")
    button.wait_for(timeout=30_000)
    assert button.inner_text() == "count 0"
    button.click()
    button.click()
    # the kernel saw both clicks and answered through the widget model
    page.wait_for_function("() => document.querySelector('.probe-echo').textContent === 'echo 20'")
    assert button.inner_text() == "count 2"


DEMO_CELLS = [
    "%load_ext nbflow",
    "%nbflow workflow demo",
    '%%step load\n[{"id": i, "x": i} for i in range(n)]',
    (
        '%%step enrich --foreach load --key item[\'id\']\n'
        'print(f"enriching {item[\'id\']}")\n{**item, "y": item["x"] ** 2}'
    ),
    '%%step report\nsum(r["y"] for r in enrich)',
    "%nbflow run -p n=6 --break enrich",
]
N_ITEMS = 6


def _open_paused_run(page: Page, jupyter: JupyterServer, name: str, ui: str) -> Locator:
    """Write the demo notebook, open it in `ui`, run every cell; returns the widget root once the run has
    paused with every `enrich` instance held by the breakpoint."""
    write_notebook(jupyter.root / name, DEMO_CELLS)
    open_notebook(page, jupyter, name, ui=ui)
    if ui == "lab":
        page.evaluate("() => { const s = window.jupyterapp.shell; if (!s.leftCollapsed) s.collapseLeft(); }")
    run_all_cells(page, jupyter)
    widget = page.locator(".nbflow-widget")
    widget.wait_for(timeout=30_000)
    page.wait_for_function(
        "() => document.querySelector('.nbflow-widget')?.getAttribute('data-status') === 'paused'", timeout=30_000
    )
    assert widget.locator("[data-testid=status-badge]").inner_text() == "PAUSED"
    return widget


def _row_status(widget: Locator, key: str) -> str:
    return widget.locator(f"tr[data-testid=instance-row][data-key='{key}'] [data-testid=row-status]").inner_text()


def _wait_row_status(page: Page, key: str, status: str, timeout: float = 30_000) -> None:
    page.wait_for_function(
        """([key, status]) => {
            const td = document.querySelector(
                `.nbflow-widget tr[data-testid=instance-row][data-key="${key}"] [data-testid=row-status]`);
            return td !== null && td.textContent.trim() === status;
        }""",
        arg=[key, status],
        timeout=timeout,
    )


def _show_all(page: Page, widget: Locator) -> None:
    """Filter the instance table to every status (it opens on the problems: paused, failed, waiting)."""
    widget.locator("[data-testid=filter-status]").select_option("")
    page.wait_for_function(
        "() => document.querySelector('.nbflow-widget [data-testid=filter-status]')?.value === ''", timeout=30_000)
    widget.locator("[data-testid=instances] tr[data-testid=instance-row]").first.wait_for()


def test_jupyterlab_debugger_resumes_one_instance_and_edits_another(page: Page, jupyter: JupyterServer) -> None:
    """In JupyterLab: click the paused foreach node, resume one instance (it succeeds, the rest stay paused),
    edit another's inputs in the JSON editor with a reason, and find the change in its history."""
    widget = _open_paused_run(page, jupyter, "debug.ipynb", ui="lab")

    widget.locator("g[data-testid=node][data-step=enrich]").click()
    rows = widget.locator("[data-testid=instances] tr[data-testid=instance-row]")
    rows.first.wait_for()
    assert rows.count() == N_ITEMS
    _show_all(page, widget)  # the table opens on the problems; a resumed row would leave it
    assert {_row_status(widget, str(k)) for k in range(N_ITEMS)} == {"paused"}

    # resume one instance from its panel
    widget.locator("tr[data-testid=instance-row][data-key='2']").click()
    panel = widget.locator("[data-testid=instance-panel]")
    panel.wait_for()
    panel.locator("[data-testid=resume-one]").click()
    _wait_row_status(page, "2", "succeeded")
    page.wait_for_function(
        "() => document.querySelector('.nbflow-widget')?.getAttribute('data-status') === 'paused'", timeout=30_000
    )
    assert [_row_status(widget, str(k)) for k in range(N_ITEMS)] == ["paused"] * 2 + ["succeeded"] + ["paused"] * 3
    assert widget.locator("[data-testid=status-badge]").inner_text() == "PAUSED"

    # edit another instance's inputs: invalid JSON is refused in the browser, valid JSON is saved with a reason
    widget.locator("tr[data-testid=instance-row][data-key='4']").click()
    page.wait_for_function(
        "() => document.querySelector('.nbflow-widget [data-testid=inputs]')?.textContent.includes('\"x\": 4')"
    )
    panel.locator("[data-testid=edit-inputs]").click()
    editor = panel.locator("textarea[data-testid=json-editor]")
    editor.wait_for()
    assert '"x": 4' in editor.input_value()
    editor.fill('{"item": {"id": 4, "x": 40')
    panel.locator("button[data-testid=json-save]").click()
    assert panel.locator("[data-testid=json-error]").inner_text().strip() != ""
    editor.fill('{"item": {"id": 4, "x": 40}}')
    panel.locator("input[data-testid=reason]").fill("fixed in the browser")
    panel.locator("button[data-testid=json-save]").click()
    history = panel.locator("[data-testid=history]")
    page.wait_for_function(
        "() => document.querySelector('.nbflow-widget [data-testid=history]')?.textContent"
        ".includes('fixed in the browser')",
        timeout=30_000,
    )
    assert "40" in history.inner_text()
    assert '"x": 40' in panel.locator("[data-testid=inputs]").inner_text()
    assert _row_status(widget, "4") == "paused"

    ARTIFACTS.mkdir(exist_ok=True)
    widget.screenshot(path=str(ARTIFACTS / "widget.png"))


def test_notebook7_debugger_resumes_one_instance(page: Page, jupyter: JupyterServer) -> None:
    """In Notebook 7 (`/notebooks/...`): the same widget shows the paused run, and resuming one instance
    from its panel lets it succeed while the others stay paused."""
    widget = _open_paused_run(page, jupyter, "debug7.ipynb", ui="notebook")

    widget.locator("g[data-testid=node][data-step=enrich]").click()
    _show_all(page, widget)
    widget.locator("tr[data-testid=instance-row][data-key='0']").click()
    widget.locator("[data-testid=instance-panel] [data-testid=resume-one]").click()
    _wait_row_status(page, "0", "succeeded")
    assert [_row_status(widget, str(k)) for k in range(1, N_ITEMS)] == ["paused"] * (N_ITEMS - 1)
