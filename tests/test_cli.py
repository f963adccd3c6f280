"""The `nbflow` command, run in real subprocesses against runs owned by this test process (live)
or left behind by another process that exited (orphaned)."""
from __future__ import annotations

import getpass
import json
import re
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest

import nbflow

ROOT = Path(__file__).resolve().parents[1]

# The documented schema of `nbflow show RUN -o json` (docs/cli.md); fields may be added, never removed.
INSTANCE_STATUSES = ["pending", "ready", "running", "retrying", "paused", "waiting", "succeeded", "failed", "skipped",
                     "cancelled"]
RUN_STATUSES = ["running", "paused", "succeeded", "failed", "cancelled"]
STR = {"type": "string"}
NULLABLE_STR = {"type": ["string", "null"]}
COUNTS = {
    "type": "object",
    "properties": {s: {"type": "integer", "minimum": 0} for s in INSTANCE_STATUSES},
    "required": INSTANCE_STATUSES,
    "additionalProperties": False,
}
ERROR = {
    "oneOf": [
        {"type": "null"},
        {"type": "object", "required": ["type", "message"], "properties": {"type": STR, "message": STR}},
    ]
}
SHOW_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["id", "workflow", "version", "status", "interrupted", "owner", "params", "dag", "breakpoints",
                 "instances", "progress"],
    "properties": {
        "id": STR,
        "workflow": STR,
        "version": STR,
        "status": {"enum": RUN_STATUSES},
        "interrupted": {"type": "boolean"},
        "owner": {
            "type": "object",
            "required": ["host", "pid", "alive"],
            "properties": {"host": NULLABLE_STR, "pid": {"type": ["integer", "null"]}, "alive": {"type": "boolean"}},
        },
        "params": {"type": "object"},
        "dag": {
            "type": "object",
            "required": ["nodes", "edges"],
            "properties": {
                "nodes": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["step", "kind", "counts"],
                        "properties": {"step": STR, "kind": {"enum": ["task", "foreach", "approval", "wait"]},
                                       "counts": COUNTS},
                    },
                },
                "edges": {"type": "array", "items": {"type": "array", "items": STR, "minItems": 2, "maxItems": 2}},
            },
        },
        "breakpoints": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["id", "step", "key", "when", "condition", "scope", "state", "holding"],
                "properties": {
                    "id": {"type": "integer"},
                    "step": STR,
                    "key": NULLABLE_STR,
                    "when": {"enum": ["before", "after", "error"]},
                    "condition": NULLABLE_STR,
                    "scope": {"enum": ["workflow", "run"]},
                    "state": {"enum": ["set", "hit"]},
                    "holding": {"type": "array", "items": NULLABLE_STR},
                },
            },
        },
        "instances": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["step", "key", "status", "attempt", "pause_reason", "error"],
                "properties": {
                    "step": STR,
                    "key": NULLABLE_STR,
                    "status": {"enum": INSTANCE_STATUSES},
                    "attempt": {"type": "integer", "minimum": 0},
                    "pause_reason": NULLABLE_STR,
                    "error": ERROR,
                },
            },
        },
        "progress": {
            "type": "object",
            "required": ["done", "total"],
            "properties": {"done": {"type": "integer"}, "total": {"type": "integer"}},
        },
    },
}

ORPHAN_SCRIPT = '''
import sys

import nbflow

wf = nbflow.Workflow("orphan", store=sys.argv[1])


@wf.step
def load(n):
    return [{"id": i, "x": i} for i in range(n)]


@wf.foreach("load", key=lambda item: item["id"])
def enrich(item):
    return item["x"] * 2


@wf.step
def report(enrich):
    return sum(enrich)


if __name__ == "__main__":
    run = wf.run(params={"n": 5}, breakpoints=["enrich:2"])
    print(run.id, run.wait())
'''


def cli(db_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`nbflow --db URL ARGS...` in a subprocess without a terminal on stdin."""
    return subprocess.run(
        [sys.executable, "-m", "nbflow", "--db", db_url, *args],
        stdin=subprocess.DEVNULL, capture_output=True, check=False, text=True, timeout=120,
    )


def poll(check: Callable[[], Any], timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def start(db_url: str, *, bad: int = -1, **run_options: Any) -> nbflow.Run:
    """A live run of a 20-item foreach owned by this process; item *bad* raises."""
    wf = nbflow.Workflow("cli", store=db_url)

    @wf.step
    def load(n, bad=-1):
        return ["bad" if i == bad else i for i in range(n)]

    @wf.foreach("load")
    def enrich(item):
        return int(item) * 10

    @wf.step
    def report(enrich):
        return sum(enrich)

    run = wf.run(params={"n": 20, "bad": bad}, **run_options)
    assert run.wait(timeout=30) == "paused"
    return run


@pytest.fixture
def paused_run(db_url: str) -> nbflow.Run:
    """Every one of the 20 enrich items paused at a run-scoped breakpoint."""
    return start(db_url, breakpoints=["enrich"])


@pytest.fixture
def orphan(db_url: str, tmp_path: Path) -> str:
    """A run left paused (enrich:2) by a separate process that has exited."""
    script = tmp_path / "orphan_wf.py"
    script.write_text(ORPHAN_SCRIPT)
    cmd = [sys.executable, str(script), db_url]
    proc = subprocess.run(cmd, capture_output=True, check=False, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    run_id, status = proc.stdout.split()
    assert status == "paused"
    return run_id


def paused_keys(run: nbflow.Run) -> list[Any]:
    return [v.key for v in run.instances("enrich", status="paused")]


# ---------------------------------------------------------------------------------- reading
def test_show_json_matches_the_documented_schema(db_url: str, paused_run: nbflow.Run) -> None:
    res = cli(db_url, "show", paused_run.id, "-o", "json")
    assert res.returncode == 0, res.stderr
    view = json.loads(res.stdout)
    jsonschema.validate(view, SHOW_SCHEMA)
    assert view["id"] == paused_run.id and view["status"] == "paused"
    assert view["owner"]["alive"] is True and view["interrupted"] is False
    assert view["params"] == {"n": 20, "bad": -1}
    nodes = {n["step"]: n for n in view["dag"]["nodes"]}
    assert nodes["enrich"]["kind"] == "foreach" and nodes["enrich"]["counts"]["paused"] == 20
    assert sorted(view["dag"]["edges"]) == [["enrich", "report"], ["load", "enrich"]]
    (bp,) = view["breakpoints"]
    assert (bp["step"], bp["scope"], bp["state"]) == ("enrich", "run", "hit")
    assert sorted(bp["holding"], key=int) == [str(i) for i in range(20)]
    assert view["progress"] == {"done": 1, "total": 22}


def test_show_text_names_the_steps_breakpoint_and_paused_instances(db_url: str, paused_run: nbflow.Run) -> None:
    res = cli(db_url, "show", paused_run.id)
    assert res.returncode == 0, res.stderr
    for word in ("load", "enrich", "report", "hit", "paused 20", "alive"):
        assert word in res.stdout
    assert not res.stdout.lstrip().startswith("{")


def test_runs_json_lists_the_live_run_with_its_paused_count(db_url: str, paused_run: nbflow.Run) -> None:
    res = cli(db_url, "runs", "-o", "json")
    assert res.returncode == 0, res.stderr
    (item,) = json.loads(res.stdout)
    assert item["id"] == paused_run.id and item["workflow"] == "cli" and item["status"] == "paused"
    assert item["paused"] == 20 and item["owner"]["alive"] and not item["interrupted"]


def test_history_json_lists_events_with_time_and_actor(db_url: str, paused_run: nbflow.Run) -> None:
    assert cli(db_url, "resume", paused_run.id, "enrich:3", "--force", "--reason", "look at 3").returncode == 0
    res = cli(db_url, "history", paused_run.id, "-o", "json")
    assert res.returncode == 0, res.stderr
    events = json.loads(res.stdout)
    assert set(events[0]) >= {"id", "ts", "kind", "step", "key", "actor", "data"}
    assert events[0]["kind"] == "run_created"
    assert [e["id"] for e in events] == sorted(e["id"] for e in events)
    datetime.fromisoformat(events[-1]["ts"])
    (cmd,) = [e for e in events if e["kind"] == "command"]
    assert cmd["actor"] == getpass.getuser()
    assert cmd["data"]["verb"] == "resume" and cmd["data"]["reason"] == "look at 3" and cmd["data"]["result"] == "ok"


def test_unknown_run_exits_1_naming_it(db_url: str, paused_run: nbflow.Run) -> None:
    res = cli(db_url, "show", "nosuchrun")
    assert res.returncode == 1
    assert "no run 'nosuchrun'" in res.stderr and "Traceback" not in res.stderr


@pytest.mark.parametrize(
    ("target", "message"),
    [("nostep", "has no step 'nostep'; steps are: load, enrich, report"), ("enrich:99", "no instance with key 99")],
)
def test_unknown_step_or_key_exits_1_and_changes_nothing(
    db_url: str, paused_run: nbflow.Run, target: str, message: str
) -> None:
    res = cli(db_url, "resume", paused_run.id, target, "--force")
    assert res.returncode == 1
    assert message in res.stderr and "Traceback" not in res.stderr
    assert not [e for e in paused_run.history() if e.kind == "command"]


# ---------------------------------------------------------------------------------- one instance, history
def failed_item_run(db_url: str) -> nbflow.Run:
    """A finished run whose foreach item enrich:3 printed a line and raised on both of its attempts."""
    wf = nbflow.Workflow("cli-fail", store=db_url)

    @wf.step
    def load(n):
        return [{"id": i, "x": i} for i in range(n)]

    @wf.foreach("load", key=lambda item: item["id"], retries=1, backoff=0)
    def enrich(item):
        print(f"enriching row {item['id']}")
        if item["id"] == 3:
            raise ValueError(f"row {item['id']} is bad")
        return item["x"] * 10

    @wf.step
    def report(enrich):
        return sum(enrich)

    run = wf.run(params={"n": 5})
    assert run.wait(timeout=30) == "failed"
    return run


def documented_fields(heading: str, table: int = 0) -> set[str]:
    """The field names in the first column of the *table*-th table under docs/json.md's ``## `heading```."""
    page = (ROOT / "docs" / "json.md").read_text()
    section = page.split(f"## `{heading}`\n", 1)[1].split("\n## ", 1)[0]
    tables = re.findall(r"((?:^\|.*\|\n)+)", section, re.MULTILINE)
    rows = tables[table].splitlines()[2:]
    return {name for row in rows for name in re.findall(r"`([a-z_]+)`", row.split(" | ")[0])}


def test_show_one_failed_item_prints_its_traceback_inputs_logs_and_attempts(db_url: str) -> None:
    run = failed_item_run(db_url)
    res = cli(db_url, "show", run.id, "enrich:3")
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "enrich:3" in out and "failed" in out
    assert 'raise ValueError(f"row {item[\'id\']} is bad")' in out  # the traceback's source line, in full
    assert "Traceback (most recent call last)" in out and "ValueError: row 3 is bad" in out
    assert '"id": 3' in out and '"x": 3' in out  # its input
    assert "enriching row 3\n--- attempt 2 ---\nenriching row 3" in out  # its logs, verbatim
    attempts = out.split("attempts")[1].split("history")[0]
    assert re.search(r"^\s*1\s.*retrying\s+ValueError: row 3 is bad", attempts, re.MULTILINE)
    assert re.search(r"^\s*2\s.*failed\s+ValueError: row 3 is bad", attempts, re.MULTILINE)


def test_show_one_instance_json_has_the_documented_fields(db_url: str) -> None:
    run = failed_item_run(db_url)
    res = cli(db_url, "show", run.id, "enrich:3", "-o", "json")
    assert res.returncode == 0, res.stderr
    detail = json.loads(res.stdout)
    assert set(detail) == documented_fields("show RUN STEP[:KEY] -o json")
    assert set(detail["attempts"][0]) == documented_fields("show RUN STEP[:KEY] -o json", table=1)
    assert (detail["run"], detail["step"], detail["key"], detail["status"]) == (run.id, "enrich", "3", "failed")
    assert detail["inputs"] == {"item": {"id": 3, "x": 3}}
    assert detail["error"]["type"] == "ValueError" and "raise ValueError" in detail["error"]["traceback"]
    assert detail["logs"] == "enriching row 3\n--- attempt 2 ---\nenriching row 3\n"
    assert [(a["attempt"], a["outcome"]) for a in detail["attempts"]] == [(1, "retrying"), (2, "failed")]
    assert "raise ValueError" in detail["attempts"][0]["traceback"]
    numbered = {e["id"]: e["n"] for e in json.loads(cli(db_url, "history", run.id, "-o", "json").stdout)}
    assert [(e["kind"], e["n"]) for e in detail["history"]] == [
        (e["kind"], numbered[e["id"]]) for e in detail["history"]
    ]
    assert [e["kind"] for e in detail["history"]] == ["started", "retrying", "started", "failed"]


@pytest.mark.parametrize(
    ("target", "message"),
    [("nostep", "has no step 'nostep'; steps are: load, enrich, report"),
     ("enrich:99", "step 'enrich' of run {run} has no instance with key 99"),
     ("load:3", "step 'load' is a task step with a single instance; name it without a key: load"),
     ("enrich", "step 'enrich' is a foreach step with 5 instances; name one by its key: enrich:0")],
)
def test_show_an_unknown_step_or_key_exits_1_naming_it(db_url: str, target: str, message: str) -> None:
    run = failed_item_run(db_url)
    res = cli(db_url, "show", run.id, target)
    assert res.returncode == 1
    assert message.format(run=run.id) in res.stderr and "Traceback" not in res.stderr
    assert res.stdout == ""


def test_show_inputs_only_prints_exactly_the_inputs(db_url: str) -> None:
    run = failed_item_run(db_url)
    as_json = cli(db_url, "show", run.id, "enrich:3", "--inputs-only", "-o", "json")
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout) == {"item": {"id": 3, "x": 3}}
    as_text = cli(db_url, "show", run.id, "enrich:3", "--inputs-only")
    assert json.loads(as_text.stdout) == {"item": {"id": 3, "x": 3}}


def test_show_inputs_only_without_an_instance_is_a_usage_error(db_url: str) -> None:
    run = failed_item_run(db_url)
    res = cli(db_url, "show", run.id, "--inputs-only")
    assert res.returncode == 2 and "--inputs-only" in res.stderr and "STEP[:KEY]" in res.stderr


def test_history_json_keeps_the_id_and_numbers_events_from_1(db_url: str) -> None:
    run = failed_item_run(db_url)
    events = json.loads(cli(db_url, "history", run.id, "-o", "json").stdout)
    assert [e["n"] for e in events] == list(range(1, len(events) + 1))
    assert [e["id"] - e["n"] for e in events] == [events[0]["id"] - 1] * len(events)
    assert set(events[0]) == documented_fields("history -o json")


def test_history_filters_by_step_and_kind_keeping_each_events_number(db_url: str) -> None:
    run = failed_item_run(db_url)
    every = json.loads(cli(db_url, "history", run.id, "-o", "json").stdout)
    res = cli(db_url, "history", run.id, "--step", "enrich:3", "--kind", "started", "--kind", "failed", "-o", "json")
    assert res.returncode == 0, res.stderr
    expected = [e for e in every if (e["step"], e["key"]) == ("enrich", "3") and e["kind"] in ("started", "failed")]
    assert json.loads(res.stdout) == expected
    assert [e["kind"] for e in expected] == ["started", "started", "failed"]
    whole_step = json.loads(cli(db_url, "history", run.id, "--step", "enrich", "-o", "json").stdout)
    assert whole_step == [e for e in every if e["step"] == "enrich"]
    assert {e["key"] for e in whole_step} == {None, "0", "1", "2", "3", "4"}  # `expanded` is the step's own


def test_history_limit_keeps_the_last_n_matching_events(db_url: str) -> None:
    run = failed_item_run(db_url)
    every = json.loads(cli(db_url, "history", run.id, "-o", "json").stdout)
    res = cli(db_url, "history", run.id, "--kind", "started", "--limit", "2", "-o", "json")
    assert json.loads(res.stdout) == [e for e in every if e["kind"] == "started"][-2:]


def test_history_text_numbers_events_and_after_takes_that_number(db_url: str) -> None:
    run = failed_item_run(db_url)
    every = json.loads(cli(db_url, "history", run.id, "-o", "json").stdout)
    res = cli(db_url, "history", run.id, "--after", "3", "--limit", "100")
    assert res.returncode == 0, res.stderr
    numbers = re.findall(r"^\s+(\d+)\s+\d{4}-\d\d-\d\d", res.stdout, re.MULTILINE)
    assert numbers == [str(n) for n in range(4, len(every) + 1)]
    assert str(every[0]["id"]) not in res.stdout
    by_id = cli(db_url, "history", run.id, "--after", str(every[2]["id"]), "-o", "json")
    assert json.loads(by_id.stdout) == every[3:]


def test_history_of_an_unknown_step_exits_1_naming_it(db_url: str) -> None:
    run = failed_item_run(db_url)
    res = cli(db_url, "history", run.id, "--step", "nostep")
    assert res.returncode == 1 and "has no step 'nostep'" in res.stderr


def test_history_of_a_kind_the_run_never_had_says_which_kinds_it_has(db_url: str) -> None:
    run = failed_item_run(db_url)
    res = cli(db_url, "history", run.id, "--kind", "faild", "-o", "json")
    assert res.returncode == 0 and json.loads(res.stdout) == []
    assert "no event of kind 'faild'" in res.stderr and "failed" in res.stderr


# ---------------------------------------------------------------------------------- live runs
def test_resume_one_key_resumes_exactly_that_instance_of_a_live_run(db_url: str, paused_run: nbflow.Run) -> None:
    res = cli(db_url, "resume", paused_run.id, "enrich:3", "--force")
    assert res.returncode == 0, res.stderr
    assert "resumed 1 instance" in res.stdout
    assert poll(lambda: paused_run.instance("enrich", 3).status == "succeeded")
    assert paused_run.wait(timeout=30) == "paused"
    assert paused_keys(paused_run) == [i for i in range(20) if i != 3]


def test_resume_without_force_and_without_a_terminal_refuses(db_url: str, paused_run: nbflow.Run) -> None:
    res = cli(db_url, "resume", paused_run.id, "enrich:3")
    assert res.returncode == 1
    assert "--force" in res.stderr and "not a terminal" in res.stderr
    assert len(paused_keys(paused_run)) == 20
    assert not [e for e in paused_run.history() if e.kind == "command"]


def test_invalid_json_is_refused_and_changes_nothing(db_url: str, paused_run: nbflow.Run) -> None:
    res = cli(db_url, "skip", paused_run.id, "enrich:2", "--output", "{bad", "--force")
    assert res.returncode == 2
    assert "--output" in res.stderr and "not valid JSON" in res.stderr
    assert paused_run.instance("enrich", 2).status == "paused"
    assert not [e for e in paused_run.history() if e.kind == "command"]


def test_set_inputs_then_retry_fixes_a_failed_item(db_url: str) -> None:
    run = start(db_url, bad=4, break_on_error=True)
    assert run.instance("enrich", 4).error.type == "ValueError"
    res = cli(db_url, "set", run.id, "enrich:4", "--inputs", '{"item": 4}', "--reason", "bad row", "--force")
    assert res.returncode == 0, res.stderr
    res = cli(db_url, "retry", run.id, "enrich:4", "--force")
    assert res.returncode == 0, res.stderr
    assert run.wait(timeout=30) == "succeeded"
    assert run.output("report") == sum(range(20)) * 10
    (change,) = [e for e in run.history() if e.kind == "inputs_changed"]
    assert change.data["old"] == {"item": "bad"} and change.data["new"] == {"item": 4}
    assert change.data["reason"] == "bad row" and change.actor == getpass.getuser()


def test_set_refuses_an_input_the_step_does_not_take(db_url: str, paused_run: nbflow.Run) -> None:
    res = cli(db_url, "set", paused_run.id, "enrich:4", "--inputs", '{"itme": 4}', "--reason", "typo", "--force")
    assert res.returncode == 1
    assert "takes no input named 'itme'" in res.stderr
    assert not [e for e in paused_run.history() if e.kind == "command"]


def test_cancel_ends_a_live_run(db_url: str, paused_run: nbflow.Run) -> None:
    res = cli(db_url, "cancel", paused_run.id, "--force", "--reason", "not needed")
    assert res.returncode == 0, res.stderr
    assert paused_run.wait(timeout=30) == "cancelled"


def test_breakpoint_add_list_rm_round_trip(db_url: str, paused_run: nbflow.Run) -> None:
    res = cli(db_url, "breakpoint", "add", "--workflow", "cli", "enrich", "--when", "after", "--if", "item > 15",
              "-o", "json")
    assert res.returncode == 0, res.stderr
    added = json.loads(res.stdout)
    assert (added["step"], added["when"], added["condition"]) == ("enrich", "after", "item > 15")
    assert added["scope"] == "workflow"
    listed = json.loads(cli(db_url, "breakpoint", "list", "--workflow", "cli", "-o", "json").stdout)
    assert [b["id"] for b in listed] == [added["id"]]
    res = cli(db_url, "breakpoint", "rm", "--workflow", "cli", "enrich")
    assert res.returncode == 0, res.stderr
    assert json.loads(cli(db_url, "breakpoint", "list", "--workflow", "cli", "-o", "json").stdout) == []


def test_breakpoint_add_refuses_an_unknown_step_and_a_bad_condition(db_url: str, paused_run: nbflow.Run) -> None:
    res = cli(db_url, "breakpoint", "add", "--run", paused_run.id, "nostep")
    assert res.returncode == 1 and "no step 'nostep'" in res.stderr
    res = cli(db_url, "breakpoint", "add", "--workflow", "cli", "enrich", "--if", "item ==")
    assert res.returncode == 1 and "not a valid Python expression" in res.stderr
    assert [b.step for b in paused_run.breakpoints()] == ["enrich"]


def test_breakpoint_add_and_rm_need_exactly_one_scope(db_url: str, paused_run: nbflow.Run) -> None:
    for verb in ("add", "rm"):
        for scope in ([], ["--workflow", "cli", "--run", paused_run.id]):
            res = cli(db_url, "breakpoint", verb, *scope, "enrich")
            assert res.returncode == 2 and "name exactly one of a workflow or a run" in res.stderr, res.stderr
    assert [b.step for b in paused_run.breakpoints()] == ["enrich"]


# ---------------------------------------------------------------------------------- orphaned runs
def test_resume_finishes_an_orphaned_paused_run(db_url: str, orphan: str) -> None:
    assert json.loads(cli(db_url, "show", orphan, "-o", "json").stdout)["interrupted"] is True
    res = cli(db_url, "resume", orphan, "--force", "-o", "json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["took_over"] is True and out["status"] == "succeeded" and out["paused"] == []
    run = nbflow.Run(nbflow.Store.open(db_url), orphan)  # a reader: no takeover
    assert run.status == "succeeded"
    assert run.output("report") == sum(2 * x for x in range(5))


def test_skip_on_an_orphaned_run_is_queued_until_it_is_resumed(db_url: str, orphan: str) -> None:
    res = cli(db_url, "skip", orphan, "enrich:2", "--output", "100", "--force")
    assert res.returncode == 0, res.stderr
    assert "queued" in res.stdout and f"nbflow resume {orphan}" in res.stdout
    run = nbflow.Run(nbflow.Store.open(db_url), orphan)  # a reader: no takeover
    assert run.instance("enrich", 2).status == "paused"
    res = cli(db_url, "resume", orphan, "--force")
    assert res.returncode == 0, res.stderr
    assert "succeeded" in res.stdout
    assert run.instance("enrich", 2).status == "skipped"
    assert run.output("report") == 0 + 2 + 100 + 6 + 8


def test_help_lists_every_verb() -> None:
    cmd = [sys.executable, "-m", "nbflow", "--help"]
    res = subprocess.run(cmd, capture_output=True, check=False, text=True, timeout=60)
    assert res.returncode == 0
    for verb in ("runs", "show", "history", "breakpoint", "resume", "skip", "retry", "set", "cancel"):
        assert verb in res.stdout


def test_a_verb_that_does_not_fit_an_orphaned_run_is_refused_not_queued(db_url: str, orphan: str) -> None:
    res = cli(db_url, "skip", orphan, "enrich:1", "--output", "0", "--force")
    assert res.returncode == 1
    assert "cannot skip enrich:1" in res.stderr and "it is succeeded" in res.stderr
    res = cli(db_url, "resume", orphan, "--force")
    assert res.returncode == 0, res.stderr
    run = nbflow.Run(nbflow.Store.open(db_url), orphan)  # a reader: no takeover
    assert run.instance("enrich", 1).status == "succeeded"
    assert not [e for e in run.history() if e.kind == "command" and e.data["verb"] == "skip"]


def test_a_verb_with_only_its_table_entry_gets_a_command_on_the_one_path(db_url: str, paused_run: nbflow.Run) -> None:
    """cli.verbs.table_command builds a verb's command from its table entry alone (a verb added to
    nbflow.verbs.VERBS needs no CLI code): it checks, submits and reports as the hand-written ones."""
    import click
    from click.testing import CliRunner

    from nbflow.cli import cli as nbflow_cli
    from nbflow.cli._common import Group
    from nbflow.cli.verbs import table_command

    generated = Group("nbflow", callback=nbflow_cli.callback, params=nbflow_cli.params,
                            commands={"retry": table_command("retry"), "skip": table_command("skip")})
    runner = CliRunner()

    def invoke(group: click.Group, *args: str) -> Any:
        res = runner.invoke(group, ["--db", db_url, *args, "-o", "json"])
        return res.exit_code, json.loads(res.stdout) if res.exit_code == 0 else res.stderr

    def shape(out: Any) -> Any:
        commands = [{k: v for k, v in c.items() if k not in ("id", "keys")} for c in out["commands"]]
        return {**out, "status": None, "commands": commands}  # the run's status right after: a race

    for verb, keys, extra in (("retry", (3, 4), []), ("skip", (5, 6), ["--output", "7"])):
        code_a, by_hand = invoke(nbflow_cli, verb, paused_run.id, f"enrich:{keys[0]}", *extra, "--force")
        code_b, by_table = invoke(generated, verb, paused_run.id, f"enrich:{keys[1]}", *extra, "--force")
        assert (code_a, code_b) == (0, 0), (by_hand, by_table)
        assert shape(by_hand) == shape(by_table) and by_table["commands"][0]["state"] == "applied"
    assert paused_run.instance("enrich", 6).output == 7
    code, text = invoke(generated, "skip", paused_run.id, "nope", "--output", "1", "--force")
    assert code == 1 and "has no step 'nope'" in text
    code, text = invoke(generated, "skip", paused_run.id, "enrich:7", "--force")
    assert code == 2 and "--output" in text


def on_a_terminal(db_url: str, *args: str, answer: bytes = b"n\n") -> str:
    """Run ``nbflow ARGS`` on a pseudo-terminal, answer its question with *answer*; what it printed."""
    import os
    import pty
    import select

    fd, terminal = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "nbflow", "--db", db_url, *args],
                            stdin=terminal, stdout=terminal, stderr=terminal)
    os.close(terminal)
    out, answered, deadline = b"", False, time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if not ready:
            if proc.poll() is not None:
                break
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # the CLI exited and closed the terminal
            break
        if not chunk:
            break
        out += chunk
        if b"[y/N]" in out and not answered:
            os.write(fd, answer)
            answered = True
    proc.wait(timeout=30)
    os.close(fd)
    return out.decode(errors="replace")


@pytest.mark.parametrize(("verb", "extra"), [("resume", ()), ("skip", ("--output", "1")), ("retry", ())])
def test_the_question_names_the_verb_as_typed_and_no_changes_nothing(
    db_url: str, paused_run: nbflow.Run, verb: str, extra: tuple[str, ...]
) -> None:
    out = on_a_terminal(db_url, verb, paused_run.id, "enrich:3", *extra)
    assert f"{verb} enrich:3 in run {paused_run.id} (workflow {paused_run.workflow_name})? [y/N]" in out
    assert "not confirmed; nothing was changed" in out
    assert paused_run.instance("enrich", key=3).status == "paused"
