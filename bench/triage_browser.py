"""Issue 16: the run's view in Chromium for a 100,000-item foreach: first paint and a page change.

Starts JupyterLab (tests/browser/server.py: a throwaway server, token, store; the labextension built
in this tree) and Debian's chromium through Playwright, opens a notebook whose kernel makes and owns
two 100,000-item runs (the workflow of bench/triage_100k.py: ``paused`` at a breakpoint on every item,
``errors`` with 1,700 items paused on an error), and per round, for each run, in two surfaces:

* the **sidebar** ("Workflow runs"): *first paint* from the click on the run's row to the view's
  instance table showing its first rows (a new panel each round: the previous one is closed);
* the **notebook widget**: *first paint* from running a cell that shows the run (a new ``Run``
  handle: a new widget each round) to its table showing rows;
* in both, *page change*: from the click on the "Next" button to the table showing the next page
  (its page info).

Run it from the repository's root: ``python3 -m bench.triage_browser`` (it uses the tests' server
helper). Prints JSON: the median and the spread of ``--rounds`` rounds per run (target: each under 1 s).
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import nbflow
from bench.triage_100k import machine
from tests.browser.fixtures import CHROMIUM, CHROMIUM_ARGS
from tests.browser.notebook import open_notebook, write_notebook
from tests.browser.server import JupyterServer

ROOT = Path(__file__).resolve().parents[1]
SETTLE_S = 1.0
"""The pause before each timed click: a person does not click within milliseconds of the last
answer (the sidebar's list refreshes every 2 s; a click that meets that refresh waits for it)."""

CLOSE_PANELS = """() => {
  for (const w of Array.from(window.jupyterapp.shell.widgets('main'))) {
    if (w.id.startsWith('nbflow-run-panel-')) w.close();
  }
}"""


def page_change(page: Any, view: Any, settle: float) -> tuple[float, str]:
    """Seconds from a click on "Next" to the table's page info changing, and ``"before -> after"``."""
    info = view.locator("[data-testid=page-info]")
    before = info.inner_text()
    time.sleep(settle)
    t0 = time.perf_counter()
    view.locator("[data-testid=page-next]").click()
    page.wait_for_function("([el, text]) => el.textContent !== text", arg=[info.element_handle(), before],
                           timeout=30_000)
    return time.perf_counter() - t0, f"{before} -> {info.inner_text()}"


def spread(values: list[float]) -> dict[str, Any]:
    return {"median_ms": round(statistics.median(values) * 1000, 1),
            "min_ms": round(min(values) * 1000, 1), "max_ms": round(max(values) * 1000, 1)}


def measure(page: Any, run_id: str, rounds: int, settle: float) -> dict[str, Any]:
    row = page.locator(f"[data-testid=run-row][data-run-id='{run_id}']")
    row.wait_for(timeout=30_000)
    view = page.locator(f".nbflow-lab-run[data-run-id='{run_id}'] .nbflow-widget[data-run-id='{run_id}']")
    first, change = [], []
    info_text = ""
    for _ in range(rounds):
        page.evaluate(CLOSE_PANELS)
        view.wait_for(state="detached", timeout=10_000)
        time.sleep(settle)
        t0 = time.perf_counter()
        row.click()
        view.locator("tr[data-testid=instance-row]").first.wait_for(timeout=30_000)
        first.append(time.perf_counter() - t0)
        took, info_text = page_change(page, view, settle)
        change.append(took)
    return {"first_paint": spread(first), "page_change": spread(change), "page_info": info_text,
            "rows_shown": view.locator("tr[data-testid=instance-row]").count()}


NOTEBOOK = "triage.ipynb"
RUN_CELL = """(i) => {
  const app = window.jupyterapp;
  const panel = Array.from(app.shell.widgets('main')).find(w => w.context && w.context.path === 'triage.ipynb');
  app.shell.activateById(panel.id);
  panel.content.activeCellIndex = i;
  return app.commands.execute('notebook:run-cell');
}"""
CLOSE_CELL = 3
"""The cell that closes the widgets the earlier rounds opened (each would go on refreshing every 5 s)."""
MARK_OLD = "() => document.querySelectorAll('.nbflow-widget').forEach(e => e.setAttribute('data-bench-old', ''))"


def setup_cells(db_url: str, n: int) -> list[str]:
    """The notebook: its kernel makes and owns the two runs (cell 0); cells 1 and 2 each show one
    through a new ``Run`` handle, so each execution opens a new widget (a first paint, not a re-render);
    cell 3 closes the widgets shown so far; cell 4 cancels the runs."""
    make = "workflow({url!r}, 'browser_{name}').run(params={{'n': {n}, 'bad': True}}, {how})"
    setup = "\n".join([
        "import sys", f"sys.path.insert(0, {str(ROOT)!r})", "import nbflow", "from bench.triage_100k import workflow",
        "paused = " + make.format(url=db_url, name="paused", n=n, how="breakpoints=['parse']"),
        "errors = " + make.format(url=db_url, name="errors", n=n, how="break_on_error=True"),
        "print('ready:', paused.wait(), errors.wait())",
    ])
    return [
        setup + "\nfrom nbflow.notebook.widget import widget_for\nshown = []",
        "shown.append(nbflow.Run(paused.store, paused.id))\nshown[-1]",
        "shown.append(nbflow.Run(errors.store, errors.id))\nshown[-1]",
        "for r in shown:\n    widget_for(r).close()\nshown.clear()",
        "paused.cancel(); errors.cancel()",
    ]


def measure_notebook(page: Any, cell: int, run_id: str, rounds: int, settle: float) -> dict[str, Any]:
    new = f".jp-Notebook .nbflow-widget[data-run-id='{run_id}']:not([data-bench-old])"
    first, change = [], []
    info_text = ""
    for _ in range(rounds):
        page.evaluate(RUN_CELL, CLOSE_CELL)  # the earlier rounds' widgets stop their live updates
        page.evaluate(MARK_OLD)
        time.sleep(settle)
        t0 = time.perf_counter()
        page.evaluate(RUN_CELL, cell)
        view = page.locator(new)
        view.locator("tr[data-testid=instance-row]").first.wait_for(timeout=60_000)
        first.append(time.perf_counter() - t0)
        took, info_text = page_change(page, view, settle)
        change.append(took)
    return {"first_paint": spread(first), "page_change": spread(change), "page_info": info_text}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=100_000, help="items of the foreach")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--settle", type=float, default=SETTLE_S, help="seconds of pause before each timed click")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    out: dict[str, Any] = {"n": args.n, "rounds": args.rounds, "settle_s": args.settle, "machine": machine()}
    with tempfile.TemporaryDirectory() as tmp:
        server = JupyterServer(Path(tmp))
        # the labextension built in this tree (nbflow/labextension), not a copy installed earlier
        # in sys.prefix: JupyterLab looks in $JUPYTER_DATA_DIR/labextensions first
        shipped = Path(tmp) / "data" / "labextensions"
        shipped.mkdir(parents=True)
        (shipped / "nbflow-labextension").symlink_to(ROOT / "nbflow" / "labextension")
        server.start()
        try:
            write_notebook(server.root / NOTEBOOK, setup_cells(server.db_url, args.n))
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
                out["chromium"] = browser.version
                page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
                open_notebook(page, server, NOTEBOOK)
                page.evaluate(RUN_CELL, 0)
                page.locator(".jp-OutputArea-output", has_text="ready: paused paused").wait_for(timeout=300_000)
                ids = {name: nbflow.runs(server.db_url, workflow=f"browser_{name}")[0].id
                       for name in ("paused", "errors")}
                page.locator(".jp-SideBar [data-id='nbflow-runs']").click()
                page.locator("#nbflow-runs").wait_for(state="visible")
                for name, run_id in ids.items():
                    out[f"sidebar_{name}"] = measure(page, run_id, args.rounds, args.settle)
                page.evaluate(CLOSE_PANELS)
                for cell, (name, run_id) in enumerate(ids.items(), start=1):
                    out[f"notebook_{name}"] = measure_notebook(page, cell, run_id, args.rounds, args.settle)
                page.evaluate(RUN_CELL, CLOSE_CELL)
                page.evaluate(RUN_CELL, CLOSE_CELL + 1)
                time.sleep(2)
                browser.close()
        finally:
            server.stop()
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
