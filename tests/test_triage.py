"""Triage of a 1,000-item foreach where 17 items fail (issue 16), through the Python API and the
view's controller: errors grouped by cause in the store, bulk verbs that are one command each with
the keys they cover, a bulk edit by expression, watch columns, the problems-first table, a timeline."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

import nbflow
from nbflow import NbflowError, Workflow
from nbflow.notebook.controller import Controller
from nbflow.triage import error_signature, failing_line, group_id, mask_message
from tests.sidefx import Trail

WAIT_S = 60
COMMAS = {i for i in range(1000) if i % 83 == 41}  # 12 decimal commas
NONES = {100, 300, 500, 700, 900}  # 5 missing amounts: a TypeError


def amounts(n: int) -> list[dict[str, Any]]:
    rows = []
    for i in range(n):
        amount: str | None = f"{10 + i % 90}.{i % 100:02d}"
        if i in COMMAS:
            amount = amount.replace(".", ",")
        if i in NONES:
            amount = None
        rows.append({"id": i, "amount": amount})
    return rows


@pytest.fixture
def calls(tmp_path: Path) -> Trail:
    """The items parse ran on (one line each time its body runs)."""
    return Trail(str(tmp_path / "calls"))


def payments(db_url: str, calls: Trail) -> Workflow:
    wf = Workflow("payments", store=db_url)

    @wf.step
    def export(n):
        return amounts(n)

    @wf.foreach("export", key=lambda row: row["id"])
    def parse(item):
        calls.add(item["id"])
        return {"id": item["id"], "cents": round(float(item["amount"]) * 100)}

    @wf.step
    def total(parse):
        return sum(p["cents"] for p in parse)

    return wf


@pytest.fixture
def run(db_url: str, calls: Trail) -> nbflow.Run:
    r = payments(db_url, calls).run(params={"n": 1000}, break_on_error=True)
    assert r.wait(timeout=WAIT_S) == "paused"
    return r


# ------------------------------------------------------------------ signatures
def test_a_quoted_value_is_masked_to_its_shape_so_one_cause_reads_alike() -> None:
    assert mask_message("could not convert string to float: '51,41'") == mask_message(
        "could not convert string to float: '7,5'")
    assert mask_message("could not convert string to float: '6O.66'") != mask_message(
        "could not convert string to float: '51,41'")
    assert mask_message("index 17 out of range for id 0xdeadbeef") == "index N out of range for id …"


def test_the_failing_line_is_the_innermost_frame_function_and_source() -> None:
    tb = ('Traceback (most recent call last):\n  File "/tmp/ipykernel_7/3.py", line 9, in parse\n'
          '    return float(item["amount"])\n           ^^^^^^^^^^^^^^^^^^^^^\nValueError: bad\n')
    assert failing_line(tb) == 'parse: return float(item["amount"])'
    assert error_signature("ValueError", "bad 3", tb) == 'ValueError: bad N @ parse: return float(item["amount"])'


# ------------------------------------------------------------------ error groups
def test_errors_group_by_cause_largest_first_with_counts_keys_and_an_example(run: nbflow.Run) -> None:
    groups = run.error_groups("parse")
    assert [(g.n, g.type, g.count) for g in groups] == [(1, "ValueError", 12), (2, "TypeError", 5)]
    commas, nones = groups
    assert sorted(commas.keys) == sorted(COMMAS) and sorted(nones.keys) == sorted(NONES)
    assert commas.statuses == {"paused": 12} and commas.first_key == min(COMMAS)
    assert commas.message == "could not convert string to float: '51,41'"
    assert "float(item[\"amount\"])" in commas.line and "ValueError" in commas.traceback
    assert commas.id == group_id(commas.signature)
    assert run.keys("parse", group=2) == sorted(NONES) == run.keys("parse", group=nones.id)


def test_an_unknown_group_is_refused_naming_the_groups_there_are(run: nbflow.Run) -> None:
    with pytest.raises(NbflowError, match=r"no error group '7'; its groups are: 1 \(\w{8}\), 2 \(\w{8}\)"):
        run.keys("parse", group=7)


# ------------------------------------------------------------------ the story through the API
def test_skip_a_group_fix_another_by_function_and_retry_it_and_the_run_succeeds(run: nbflow.Run,
                                                                                 calls: Trail) -> None:
    commas, nones = run.error_groups("parse")
    before = len(calls.items())
    run.skip("parse", keys=nones, output={"id": -1, "cents": 0}, reason="no amount")
    run.set_inputs("parse", keys=commas.keys, fn=lambda item: {**item, "amount": item["amount"].replace(",", ".")},
                   reason="decimal commas")
    run.retry("parse", keys=commas.keys)
    assert run.wait(timeout=WAIT_S) == "succeeded"
    assert len(calls.items()) - before == 12  # exactly the retried items ran again
    assert run.instance("parse", key=41).inputs["item"] == {"id": 41, "amount": "51.41"}

    commands = [e for e in run.history() if e.kind == "command"]
    assert [(c.data["verb"], sorted(map(int, c.data["target"]["keys"]))) for c in commands] == [
        ("skip", sorted(NONES)), ("set_inputs", sorted(COMMAS)), ("retry", sorted(COMMAS))]
    changed = [e for e in run.history() if e.kind == "inputs_changed"]
    assert len(changed) == 12
    assert changed[0].data["old"] == {"item": {"id": 41, "amount": "51,41"}}
    assert changed[0].data["new"] == {"item": {"id": 41, "amount": "51.41"}}


def test_a_function_that_fails_for_one_instance_changes_nothing(run: nbflow.Run) -> None:
    commas, _ = run.error_groups("parse")
    events = len(run.history())
    with pytest.raises(NbflowError, match=r"fn failed for 12 of 12 instances, nothing was changed"):
        run.set_inputs("parse", keys=commas.keys, fn=lambda item: item["no such field"])
    assert len(run.history()) == events


def test_a_function_of_an_input_the_step_does_not_take_is_refused(run: nbflow.Run) -> None:
    with pytest.raises(NbflowError, match="no input named 'row'"):
        run.set_inputs("parse", keys=[41], fn=lambda item: item, into="row")


# ------------------------------------------------------------------ the controller (widget and sidebar)
def test_the_table_opens_on_the_problems_of_the_paused_step(run: nbflow.Run) -> None:
    state = Controller(run).state()
    page = state["instances"]
    assert state["selected_step"] == "parse" and page["status"] == "problems"
    assert page["total"] == 17 and {r["status"] for r in page["rows"]} == {"paused"}
    assert page["inputs"] == ["item"]


def test_the_errors_view_lists_groups_and_selecting_one_selects_its_instances(run: nbflow.Run) -> None:
    c = Controller(run)
    assert c.act("show_errors", {"on": True})["ok"]
    errors = c.state()["errors"]
    assert [(g["type"], g["count"]) for g in errors["groups"]] == [("ValueError", 12), ("TypeError", 5)]
    assert errors["total"] == 17 and len(errors["groups"][0]["keys"]) == 12
    c.act("select", {"group": errors["groups"][1]["id"]})
    selection = c.state()["selection"]
    assert selection["kind"] == "group" and selection["count"] == 5
    assert selection["label"] == "5 instances of parse (TypeError)"
    assert len(json.dumps(c.state())) < 50_000


def test_bulk_verbs_act_on_the_selection_as_one_command(run: nbflow.Run) -> None:
    c = Controller(run)
    groups = nbflow.Run(run.store, run.id).error_groups("parse")
    c.act("select", {"group": groups[1].id})
    answer = c.act("skip", {"selected": True, "json": "0"})
    assert answer["ok"], answer
    assert answer["text"] == "skipped 5 instances"
    assert {run.instance("parse", key=k).status for k in NONES} == {"skipped"}
    assert [e.data["target"]["keys"] for e in run.history() if e.kind == "command"] == [
        [str(k) for k in sorted(NONES)]]


def test_a_bulk_edit_previews_then_applies_one_set_inputs_with_a_value_per_instance(run: nbflow.Run) -> None:
    c = Controller(run)
    c.act("select", {"group": run.error_groups("parse")[0].id})
    expr = '{**item, "amount": item["amount"].replace(",", ".")}'
    preview = c.act("preview_edit", {"input": "item", "expr": expr})
    assert preview["ok"] and preview["count"] == 12 and len(preview["preview"]) == 5
    assert preview["preview"][0] == {"key": "41", "old": {"id": 41, "amount": "51,41"},
                                     "new": {"id": 41, "amount": "51.41"}}
    assert [e.kind for e in run.history()].count("inputs_changed") == 0  # a preview changes nothing
    applied = c.act("edit_selected", {"input": "item", "expr": expr, "reason": "decimal commas"})
    assert applied["ok"], applied
    assert c.act("retry", {"selected": True})["ok"]
    assert run.instance("parse", key=124).inputs["item"]["amount"] == "44.24"


def test_a_bad_expression_is_refused_and_changes_nothing(run: nbflow.Run) -> None:
    c = Controller(run)
    c.act("select", {"group": run.error_groups("parse")[0].id})
    events = len(run.history())
    bad = c.act("edit_selected", {"input": "item", "expr": "item[", "reason": "x"})
    assert not bad["ok"] and bad["code"] == "invalid" and "not a valid Python expression" in bad["text"]
    assert len(run.history()) == events


def test_a_watch_column_shows_an_expression_per_row_and_sorts_the_table(run: nbflow.Run) -> None:
    c = Controller(run)
    assert c.act("watch_add", {"expr": 'item["amount"]'})["ok"]
    page = c.state()["instances"]
    assert page["columns"] == [{"expr": 'item["amount"]'}]
    assert page["rows"][0]["watch"][0] == {"value": "51,41", "text": '"51,41"', "error": None}
    c.act("sort", {"by": "watch:0", "desc": True})
    rows = c.state()["instances"]["rows"]
    texts = [r["watch"][0]["text"] for r in rows]
    assert texts == sorted(texts, reverse=True)


def test_the_timeline_has_durations_and_counts_per_time_bin(run: nbflow.Run) -> None:
    tl = Controller(run).state()["timeline"]
    assert tl["step"] == "parse" and tl["count"] == 1000
    assert 0 <= tl["median_s"] <= tl["p95_s"] <= tl["max_s"]
    assert tl["pauses"] == 17 and len(tl["bins"]) == 48
    assert sum(b["started"] for b in tl["bins"]) == 1000


# ------------------------------------------------------------------ stores written before signatures
def test_errors_recorded_before_the_upgrade_are_grouped_after_it(run: nbflow.Run, db_url: str) -> None:
    from alembic import command
    from alembic.config import Config

    from nbflow.engine.lifecycle import stop_all
    from nbflow.store import Store
    from nbflow.store import store as store_module

    stop_all()  # the owner stops (as a kernel that dies): the run stays paused, its errors stored
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(store_module.__file__).with_name("migrations")))
    engine = sa.create_engine(db_url)
    with engine.begin() as conn:  # back to the schema before signatures: the column goes
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0004")
    engine.dispose()

    fresh = Store(db_url)  # opening it migrates it again, and signs the stored errors
    try:
        groups = nbflow.Run(fresh, run.id).error_groups("parse")
        assert [(g.type, g.count) for g in groups] == [("ValueError", 12), ("TypeError", 5)]
    finally:
        fresh.dispose()


def test_a_watch_filter_keeps_the_rows_whose_value_holds_the_text_and_all_matching_selects_them(
        run: nbflow.Run) -> None:
    c = Controller(run)
    c.act("watch_add", {"expr": 'item["amount"] or "missing"'})
    assert c.act("filter", {"status": "problems", "watch": {"index": 0, "text": "missing"}})["ok"]
    page = c.state()["instances"]
    assert page["total"] == 5 and {r["watch"][0]["value"] for r in page["rows"]} == {"missing"}
    c.act("select", {"filter": True})
    assert c.selected_keys() == [str(k) for k in sorted(NONES)]


# ------------------------------------------------------------------ what the review found
def test_a_quoted_name_of_the_code_is_kept_so_different_missing_fields_are_different_groups() -> None:
    line = 'return float(item["amount"]) * RATES[item["currency"]]'
    assert mask_message("'amount'", line) == "'amount'" and mask_message("'currency'", line) == "'currency'"
    assert mask_message("not 'NoneType'") != mask_message("not 'list'")
    assert mask_message("'NoneType' object has no attribute 'strip'") == "'NoneType' object has no attribute 'strip'"


def test_a_quoted_name_that_is_data_is_masked_so_one_cause_stays_one_group() -> None:
    line = 'return RATES[item["country"]]'
    assert mask_message("'DE'", line) == mask_message("'FR'", line) == "'a'"
    assert mask_message("could not convert string to float: 'abc'") == mask_message(
        "could not convert string to float: 'NA'")


def test_a_long_message_keeps_its_failing_line_in_the_signature() -> None:
    tb = 'Traceback (most recent call last):\n  File "x.py", line 3, in parse\n    boom()\nValueError: x\n'
    assert error_signature("ValueError", "x" * 2000, tb).endswith(" @ parse: boom()")


def test_a_group_chosen_by_number_keeps_naming_that_group_when_others_are_resolved(run: nbflow.Run) -> None:
    c = Controller(run)
    c.act("select", {"group": "2"})  # the TypeErrors, ranked second now
    run.retry("parse", keys=run.error_groups("parse")[0])  # the 12 ValueErrors fail again: still 2 groups
    assert run.wait(timeout=WAIT_S) == "paused"  # they are back on their errors (a skip of a running one is refused)
    run.skip("parse", keys=sorted(COMMAS), output={"id": -1, "cents": 0})  # now the TypeErrors rank first
    selection = c.state()["selection"]
    assert (selection["count"], selection["label"]) == (5, "5 instances of parse (TypeError)")
    assert c.act("skip", {"selected": True, "json": "0"})["text"] == "skipped 5 instances"


def test_a_retried_instance_paused_before_a_breakpoint_leaves_its_error_group(run: nbflow.Run, db_url: str,
                                                                                calls: Trail) -> None:
    _, nones = run.error_groups("parse")
    payments(db_url, calls).breakpoints.add("parse", when="before")  # the retried items stop before the body
    run.retry("parse", keys=nones)
    assert run.wait(timeout=WAIT_S) == "paused"
    assert {run.instance("parse", key=k).pause_reason for k in NONES} == {"before"}
    assert [(g.type, g.count) for g in run.error_groups("parse")] == [("ValueError", 12)]


def test_the_python_api_returns_every_group_not_only_the_first_fifty(db_url: str) -> None:
    wf = Workflow("many_causes", store=db_url)

    @wf.step
    def rows():
        return list(range(60))

    @wf.foreach("rows")
    def parse(item):
        return getattr(item, f"field_{item}")  # 60 causes: a missing attribute each

    r = wf.run(break_on_error=True)
    assert r.wait(timeout=WAIT_S) == "paused"
    groups = r.error_groups("parse")
    assert len(groups) == 60 and sum(g.count for g in groups) == 60


def test_set_inputs_by_function_without_keys_edits_the_instances_that_take_an_edit(run: nbflow.Run) -> None:
    seen: list[int] = []

    def fix(item):
        seen.append(item["id"])
        return {**item, "amount": (item["amount"] or "0").replace(",", ".")}

    res = run.set_inputs("parse", fn=fix, reason="every failed row")
    assert res.message == "changed the inputs of 17 instances"
    assert sorted(seen) == sorted(COMMAS | NONES)  # the 983 that succeeded were not read


def test_the_table_shows_the_whole_step_again_once_every_problem_is_solved(run: nbflow.Run) -> None:
    c = Controller(run)
    assert c.state()["instances"]["status"] == "problems"
    run.skip("parse", keys=run.keys("parse", status="problems"), output={"id": -1, "cents": 0})
    assert run.wait(timeout=WAIT_S) == "succeeded"
    page = c.state()["instances"]
    assert page["status"] == "" and page["total"] == 1000


def test_a_watch_sort_over_more_instances_than_it_may_evaluate_is_refused(run: nbflow.Run,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from nbflow.notebook import controller

    monkeypatch.setattr(controller, "WATCH_EVAL_LIMIT", 100)
    c = Controller(run)
    c.act("filter", {"status": ""})
    c.act("watch_add", {"expr": 'item["id"]'})
    refused = c.act("sort", {"by": "watch:0"})
    assert not refused["ok"] and "1,000 match: narrow the table's filter" in refused["text"]
    assert c.act("filter", {"status": "paused"})["ok"] and c.act("sort", {"by": "watch:0", "desc": True})["ok"]
    assert [r["watch"][0]["value"] for r in c.state()["instances"]["rows"]][:2] == [954, 900]


def test_all_matching_the_filter_is_dropped_when_the_view_moves_its_own_filter(run: nbflow.Run) -> None:
    c = Controller(run)
    c.act("filter", {"status": "problems", "group": run.error_groups("parse")[1].id})
    c.act("select", {"filter": True})
    assert c.state()["selection"]["count"] == 5
    assert c.act("skip", {"selected": True, "json": "0"})["ok"]  # the group is gone: the table shows problems
    selection = c.state()["selection"]
    assert (selection["kind"], selection["label"]) == ("none", "nothing selected")
    refused = c.act("skip", {"selected": True, "json": "0"})  # a second Skip does not reach the ValueErrors
    assert not refused["ok"] and "nothing selected" in refused["text"]
    assert {run.instance("parse", key=k).status for k in COMMAS} == {"paused"}


def test_an_empty_list_of_keys_is_refused_before_anything_is_written(run: nbflow.Run) -> None:
    events = len(run.history())
    with pytest.raises(nbflow.CommandRefused, match="names no instance: the list of keys is empty"):
        run.retry("parse", keys=[])
    assert len(run.history()) == events
