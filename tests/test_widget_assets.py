"""The debugger view's code and styles ship once, not in each widget's state (issue 19): a live view's
state carries a small loader; the server extension serves the view under its digest and the kernel
sends it where the route is missing; a batch executor (papermill) saves the static view and no widget
state; JupyterLab renders the live view either way and shows a batch notebook's static view."""
from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nbformat
import pytest
import requests
from browser.notebook import open_notebook, run_all_cells, wait_kernel_idle, write_notebook

from nbflow.notebook.assets import SERVED_ENV, asset, assets_id, loader_esm

if TYPE_CHECKING:
    from api_server import Server
    from browser.server import JupyterServer
    from playwright.sync_api import Page

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
KB = 1024
SETUP = textwrap.dedent("""\
    import nbflow
    wf = nbflow.Workflow("assets")

    @wf.step
    def load():
        return list(range(5))

    @wf.step
    def double(load):
        return [x * 2 for x in load]

    @wf.step
    def total(double):
        return sum(double)
""")
SHOW = "run = wf.run()\nrun.wait()\nrun"


# ------------------------------------------------------------------ a kernel (no browser)
def _in_kernel(code: str, then: Any = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]], Any]:
    """Run *code* in a real kernel as a front end would (allow_stdin true): the execute results, the
    comm_open contents, and what *then(kc, results, opened)* returns."""
    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(kernel_name="python3")  # NBFLOW_DB: the db_url fixture set it
    try:
        results: list[dict[str, Any]] = []
        opened: list[dict[str, Any]] = []

        def hook(msg: dict[str, Any]) -> None:
            if msg["msg_type"] == "execute_result":
                results.append(msg["content"]["data"])
            elif msg["msg_type"] == "comm_open":
                opened.append(msg["content"])

        reply = kc.execute_interactive(code, output_hook=hook, timeout=60, allow_stdin=True)
        assert reply["content"]["status"] == "ok", reply["content"]
        extra = then(kc, results, opened) if then else None
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    return results, opened, extra


def _state_of(results: list[dict[str, Any]], opened: list[dict[str, Any]]) -> dict[str, Any]:
    model_id = results[-1][WIDGET_MIME]["model_id"]
    state: dict[str, Any] = next(o["data"]["state"] for o in opened if o["comm_id"] == model_id)
    return state


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> None:
    """The kernel is one nbflow's server extension started (it sets this in the kernels' environment)."""
    monkeypatch.setenv(SERVED_ENV, assets_id())


def test_a_live_views_state_carries_the_loader_not_the_views_code(db_url: str, served: None) -> None:
    results, opened, _ = _in_kernel(SETUP + SHOW)

    state = _state_of(results, opened)
    assert state["_esm"] == loader_esm() and assets_id() in state["_esm"]
    assert "_css" not in state and len(state["_esm"]) < 4 * KB
    assert len(json.dumps(state)) < 10 * KB  # was ~160 KB: the view's 127 KB of code and 27 KB of CSS
    assert state["summary"]["status"] == "succeeded"


def test_a_kernel_no_nbflow_server_started_carries_the_whole_view(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """VS Code, Colab, a server without the extension or with another nbflow: its page may have no route,
    and a kernel busy running the cell could not answer the loader until the cell ends."""
    monkeypatch.setenv(SERVED_ENV, "another-build")
    results, opened, _ = _in_kernel(SETUP + SHOW)

    state = _state_of(results, opened)
    assert state["_esm"].encode() == asset("widget.js") and state["_css"].encode() == asset("widget.css")
    assert state["summary"]["status"] == "succeeded"


def test_the_kernel_sends_the_views_code_and_css_when_the_loader_asks(db_url: str, served: None) -> None:
    def ask(kc: Any, results: list[dict[str, Any]], opened: list[dict[str, Any]]) -> dict[str, Any]:
        model_id = results[-1][WIDGET_MIME]["model_id"]
        msg = kc.session.msg("comm_msg", {"comm_id": model_id, "data": {"method": "custom", "content": {
            "id": "q1", "kind": "anywidget-command", "name": "assets", "msg": {}}}})
        kc.shell_channel.send(msg)
        while True:
            m = kc.get_iopub_msg(timeout=30)
            data = m["content"].get("data", {}) if m["msg_type"] == "comm_msg" else {}
            if data.get("method") == "custom" and data["content"].get("id") == "q1":
                answer: dict[str, Any] = data["content"]["response"]
                return answer

    _, _, answer = _in_kernel(SETUP + SHOW, then=ask)

    assert answer["id"] == assets_id()
    assert answer["js"].encode() == asset("widget.js") and answer["css"].encode() == asset("widget.css")


def test_nbflow_widget_static_makes_a_front_end_get_the_static_view_only(db_url: str) -> None:
    code = "import os; os.environ['NBFLOW_WIDGET'] = 'static'\n" + SETUP + SHOW

    results, opened, _ = _in_kernel(code)

    assert WIDGET_MIME not in results[-1] and "text/html" in results[-1]
    assert not [o for o in opened if o.get("target_name") == "jupyter.widget"]


def test_an_unknown_nbflow_widget_value_is_named_in_a_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    from nbflow.notebook.display import frontend_connected

    monkeypatch.setenv("NBFLOW_WIDGET", "yes")
    with pytest.warns(UserWarning, match=r"NBFLOW_WIDGET='yes' is not 'live' or 'static'"):
        assert frontend_connected() is True  # no kernel here: as if a front end ran it


# ------------------------------------------------------------------ the server extension's route
def test_the_server_serves_the_view_under_its_digest_without_a_login(server: Server) -> None:
    for name, kind in (("widget.js", "text/javascript"), ("widget.css", "text/css")):
        got = requests.get(f"{server.url}/nbflow/static/{assets_id()}/{name}", timeout=20)

        assert got.status_code == 200 and got.content == asset(name)
        assert got.headers["Content-Type"].startswith(kind)
        assert "immutable" in got.headers["Cache-Control"]


def test_the_server_answers_404_for_another_digest_or_file(server: Server) -> None:
    other = "0" * 16 if assets_id() != "0" * 16 else "1" * 16

    assert requests.get(f"{server.url}/nbflow/static/{other}/widget.js", timeout=20).status_code == 404
    assert requests.get(f"{server.url}/nbflow/static/{assets_id()}/loader.js", timeout=20).status_code == 404


# ------------------------------------------------------------------ a batch run (real papermill)
def _batch(tmp_path: Path, displays: int) -> Path:
    import papermill

    src, out = tmp_path / f"in{displays}.ipynb", tmp_path / f"out{displays}.ipynb"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(SETUP)]
                                  + [nbformat.v4.new_code_cell(SHOW) for _ in range(displays)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, src)
    papermill.execute_notebook(str(src), str(out), cwd=str(tmp_path), progress_bar=False)  # NBFLOW_DB: the caller
    return out


def test_a_papermill_notebook_saves_the_static_view_and_no_widget_state(db_url: str, tmp_path: Path) -> None:
    out = _batch(tmp_path, 2)

    saved = json.loads(out.read_text())
    shown = [o["data"] for c in saved["cells"] for o in c.get("outputs", []) if "data" in o]
    assert len(shown) == 2 and all(WIDGET_MIME not in d for d in shown)
    pages = ["".join(d["text/html"]) for d in shown]  # a saved multi-line string is a list of lines
    assert all("<svg" in html or "<table" in html for html in pages)
    assert not saved["metadata"].get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {}).get("state")


def test_a_papermill_notebooks_displays_import_no_widget_library(db_url: str, tmp_path: Path) -> None:
    """The static view needs neither anywidget nor ipywidgets: a batch run does not pay their import."""
    import papermill

    src, out = tmp_path / "in.ipynb", tmp_path / "out.ipynb"
    probe = "import sys; print(sorted(m for m in ('anywidget', 'ipywidgets') if m in sys.modules))"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in (SETUP, SHOW, probe)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, src)
    papermill.execute_notebook(str(src), str(out), cwd=str(tmp_path), progress_bar=False)

    cells = json.loads(out.read_text())["cells"]
    assert any("<svg" in "".join(o.get("data", {}).get("text/html", "")) for o in cells[1]["outputs"])
    assert "".join(cells[2]["outputs"][0]["text"]).strip() == "[]"


def test_each_displayed_run_adds_at_most_10_kb_to_a_papermill_notebook(db_url: str, tmp_path: Path) -> None:
    one, three = _batch(tmp_path, 1), _batch(tmp_path, 3)

    assert (three.stat().st_size - one.stat().st_size) / 2 <= 10 * KB


# ------------------------------------------------------------------ JupyterLab (real chromium)
def _widget_root(page: Page) -> str:
    page.wait_for_selector(".nbflow-widget[data-run-id][data-status=succeeded]", timeout=60_000)
    return page.evaluate("() => document.querySelectorAll('.nbflow-widget[data-run-id]').length")


@pytest.mark.timeout(240)
def test_jupyterlab_loads_the_view_once_from_the_server_for_two_live_views(page: Page, jupyter: JupyterServer) -> None:
    fetched: list[str] = []
    page.on("request", lambda r: fetched.append(r.url) if "/nbflow/static/" in r.url else None)
    write_notebook(jupyter.root / "two_views.ipynb", [SETUP, SHOW, SHOW])
    open_notebook(page, jupyter, "two_views.ipynb")
    run_all_cells(page, jupyter)

    page.wait_for_function("() => document.querySelectorAll('.nbflow-widget[data-status=succeeded]').length === 2",
                           timeout=60_000)
    assert [u.split("?")[0].rsplit("/", 1)[-1] for u in fetched].count("widget.js") == 1
    style = page.evaluate(f"() => document.getElementById('nbflow-widget-{assets_id()}').tagName")
    assert style == "LINK"  # the CSS came from the route too
    assert page.locator(".nbflow-widget g[data-testid=node][data-step=double]").count() == 2


@pytest.mark.timeout(240)
def test_jupyterlab_gets_the_view_from_the_kernel_when_the_route_is_missing(page: Page,
                                                                            jupyter: JupyterServer) -> None:
    page.route("**/nbflow/static/**", lambda route: route.fulfill(status=404, body="not here"))
    write_notebook(jupyter.root / "no_route.ipynb", [SETUP, SHOW])
    open_notebook(page, jupyter, "no_route.ipynb")
    run_all_cells(page, jupyter)

    assert _widget_root(page) == 1
    style = page.evaluate(f"() => document.getElementById('nbflow-widget-{assets_id()}').tagName")
    assert style == "STYLE"  # the CSS came from the kernel
    page.locator(".nbflow-widget g[data-testid=node][data-step=double]").wait_for(timeout=30_000)


@pytest.mark.timeout(300)
def test_a_papermill_notebook_reopened_in_jupyterlab_shows_the_static_view(page: Page, jupyter: JupyterServer,
                                                                           tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NBFLOW_DB", jupyter.db_url)
    out = _batch(tmp_path, 1)
    (jupyter.root / "batch_out.ipynb").write_bytes(out.read_bytes())
    open_notebook(page, jupyter, "batch_out.ipynb")
    wait_kernel_idle(page, jupyter)

    (run_id,) = re.findall(r"<nbflow\.Run (\w+) ", out.read_text())
    output = page.locator(".jp-OutputArea-output", has_text=run_id).last
    output.wait_for(timeout=30_000)  # the static view (an untrusted notebook's HTML is sanitized: the SVG's text)
    assert "SUCCEEDED" in output.inner_text() and "double" in output.inner_text()
    assert "Error displaying widget" not in page.locator(".jp-Notebook").inner_text()
    assert page.locator(".nbflow-loading, .nbflow-widget").count() == 0
