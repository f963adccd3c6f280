"""Forks of chosen items (issue 18): ``run.fork(step, keys=[...])`` runs again exactly those items, the
items made from them in each foreach over the step, and what needs their whole list; everything else is
the parent's checkpoints. Executions are counted with a Trail (a file)."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from sidefx import Trail

import nbflow
from nbflow import Workflow
from nbflow.engine.lifecycle import stop_all
from nbflow.errors import NbflowError

WAIT_S = 120


def pipeline(db_url: str, trail: Trail, *, broken: int | None = None, on_item_error: str = "fail") -> Workflow:
    """load -> enrich (foreach keyed by id; item *broken* raises) -> double (foreach over enrich) -> report."""
    wf = Workflow("forks", store=db_url)

    @wf.step
    def load(n):  # type: ignore[no-untyped-def]
        trail.add("load")
        return [{"id": i, "x": i} for i in range(n)]

    define_enrich(wf, trail, broken=broken, on_item_error=on_item_error)

    @wf.foreach("enrich")
    def double(item):  # type: ignore[no-untyped-def]
        trail.add(f"double:{item['id']}")
        return {"id": item["id"], "z": item["y"] * 2}

    @wf.step
    def report(double):  # type: ignore[no-untyped-def]
        trail.add("report")
        return sum(d["z"] for d in double)

    return wf


def define_enrich(wf: Workflow, trail: Trail, *, broken: int | None = None, factor: int = 10,
                  on_item_error: str = "fail") -> None:
    """(Re)define ``enrich``: y = x * factor; item *broken* raises (a bad input)."""

    @wf.foreach("load", key=lambda item: item["id"], on_item_error=on_item_error)
    def enrich(item):  # type: ignore[no-untyped-def]
        trail.add(f"enrich:{item['id']}")
        if item["id"] == broken:
            raise ValueError(f"bad input {item['id']}")
        return {"id": item["id"], "y": item["x"] * factor}


@pytest.fixture
def trail(tmp_path: Path) -> Trail:
    return Trail(str(tmp_path / "trail.jsonl"))


def since(trail: Trail, mark: int) -> list[str]:
    return sorted(trail.items()[mark:])


def test_a_fork_of_one_item_of_a_1000_item_foreach_runs_that_item_the_item_over_it_and_the_task_after(
        db_url: str, trail: Trail) -> None:
    wf = pipeline(db_url, trail)
    parent = wf.run(params={"n": 1000})
    assert parent.wait(timeout=WAIT_S) == "succeeded"
    mark = len(trail.items())

    fork = parent.fork("enrich", keys=[37])

    assert fork.wait(timeout=WAIT_S) == "succeeded"
    assert since(trail, mark) == ["double:37", "enrich:37", "report"]
    assert fork.output("report") == parent.output("report")
    assert len(fork.instances("double")) == 1000
    created = fork.history()[0]
    assert created.kind == "run_created"
    assert (created.data["forked_from"], created.data["fork"]) == (parent.id, {"from_step": "enrich", "keys": ["37"]})


def test_a_fork_of_chosen_items_after_a_fix_runs_them_on_the_new_code_and_keeps_the_others(
        db_url: str, trail: Trail) -> None:
    wf = pipeline(db_url, trail)
    parent = wf.run(params={"n": 20})
    assert parent.wait(timeout=WAIT_S) == "succeeded"
    define_enrich(wf, trail, factor=100)  # the fix, for the chosen items only
    mark = len(trail.items())

    fork = parent.fork("enrich", keys=[3, 11])

    assert fork.wait(timeout=WAIT_S) == "succeeded"
    assert since(trail, mark) == ["double:11", "double:3", "enrich:11", "enrich:3", "report"]
    z = {v.key: v.output["z"] for v in fork.instances("double")}
    assert (z[3], z[11], z[4]) == (600, 2200, 80)
    assert fork.output("report") == parent.output("report") + (600 - 60) + (2200 - 220)


def test_a_fork_of_a_dead_letter_after_a_fix_puts_its_item_back_in_the_foreach_over_it(
        db_url: str, trail: Trail) -> None:
    wf = pipeline(db_url, trail, broken=5, on_item_error="continue")
    parent = wf.run(params={"n": 10})
    assert parent.wait(timeout=WAIT_S) == "succeeded"
    assert len(parent.instances("double")) == 9  # the dead letter made no item
    define_enrich(wf, trail, on_item_error="continue")  # fixed: item 5 no longer raises
    mark = len(trail.items())

    fork = parent.fork("enrich", keys=[5])

    assert fork.wait(timeout=WAIT_S) == "succeeded"
    assert since(trail, mark) == ["double:5", "enrich:5", "report"]  # items after it are the parent's, moved up
    assert [v.output["id"] for v in fork.instances("double")] == list(range(10))
    assert fork.output("report") == sum(i * 20 for i in range(10))


def test_a_fork_of_chosen_items_taken_over_before_its_foreach_expands_still_reuses_the_rest(
        db_url: str, trail: Trail) -> None:
    wf = pipeline(db_url, trail)
    parent = wf.run(params={"n": 30})
    assert parent.wait(timeout=WAIT_S) == "succeeded"
    mark = len(trail.items())
    wf.breakpoints.add("enrich", key="7")
    fork = parent.fork("enrich", keys=[7])
    assert fork.wait(timeout=WAIT_S) == "paused"
    stop_all()  # the owner goes before `double` expanded

    fork = wf.attach(fork.id)
    wf.breakpoints.remove("enrich")

    assert fork.wait(timeout=WAIT_S) == "succeeded"
    assert since(trail, mark) == ["double:7", "enrich:7", "report"]
    assert fork.output("report") == parent.output("report")


def test_a_fork_without_keys_runs_the_whole_step_again(db_url: str, trail: Trail) -> None:
    wf = pipeline(db_url, trail)
    parent = wf.run(params={"n": 5})
    assert parent.wait(timeout=WAIT_S) == "succeeded"
    mark = len(trail.items())

    fork = parent.fork("enrich")

    assert fork.wait(timeout=WAIT_S) == "succeeded"
    ran = Counter(t.split(":")[0] for t in trail.items()[mark:])
    assert ran == {"enrich": 5, "double": 5, "report": 1}
    assert fork.history()[0].data["fork"] == {"from_step": "enrich", "keys": None}


@pytest.mark.parametrize(("step", "keys", "message"), [
    ("load", [1], "fork keys= chooses items of a foreach step; 'load' is a task"),
    ("enrich", [], "fork keys= is empty: name the items of 'enrich'"),
    ("enrich", [3, 99], "has no item '99' of step 'enrich'"),
    ("nope", [1], "no step 'nope' to fork from"),
])
def test_a_bad_fork_is_refused_naming_what_to_do_and_starts_no_run(db_url: str, trail: Trail, step: str,
                                                                   keys: list[int], message: str) -> None:
    wf = pipeline(db_url, trail)
    parent = wf.run(params={"n": 5})
    assert parent.wait(timeout=WAIT_S) == "succeeded"
    mark = len(trail.items())

    with pytest.raises(NbflowError, match=message):
        parent.fork(step, keys=keys)

    assert [r.id for r in nbflow.runs(wf.store)] == [parent.id]
    assert trail.items()[mark:] == []


@pytest.mark.parametrize(("broken_before", "broken_after"), [({2}, set()), (set(), {2})],
                         ids=["a-dead-letter-now-succeeds", "an-item-now-a-dead-letter"])
def test_a_fork_three_foreach_levels_deep_matches_each_item_by_the_item_it_came_from(
        db_url: str, trail: Trail, tmp_path: Path, broken_before: set[int], broken_after: set[int]) -> None:
    """Default keys are positions: when the chosen item ends otherwise, every item after it moves, in
    each level; the reused items are still those made from the same item of the chosen step."""
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(sorted(broken_before)))
    wf = Workflow("deep", store=db_url)

    @wf.step
    def load():  # type: ignore[no-untyped-def]
        return list(range(6))

    @wf.foreach("load", on_item_error="continue")
    def a(item):  # type: ignore[no-untyped-def]
        trail.add(f"a:{item}")
        if item in json.loads(broken.read_text()):
            raise ValueError(f"bad {item}")
        return item * 10

    @wf.foreach("a")
    def b(item):  # type: ignore[no-untyped-def]
        trail.add(f"b:{item}")
        return item + 1

    @wf.foreach("b")
    def c(item):  # type: ignore[no-untyped-def]
        trail.add(f"c:{item}")
        return item * 2

    @wf.step
    def total(c):  # type: ignore[no-untyped-def]
        return c

    parent = wf.run()
    assert parent.wait(timeout=WAIT_S) == "succeeded"
    broken.write_text(json.dumps(sorted(broken_after)))
    mark = len(trail.items())

    fork = parent.fork("a", keys=[2])

    assert fork.wait(timeout=WAIT_S) == "succeeded"
    assert fork.output("total") == [(i * 10 + 1) * 2 for i in range(6) if i not in broken_after]
    assert since(trail, mark) == (["a:2", "b:20", "c:21"] if not broken_after else ["a:2"])
