"""Issue 16: the run's view in Chromium for a 100,000-item foreach: first paint and a page change.

Starts JupyterLab (tests/browser/server.py: a throwaway server, token, store) and Debian's chromium
through Playwright, makes two 100,000-item runs in the server's store (owned by this process, so
they stay live: ``paused`` at a breakpoint on every item, ``errors`` with 1,700 items paused on an
error; the workflow of bench/triage_100k.py), opens the "Workflow runs" sidebar, and per round:

* **first paint**: from the click on the run's row in the sidebar to the view's instance table
  showing its first rows (a new panel each round: the previous one is closed);
* **page change**: from the click on the "Next" button to the table showing the next page (its page info).

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

from bench.triage_100k import machine, workflow
from nbflow.engine.lifecycle import stop_all
from tests.browser.fixtures import CHROMIUM, CHROMIUM_ARGS
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
        info = view.locator("[data-testid=page-info]")
        before = info.inner_text()
        time.sleep(settle)
        t0 = time.perf_counter()
        view.locator("[data-testid=page-next]").click()
        page.wait_for_function("([el, text]) => el.textContent !== text", arg=[info.element_handle(), before],
                               timeout=30_000)
        change.append(time.perf_counter() - t0)
        info_text = f"{before} -> {info.inner_text()}"
    return {"first_paint": spread(first), "page_change": spread(change), "page_info": info_text,
            "rows_shown": view.locator("tr[data-testid=instance-row]").count()}


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
            paused = workflow(server.db_url, "browser_paused").run(params={"n": args.n, "bad": True},
                                                                   breakpoints=["parse"])
            errors = workflow(server.db_url, "browser_errors").run(params={"n": args.n, "bad": True},
                                                                   break_on_error=True)
            assert paused.wait() == "paused" and errors.wait() == "paused"
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
                out["chromium"] = browser.version
                page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
                page.goto(server.page_url("lab", "reset"))
                page.locator("#jupyterlab-splash").wait_for(state="detached", timeout=90_000)
                page.locator(".jp-SideBar [data-id='nbflow-runs']").click()
                page.locator("#nbflow-runs").wait_for(state="visible")
                for name, run in (("paused", paused), ("errors", errors)):
                    out[name] = measure(page, run.id, args.rounds, args.settle)
                browser.close()
            for run in (paused, errors):
                run.cancel()
            stop_all()
        finally:
            server.stop()
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
