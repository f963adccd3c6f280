"""Triage from the terminal: the 17-of-1,000 story (`nbflow errors`, then `skip`, `set --expr` and `retry`
on error groups) against a real run this test process owns, the CLI run as a subprocess; and the
bulk options' refusals, each of which changes nothing."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import nbflow
from tests.test_cli import cli, start

COMMA = [i * 80 + 7 for i in range(12)]
"""The items whose amount has a decimal comma ("7,5"): float() raises ValueError."""
NONE = [i * 190 + 13 for i in range(5)]
"""The items with no amount: float(None) raises TypeError."""
FIX = '{**item, "amount": item["amount"].replace(",", ".")}'

TRIAGE_SCRIPT = '''
import sys

import nbflow

COMMA = {i * 80 + 7 for i in range(12)}
NONE = {i * 190 + 13 for i in range(5)}
wf = nbflow.Workflow("triage", store=sys.argv[1])


@wf.step
def load(n):
    return [{"id": i, "amount": f"{i},5" if i in COMMA else None if i in NONE else f"{i}.25"} for i in range(n)]


@wf.foreach("load", key=lambda item: item["id"])
def parse(item):
    return float(item["amount"])


@wf.step
def total(parse):
    return sum(parse)


if __name__ == "__main__":
    run = wf.run(params={"n": 1000}, break_on_error=True)
    print(run.id, run.wait())
'''


def triage_run(db_url: str) -> nbflow.Run:
    """A live run of a 1,000-item foreach paused on 17 errors: 12 ValueErrors (a decimal comma) and
    5 TypeErrors (no amount), held by break_on_error."""
    wf = nbflow.Workflow("triage", store=db_url)
    comma, none = set(COMMA), set(NONE)

    @wf.step
    def load(n):
        return [{"id": i, "amount": f"{i},5" if i in comma else None if i in none else f"{i}.25"} for i in range(n)]

    @wf.foreach("load", key=lambda item: item["id"])
    def parse(item):
        return float(item["amount"])

    @wf.step
    def total(parse):
        return sum(parse)

    run = wf.run(params={"n": 1000}, break_on_error=True)
    assert run.wait(timeout=60) == "paused"
    return run


@pytest.fixture
def run(db_url: str) -> nbflow.Run:
    return triage_run(db_url)


def ok(db_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    res = cli(db_url, *args)
    assert res.returncode == 0, res.stderr
    return res


def commands(run: nbflow.Run) -> list[dict[str, Any]]:
    """The run's command events' data, oldest first."""
    return [e.data for e in run.history() if e.kind == "command"]


def keys_of(data: dict[str, Any]) -> list[str]:
    return [str(k) for k in data["target"]["keys"]]


def texts(keys: list[int]) -> list[str]:
    return [str(k) for k in keys]


# ---------------------------------------------------------------------------------- the story
def test_errors_lists_two_groups_of_12_and_5_largest_first(db_url: str, run: nbflow.Run) -> None:
    res = ok(db_url, "errors", run.id, "parse")
    assert "17 instances in 2 groups, largest first" in res.stdout
    lines = res.stdout.splitlines()
    (first,) = [ln for ln in lines if "ValueError" in ln]
    (second,) = [ln for ln in lines if "TypeError" in ln]
    assert first.split()[:3] == ["1", "ValueError", "12"] and second.split()[:3] == ["2", "TypeError", "5"]
    assert lines.index(first) < lines.index(second)
    assert "could not convert string to float: '9,9'" in res.stdout  # the values masked
    assert "keys: 7, 87, 167" in res.stdout and "at parse: return float(item" in res.stdout


def test_errors_without_a_step_names_the_steps_that_have_errors(db_url: str, run: nbflow.Run) -> None:
    res = cli(db_url, "errors", run.id)
    assert res.returncode == 2
    assert f"`nbflow errors {run.id} parse` (17 failed, paused or retrying)" in res.stderr


def test_errors_json_is_the_views_error_groups_with_every_key(db_url: str, run: nbflow.Run) -> None:
    found = json.loads(ok(db_url, "errors", run.id, "parse", "-o", "json").stdout)
    assert found["step"] == "parse" and found["total"] == 17
    one, two = found["groups"]
    assert (one["n"], one["type"], one["count"], str(one["first_key"])) == (1, "ValueError", 12, "7")
    assert (two["n"], two["type"], two["count"]) == (2, "TypeError", 5)
    assert sorted(one["keys"], key=int) == texts(COMMA) and sorted(two["keys"], key=int) == texts(NONE)
    assert len(one["id"]) == 8 and one["statuses"].get("paused") == 12 and not one["statuses"].get("failed")
    assert "return float(item['amount'])" in one["line"] or 'return float(item["amount"])' in one["line"]


def test_the_17_of_1000_story_from_the_terminal_ends_succeeded_with_each_command_in_the_history(
    db_url: str, run: nbflow.Run
) -> None:
    ok(db_url, "skip", run.id, "parse", "--group", "2", "--output", "0", "--reason", "no amount", "--force")
    ok(db_url, "set", run.id, "parse", "--group", "1", "--input", "item", "--expr", FIX, "--reason", "decimal comma",
       "--force")
    assert run.instance("parse", COMMA[0]).inputs["item"] == {"id": COMMA[0], "amount": f"{COMMA[0]}.5"}
    ok(db_url, "retry", run.id, "parse", "--group", "1", "--force")
    assert run.wait(timeout=30) == "succeeded"
    assert run.output("total") == sum(i + 0.25 for i in range(1000) if i not in COMMA + NONE) + sum(
        i + 0.5 for i in COMMA)

    skip, set_inputs, retry = commands(run)
    assert (skip["verb"], sorted(keys_of(skip), key=int)) == ("skip", texts(NONE))
    assert (set_inputs["verb"], sorted(keys_of(set_inputs), key=int)) == ("set_inputs", texts(COMMA))
    assert (retry["verb"], sorted(keys_of(retry), key=int)) == ("retry", texts(COMMA))
    assert all(c["result"] == "ok" for c in (skip, set_inputs, retry))
    changed = [e for e in run.history() if e.kind == "inputs_changed"]
    assert sorted(e.key for e in changed) == COMMA


def test_set_expr_dry_run_previews_old_and_new_and_changes_nothing(db_url: str, run: nbflow.Run) -> None:
    res = ok(db_url, "set", run.id, "parse", "--group", "1", "--expr", FIX, "--dry-run")
    assert "12 instances would change; nothing was changed" in res.stdout
    assert "'7,5'" not in res.stdout and '"7,5"' in res.stdout and '"7.5"' in res.stdout
    preview = json.loads(ok(db_url, "set", run.id, "parse", "--group", "1", "--expr", FIX, "--dry-run",
                            "-o", "json").stdout)
    assert preview["count"] == 12 and len(preview["preview"]) == 5
    assert preview["preview"][0] == {"key": "7", "old": {"id": 7, "amount": "7,5"}, "new": {"id": 7, "amount": "7.5"}}
    assert commands(run) == []
    assert run.instance("parse", 7).inputs["item"]["amount"] == "7,5"


def test_keys_option_is_one_command_over_those_keys_comma_separated_or_repeated(db_url: str, run: nbflow.Run) -> None:
    res = ok(db_url, "skip", run.id, "parse", "--keys", "13,203", "--keys", "393", "--output", "0", "--force",
             "-o", "json")
    (cmd,) = json.loads(res.stdout)["commands"]
    assert (cmd["state"], cmd["keys"]) == ("applied", ["13", "203", "393"])
    assert [run.instance("parse", k).status for k in (13, 203, 393, 583)] == ["skipped"] * 3 + ["paused"]
    (data,) = commands(run)
    assert keys_of(data) == ["13", "203", "393"]


def test_status_and_text_select_every_instance_matching_the_filter(db_url: str, run: nbflow.Run) -> None:
    res = ok(db_url, "skip", run.id, "parse", "--status", "paused", "--text", "could not convert", "--output", "0",
             "--force")
    assert "skip 12 instances of parse (parse:7, parse:87" in res.stdout
    (data,) = commands(run)
    assert sorted(keys_of(data), key=int) == texts(COMMA)


def test_set_inputs_with_keys_gives_each_selected_instance_the_same_value_in_one_command(
    db_url: str, run: nbflow.Run
) -> None:
    ok(db_url, "set", run.id, "parse", "--keys", "13,203", "--inputs", '{"item": {"id": 0, "amount": "1"}}',
       "--reason", "placeholder", "--force")
    assert [run.instance("parse", k).inputs["item"] for k in (13, 203, 393)] == [
        {"id": 0, "amount": "1"}, {"id": 0, "amount": "1"}, {"id": 393, "amount": None}]
    (data,) = commands(run)
    assert (data["verb"], keys_of(data)) == ("set_inputs", ["13", "203"])


def test_a_group_is_named_by_its_number_or_its_id(db_url: str, run: nbflow.Run) -> None:
    found = json.loads(ok(db_url, "errors", run.id, "parse", "-o", "json").stdout)
    type_error = found["groups"][1]
    ok(db_url, "skip", run.id, "parse", "--group", type_error["id"], "--output", "0", "--force")
    assert [run.instance("parse", k).status for k in NONE] == ["skipped"] * 5
    (data,) = commands(run)
    assert sorted(keys_of(data), key=int) == texts(NONE)


def test_resume_with_keys_resumes_exactly_those_instances_in_one_command(db_url: str) -> None:
    paused = start(db_url, breakpoints=["enrich"])
    res = ok(db_url, "resume", paused.id, "enrich", "--keys", "3,5", "--force", "-o", "json")
    (cmd,) = json.loads(res.stdout)["commands"]
    assert (cmd["state"], cmd["keys"]) == ("applied", ["3", "5"])
    assert sorted(v.key for v in paused.instances("enrich", status="paused")) == [
        k for k in range(20) if k not in (3, 5)]


def test_without_a_live_owner_the_commands_queue_and_resume_drives_the_run_to_success(
    db_url: str, tmp_path: Path
) -> None:
    script = tmp_path / "triage_wf.py"
    script.write_text(TRIAGE_SCRIPT)
    proc = subprocess.run([sys.executable, str(script), db_url], capture_output=True, check=False, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    run_id, status = proc.stdout.split()
    assert status == "paused"
    for args in (("skip", "--group", "2", "--output", "0"),
                 ("set", "--group", "1", "--expr", FIX, "--reason", "decimal comma"),
                 ("retry", "--group", "1")):
        res = ok(db_url, args[0], run_id, "parse", *args[1:], "--force")
        assert "queued" in res.stdout
    res = ok(db_url, "resume", run_id, "--force", "-o", "json")
    assert json.loads(res.stdout)["status"] == "succeeded"
    history = json.loads(ok(db_url, "history", run_id, "--kind", "command", "-o", "json").stdout)
    assert [(e["data"]["verb"], len(e["data"]["target"]["keys"]), e["data"]["result"]) for e in history] == [
        ("skip", 5, "ok"), ("set_inputs", 12, "ok"), ("retry", 12, "ok")]


# ---------------------------------------------------------------------------------- refusals
@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("retry", "{run}", "parse", "--group", "3"), 1, "has no error group 3; its groups are: 1 (id "),
        (("retry", "{run}", "parse", "--group", "deadbeef"), 1, "has no error group deadbeef"),
        (("retry", "{run}", "load", "--keys", "1"), 1, "step 'load' is a task step"),
        (("retry", "{run}", "nostep", "--group", "1"), 1, "has no step 'nostep'"),
        (("skip", "{run}", "parse", "--keys", "7,5000", "--output", "0"), 1, "no instance with key 5000"),
        (("retry", "{run}", "parse", "--status", "running"), 1, "no instance of 'parse'"),
        (("retry", "{run}", "parse", "--keys", "7", "--group", "1"), 2, "--keys names the instances itself"),
        (("retry", "{run}", "parse:7", "--group", "1"), 2, "name the step alone"),
        (("retry", "{run}", "parse", "total", "--group", "1"), 2, "name the step alone"),
        (("resume", "{run}", "--group", "1"), 2, "--group selects instances of one step"),
        (("set", "{run}", "parse", "--group", "1", "--expr", "{**item", "--reason", "r"), 2, "'--expr'"),
        (("set", "{run}", "parse", "--group", "1", "--expr", "item", "--inputs", "{}", "--reason", "r"), 2,
         "exactly one of --inputs JSON, --output JSON or --expr EXPR"),
        (("set", "{run}", "parse", "--group", "1", "--expr", "item", "--input", "nope", "--reason", "r"), 1,
         "takes no input named 'nope'"),
        (("set", "{run}", "parse", "--group", "1", "--expr", 'item["nope"]', "--reason", "r"), 1,
         "the expression failed for 12 of 12 instances"),
        (("set", "{run}", "parse", "--expr", FIX, "--reason", "r"), 2, "--expr needs the instances it changes"),
        (("set", "{run}", "parse", "--group", "1", "--expr", FIX), 2, "Missing option '--reason'"),
    ],
)
def test_bad_bulk_input_is_refused_naming_it_and_changes_nothing(
    db_url: str, run: nbflow.Run, args: tuple[str, ...], code: int, message: str
) -> None:
    before = len(run.history())
    res = cli(db_url, *(a.format(run=run.id) if a == "{run}" else a for a in args), "--force")
    assert res.returncode == code, (res.stdout, res.stderr)
    assert message in res.stderr and "Traceback" not in res.stderr
    assert len(run.history()) == before and commands(run) == []
    assert len(run.instances("parse", status="paused")) == 17
