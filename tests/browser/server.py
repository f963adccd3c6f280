"""A throwaway Jupyter server (JupyterLab + Notebook 7) on 127.0.0.1 with a generated token and a temp root."""
from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class JupyterServer:
    """`jupyter lab` as a subprocess; `start()` returns once `/api/status` answers, `stop()` shuts it down."""

    base: Path  # scratch dir: root/, jupyter config/data/runtime dirs, the log, the store
    port: int = field(default_factory=free_port)
    token: str = field(default_factory=lambda: secrets.token_hex(24))
    proc: subprocess.Popen[bytes] | None = None

    @property
    def root(self) -> Path:
        return self.base / "root"

    @property
    def log_path(self) -> Path:
        return self.base / "server.log"

    @property
    def db_url(self) -> str:
        return f"sqlite:///{self.base / 'nbflow.db'}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def page_url(self, path: str, query: str = "") -> str:
        """`path` like `lab/tree/x.ipynb` or `notebooks/x.ipynb`, with the token (and `query`, e.g. `reset`)."""
        return f"{self.url}/{path.lstrip('/')}?{query + '&' if query else ''}token={self.token}"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        for name in ("config", "data", "runtime", "ipython"):
            (self.base / name).mkdir(parents=True, exist_ok=True)
        env.update(
            NBFLOW_DB=self.db_url,
            # isolate from the user's Jupyter/IPython config, settings and workspaces
            JUPYTER_CONFIG_DIR=str(self.base / "config"),
            JUPYTER_DATA_DIR=str(self.base / "data"),
            JUPYTER_RUNTIME_DIR=str(self.base / "runtime"),
            JUPYTERLAB_SETTINGS_DIR=str(self.base / "config" / "lab" / "user-settings"),
            JUPYTERLAB_WORKSPACES_DIR=str(self.base / "config" / "lab" / "workspaces"),
            IPYTHONDIR=str(self.base / "ipython"),
            JUPYTER_PLATFORM_DIRS="1",
            # in a virtual environment Jupyter looks in the environment's data folder first (jupyter_core 5):
            # the copy `pip install` put there, not this checkout's build linked into JUPYTER_DATA_DIR below
            JUPYTER_PREFER_ENV_PATH="0",
            PYTHONUNBUFFERED="1",
        )
        env.pop("JUPYTER_TOKEN", None)
        return env

    def start(self, timeout: float = 90.0) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        # this checkout's built sidebar, not whichever copy is installed: the server's own data dir
        # (JUPYTER_DATA_DIR) comes first on JupyterLab's extension path
        built = Path(__file__).resolve().parents[2] / "nbflow" / "labextension"
        link = self.base / "data" / "labextensions" / "nbflow-labextension"
        if (built / "package.json").is_file() and not link.exists():
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(built, target_is_directory=True)
        settings = self.base / "config" / "lab" / "user-settings"  # JUPYTERLAB_SETTINGS_DIR (Lab and Notebook 7)
        # no "receive Jupyter news?" toast over the page
        overrides = settings / "@jupyterlab" / "apputils-extension"
        overrides.mkdir(parents=True, exist_ok=True)
        (overrides / "notification.jupyterlab-settings").write_text(
            json.dumps({"fetchNews": "false", "checkForUpdates": False})
        )
        cmd = [
            sys.executable, "-m", "jupyterlab",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={self.port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={self.root}",
            "--ServerApp.open_browser=False",
            "--LabApp.expose_app_in_browser=True",
            "--JupyterNotebookApp.expose_app_in_browser=True",
            "--LabApp.news_url=None",
            "--ServerApp.terminals_enabled=False",
            "--LabApp.extension_manager=readonly",  # no PyPI queries from the extension manager
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:  # CI containers
            cmd.append("--ServerApp.allow_root=True")
        log = open(self.log_path, "wb")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(
            cmd, cwd=self.root, env=self.env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyter lab exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                self.api("GET", "/api/status", timeout=2)
                return
            except (OSError, urllib.error.URLError):
                time.sleep(0.25)
        self.stop()
        raise TimeoutError(f"jupyter lab did not answer /api/status within {timeout}s:\n{self.log_tail()}")

    def api(self, method: str, path: str, body: Any = None, timeout: float = 10) -> Any:
        """Call the REST API with the token; returns the decoded JSON body (or None)."""
        sep = "&" if "?" in path else "?"
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"{self.url}{path}{sep}token={self.token}", data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # loopback only
            text = resp.read()
        return json.loads(text) if text else None

    def shutdown_kernels(self) -> None:
        """Stop every kernel (and with it every run scheduler it owns)."""
        try:
            for k in self.api("GET", "/api/kernels"):
                self.api("DELETE", f"/api/kernels/{k['id']}", timeout=20)
        except (OSError, urllib.error.URLError):
            pass

    def stop(self, timeout: float = 20.0) -> None:
        """Clean shutdown through `/api/shutdown` (kernels included); SIGTERM, then SIGKILL, if it hangs."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        try:
            self.api("POST", "/api/shutdown", timeout=5)
        except (OSError, urllib.error.URLError):
            pass
        try:
            proc.wait(timeout=timeout)
            return
        except subprocess.TimeoutExpired:
            pass
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                proc.wait(timeout=5)
                return
            except subprocess.TimeoutExpired:
                continue

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no server log)"
