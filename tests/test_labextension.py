"""The prebuilt JupyterLab extension ("Workflow runs" sidebar): its built files are committed (no node
needed to install) and JupyterLab finds it enabled."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BUILT = ROOT / "nbflow" / "labextension"


def test_built_extension_files_exist() -> None:
    meta = json.loads((BUILT / "package.json").read_text())
    assert meta["name"] == "nbflow-labextension"
    load = meta["jupyterlab"]["_build"]["load"]
    assert (BUILT / load).is_file()
    assert any(p.name.startswith("remoteEntry.") for p in (BUILT / "static").iterdir())


def test_wheel_ships_the_extension_as_shared_data() -> None:
    text = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'"nbflow/labextension"\s*=\s*"share/jupyter/labextensions/nbflow-labextension"', text)


def test_jupyter_labextension_list_shows_it_enabled() -> None:
    out = subprocess.run([sys.executable, "-m", "jupyterlab.labextensions", "list"], capture_output=True, text=True,
                         timeout=120, check=False)
    text = re.sub(r"\x1b\[[0-9;]*m", "", out.stdout + out.stderr)
    line = next((ln for ln in text.splitlines() if "nbflow-labextension" in ln), None)
    if line is None:
        pytest.fail("nbflow-labextension is not installed: for an editable install run "
                    "`jupyter labextension develop --overwrite .` in the repository\n" + text)
    assert "enabled" in line and "OK" in line, line


def test_committed_bundle_was_built_from_todays_sources() -> None:
    """The sidebar bundles the widget's view: rebuilding is needed after either changes."""
    import hashlib

    sources = [p for d in ("src", "style") for p in sorted((ROOT / "labextension" / d).iterdir())]
    sources += sorted((ROOT / "js" / "src").iterdir())  # the widget's view, every module of it
    digest = hashlib.sha256()
    for path in sources:
        digest.update(path.read_bytes())
    assert (BUILT / "sources.sha256").read_text().strip() == digest.hexdigest(), (
        "nbflow/labextension is stale: run `npm ci --prefix js && cd labextension && npm ci && npm run build`"
    )
