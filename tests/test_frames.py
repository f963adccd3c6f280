"""``run.frame()`` (issue 18): a stored run as a pandas DataFrame, one row per instance, read from the
store only. A 1,000-item foreach paused on its 17 bad rows is framed while its step bodies are counted
with a Trail (a file), so "runs nothing" is what the trail and the history show."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import nbflow
from nbflow import NbflowError, ValueRef, Workflow
from nbflow.store.codec import LARGE_VALUE_BYTES
from tests.sidefx import Trail

WAIT_S = 60
N = 1000
BAD = {i for i in range(N) if i % 59 == 7}  # 17 rows without an amount


@pytest.fixture
def calls(tmp_path: Path) -> Trail:
    """The items parse ran on (one line each time its body runs)."""
    return Trail(str(tmp_path / "calls"))


def payments(db_url: str, calls: Trail) -> Workflow:
    """export (n rows) -> parse (a foreach, keyed by id; a row without an amount raises) -> total."""
    wf = Workflow("frames", store=db_url)

    @wf.step
    def export(n):
        return [{"id": i, "amount": None if i in BAD else i * 10} for i in range(n)]

    @wf.foreach("export", key=lambda row: row["id"])
    def parse(item, rate):
        calls.add(item["id"])
        return {"id": item["id"], "cents": item["amount"] * rate}

    @wf.step
    def total(parse):
        return sum(p["cents"] for p in parse)

    return wf


@pytest.fixture
def paused(db_url: str, calls: Trail) -> nbflow.Run:
    run = payments(db_url, calls).run(params={"n": N, "rate": 100}, break_on_error=True)
    assert run.wait(timeout=WAIT_S) == "paused"
    return run


def test_the_frame_of_a_paused_1000_item_step_has_each_row_with_its_status_and_error_and_runs_nothing(
    paused: nbflow.Run, calls: Trail,
) -> None:
    ran, events = len(calls.items()), len(paused.history())
    frame = paused.frame("parse")
    assert len(frame) == N
    assert frame["key"].tolist() == list(range(N))
    bad = frame[frame["key"].isin(BAD)]
    assert set(bad["status"]) == {"paused"} and len(bad) == len(BAD)
    assert set(bad["error_type"]) == {"TypeError"}
    assert all("NoneType" in m for m in bad["error_message"])
    assert bad["output"].isna().all()
    good = frame[~frame["key"].isin(BAD)]
    assert set(good["status"]) == {"succeeded"} and good["error_type"].isna().all()
    assert good["error_message"].tolist() == [None] * (N - len(BAD))
    assert good.loc[good["key"] == 5, "output"].item() == {"id": 5, "cents": 5000}
    assert frame["attempts"].tolist() == [1] * N
    assert len(calls.items()) == ran and len(paused.history()) == events  # no body ran, no event was written
    assert paused.status == "paused"


def test_a_steps_frame_has_the_columns_in_order_then_one_per_input(paused: nbflow.Run) -> None:
    frame = paused.frame("parse")
    assert list(frame.columns) == ["key", "status", "attempts", "started_at", "finished_at", "duration_s",
                                   "error_type", "error_message", "output", "item", "rate"]
    assert frame.loc[3, "item"] == {"id": 3, "amount": 30} and frame.loc[3, "rate"] == 100


def test_each_rows_inputs_are_what_the_instance_shows(paused: nbflow.Run) -> None:
    frame = paused.frame("parse")
    for key in (0, 7, 999):
        shown = paused.instance("parse", key).inputs
        row = frame[frame["key"] == key].iloc[0]
        assert {"item": row["item"], "rate": row["rate"]} == shown


def test_an_operator_edit_shows_in_its_input_column(paused: nbflow.Run) -> None:
    paused.set_inputs("parse", key=7, item={"id": 7, "amount": 1})
    frame = paused.frame("parse")
    assert frame.loc[7, "item"] == {"id": 7, "amount": 1} == paused.instance("parse", 7).inputs["item"]
    assert frame.loc[66, "item"] == {"id": 66, "amount": None}  # another bad row keeps its upstream value


def test_times_are_utc_timestamps_and_durations_seconds_nat_and_nan_when_none(paused: nbflow.Run) -> None:
    frame = paused.frame()
    done = frame[frame["step"] == "parse"].iloc[0]
    assert str(frame["started_at"].dt.tz) == "UTC"
    view = paused.instance("parse", 0)
    assert done["started_at"].timestamp() == pytest.approx(view.started_at, abs=1e-3)
    assert done["duration_s"] == pytest.approx(view.finished_at - view.started_at, abs=1e-5)
    waiting = frame[frame["step"] == "total"].iloc[0]
    assert waiting["status"] == "pending"
    assert pd.isna(waiting["started_at"]) and pd.isna(waiting["finished_at"]) and pd.isna(waiting["duration_s"])


def test_the_frame_of_every_step_has_a_step_column_in_dag_order_then_item_order(paused: nbflow.Run) -> None:
    frame = paused.frame()
    assert list(frame.columns[:3]) == ["step", "key", "status"]
    assert frame["step"].tolist() == ["export"] + ["parse"] * N + ["total"]
    assert frame.loc[0, "key"] is None and frame.loc[N + 1, "key"] is None  # task steps have no key
    assert frame.loc[1:N, "key"].tolist() == list(range(N))
    assert {"n", "item", "rate", "parse"} <= set(frame.columns)
    assert frame.loc[0, "n"] == N and frame.loc[0, "item"] is None  # a task step has no item


def test_a_frame_is_the_same_read_twice(paused: nbflow.Run) -> None:
    pd.testing.assert_frame_equal(paused.frame("parse"), paused.frame("parse"))


def big(db_url: str) -> nbflow.Run:
    """A task whose output is stored as a file, and a foreach over its characters' chunks."""
    wf = Workflow("frames-big", store=db_url)

    @wf.step
    def blob():
        return "x" * (LARGE_VALUE_BYTES + 64)

    @wf.step
    def length(blob):
        return len(blob)

    run = wf.run()
    assert run.wait(timeout=WAIT_S) == "succeeded"
    return run


def test_a_value_stored_as_a_file_is_a_value_ref_unless_values_load(db_url: str) -> None:
    run = big(db_url)
    ref = run.frame("blob").loc[0, "output"]
    assert isinstance(ref, ValueRef)
    assert ref.ref.startswith("res://sha256/") and ref.codec == "json"
    assert ref.size == LARGE_VALUE_BYTES + 66  # the JSON text: the string and its two quotes
    assert run.frame("length").loc[0, "blob"] == ref  # an input read from it too
    assert run.frame("length").loc[0, "output"] == LARGE_VALUE_BYTES + 64
    loaded = run.frame("blob", values="load").loc[0, "output"]
    assert loaded == "x" * (LARGE_VALUE_BYTES + 64)


def test_values_other_than_ref_or_load_are_refused_naming_them(paused: nbflow.Run) -> None:
    with pytest.raises(NbflowError, match=r"values must be one of 'ref', 'load', got 'all'"):
        paused.frame("parse", values="all")


def test_an_unknown_step_is_refused_as_run_instances_refuses_it(paused: nbflow.Run) -> None:
    with pytest.raises(NbflowError) as instances:
        paused.instances("prase")
    with pytest.raises(NbflowError, match="has no step 'prase'; steps are: ") as frame:
        paused.frame("prase")
    assert str(frame.value) == str(instances.value)


def test_without_pandas_the_frame_says_how_to_install_it(paused: nbflow.Run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pandas", None)  # what `import pandas` meets when it is not installed
    with pytest.raises(NbflowError, match=r"run\.frame needs pandas: pip install 'nbflow\[pandas\]'"):
        paused.frame("parse")


def test_string_keys_stay_strings_and_a_list_output_stays_one_cell(db_url: str) -> None:
    wf = Workflow("frames-keys", store=db_url)

    @wf.step
    def names():
        return ["ann", "bob"]

    @wf.foreach("names", key=lambda name: name)
    def letters(item):
        return list(item)

    run = wf.run()
    assert run.wait(timeout=WAIT_S) == "succeeded"
    frame = run.frame("letters")
    assert frame["key"].tolist() == ["ann", "bob"]
    assert frame["output"].tolist() == [["a", "n", "n"], ["b", "o", "b"]]
    assert frame.loc[1, "item"] == "bob"


def test_an_input_named_like_a_column_is_prefixed(db_url: str) -> None:
    wf = Workflow("frames-names", store=db_url)

    @wf.step
    def report(status, output: Any = None):
        return [status, output]

    run = wf.run(params={"status": "draft", "output": "pdf"})
    assert run.wait(timeout=WAIT_S) == "succeeded"
    row = run.frame("report").iloc[0]
    assert row["status"] == "succeeded"
    assert (row["input:status"], row["input:output"]) == ("draft", "pdf")


def test_a_frame_reads_postgresql_as_it_reads_sqlite(store_url: str, calls: Trail) -> None:
    run = payments(store_url, calls).run(params={"n": 60, "rate": 2}, break_on_error=True)
    assert run.wait(timeout=WAIT_S) == "paused"
    frame = run.frame("parse", values="load")
    assert frame["key"].tolist() == list(range(60))
    assert frame.loc[7, "status"] == "paused" and frame.loc[7, "error_type"] == "TypeError"
    assert frame.loc[8, "output"] == {"id": 8, "cents": 160} and frame.loc[8, "item"] == {"id": 8, "amount": 80}


def test_a_foreach_over_a_foreach_has_each_upstream_output_as_its_item(db_url: str) -> None:
    wf = Workflow("frames-chain", store=db_url)

    @wf.step
    def numbers():
        return [1, 2, 3]

    @wf.foreach("numbers")
    def square(item):
        return item * item

    @wf.foreach("square")
    def label(item):
        return f"#{item}"

    run = wf.run()
    assert run.wait(timeout=WAIT_S) == "succeeded"
    frame = run.frame("label")
    assert frame["item"].tolist() == [1, 4, 9] and frame["output"].tolist() == ["#1", "#4", "#9"]
    assert frame["key"].tolist() == [0, 1, 2]  # no key function: the item's index


def test_a_step_without_instances_yet_frames_as_no_rows_with_its_columns(db_url: str, calls: Trail) -> None:
    wf = payments(db_url, calls)
    run = wf.run(params={"n": 10, "rate": 1}, breakpoints=["export"])
    assert run.wait(timeout=WAIT_S) == "paused"
    frame = run.frame("parse")
    assert len(frame) == 0 and list(frame.columns)[-2:] == ["item", "rate"]
    whole = run.frame()  # a foreach has instances once its upstream output is known; tasks from the start
    assert whole["step"].tolist() == ["export", "total"] and whole["status"].tolist() == ["paused", "pending"]


def test_a_foreach_over_one_with_a_dead_letter_frames_the_items_it_received(db_url: str) -> None:
    """A dead letter is left out of its step's list (the scheduler hands on what succeeded): the items
    after it move up, in the frame and in ``run.instance(...).inputs`` as in the step's body."""
    wf = Workflow("frames-dead-letter", store=db_url)

    @wf.step
    def load():
        return list(range(5))

    @wf.foreach("load", on_item_error="continue")
    def tens(item):
        if item == 1:
            raise ValueError("bad item 1")
        return item * 10

    @wf.foreach("tens")
    def pair(item, tens):
        return [item, len(tens)]

    run = wf.run()
    assert run.wait(timeout=WAIT_S) == "succeeded"
    frame = run.frame("pair")
    assert frame["output"].tolist() == [[0, 4], [20, 4], [30, 4], [40, 4]]
    assert frame["item"].tolist() == [0, 20, 30, 40]
    assert frame["tens"].tolist() == [[0, 20, 30, 40]] * 4
    assert run.instance("pair", 1).inputs == {"item": 20, "tens": [0, 20, 30, 40]}
