"""``run.diff(other)`` (issue 18): what differs between the outputs of two runs of one workflow,
instance by instance. Two 1,000-item runs whose parameter changes one item differ in exactly that item
of each foreach and the tasks after it; step bodies are counted with a Trail to show a diff runs nothing."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import nbflow
from nbflow import NbflowError, Store, Workflow
from nbflow.store.codec import LARGE_VALUE_BYTES
from tests.sidefx import Trail

WAIT_S = 60
N = 1000


@pytest.fixture
def calls(tmp_path: Path) -> Trail:
    """The step bodies that ran (one line each)."""
    return Trail(str(tmp_path / "calls"))


def prices(db_url: str, calls: Trail) -> Workflow:
    """export -> price (foreach; the item *bump* names costs one more) -> label (foreach over price) ->
    total -> report; count (the number of prices) does not depend on their values."""
    wf = Workflow("diffs", store=db_url)

    @wf.step
    def export(n):
        calls.add("export")
        return [{"id": i, "cents": 100 + i} for i in range(n)]

    @wf.foreach("export", key=lambda row: row["id"])
    def price(item, bump):
        calls.add(f"price:{item['id']}")
        return item["cents"] + (1 if item["id"] == bump else 0)

    @wf.foreach("price")
    def label(item):
        return f"{item / 100:.2f} EUR"

    @wf.step
    def total(price):
        return sum(price)

    @wf.step
    def count(price):
        return len(price)

    @wf.step
    def report(total, count):
        return {"total": total, "count": count}

    return wf


def finished(wf: Workflow, **params: Any) -> nbflow.Run:
    run = wf.run(params=params)
    assert run.wait(timeout=WAIT_S) == "succeeded"
    return run


@pytest.fixture
def pair(db_url: str, calls: Trail) -> tuple[nbflow.Run, nbflow.Run]:
    wf = prices(db_url, calls)
    return finished(wf, n=N, bump=-1), finished(wf, n=N, bump=37)


def test_a_parameter_that_changes_one_item_names_that_item_in_each_foreach_and_the_tasks_after_it(
    pair: tuple[nbflow.Run, nbflow.Run], calls: Trail,
) -> None:
    a, b = pair
    ran = len(calls.items())
    d = a.diff(b)
    assert d == {
        "changed": [
            {"step": "price", "key": 37, "before": 137, "after": 138},
            {"step": "label", "key": 37, "before": "1.37 EUR", "after": "1.38 EUR"},
            {"step": "total", "key": None, "before": sum(range(100, 100 + N)), "after": sum(range(100, 100 + N)) + 1},
            {"step": "report", "key": None, "before": {"total": sum(range(100, 100 + N)), "count": N},
             "after": {"total": sum(range(100, 100 + N)) + 1, "count": N}},
        ],
        "added": [],
        "removed": [],
    }
    assert len(calls.items()) == ran  # the diff ran no step


def test_a_run_has_no_diff_with_itself_and_the_reverse_diff_swaps_before_and_after(
    pair: tuple[nbflow.Run, nbflow.Run],
) -> None:
    a, b = pair
    assert a.diff(a) == {"changed": [], "added": [], "removed": []}
    back = b.diff(a.id)  # a run id does as well as its handle
    assert [(e["step"], e["key"], e["before"], e["after"]) for e in back["changed"]][:2] == [
        ("price", 37, 138, 137), ("label", 37, "1.38 EUR", "1.37 EUR")]


def test_items_only_one_run_has_are_added_or_removed_with_none_on_the_other_side(db_url: str, calls: Trail) -> None:
    wf = prices(db_url, calls)
    short, long = finished(wf, n=3, bump=-1), finished(wf, n=4, bump=-1)
    d = short.diff(long)
    assert d["added"] == [{"step": "price", "key": 3, "before": None, "after": 103},
                          {"step": "label", "key": 3, "before": None, "after": "1.03 EUR"}]
    assert d["removed"] == []
    assert [e["step"] for e in d["changed"]] == ["export", "total", "count", "report"]
    assert long.diff(short)["removed"] == [{"step": "price", "key": 3, "before": 103, "after": None},
                                           {"step": "label", "key": 3, "before": "1.03 EUR", "after": None}]


def test_equal_values_are_equal_even_when_their_stored_bytes_differ(db_url: str) -> None:
    wf = Workflow("diffs-order", store=db_url)

    @wf.step
    def pair(flip):
        return {"b": 2, "a": 1} if flip else {"a": 1, "b": 2}

    a, b = finished(wf, flip=False), finished(wf, flip=True)
    stored = {r["run_id"]: bytes(r["output"]) for r in (*Store.open(db_url).instance_rows(a.id),
                                                         *Store.open(db_url).instance_rows(b.id))}
    assert stored[a.id] != stored[b.id]
    assert a.diff(b) == {"changed": [], "added": [], "removed": []}


def test_an_instance_without_an_output_compares_as_none(db_url: str) -> None:
    wf = Workflow("diffs-failed", store=db_url)

    @wf.step
    def ratio(d):
        return 1 / d

    good, bad = wf.run(params={"d": 4}), wf.run(params={"d": 0})
    assert good.wait(timeout=WAIT_S) == "succeeded" and bad.wait(timeout=WAIT_S) == "failed"
    assert good.diff(bad)["changed"] == [{"step": "ratio", "key": None, "before": 0.25, "after": None}]


def test_a_large_value_shows_as_its_reference_with_size_and_digest(db_url: str) -> None:
    wf = Workflow("diffs-big", store=db_url)

    @wf.step
    def blob(c):
        return c * (LARGE_VALUE_BYTES + 64)

    a, b = finished(wf, c="x"), finished(wf, c="y")
    (entry,) = a.diff(b)["changed"]
    ref_a = a.frame("blob").loc[0, "output"]
    assert entry["before"] == {"ref": ref_a.ref, "size": LARGE_VALUE_BYTES + 66,
                               "digest": "sha256:" + ref_a.ref.rsplit("/", 1)[-1]}
    assert entry["after"]["ref"] != ref_a.ref and entry["after"]["digest"].startswith("sha256:")
    assert finished(wf, c="x").diff(a) == {"changed": [], "added": [], "removed": []}


def test_a_value_that_is_not_json_shows_as_its_repr(db_url: str) -> None:
    wf = Workflow("diffs-repr", store=db_url)

    @wf.step
    def tags(extra):
        return frozenset({"a", extra})

    a, b = finished(wf, extra="a"), finished(wf, extra="b")
    (entry,) = a.diff(b)["changed"]
    assert entry["before"] == {"repr": "frozenset({'a'})"}
    assert entry["after"]["repr"] in ("frozenset({'a', 'b'})", "frozenset({'b', 'a'})")
    assert finished(wf, extra="a").diff(a)["changed"] == []  # an equal pickle compares equal


def test_runs_of_two_workflows_are_refused_naming_both(pair: tuple[nbflow.Run, nbflow.Run], db_url: str) -> None:
    a, _ = pair
    other = Workflow("diffs-other", store=db_url)

    @other.step
    def one():
        return 1

    o = finished(other)
    with pytest.raises(NbflowError, match=rf"runs {a.id} \(workflow 'diffs'\) and {o.id} \(workflow 'diffs-other'\) "
                                          "are of different workflows"):
        a.diff(o)


def test_an_unknown_run_is_refused_naming_it(pair: tuple[nbflow.Run, nbflow.Run]) -> None:
    a, _ = pair
    with pytest.raises(nbflow.UnknownRunError, match="no run 'nope'"):
        a.diff("nope")


def test_a_diff_reads_postgresql_as_it_reads_sqlite(store_url: str, calls: Trail) -> None:
    wf = prices(store_url, calls)
    a, b = finished(wf, n=50, bump=-1), finished(wf, n=50, bump=7)
    assert [(e["step"], e["key"]) for e in a.diff(b)["changed"]] == [
        ("price", 7), ("label", 7), ("total", None), ("report", None)]


def test_equal_values_whose_equality_is_not_a_bool_are_equal(db_url: str) -> None:
    """numpy arrays inside a pickled value: ``==`` gives an array; the diff compares them element by element."""
    np = pytest.importorskip("numpy")
    wf = Workflow("diffs-numpy", store=db_url)

    @wf.step
    def arrays(flip, bump):
        value = {"a": np.arange(3) + bump, "b": (1, 2)}
        return dict(reversed(list(value.items()))) if flip else value

    a, b, c = finished(wf, flip=False, bump=0), finished(wf, flip=True, bump=0), finished(wf, flip=False, bump=1)

    assert a.diff(b) == {"changed": [], "added": [], "removed": []}
    assert [e["step"] for e in a.diff(c)["changed"]] == ["arrays"]
