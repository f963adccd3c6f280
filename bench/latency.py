"""Issue 19: the latency a user feels outside the step loop, with floors measured in the same rounds.

Each figure is a fresh process (or a fresh kernel), timed from outside; the rounds interleave every
figure (and every tree given with ``--tree``, e.g. main's checkout beside this one), and the
medians are printed with the machine (nproc, CPU model, load average) as JSON:

- floors: ``python -c pass``, ``python -c "import sqlalchemy"``, ``import click, sqlalchemy``, a raw sqlite3
  transaction (in this process);
- ``import nbflow``; ``nbflow --help``; ``nbflow runs`` on a store of 1,000 runs;
- ``nbflow resume RUN work:K --force`` from its launch to the instance running in the live owner
  (this process);
- a kernel's first use (jupyter_client, a new kernel each round, its start not counted): ``%load_ext
  nbflow``, ``%nbflow workflow`` on a new store, three ``%%step`` cells and ``%nbflow run --wait``,
  and the run's display;
- papermill on a notebook without and with its nbflow cells (``--papermill-rounds``, slow).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
STARTED: dict[str, float] = {}


def machine() -> dict[str, Any]:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    return {"nproc": os.cpu_count(), "cpu": model, "python": platform.python_version(),
            "loadavg": Path("/proc/loadavg").read_text().split()[:3]}


PYCACHE = tempfile.mkdtemp(prefix="nbflow-latency-pycache-")
"""Compiled files for every process measured (``PYTHONPYCACHEPREFIX``): each figure is with compiled
files, as an installed package runs, and the trees measured are not written to. Warmed by a first round
that is not counted."""


def env_for(tree: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = PYCACHE
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    return env


def timed(cmd: list[str], env: dict[str, str], cwd: str | None = None) -> float:
    """Wall-clock seconds of one process, from its launch to its exit (it must succeed)."""
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, cwd=cwd, check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def sqlite_floor(d: str, n: int = 200) -> float:
    """A raw sqlite3 transaction (UPDATE + INSERT + commit, WAL, synchronous=NORMAL), per transaction."""
    con = sqlite3.connect(f"{d}/floor.db", isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")
    con.execute("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT)")
    con.execute("CREATE TABLE IF NOT EXISTS e (id INTEGER PRIMARY KEY, v TEXT)")
    con.execute("INSERT OR REPLACE INTO t VALUES (1, 'x')")
    t0 = time.perf_counter()
    for i in range(n):
        con.execute("BEGIN")
        con.execute("UPDATE t SET v = ? WHERE id = 1", (str(i),))
        con.execute("INSERT INTO e (v) VALUES (?)", (str(i),))
        con.execute("COMMIT")
    con.close()
    return (time.perf_counter() - t0) / n


def store_of_runs(url: str, n: int) -> None:
    """A store holding *n* finished runs of a one-step workflow (made with the API, in this process)."""
    import nbflow

    wf = nbflow.Workflow("latency_runs", store=url)

    @wf.step
    def one() -> int:
        return 1

    for _ in range(n):
        wf.run().wait()


def paused_run(url: str, samples: int) -> Any:
    """A run owned by this process with *samples* + 1 instances paused on a breakpoint."""
    import nbflow

    wf = nbflow.Workflow("latency_resume", store=url)

    @wf.step
    def items() -> list[int]:
        return list(range(samples + 1))

    @wf.foreach("items")
    def work(item: int, ctx: Any) -> int:
        STARTED[str(ctx.key)] = time.perf_counter()
        return item

    run = wf.run(breakpoints=["work"])
    assert run.wait() == "paused"
    return run


def resume_latency(run: Any, key: int, url: str, env: dict[str, str]) -> float:
    """From launching ``nbflow resume RUN work:KEY`` to that instance's body starting in this process."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "nbflow", "--db", url, "resume", run.id, f"work:{key}", "--force"],
                   env=env, check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while str(key) not in STARTED and time.monotonic() < deadline:
        time.sleep(0.0005)
    return STARTED[str(key)] - t0


KERNEL_CELLS = {
    "load_ext": "%load_ext nbflow",
    "workflow": "%nbflow workflow first_use --db {url}",
    "run": "%%step a\n1\n---%%step b\na + 1\n---%%step c\nb * 10\n---_ = %nbflow run --wait",
    "display": "nbflow_run",
}
"""A kernel's first use, phase by phase (cells split at ``---``). The run's cell assigns the run so that
its display, the widget's first (anywidget, ipywidgets), is timed apart, in the next cell."""
KERNEL_PHASES = tuple(KERNEL_CELLS)


def kernel_first_use(url: str, env: dict[str, str]) -> dict[str, float]:
    """One new kernel: the seconds of each phase of :data:`KERNEL_CELLS`, from the execute request to its
    reply (the run's cells together; the display until its output arrived)."""
    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(kernel_name="python3", env=env, cwd=str(Path(url.removeprefix("sqlite:///")).parent),
                              stderr=subprocess.DEVNULL)
    try:
        kc.execute_interactive("1", timeout=60, output_hook=lambda _msg: None)  # the kernel is up and answering
        out: dict[str, float] = {}
        for phase, code in KERNEL_CELLS.items():
            t0 = time.perf_counter()
            for cell in code.format(url=url).split("\n---"):
                shown: list[dict[str, Any]] = []
                reply = kc.execute_interactive(cell, timeout=60, output_hook=shown.append)
                assert reply["content"]["status"] == "ok", (phase, shown)
            out[phase] = time.perf_counter() - t0
        out["total"] = sum(out[p] for p in KERNEL_PHASES)
        return out
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def papermill_notebook(path: Path, with_nbflow: bool) -> None:
    """A small notebook: a parameters cell, some plain Python, and (with nbflow) the magics' 3-step run."""
    import nbformat

    cells = [nbformat.v4.new_code_cell("n = 3", metadata={"tags": ["parameters"]}),
             nbformat.v4.new_code_cell("rows = [i * 10 for i in range(n)]\nsum(rows)")]
    if with_nbflow:
        cells += [nbformat.v4.new_code_cell(c) for c in (
            "%load_ext nbflow\n%nbflow workflow papermill_latency",
            "%%step load\n[i * 10 for i in range(n)]",
            "%%step double\n[x * 2 for x in load]",
            "%%step total\nsum(double)",
            "%nbflow run --wait",
        )]
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


def papermill_time(src: Path, d: str, env: dict[str, str], store: str) -> float:
    """One ``papermill.execute_notebook`` in a new process, against *store* (a batch job's store, reused)."""
    out = Path(d) / f"out-{time.monotonic_ns()}.ipynb"
    code = (f"import papermill; papermill.execute_notebook({str(src)!r}, {str(out)!r}, kernel_name='python3', "
            "progress_bar=False)")
    return timed([sys.executable, "-c", code], {**env, "NBFLOW_DB": store}, cwd=d)


def median_ms(xs: list[float]) -> float:
    return round(statistics.median(xs) * 1e3, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--runs", type=int, default=1000, help="runs in the store `nbflow runs` lists")
    ap.add_argument("--kernel-rounds", type=int, default=5)
    ap.add_argument("--papermill-rounds", type=int, default=3, help="0 to leave papermill out")
    ap.add_argument("--tree", action="append", type=Path, default=[],
                    help="a checkout to measure (repeatable; default: this one), e.g. /work/main beside this one")
    args = ap.parse_args()
    trees = [t.resolve() for t in args.tree] or [ROOT]
    py = sys.executable
    report: dict[str, Any] = {"bench": "latency (issue 19)", "machine_before": machine(), "rounds": args.rounds,
                              "trees": [str(t) for t in trees]}
    with tempfile.TemporaryDirectory() as d:
        url = f"sqlite:///{d}/runs.db"
        t0 = time.perf_counter()
        store_of_runs(url, args.runs)
        report["store_of_runs_setup_s"] = round(time.perf_counter() - t0, 1)
        resume_url = f"sqlite:///{d}/resume.db"
        run = paused_run(resume_url, (args.rounds + 1) * len(trees))
        floors: dict[str, Callable[[], float]] = {
            "floor: python -c pass": lambda: timed([py, "-c", "pass"], env_for()),
            "floor: import sqlalchemy": lambda: timed([py, "-c", "import sqlalchemy"], env_for()),
            "floor: import click, sqlalchemy": lambda: timed([py, "-c", "import click, sqlalchemy"], env_for()),
        }
        samples: dict[str, list[float]] = {name: [] for name in floors}
        sqlite_us: list[float] = []
        key = 0
        for r in range(args.rounds + 1):  # round 0 writes the compiled files and is not counted
            def keep(name: str, took: float, r: int = r) -> None:
                if r:
                    samples.setdefault(name, []).append(took)

            for name, fn in floors.items():
                keep(name, fn())
            if r:
                sqlite_us.append(sqlite_floor(d) * 1e6)
            for tree in trees:
                env = env_for(tree)
                tag = f" [{tree}]" if len(trees) > 1 else ""
                for name, cmd in (("import nbflow", [py, "-c", "import nbflow"]),
                                  ("nbflow --help", [py, "-m", "nbflow", "--help"]),
                                  (f"nbflow runs ({args.runs} runs)", [py, "-m", "nbflow", "--db", url, "runs"])):
                    keep(name + tag, timed(cmd, env))
                keep("nbflow resume: launch to the instance running in the owner" + tag,
                     resume_latency(run, key, resume_url, env))
                key += 1
        run.cancel()
        for k in range(args.kernel_rounds):
            for tree in trees:
                tag = f" [{tree}]" if len(trees) > 1 else ""
                phases = kernel_first_use(f"sqlite:///{d}/kernel-{k}-{trees.index(tree)}.db", env_for(tree))
                for phase, took in phases.items():
                    samples.setdefault(f"kernel first use: {phase}" + tag, []).append(took)
        if args.papermill_rounds:
            plain, with_nbflow = Path(d) / "plain.ipynb", Path(d) / "with_nbflow.ipynb"
            papermill_notebook(plain, False)
            papermill_notebook(with_nbflow, True)
            for r in range(args.papermill_rounds + 1):  # round 0 creates each tree's store: not counted
                for i, tree in enumerate(trees):
                    tag = f" [{tree}]" if len(trees) > 1 else ""
                    env, store = env_for(tree), f"sqlite:///{d}/papermill-{i}.db"
                    for name, nb in (("without", plain), ("with", with_nbflow)):
                        took = papermill_time(nb, d, env, store)
                        if r:
                            samples.setdefault(f"papermill: {name} the nbflow cells" + tag, []).append(took)
    shutil.rmtree(PYCACHE, ignore_errors=True)
    report["median_ms"] = {name: median_ms(xs) for name, xs in samples.items()}
    report["floor: sqlite3 transaction, in process (median us)"] = round(statistics.median(sqlite_us), 1)
    report["all_ms"] = {name: [round(x * 1e3, 1) for x in xs] for name, xs in samples.items()}
    report["machine_after"] = machine()
    report["targets_ms_on_the_issues_machine"] = {
        "import nbflow": 120, "nbflow runs": 150, "nbflow <verb> launch to applied": 150,
        "kernel first use": 250, "papermill overhead": 300,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
