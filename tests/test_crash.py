"""Crash durability: a run killed with SIGKILL at random points is finished by another process.

A subprocess runs a 200-step chain feeding a 500-item foreach plus one long step that saves its
progress with ``ctx.checkpoint``. Every step body appends ``step,key,attempt,idempotency_key``
to a side-effect log (O_APPEND + fsync). The test kills the subprocess at seeded random points
(sometimes twice), reads the store right after each kill, lets another process attach, and
checks what a user relies on: right outputs, committed instances never re-run, interrupted ones
re-run as a new attempt, checkpointed progress kept, one idempotency key per instance.
"""
from __future__ import annotations

import importlib.util
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import pytest

from nbflow import InstanceView, Run, Store

N_CHAIN = 200
N_ITEMS = 500
CHUNKS = 30
TOTAL_LINES = N_CHAIN + N_ITEMS  # side-effect lines of one clean run (the long step logs elsewhere)
SEEDS = (11, 22, 33, 44, 55)

FLOW = f'''
"""The crash-test workflow: imported by the subprocesses and by the test process alike."""
from __future__ import annotations

import os
import time

import nbflow

N_CHAIN = {N_CHAIN}
N_ITEMS = {N_ITEMS}
CHUNKS = {CHUNKS}
CHUNK_S = 0.04

wf = nbflow.Workflow("crash", store=os.environ["NBFLOW_DB"])


def append_line(path, text):
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (text + "\\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def effect(path, ctx):
    append_line(path, f"{{ctx.step}},{{ctx.key or ''}},{{ctx.attempt}},{{ctx.idempotency_key}}")


def chain_step(i):
    """Step s<i>: its parameter is named after s<i-1>, so that is its input."""
    name, prev = f"s{{i}}", f"s{{i - 1}}"
    if i == 0:
        src = f"def {{name}}(effects, ctx):\\n    effect(effects, ctx)\\n    return 1\\n"
    elif i < N_CHAIN - 1:
        src = f"def {{name}}({{prev}}, effects, ctx):\\n    effect(effects, ctx)\\n    return {{prev}} + 1\\n"
    else:
        src = (f"def {{name}}({{prev}}, effects, ctx):\\n    effect(effects, ctx)\\n"
               f"    return [{{prev}} + 1 + k for k in range(N_ITEMS)]\\n")
    ns = {{"effect": effect, "N_ITEMS": N_ITEMS}}
    exec(src, ns)
    return ns[name]


for _i in range(N_CHAIN):
    wf.step(name=f"s{{_i}}")(chain_step(_i))


@wf.foreach(f"s{{N_CHAIN - 1}}")
def work(item, effects, ctx):
    effect(effects, ctx)
    return item * 2


@wf.step
def long(s0, progress, ctx):
    state = ctx.saved or {{"next": 0, "total": 0}}
    append_line(progress, f"start,{{ctx.attempt}},{{state['next']}},{{ctx.idempotency_key}}")
    for chunk in range(state["next"], CHUNKS):
        time.sleep(CHUNK_S)
        state = {{"next": chunk + 1, "total": state["total"] + chunk * s0}}
        ctx.checkpoint(state)
        append_line(progress, f"chunk,{{ctx.attempt}},{{chunk}},{{ctx.idempotency_key}}")
    return state["total"]
'''

DRIVER = '''
import sys

sys.path.insert(0, sys.argv[1])
import crashflow

if sys.argv[2] == "start":
    run = crashflow.wf.run(params={"effects": sys.argv[3], "progress": sys.argv[4]})
else:
    run = crashflow.wf.attach(sys.argv[3])
print(run.id, flush=True)
print(run.wait(), flush=True)
'''


@dataclass
class Snapshot:
    """What the store and the logs held right after one kill."""

    views: dict[tuple[str, str | None], InstanceView]
    effect_lines: Counter[tuple[str, str]]
    effects_len: int
    progress_len: int
    succeeded: set[tuple[str, str]] = field(default_factory=set)


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def _ident(line: str) -> tuple[str, str]:
    step, key, _attempt, _ikey = line.split(",")
    return step, key


def _launch(tmp_path: Path, *args: str) -> tuple[subprocess.Popen[str], str]:
    """Start the driver; return it with the run id it prints once the run is started or attached."""
    err = open(tmp_path / "driver.err", "a")  # noqa: SIM115 - the child owns it
    proc = subprocess.Popen(
        [sys.executable, str(tmp_path / "drive.py"), str(tmp_path), *args],
        stdout=subprocess.PIPE, stderr=err, text=True, cwd=tmp_path,
    )
    err.close()
    run_id = (proc.stdout.readline() if proc.stdout else "").strip()
    assert run_id, f"driver printed no run id: {(tmp_path / 'driver.err').read_text()}"
    return proc, run_id


def _reap(proc: subprocess.Popen[str]) -> None:
    proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


def _kill_when(proc: subprocess.Popen[str], path: Path, count: int, deadline_s: float = 60.0) -> bool:
    """SIGKILL *proc* once *path* has *count* lines; False if it finished first."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if len(_lines(path)) >= count:
            proc.send_signal(signal.SIGKILL)
            _reap(proc)  # its pid is gone, as after a real crash
            return True
        if proc.poll() is not None:
            _reap(proc)
            return False
        time.sleep(0.003)
    proc.kill()
    _reap(proc)
    raise AssertionError(f"{path.name} never reached {count} lines")


def _snapshot(db_url: str, run_id: str, effects: Path, progress: Path) -> Snapshot:
    run = Run(Store.open(db_url), run_id)
    views = {(v.step, v.key): v for v in run.instances()}
    lines = _lines(effects)
    snap = Snapshot(views, Counter(_ident(x) for x in lines), len(lines), len(_lines(progress)))
    snap.succeeded = {(s, k or "") for (s, k), v in views.items() if v.status == "succeeded"}
    return snap


def _import_flow(path: Path) -> ModuleType:
    """crashflow.py under the name the drivers import it by (kept out of sys.modules)."""
    spec = importlib.util.spec_from_file_location("crashflow", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _crash_and_finish(
    tmp_path: Path, db_url: str, flow: ModuleType, seed: int
) -> tuple[Run, list[Snapshot], Path, Path]:
    """Run, kill at seeded points (once or twice), then attach from this process and finish."""
    rng = random.Random(seed)
    effects, progress = tmp_path / f"effects-{seed}.log", tmp_path / f"progress-{seed}.log"
    proc, run_id = _launch(tmp_path, "start", str(effects), str(progress))
    # Odd seeds kill inside the long step (after a seeded number of its checkpoints), even seeds
    # after a seeded number of side effects of the chain and the foreach.
    if seed % 2:
        killed = _kill_when(proc, progress, 1 + rng.randint(2, CHUNKS // 2))  # >= 0.6 s of it left to kill in
    else:
        killed = _kill_when(proc, effects, rng.randint(1, TOTAL_LINES - 50))
    assert killed, "the run finished before the kill point"
    snaps = [_snapshot(db_url, run_id, effects, progress)]
    if rng.random() < 0.6:  # a second crash, this time of a process that had attached
        proc, again = _launch(tmp_path, "attach", run_id)
        assert again == run_id
        left = TOTAL_LINES - len(snaps[0].succeeded)
        if left > 20 and _kill_when(proc, effects, len(_lines(effects)) + rng.randint(1, left // 2)):
            snaps.append(_snapshot(db_url, run_id, effects, progress))
        else:
            _reap(proc)
    run = flow.wf.attach(run_id)
    assert run.wait(timeout=60) == "succeeded"
    return run, snaps, effects, progress


@pytest.mark.parametrize("seed", SEEDS)
def test_run_killed_at_random_points_finishes_without_redoing_committed_work(
    tmp_path: Path, db_url: str, seed: int
) -> None:
    """SIGKILL at seeded points, then attach: outputs right, committed work never redone, progress kept."""
    (tmp_path / "crashflow.py").write_text(FLOW)
    (tmp_path / "drive.py").write_text(DRIVER)
    flow = _import_flow(tmp_path / "crashflow.py")
    run, snaps, effects, progress = _crash_and_finish(tmp_path, db_url, flow, seed)
    final_lines = _lines(effects)
    final = {(v.step, v.key): v for v in run.instances()}

    # Outputs: the chain carried its value through 200 steps, every item was processed.
    assert run.output(f"s{N_CHAIN - 1}") == [N_CHAIN + k for k in range(N_ITEMS)]
    assert run.output("work") == [2 * (N_CHAIN + k) for k in range(N_ITEMS)]
    assert run.output("long") == sum(range(CHUNKS))
    assert all(v.status == "succeeded" for v in final.values())

    # Every body ran at least once.
    done = Counter(_ident(x) for x in final_lines)
    assert len(done) == TOTAL_LINES

    # One idempotency key per instance, the same on every attempt, and distinct between instances.
    ikeys: dict[tuple[str, str], set[str]] = {}
    for x in final_lines:
        ikeys.setdefault(_ident(x), set()).add(x.split(",")[3])
    assert all(len(k) == 1 for k in ikeys.values())
    assert len({next(iter(k)) for k in ikeys.values()}) == TOTAL_LINES
    assert len({x.split(",")[3] for x in _lines(progress)}) == 1

    # An attempt a kill interrupted still counts: the re-run after a takeover is a higher attempt, never the same.
    attempts: dict[tuple[str, str], list[int]] = {}
    for x in final_lines:
        attempts.setdefault(_ident(x), []).append(int(x.split(",")[2]))
    repeated = sorted(i for i, a in attempts.items() if len(set(a)) != len(a))
    assert repeated == [], f"attempt numbers repeated after a takeover: {repeated[:5]}"

    long_resumed_mid_way = 0
    for snap in snaps:
        # What was committed as succeeded before a kill never ran again.
        rerun = sorted(i for i in snap.succeeded if done[i] != snap.effect_lines[i])
        assert rerun == [], f"committed instances ran again: {rerun[:5]}"
        # What was running at the kill ran again as a new attempt (at-least-once).
        for ident, v in snap.views.items():
            if v.status == "running":
                assert final[ident].attempts > v.attempts, ident
        # A later execution never reuses an attempt number the store had recorded.
        for line in final_lines[snap.effects_len:]:
            step, key, attempt, _ = line.split(",")
            view = snap.views.get((step, key or None))  # absent: the foreach was not expanded yet
            recorded = view.attempts if view is not None else 0
            assert int(attempt) > recorded, f"{line} ran after attempt {recorded} had been recorded"
        # The long step resumed from its last checkpoint, not from zero.
        lv = snap.views[("long", None)]
        if lv.status != "succeeded" and lv.saved is not None:
            starts = [x for x in _lines(progress)[snap.progress_len:] if x.startswith("start,")]
            assert starts, "the long step did not run again after the kill"
            assert int(starts[0].split(",")[2]) == lv.saved["next"] > 0
            long_resumed_mid_way += 1
    assert final[("long", None)].saved == {"next": CHUNKS, "total": sum(range(CHUNKS))}
    if seed % 2:  # these seeds kill inside the long step: its checkpoint path must have been exercised
        assert long_resumed_mid_way >= 1
