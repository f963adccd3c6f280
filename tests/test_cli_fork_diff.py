"""``nbflow diff`` and ``nbflow fork`` (issue 18), run in real subprocesses against runs that finished in
this test process. The fork runs in the subprocess with the parent's pinned code; its step bodies are
counted with a Trail (a file), which the subprocess appends to as this process does."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

import nbflow
from nbflow import Workflow
from tests.sidefx import Trail
from tests.test_cli import cli
from tests.test_diffs import finished, prices

pytestmark = pytest.mark.timeout(240)

N = 1000


@pytest.fixture
def trail(tmp_path: Path) -> Trail:
    return Trail(str(tmp_path / "trail.jsonl"))


def pipeline(db_url: str, trail: Trail) -> Workflow:
    """load -> enrich (foreach keyed by id) -> double (foreach over enrich) -> report; each body leaves a line."""
    wf = Workflow("cli-forks", store=db_url)

    @wf.step
    def load(n):
        trail.add("load")
        return [{"id": i, "x": i} for i in range(n)]

    @wf.foreach("load", key=lambda item: item["id"])
    def enrich(item):
        trail.add(f"enrich:{item['id']}")
        return {"id": item["id"], "y": item["x"] * 10}

    @wf.foreach("enrich")
    def double(item):
        trail.add(f"double:{item['id']}")
        return {"id": item["id"], "z": item["y"] * 2}

    @wf.step
    def report(double):
        trail.add("report")
        return sum(d["z"] for d in double)

    return wf


@pytest.fixture
def parent(db_url: str, trail: Trail) -> nbflow.Run:
    return finished(pipeline(db_url, trail), n=N)


def runs_of(db_url: str) -> list[str]:
    return [r.id for r in nbflow.runs(db_url)]


# ------------------------------------------------------------------------------------------- diff
@pytest.fixture
def pair(db_url: str, tmp_path: Path) -> tuple[nbflow.Run, nbflow.Run]:
    wf = prices(db_url, Trail(str(tmp_path / "calls")))
    return finished(wf, n=N, bump=-1), finished(wf, n=N, bump=37)


def test_nbflow_diff_prints_run_diff_as_json(db_url: str, pair: tuple[nbflow.Run, nbflow.Run]) -> None:
    a, b = pair
    res = cli(db_url, "diff", a.id, b.id, "-o", "json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == a.diff(b)
    assert [(e["step"], e["key"]) for e in json.loads(res.stdout)["changed"]] == [
        ("price", 37), ("label", 37), ("total", None), ("report", None)]


def test_nbflow_diff_text_lists_the_changed_instances_and_a_summary_and_exits_0(
    db_url: str, pair: tuple[nbflow.Run, nbflow.Run],
) -> None:
    a, b = pair
    res = cli(db_url, "diff", a.id, b.id)
    assert res.returncode == 0, res.stderr
    lines = [line.split() for line in res.stdout.splitlines()]
    assert ["changed", "(4)"] in lines
    assert ["price", "37", "137", "138"] in lines and ["total", "-", "599500", "599501"] in lines
    assert res.stdout.splitlines()[-1] == f"{a.id} -> {b.id}: 4 changed, 0 added, 0 removed"


def test_nbflow_diff_of_a_run_with_itself_says_the_outputs_are_the_same(
    db_url: str, pair: tuple[nbflow.Run, nbflow.Run],
) -> None:
    a, _ = pair
    res = cli(db_url, "diff", a.id, a.id)
    assert res.returncode == 0
    assert res.stdout.strip() == f"{a.id} -> {a.id}: the same outputs: 0 changed, 0 added, 0 removed"


def test_nbflow_diff_of_an_unknown_run_exits_1_naming_it(db_url: str, pair: tuple[nbflow.Run, nbflow.Run]) -> None:
    a, _ = pair
    res = cli(db_url, "diff", a.id, "nope", "-o", "json")
    assert res.returncode == 1 and res.stdout == ""
    assert "no run 'nope'" in res.stderr and "nbflow runs" in res.stderr


# ------------------------------------------------------------------------------------------- fork
def test_nbflow_fork_of_one_item_reexecutes_that_item_the_item_over_it_and_the_task_after(
    db_url: str, parent: nbflow.Run, trail: Trail,
) -> None:
    mark = len(trail.items())
    res = cli(db_url, "fork", parent.id, "enrich:37", "-o", "json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out == {"run": out["run"], "parent": parent.id, "from_step": "enrich", "keys": ["37"], "status": "succeeded"}
    assert sorted(trail.items()[mark:]) == ["double:37", "enrich:37", "report"]
    fork = nbflow.Run(parent.store, out["run"])
    assert fork.status == "succeeded" and fork.diff(parent) == {"changed": [], "added": [], "removed": []}
    created = fork.history()[0]
    assert (created.data["forked_from"], created.data["fork"]) == (parent.id, {"from_step": "enrich", "keys": ["37"]})


def test_nbflow_fork_of_several_items_names_each(db_url: str, parent: nbflow.Run, trail: Trail) -> None:
    mark = len(trail.items())
    res = cli(db_url, "fork", parent.id, "enrich:3", "enrich:5", "-o", "json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["keys"] == ["3", "5"]
    assert sorted(trail.items()[mark:]) == ["double:3", "double:5", "enrich:3", "enrich:5", "report"]


def test_nbflow_fork_from_a_step_without_keys_runs_it_and_what_follows_again(
    db_url: str, trail: Trail, parent: nbflow.Run,
) -> None:
    mark = len(trail.items())
    res = cli(db_url, "fork", parent.id, "double")
    assert res.returncode == 0, res.stderr
    assert Counter(t.split(":")[0] for t in trail.items()[mark:]) == {"double": N, "report": 1}
    (new,) = [r for r in runs_of(db_url) if r != parent.id]
    assert " ".join(res.stdout.split()) == (f"run {new} (fork of {parent.id} from double): succeeded "
                                            f"({2 * N + 2}/{2 * N + 2} instances finished)")
    assert nbflow.Run(parent.store, new).history()[0].data["fork"] == {"from_step": "double", "keys": None}


@pytest.mark.parametrize(("targets", "code", "message"), [
    (["load", "enrich:1"], 2, "a fork starts from one step; these name 'load', 'enrich'"),
    (["enrich", "enrich:1"], 2, "write enrich alone (fork from the whole step) or only enrich:KEY targets"),
    (["enrich:1", "enrich:1001"], 1, "has no item '1001' of step 'enrich'"),
    (["report:1"], 1, "fork keys= chooses items of a foreach step; 'report' is a task"),
    (["nope"], 1, "no step 'nope' to fork from"),
])
def test_a_bad_nbflow_fork_is_refused_naming_what_to_do_and_starts_no_run(
    db_url: str, parent: nbflow.Run, trail: Trail, targets: list[str], code: int, message: str,
) -> None:
    mark = len(trail.items())
    res = cli(db_url, "fork", parent.id, *targets)
    assert res.returncode == code and message in res.stderr, res.stderr
    assert runs_of(db_url) == [parent.id]
    assert trail.items()[mark:] == []


def test_nbflow_fork_of_an_unknown_run_exits_1_naming_it(db_url: str, parent: nbflow.Run) -> None:
    res = cli(db_url, "fork", "nope", "enrich:1")
    assert res.returncode == 1 and "no run 'nope'" in res.stderr
    assert runs_of(db_url) == [parent.id]
