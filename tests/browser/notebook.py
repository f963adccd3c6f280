"""Write a notebook with nbformat, open it in JupyterLab or Notebook 7, run it, and wait for the kernel."""
from __future__ import annotations

import time
from pathlib import Path

import nbformat
from playwright.sync_api import Page

from .server import JupyterServer


def write_notebook(path: Path, cells: list[str]) -> Path:
    """A Python 3 notebook with one code cell per source string (no outputs)."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    nb.cells = [nbformat.v4.new_code_cell(src) for src in cells]
    nbformat.write(nb, str(path))
    return path


def open_notebook(page: Page, server: JupyterServer, name: str, ui: str = "lab", timeout: float = 60) -> None:
    """Open `name` (relative to the server root) in JupyterLab (`ui="lab"`) or Notebook 7 (`ui="notebook"`)
    and wait until its kernel is idle."""
    if ui == "lab":  # `reset`: a fresh workspace, so no tab of an earlier test is restored next to this one
        page.goto(server.page_url(f"lab/tree/{name}", "reset"))
    else:
        page.goto(server.page_url(f"notebooks/{name}"))
    page.wait_for_function(
        """(name) => {
            const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
            return !!w && !!w.context && w.context.path === name && !!w.node.querySelector('.jp-Notebook .jp-Cell');
        }""",
        arg=name,
        timeout=timeout * 1000,
    )
    wait_kernel_idle(page, server, timeout)


def kernel_status(page: Page) -> str | None:
    """The status of the kernel of the notebook panel in front (`idle`, `busy`, `starting`, ...)."""
    return page.evaluate(
        """() => {
            const w = window.jupyterapp.shell.currentWidget;
            const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
            return k ? k.status : null;
        }"""
    )


def wait_kernel_idle(page: Page, server: JupyterServer, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    status = None
    while time.monotonic() < deadline:
        status = kernel_status(page)
        if status == "idle":
            return
        page.wait_for_timeout(200)
    raise TimeoutError(f"kernel not idle after {timeout}s (status {status!r})\n{server.log_tail(20)}")


def run_all_cells(page: Page, server: JupyterServer, timeout: float = 90) -> None:
    """Run every cell through the app's own command, then wait until each code cell has an execution count
    and the kernel is idle again. Fails with the first error output, if any."""
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
    deadline = time.monotonic() + timeout
    counts: list[str] = []
    while time.monotonic() < deadline:
        counts = page.evaluate(
            """() => Array.from(window.jupyterapp.shell.currentWidget.node
                        .querySelectorAll('.jp-Notebook .jp-CodeCell .jp-InputPrompt'))
                        .map(e => e.textContent.trim())"""
        )
        if counts and all(c and "*" not in c and c != "[ ]:" for c in counts) and kernel_status(page) == "idle":
            break
        page.wait_for_timeout(200)
    else:
        raise TimeoutError(f"cells did not finish within {timeout}s; prompts {counts}\n{server.log_tail(20)}")
    error = page.evaluate(
        """() => { const e = window.jupyterapp.shell.currentWidget.node
                .querySelector(".jp-RenderedText[data-mime-type='application/vnd.jupyter.error']");
                return e ? e.textContent : null; }"""
    )
    if error:
        raise AssertionError(f"a cell raised:\n{error}")
