"""Issue 19: what a saved notebook carries per displayed run. A 3-step workflow is run and displayed
0, 1 and 10 times in a notebook executed by real papermill (a kernel with no front end); the script
prints the saved file's size, its widget state (``metadata.widgets``) and the growth per displayed
run (target: <= 10 KB), and the widget state one live view of the same run would save from JupyterLab
("Save Widget State Automatically"). ``--before TREE`` measures another checkout of nbflow (e.g. the
commit before, from ``git archive``) in the same rounds, on PYTHONPATH. Rounds are interleaved;
figures are medians."""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import nbformat

SETUP = """\
import nbflow
wf = nbflow.Workflow("size")

@wf.step
def load():
    return list(range(5))

@wf.step
def double(load):
    return [x * 2 for x in load]

@wf.step
def total(double):
    return sum(double)
"""
SHOW = """\
run = wf.run()
run.wait()
run"""


def notebook(path: Path, displays: int) -> None:
    cells = [nbformat.v4.new_code_cell(SETUP)] + [nbformat.v4.new_code_cell(SHOW) for _ in range(displays)]
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


def env_for(tree: str, db: str) -> dict[str, str]:
    return {**os.environ, "NBFLOW_DB": db, "PYTHONPATH": tree}


def executed(src: Path, out: Path, env: dict[str, str]) -> dict[str, Any]:
    """Run *src* with papermill in a subprocess (as `papermill IN OUT` would); the saved file's sizes."""
    subprocess.run([sys.executable, "-m", "papermill", "--no-progress-bar", str(src), str(out)], check=True, env=env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=out.parent)
    saved = json.loads(out.read_text())
    widgets = saved.get("metadata", {}).get("widgets", {})
    views = sum(1 for c in saved["cells"] for o in c.get("outputs", [])
                if "application/vnd.jupyter.widget-view+json" in o.get("data", {}))
    return {"bytes": out.stat().st_size, "widget_state": len(json.dumps(widgets)), "widget_views": views}


def live_state(env: dict[str, str]) -> int:
    """The JSON size of one live view's widget state (what JupyterLab saves per displayed run), in a kernel
    that nbflow's server extension started (it sets NBFLOW_WIDGET_ASSETS; a tree before it has none)."""
    served = ("import os\ntry:\n    from nbflow.notebook.assets import SERVED_ENV, assets_id\n"
              "    os.environ[SERVED_ENV] = assets_id()\nexcept ImportError:\n    pass\n")
    code = served + SETUP + ("run = wf.run(); run.wait()\nfrom nbflow.notebook.widget import RunWidget\n"
                    "import json; w = RunWidget(run, live=False); print(len(json.dumps(w.get_state()))); w.close()")
    out = subprocess.run([sys.executable, "-c", code], check=True, env=env, capture_output=True, text=True,
                         cwd=tempfile.gettempdir())  # not this checkout: `-c` puts the cwd before PYTHONPATH
    return int(out.stdout.split()[-1])


def floor() -> float:
    """`python -c pass` in a subprocess, for the ratio (this VM is slower than others)."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    return time.perf_counter() - t0


def machine() -> str:
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else "?"
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"{os.cpu_count()} CPUs ({cpu}), load average {load}, Python {platform.python_version()}"


def report(label: str, sizes: dict[int, list[dict[str, Any]]], seconds: dict[int, list[float]],
           lives: list[int]) -> None:
    med = {n: {k: statistics.median(s[k] for s in runs) for k in runs[0]} for n, runs in sizes.items()}
    print(f"\n{label}")
    print(f"{'displayed runs':>15} {'saved bytes':>12} {'widget state':>13} {'widget views':>13} {'papermill s':>12}")
    for n, m in med.items():
        print(f"{n:>15} {m['bytes']:>12,.0f} {m['widget_state']:>13,.0f} {m['widget_views']:>13.0f} "
              f"{statistics.median(seconds[n]):>12.2f}")
    first = med[1]["bytes"] - med[0]["bytes"]
    each = (med[10]["bytes"] - med[1]["bytes"]) / 9
    print(f"growth: first displayed run {first / 1024:.1f} KB, each further one {each / 1024:.1f} KB (target <= 10 KB)")
    print(f"one live view's widget state (saved by JupyterLab with the widget state): "
          f"{statistics.median(lives) / 1024:.1f} KB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--before", help="another nbflow checkout to measure in the same rounds")
    args = ap.parse_args()
    print(machine())
    trees = {"this tree": str(Path(__file__).resolve().parents[1])}
    if args.before:
        trees = {"before": str(Path(args.before).resolve()), **trees}
    sizes: dict[str, dict[int, list[dict[str, Any]]]] = {t: {0: [], 1: [], 10: []} for t in trees}
    seconds: dict[str, dict[int, list[float]]] = {t: {n: [] for n in (0, 1, 10)} for t in trees}
    lives: dict[str, list[int]] = {t: [] for t in trees}
    floors: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        for n in (0, 1, 10):
            notebook(base / f"in{n}.ipynb", n)
        for r in range(args.rounds):
            floors.append(floor())
            for t, tree in trees.items():  # interleaved: each tree and each size once per round
                for n in (0, 1, 10):
                    db = f"sqlite:///{base / f'{len(t)}_{n}_{r}.db'}"
                    t0 = time.perf_counter()
                    sizes[t][n].append(executed(base / f"in{n}.ipynb", base / f"out{len(t)}_{n}_{r}.ipynb",
                                                env_for(tree, db)))
                    seconds[t][n].append(time.perf_counter() - t0)
                lives[t].append(live_state(env_for(tree, f"sqlite:///{base / f'live{len(t)}_{r}.db'}")))
    print(f"floor `python -c pass`: {statistics.median(floors) * 1000:.0f} ms (median of {len(floors)})")
    for t in trees:
        report(f"{t} ({trees[t]}), median of {args.rounds} rounds:", sizes[t], seconds[t], lives[t])


if __name__ == "__main__":
    main()
