"""The path of a new user: Binder's files (binder/) and the README's first command (scripts/start).

What can be checked without mybinder.org: the files are valid, the scripts are executable bash in
strict mode, and the install steps they name succeed in a fresh virtual environment, after which
Jupyter sees nbflow's JupyterLab extension and its server extension, and `scripts/start` serves the
quickstart notebook. That last part is SLOW (about two minutes: it creates a virtual environment and
installs JupyterLab, papermill, Dask and nbflow into it with pip); it runs in CI like every test.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

ROOT = Path(__file__).resolve().parents[1]
BINDER = ROOT / "binder"
QUICKSTART = "notebooks/00-quickstart.ipynb"
Venv = tuple[Path, dict[str, str]]  # the virtual environment, and the environment variables that use it


def requirement_lines(path: Path) -> list[str]:
    """The requirement specifiers of a pip requirements file (comments and blank lines removed)."""
    lines = []
    for raw in path.read_text().splitlines():
        line = re.sub(r"(^|\s)#.*$", "", raw).strip()
        if line and not line.startswith("-"):  # options such as -c FILE are not requirements
            lines.append(line)
    return lines


def strip_ansi(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


# ---------------------------------------------------------------------------------- the files
def test_binder_requirements_parse_and_name_jupyterlab() -> None:
    reqs = [Requirement(line) for line in requirement_lines(BINDER / "requirements.txt")]
    names = {r.name.lower() for r in reqs}
    assert {"jupyterlab", "papermill", "dask"} <= names
    (lab,) = [r for r in reqs if r.name.lower() == "jupyterlab"]
    assert lab.specifier.contains("4.2.0") and not lab.specifier.contains("5.0.0")  # the sidebar is built for Lab 4


def locked_versions() -> dict[str, str]:
    lock = (ROOT / "requirements" / "lock.txt").read_text()
    pins = re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", lock, re.MULTILINE)
    return {re.sub(r"[-_.]+", "-", name).lower(): version for name, version in pins}


def test_the_lock_pins_every_dependency_the_project_names() -> None:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: the lock pins tomli for it
        import tomli as tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    named = [*project["dependencies"], *project["optional-dependencies"]["dev"],
             *requirement_lines(BINDER / "requirements.txt")]
    locked = locked_versions()
    missing = sorted({re.sub(r"[-_.]+", "-", Requirement(r).name).lower() for r in named} - set(locked))
    assert not missing, f"requirements/lock.txt lacks {missing}: refresh it with ./scripts/lock"
    for req in map(Requirement, named):  # the lock satisfies the ranges
        version = locked[re.sub(r"[-_.]+", "-", req.name).lower()]
        assert req.specifier.contains(version, prereleases=True), f"{req} is locked at {version}"


def test_every_install_uses_the_lock() -> None:
    for script in ("scripts/start", "scripts/test", "binder/postBuild"):
        installs = [ln for ln in (ROOT / script).read_text().splitlines() if "pip install" in ln]
        assert installs and all("-c requirements/lock.txt" in ln for ln in installs), script
    assert "-c ../requirements/lock.txt" in (BINDER / "requirements.txt").read_text().splitlines()


def test_the_readmes_install_commands_install_the_lock_into_a_venv() -> None:
    installs = [ln for ln in (ROOT / "README.md").read_text().splitlines() if "pip install" in ln]
    pinned = ".venv/bin/python3 -m pip install -c requirements/lock.txt"
    assert installs and all(pinned in ln for ln in installs), installs


def test_binder_runtime_is_a_python_the_package_supports() -> None:
    text = (BINDER / "runtime.txt").read_text().strip()
    match = re.fullmatch(r"python-(3\.\d+)", text)
    assert match, f"runtime.txt must read python-3.X, not {text!r}"
    declared = re.search(r'^requires-python = "(.+)"$', (ROOT / "pyproject.toml").read_text(), re.MULTILINE)
    assert declared is not None
    assert SpecifierSet(declared.group(1)).contains(f"{match.group(1)}.0")


def test_binder_apt_txt_installs_graphviz() -> None:
    packages = requirement_lines(BINDER / "apt.txt")
    assert all(re.fullmatch(r"[a-z0-9][a-z0-9+.-]+", p) for p in packages), packages
    assert "graphviz" in packages  # `dot`: the static SVG of a run in saved notebooks


@pytest.mark.parametrize("script", ["binder/postBuild", "binder/start", "scripts/start"])
def test_scripts_are_executable_bash_in_strict_mode(script: str) -> None:
    path = ROOT / script
    text = path.read_text()
    assert os.access(path, os.X_OK), f"{script} is not executable (chmod +x)"
    assert text.startswith("#!/usr/bin/env bash\n")
    assert re.search(r"^set -euo pipefail$", text, re.MULTILINE), f"{script} does not use bash strict mode"
    syntax = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True, check=False)
    assert syntax.returncode == 0, syntax.stderr


def test_binder_postbuild_installs_this_repository() -> None:
    text = (BINDER / "postBuild").read_text()
    assert re.search(r"^python -m pip install .*-e \.$", text, re.MULTILINE)


def test_binder_start_gives_kernels_cli_and_sidebar_one_store(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "NBFLOW_DB"} | {"HOME": str(tmp_path)}
    out = subprocess.run([str(BINDER / "start"), "printenv", "NBFLOW_DB"], env=env, capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == f"sqlite:///{tmp_path}/.nbflow/nbflow.db"
    mine = subprocess.run([str(BINDER / "start"), "printenv", "NBFLOW_DB"], env=env | {"NBFLOW_DB": "sqlite:///x.db"},
                          capture_output=True, text=True, check=True)
    assert mine.stdout.strip() == "sqlite:///x.db"  # a store chosen by the user is kept


def test_readme_starts_with_the_two_commands_and_links_binder_to_the_quickstart() -> None:
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"```bash\n(.*?)```", readme, re.DOTALL)
    assert commands[0].strip() == "./scripts/start" and commands[1].strip() == "./scripts/test"
    assert f"urlpath=lab/tree/{QUICKSTART}" in readme
    assert (ROOT / QUICKSTART).is_file()


# ---------------------------------------------------------------------------------- scripts/python-env
IN_THE_ENV = 'source scripts/python-env && command -v python3 && python3 -c "import sys; print(sys.prefix)"'


def scripts_copy(tmp_path: Path) -> dict[str, str]:
    """A copy of the repository's scripts/ in tmp, and an environment with no virtual environment active."""
    shutil.copytree(ROOT / "scripts", tmp_path / "scripts")
    return {k: v for k, v in os.environ.items() if k not in {"VIRTUAL_ENV", "PYTHONHOME"}}


def in_python_env(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", IN_THE_ENV], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300, check=False)


def test_python_env_makes_a_venv_with_pip_and_puts_its_python_first(tmp_path: Path) -> None:
    done = in_python_env(tmp_path, scripts_copy(tmp_path))

    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-2:] == [str(tmp_path / ".venv" / "bin" / "python3"), str(tmp_path / ".venv")]
    pip = subprocess.run([str(tmp_path / ".venv" / "bin" / "python3"), "-m", "pip", "--version"], check=False)
    assert pip.returncode == 0


def test_python_env_replaces_a_broken_venv(tmp_path: Path) -> None:
    env = scripts_copy(tmp_path)
    broken = tmp_path / ".venv" / "bin" / "python3"
    broken.parent.mkdir(parents=True)
    broken.write_text("#!/bin/sh\nexit 1\n")
    broken.chmod(0o755)

    done = in_python_env(tmp_path, env)

    assert done.returncode == 0, done.stderr
    assert ".venv is broken" in done.stdout
    assert done.stdout.splitlines()[-1] == str(tmp_path / ".venv")
    assert subprocess.run([str(broken), "-c", "import pip"], check=False).returncode == 0


def test_python_env_leaves_no_venv_behind_when_it_cannot_make_one(tmp_path: Path) -> None:
    """Debian's python3 without python3-venv: `python3 -m venv` makes .venv/bin/python3, then fails for
    want of ensurepip. The next run must try again, not take that half-made .venv for a good one."""
    env = scripts_copy(tmp_path)
    fake = tmp_path / "debian-bin" / "python3"
    fake.parent.mkdir()
    fake.write_text(f"#!/bin/sh\n{sys.executable} -m venv --without-pip \"$3\"\n"
                    "echo 'The virtual environment was not created successfully because ensurepip is not available.'\n"
                    "exit 1\n")
    fake.chmod(0o755)
    env["PATH"] = f"{fake.parent}{os.pathsep}{env['PATH']}"

    done = in_python_env(tmp_path, env)

    assert done.returncode == 1
    assert "could not create .venv; install the venv module (Debian/Ubuntu: apt-get install python3-venv)" in (
        done.stderr
    )
    assert not (tmp_path / ".venv").exists()


# ---------------------------------------------------------------------------------- a fresh venv (slow)
@pytest.fixture(scope="module")
def binder_venv(tmp_path_factory: pytest.TempPathFactory) -> Venv:
    """A new virtual environment with what Binder installs: binder/requirements.txt, then binder/postBuild
    run from the repository's root (as repo2docker does). Jupyter's user folders point into tmp, so only
    what the venv holds counts."""
    base = tmp_path_factory.mktemp("binder")
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    drop = {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "NBFLOW_DB", "DISPLAY", "WAYLAND_DISPLAY"}
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("JUPYTER")}
    env |= {
        "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "VIRTUAL_ENV": str(venv),
        "JUPYTER_CONFIG_DIR": str(base / "jupyter-config"),
        "JUPYTER_DATA_DIR": str(base / "jupyter-data"),
        "JUPYTER_RUNTIME_DIR": str(base / "jupyter-runtime"),
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }
    steps = [
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "-r", str(BINDER / "requirements.txt")],
        ["bash", str(BINDER / "postBuild")],
    ]
    for step in steps:
        done = subprocess.run(step, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False)
        assert done.returncode == 0, f"{' '.join(step)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return venv, env


def section(listing: str, header: str) -> str:
    """The lines of a `jupyter ... list` output under *header* (up to the next unindented line)."""
    lines = strip_ansi(listing).splitlines()
    start = next((i for i, ln in enumerate(lines) if ln.strip() == header or ln.strip().endswith(header)), None)
    assert start is not None, f"no section {header!r} in:\n{listing}"
    out = []
    for ln in lines[start + 1:]:
        if ln and not ln[0].isspace():
            break
        out.append(ln)
    return "\n".join(out)


@pytest.mark.timeout(1200)
def test_binder_install_in_a_fresh_venv_installs_the_sidebar_extension(binder_venv: Venv) -> None:
    venv, env = binder_venv
    out = subprocess.run([str(venv / "bin" / "jupyter"), "labextension", "list"], env=env, capture_output=True,
                         text=True, timeout=120, check=False)
    in_venv = section(out.stdout + out.stderr, str(venv / "share" / "jupyter" / "labextensions"))
    assert re.search(r"nbflow-labextension v\S+ enabled\s+OK", in_venv), in_venv


@pytest.mark.timeout(1200)
def test_binder_install_in_a_fresh_venv_enables_the_server_extension(binder_venv: Venv) -> None:
    venv, env = binder_venv
    out = subprocess.run([str(venv / "bin" / "jupyter"), "server", "extension", "list"], env=env, capture_output=True,
                         text=True, timeout=120, check=False)
    in_venv = section(out.stdout + out.stderr, f"Config dir: {venv / 'etc' / 'jupyter'}")
    assert re.search(r"^\s*nbflow enabled$", in_venv, re.MULTILINE), in_venv
    assert re.search(r"^\s*nbflow \S+ OK$", in_venv, re.MULTILINE), in_venv  # it imports in the venv


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.timeout(1200)
def test_scripts_start_in_a_fresh_venv_serves_the_quickstart_and_prints_its_url(
    binder_venv: Venv, tmp_path: Path
) -> None:
    """The README's first command, without a display: it installs (already done: quick), starts
    JupyterLab on the quickstart without a browser and prints the URL (as root, with --allow-root)."""
    import requests

    _venv, env = binder_venv
    port = free_port()
    proc = subprocess.Popen(
        [str(ROOT / "scripts" / "start"), f"--port={port}", "--ServerApp.port_retries=0"],
        cwd=tmp_path, env=env | {"NBFLOW_DB": f"sqlite:///{tmp_path / 'start.db'}"},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    lines: list[str] = []
    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)  # noqa: PERF402 - one by one: the test reads them while the server runs

    threading.Thread(target=pump, daemon=True).start()
    pattern = re.compile(rf"http://(?:127\.0\.0\.1|localhost):{port}/lab/tree/{re.escape(QUICKSTART)}\?token=(\w+)")
    try:
        deadline = time.monotonic() + 300
        found = None
        while found is None and time.monotonic() < deadline and proc.poll() is None:
            found = next((m for m in map(pattern.search, list(lines)) if m), None)
            time.sleep(0.2)
        output = "".join(lines)
        assert found is not None, f"no quickstart URL printed:\n{output[-5000:]}"
        assert "No display" in output
        page = requests.get(found.group(0), timeout=30)
        assert page.status_code == 200 and "nbflow-labextension" in page.text  # JupyterLab loads the sidebar
        api = requests.get(f"http://127.0.0.1:{port}/nbflow/api/runs",
                           headers={"Authorization": f"token {found.group(1)}"}, timeout=30)
        assert api.status_code == 200 and api.json() == []  # the server extension serves the (empty) store
        notebook = requests.get(f"http://127.0.0.1:{port}/api/contents/{QUICKSTART}",
                                headers={"Authorization": f"token {found.group(1)}"}, timeout=30)
        assert notebook.status_code == 200 and notebook.json()["name"] == "00-quickstart.ipynb"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
