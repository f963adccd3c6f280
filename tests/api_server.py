"""A real `jupyter server` on 127.0.0.1 with only nbflow's extension enabled, for the tests of the REST API:
the `Server` handle and the module-scoped `server` fixture (tests/conftest.py registers it for every test module)."""
from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.browser.server import free_port


@dataclass
class Server:
    url: str
    token: str
    db: str
    proc: subprocess.Popen[bytes]
    log: Path

    def api(self, path: str) -> str:
        return f"{self.url}/nbflow/api/{path}"

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"token {self.token}"}

    def get(self, path: str, **kw: Any) -> requests.Response:
        return requests.get(self.api(path), headers=self.auth, timeout=20, **kw)

    def post(self, path: str, body: Any, **kw: Any) -> requests.Response:
        return requests.post(self.api(path), headers=self.auth, json=body, timeout=30, **kw)


@contextlib.contextmanager
def running_server(base: Path, extra_args: tuple[str, ...] = (), env_extra: dict[str, str] | None = None
                   ) -> Iterator[Server]:
    """`jupyter server` with only nbflow enabled explicitly in its (isolated) config under *base* (an
    editable install does not put the shipped `etc/jupyter` file in place); *extra_args* are added to
    its command line (e.g. an authorizer class)."""
    for d in ("config", "data", "runtime", "root"):
        (base / d).mkdir()
    (base / "config" / "jupyter_server_config.json").write_text(json.dumps({"ServerApp": {"jpserver_extensions": {
        "nbflow": True, "jupyterlab": False, "notebook": False, "jupyter_lsp": False,
        "jupyter_server_terminals": False, "notebook_shim": False,
    }}}))
    db = f"sqlite:///{base / 'nbflow.db'}"
    port, token = free_port(), secrets.token_hex(16)
    env = {**os.environ, "NBFLOW_DB": db, "JUPYTER_CONFIG_DIR": str(base / "config"),
           "JUPYTER_DATA_DIR": str(base / "data"), "JUPYTER_RUNTIME_DIR": str(base / "runtime"),
           "JUPYTER_PLATFORM_DIRS": "1", **(env_extra or {})}
    env.pop("JUPYTER_TOKEN", None)
    cmd = [sys.executable, "-m", "jupyter_server", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
           "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={base / 'root'}",
           "--ServerApp.open_browser=False", *extra_args]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--ServerApp.allow_root=True")
    log = base / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    srv = Server(f"http://127.0.0.1:{port}", token, db, proc, log)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                if requests.get(f"{srv.url}/api/status", headers=srv.auth, timeout=2).ok:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        yield srv
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`jupyter server` with only nbflow enabled (:func:`running_server`)."""
    with running_server(tmp_path_factory.mktemp("jpserver")) as srv:
        yield srv
