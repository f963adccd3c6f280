"""Triage of a 1,000-item foreach from the debugger view alone, in a real JupyterLab (Debian's chromium
via Playwright): 12 items fail on a decimal comma (ValueError), 5 on a missing amount (TypeError),
and break-on-error holds all 17. The Errors view groups them; the TypeError group is skipped with
output 0, the decimal-comma group fixed with one expression and retried; the run ends succeeded and
its history holds each bulk command with the keys it covered. The clicks are counted.

The same triage in the JupyterLab sidebar: open Errors, select a group, skip it.

``NBFLOW_SCREENSHOTS=1`` also saves the Errors view to docs/images/errors-view.png (the README's)."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from browser.fixtures import ARTIFACTS
from browser.notebook import open_notebook, run_all_cells, write_notebook
from browser.server import JupyterServer

from nbflow import views
from nbflow.store import Store

if TYPE_CHECKING:
    from playwright.sync_api import FloatRect, Locator, Page

pytestmark = pytest.mark.timeout(300)

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = textwrap.dedent('''
    import nbflow

    wf = nbflow.Workflow("payments_triage")

    @wf.step
    def export(n):
        rows = []
        for i in range(n):
            amount = f"{10 + i % 90}.{i % 100:02d}"
            if i % 83 == 41:
                amount = amount.replace(".", ",")  # a decimal comma: 12 of 1,000
            if i in (100, 300, 500, 700, 900):
                amount = None  # no amount: 5 of 1,000
            rows.append({"id": i, "amount": amount})
        return rows

    @wf.foreach("export", key=lambda row: row["id"])
    def parse(item):
        return {"id": item["id"], "cents": round(float(item["amount"]) * 100)}

    @wf.step
    def total(parse):
        return sum(p["cents"] if isinstance(p, dict) else p for p in parse)
''')
COMMA_KEYS = [i for i in range(1000) if i % 83 == 41]
NONE_KEYS = [100, 300, 500, 700, 900]
FIX = '{**item, "amount": item["amount"].replace(",", ".")}'
MAX_CLICKS = 12
TIMES = "\u00d7"  # the multiplication sign between an error type and its count


class Clicks:
    """Every click of the story goes through here, so the test can count them."""

    def __init__(self) -> None:
        self.n = 0

    def __call__(self, target: Locator) -> None:
        target.click()
        self.n += 1


def _wait_status(page: Page, root_css: str, status: str, timeout: float = 60_000) -> None:
    page.wait_for_function(
        "([css, st]) => document.querySelector(css)?.getAttribute('data-status') === st",
        arg=[root_css, status], timeout=timeout,
    )


def _commands(db_url: str, run_id: str) -> list[dict[str, Any]]:
    """The run's command events (verb, target, result), read through the Python API."""
    return [e["data"] for e in views.history_view(Store(db_url), run_id, kinds=["command"])]


def _keys(target: Any) -> set[str]:
    keys = (target or {}).get("keys") or []
    return {str(k) for k in keys}


def _group(view: Locator, type_: str) -> Locator:
    return view.get_by_role("button", name=f"{type_} {TIMES}")


def _skip_group(view: Locator, click: Clicks, type_: str) -> None:
    """Select an error group and skip it with output 0, through the dialog."""
    click(_group(view, type_))
    view.get_by_test_id("selection").filter(has_text="5").wait_for()
    click(view.get_by_role("button", name="Skip selected", exact=True))
    dialog = view.get_by_role("dialog")
    dialog.get_by_role("textbox", name="Output (JSON)").fill("0")
    click(dialog.get_by_role("button", name="Skip", exact=True))
    dialog.wait_for(state="hidden")
    _group(view, type_).wait_for(state="detached", timeout=30_000)


def _screenshot(page: Page, view: Locator) -> None:
    """The top of the view (header, graph, Errors view, bulk bar, first rows) as a PNG: in
    test-artifacts/, and in docs/images/ for the README when NBFLOW_SCREENSHOTS is set."""
    view.evaluate("e => e.scrollIntoView()")
    box = view.bounding_box()
    assert box is not None
    clip: FloatRect = {"x": box["x"], "y": box["y"], "width": box["width"], "height": min(box["height"], 760)}
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "errors-view.png"), clip=clip)
    if os.environ.get("NBFLOW_SCREENSHOTS"):
        page.screenshot(path=str(ROOT / "docs" / "images" / "errors-view.png"), clip=clip)


def test_the_17_of_1000_story_in_the_widget_alone(page: Page, jupyter: JupyterServer) -> None:
    write_notebook(jupyter.root / "triage.ipynb", [
        WORKFLOW,
        'run = wf.run(params={"n": 1000}, break_on_error=True)\nrun',
    ])
    open_notebook(page, jupyter, "triage.ipynb")
    page.evaluate("() => { const s = window.jupyterapp.shell; if (!s.leftCollapsed) s.collapseLeft(); }")
    run_all_cells(page, jupyter)
    view = page.locator(".nbflow-widget")
    view.wait_for(timeout=30_000)
    _wait_status(page, ".nbflow-widget", "paused")
    run_id = str(view.get_attribute("data-run-id"))
    click = Clicks()

    # the table opens on the step's problems, and the breakpoints box says what break-on-error holds
    view.get_by_test_id("filter-status").and_(page.locator("select")).wait_for()
    page.wait_for_function(
        "() => document.querySelector('.nbflow-widget [data-testid=filter-status]').value === 'problems'")
    assert "holding 17 instances" in view.get_by_test_id("bp-break-on-error").inner_text()

    click(view.get_by_role("button", name="Errors", exact=True))
    value_group = _group(view, "ValueError")
    value_group.wait_for()
    assert f"ValueError {TIMES} 12" in value_group.inner_text()
    assert f"TypeError {TIMES} 5" in _group(view, "TypeError").inner_text()
    assert view.get_by_test_id("errors-view").is_visible()
    _screenshot(page, view)

    _skip_group(view, click, "TypeError")

    # fix the decimal commas with one expression, previewed first, then retry the group
    click(value_group)
    click(view.get_by_role("button", name="Edit selected", exact=True))
    dialog = view.get_by_role("dialog")
    assert dialog.get_by_role("combobox", name="Input").input_value() == "item"
    dialog.get_by_role("textbox", name="Expression").fill(FIX)
    dialog.get_by_test_id("edit-preview").filter(has_text="51.41").wait_for()
    click(dialog.get_by_role("button", name="Apply", exact=True))
    dialog.wait_for(state="hidden")
    click(view.get_by_role("button", name="Retry selected", exact=True))
    click(view.get_by_role("dialog").get_by_role("button", name="Retry", exact=True))

    _wait_status(page, ".nbflow-widget", "succeeded")
    assert click.n <= MAX_CLICKS, f"the story took {click.n} clicks"

    # each bulk command is one entry of the audit, with the keys it covered
    done = {(c["verb"], frozenset(_keys(c.get("target"))))
            for c in _commands(jupyter.db_url, run_id) if c["result"] == "ok"}
    assert ("skip", frozenset(map(str, NONE_KEYS))) in done
    assert ("set_inputs", frozenset(map(str, COMMA_KEYS))) in done
    assert ("retry", frozenset(map(str, COMMA_KEYS))) in done


def test_a_row_chosen_by_keyboard_opens_in_view_and_one_input_field_is_edited_in_place(
        page: Page, jupyter: JupyterServer) -> None:
    write_notebook(jupyter.root / "tree.ipynb", [
        WORKFLOW,
        'run = wf.run(params={"n": 200}, break_on_error=True)\nrun',
    ])
    open_notebook(page, jupyter, "tree.ipynb")
    run_all_cells(page, jupyter)
    view = page.locator(".nbflow-widget")
    view.wait_for(timeout=30_000)
    _wait_status(page, ".nbflow-widget", "paused")
    rows = view.locator("tr[data-testid=instance-row]")
    assert rows.all_inner_texts()[0].split()[0] == "41"  # problems: 41 and 124 (decimal commas), 100 (None)
    rows.first.focus()
    page.keyboard.press("j")
    page.keyboard.press("j")
    page.keyboard.press("Enter")
    panel = view.get_by_test_id("instance-panel")
    view.locator(".nbf-panel-title", has_text="parse:124").wait_for()
    page.wait_for_function(
        "() => { const r = document.querySelector('.nbflow-widget [data-testid=instance-panel]')"
        ".getBoundingClientRect(); return r.top < innerHeight && r.bottom > 0; }")

    leaf = panel.get_by_test_id("inputs").locator("""[data-path='["item","amount"]']""")
    assert leaf.inner_text() == '"44,24"'
    leaf.click()
    field = panel.get_by_test_id("tree-edit")
    field.fill("44.24")  # a string typed without its quotes
    field.press("Enter")
    panel.get_by_test_id("history").filter(has_text="inputs changed").wait_for(timeout=30_000)
    assert leaf.inner_text() == '"44.24"'
    assert panel.get_by_test_id("history").inner_text().count("inputs changed") == 1

    page.keyboard.press("Escape")  # the focus is back on the edited value, inside the panel
    panel.wait_for(state="hidden")


def test_the_sidebar_skips_an_error_group(page: Page, jupyter: JupyterServer, tmp_path: Path) -> None:
    script = tmp_path / "owner.py"
    script.write_text(WORKFLOW + textwrap.dedent('''
        import time
        from nbflow.states import RunStatus
        run = wf.run(params={"n": 1000}, break_on_error=True)
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
        row = page.locator(f"[data-testid=run-row][data-run-id='{run_id}']")
        row.click(timeout=15_000)
        css = f".nbflow-lab-run[data-run-id='{run_id}'] .nbflow-widget"
        view = page.locator(css)
        view.wait_for(timeout=15_000)
        click = Clicks()
        click(view.get_by_role("button", name="Errors", exact=True))
        _skip_group(view, click, "TypeError")
        assert _group(view, "ValueError").inner_text().startswith(f"ValueError {TIMES} 12")
        done = [c for c in _commands(jupyter.db_url, run_id) if c["verb"] == "skip" and c["result"] == "ok"]
        assert [_keys(c.get("target")) for c in done] == [set(map(str, NONE_KEYS))]
    finally:
        owner.terminate()
        owner.wait(timeout=20)

