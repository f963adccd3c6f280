"""A takeover with today's code pickles only the steps that changed.

The run starts in a real subprocess (a notebook's cells: functions of ``__main__``) and stops at a
breakpoint; this process defines the same cells again, as a new kernel would, and attaches. Pickling
is observed where it happens: every call of cloudpickle's ``Pickler.dump`` on a step in this thread
(a profile hook, not a stand-in), and the pinned-code rows the store holds.
"""
from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

import cloudpickle

import nbflow
from nbflow.engine.lifecycle import pinned_workflow, stop_all

CELLS = textwrap.dedent('''
    THRESHOLD = {threshold}

    def load():
        return [1, 2, 3]

    def scale(load):
        return [x * {factor} for x in load]

    def cut(scale):
        return [x for x in scale if x > THRESHOLD]

    def report(cut):
        return sum(cut)
''')
"""Four steps as a notebook's cells define them; ``scale`` and ``cut`` take their numbers from the text."""


def define(url: str, threshold: int = 2, factor: int = 10, retries: int = 0, extra: str = "") -> nbflow.Workflow:
    """The workflow the cells define, in a fresh ``__main__`` namespace (a new kernel's)."""
    ns: dict[str, Any] = {"__name__": "__main__"}
    exec(compile(CELLS.format(threshold=threshold, factor=factor) + extra, "<cells>", "exec"), ns)  # noqa: S102
    wf = nbflow.Workflow("tk_pin", store=url)
    wf.step(ns["load"])
    wf.step(retries=retries)(ns["scale"])
    wf.step(ns["cut"])
    wf.step(ns["report"])
    return wf


OWNER = '''
import sys
sys.path.insert(0, {tests!r})
from test_takeover_pinning import define
run = define({url!r}).run(breakpoints=["cut"])
print(run.id, run.wait(timeout=60), flush=True)
'''


def started_and_paused(url: str) -> str:
    """A run started by another process and paused before ``cut``; that process has exited."""
    code = OWNER.format(tests=str(Path(__file__).parent), url=url)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True,
                         env={**os.environ})
    run_id, status = out.stdout.split()
    assert status == "paused", out.stderr
    return run_id


@contextmanager
def pickled_steps() -> Iterator[list[str]]:
    """The names of the steps cloudpickle pickles in this thread while the block runs."""
    dump = cloudpickle.Pickler.dump.__code__
    seen: list[str] = []

    def hook(frame: FrameType, event: str, _arg: Any) -> None:
        if event == "call" and frame.f_code is dump:
            obj = frame.f_locals.get("obj")
            if type(obj).__name__ == "StepSpec":
                seen.append(obj.name)

    sys.setprofile(hook)
    try:
        yield seen
    finally:
        sys.setprofile(None)


def code_rows(url: str) -> dict[tuple[str, str], bytes]:
    """The pinned-code rows: (version, step) -> pickled code."""
    with sqlite3.connect(url.removeprefix("sqlite:///")) as con:
        return {(v, s): p for v, s, p in con.execute("SELECT version, step, pickled FROM step_code")}


def code_changed(run: nbflow.Run) -> list[dict[str, Any]]:
    rows = run.store.event_rows(run.id, kinds=["code_changed"])
    return [json.loads(r["data"]) for r in rows]


def test_a_takeover_with_unchanged_code_pickles_no_step(db_url: str) -> None:
    run_id = started_and_paused(db_url)
    before = code_rows(db_url)
    wf = define(db_url)
    with pickled_steps() as pickled:
        run = wf.attach(run_id)
    assert pickled == []
    assert run.version == nbflow.Run(wf.store, run_id).version == {v for v, _ in before}.pop()
    assert code_rows(db_url) == before  # no pinned code written
    run.resume()
    assert run.wait(timeout=60) == "succeeded"
    assert run.output("report") == 60


def test_a_changed_step_is_pickled_and_the_others_pinned_code_is_copied(db_url: str) -> None:
    run_id = started_and_paused(db_url)
    (old_version,) = {v for v, _ in code_rows(db_url)}
    wf = define(db_url, factor=100)
    with pickled_steps() as pickled:
        run = wf.attach(run_id)
    assert pickled == ["scale"]
    rows = code_rows(db_url)
    assert run.version != old_version
    for step in ("load", "cut", "report"):
        assert rows[(run.version, step)] == rows[(old_version, step)]
    assert rows[(run.version, "scale")] != rows[(old_version, "scale")]
    pinned = pinned_workflow(wf.store, "tk_pin", run.version)
    assert pinned.steps["scale"].fn is not None and pinned.steps["scale"].fn([1]) == [100]
    assert [sorted(e["diffs"]) for e in code_changed(run)] == [["scale"]]


def test_a_changed_global_pins_the_step_that_reads_it_again(db_url: str) -> None:
    run_id = started_and_paused(db_url)
    (old_version,) = {v for v, _ in code_rows(db_url)}
    wf = define(db_url, threshold=25)  # the same source: only the value cut reads differs
    with pickled_steps() as pickled:
        run = wf.attach(run_id)
    assert pickled == ["cut"]
    assert run.version != old_version
    pinned = pinned_workflow(wf.store, "tk_pin", run.version)
    assert pinned.steps["cut"].fn is not None and pinned.steps["cut"].fn([10, 20, 30]) == [30]
    run.resume()
    assert run.wait(timeout=60) == "succeeded"
    assert run.output("report") == 30


def test_a_changed_option_pins_that_step_again(db_url: str) -> None:
    run_id = started_and_paused(db_url)
    (old_version,) = {v for v, _ in code_rows(db_url)}
    wf = define(db_url, retries=3)
    with pickled_steps() as pickled:
        run = wf.attach(run_id)
    assert pickled == ["scale"]
    assert run.version != old_version
    assert pinned_workflow(wf.store, "tk_pin", run.version).steps["scale"].retries == 3


def test_a_step_reading_a_notebook_object_is_still_pickled(db_url: str) -> None:
    """An instance of a notebook's class has no fingerprint: its step is pickled, as before (the
    others are not), and the run goes on with today's object."""
    extra = textwrap.dedent('''
        class Unit:
            def __init__(self, n):
                self.n = n

        UNIT = Unit({n})

        def report(cut):
            return sum(cut) * UNIT.n
    ''')
    wf = define(db_url, extra=extra.format(n=1))
    run = wf.run(breakpoints=["cut"])
    assert run.wait(timeout=60) == "paused"
    stop_all()
    wf = define(db_url, extra=extra.format(n=2))
    with pickled_steps() as pickled:
        taken = wf.attach(run.id)
    assert pickled == ["report"]
    taken.resume()
    assert taken.wait(timeout=60) == "succeeded"
    assert taken.output("report") == 120


def test_a_changed_helper_pins_the_step_that_calls_it_again(db_url: str) -> None:
    """The step's own source is the same; the notebook function it calls changed."""
    helper = "\ndef helper(total):\n    return total + {}\n\ndef report(cut):\n    return helper(sum(cut))\n"
    wf = define(db_url, extra=helper.format(1))
    run = wf.run(breakpoints=["cut"])
    assert run.wait(timeout=60) == "paused"
    old_version = run.version
    stop_all()
    wf = define(db_url, extra=helper.format(2))
    with pickled_steps() as pickled:
        taken = wf.attach(run.id)
    assert pickled == ["report"]
    assert taken.version != old_version
    taken.resume()
    assert taken.wait(timeout=60) == "succeeded"
    assert taken.output("report") == 62
