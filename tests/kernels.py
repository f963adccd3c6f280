"""A real kernel for the magics' tests (jupyter_client): each cell's outputs, its execute reply's
payloads (``set_next_input``), and answers to the kernel's stdin requests (the debugger's prompts)."""
from __future__ import annotations

import os
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.manager import KernelManager, start_new_kernel

from nbflow import Run, Store


@dataclass
class Reply:
    """What a cell showed (its output messages) and its execute reply (status, payloads)."""

    status: str = "?"
    outputs: list[dict[str, Any]] = field(default_factory=list)
    payload: list[dict[str, Any]] = field(default_factory=list)
    prompts: list[str] = field(default_factory=list)  # what the kernel asked on stdin (the debugger's prompts)

    def stream(self) -> str:
        return "".join(o["content"]["text"] for o in self.outputs if o["msg_type"] == "stream")

    @property
    def result(self) -> str:
        """The cell's value as text (its execute_result)."""
        return "".join(o["content"]["data"].get("text/plain", "") for o in self.outputs
                       if o["msg_type"] == "execute_result")

    @property
    def errors(self) -> list[dict[str, Any]]:
        return [o["content"] for o in self.outputs if o["msg_type"] == "error"]

    @property
    def next_input(self) -> str | None:
        """The text of the new cell the kernel asked the front end to insert."""
        texts = [p["text"] for p in self.payload if p.get("source") == "set_next_input"]
        return texts[-1] if texts else None

    @property
    def shown(self) -> str:
        return self.stream() + self.result + "\n".join("\n".join(e["traceback"]) for e in self.errors)


class Kernel:
    def __init__(self, km: KernelManager, kc: BlockingKernelClient, url: str) -> None:
        self.km, self.kc, self.url = km, kc, url

    def __call__(self, code: str, answers: list[str] | None = None, timeout: float = 60) -> Reply:
        """Run *code*; each stdin request (the debugger's prompt) is answered with the next of *answers*."""
        reply = Reply()
        left = list(answers or [])

        def output(msg: dict[str, Any]) -> None:
            if msg["msg_type"] in ("stream", "execute_result", "display_data", "error"):
                reply.outputs.append(msg)

        def stdin(msg: dict[str, Any]) -> None:
            reply.prompts.append(msg["content"]["prompt"])
            self.kc.input(left.pop(0) if left else "q")

        got = self.kc.execute_interactive(textwrap.dedent(code).strip("\n"), output_hook=output, stdin_hook=stdin,
                                          allow_stdin=True, timeout=timeout)
        reply.status = got["content"]["status"]
        reply.payload = got["content"].get("payload", [])
        return reply

    def ok(self, code: str, answers: list[str] | None = None) -> Reply:
        reply = self(code, answers)
        assert reply.status == "ok", reply.shown
        return reply

    def value(self, expr: str) -> str:
        return self.ok(f"print(repr({expr}))").stream().strip()

    def run(self) -> Run:
        return Run(Store.open(self.url), self.value("nbflow_run.id").strip("'"))


def start(root: Path) -> Iterator[Kernel]:
    """A kernel with the magics loaded, its store a fresh SQLite file in *root* (NBFLOW_DB); shut down after."""
    url = f"sqlite:///{root / 'nbflow.db'}"
    env = {**os.environ, "NBFLOW_DB": url}
    km, kc = start_new_kernel(kernel_name="python3", env=env, cwd=str(root), startup_timeout=60)
    k = Kernel(km, kc, url)
    try:
        k.ok("%load_ext nbflow")
        yield k
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def wait_status(run: Run, wanted: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if run.status == wanted:
            return
        time.sleep(0.05)
    raise AssertionError(f"run {run.id} is {run.status}, not {wanted}")
