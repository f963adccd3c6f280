"""Step over, logpoints and hit counts from the command line (issue 17): `nbflow step`, `nbflow breakpoint
add --log / --hit-count` and `breakpoint list`, run in real subprocesses against runs paused in this test
process, a live owner that applies the CLI's commands."""
from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

import nbflow
from tests.test_cli import cli, poll

pytestmark = pytest.mark.timeout(180)

WAIT_S = 60


def cli_json(db_url: str, *args: str) -> Any:
    res = cli(db_url, *args, "-o", "json")
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def chain(db_url: str, **run_options: Any) -> nbflow.Run:
    """load -> total (a task over load's output) -> report; paused as *run_options* say."""
    wf = nbflow.Workflow("step-chain", store=db_url)

    @wf.step
    def load(n):
        return list(range(n))

    @wf.step
    def total(load):
        return sum(load)

    @wf.step
    def report(total):
        return f"total {total}"

    run = wf.run(params={"n": 4}, **run_options)
    assert run.wait(timeout=WAIT_S) == "paused"
    return run


def fanout(db_url: str, n: int = 5, **run_options: Any) -> nbflow.Run:
    """load -> enrich (a foreach over load, keyed by id) -> double (a foreach over enrich) -> report."""
    wf = nbflow.Workflow("step-fanout", store=db_url)

    @wf.step
    def load(n):
        return [{"id": i, "x": i} for i in range(n)]

    @wf.foreach("load", key=lambda item: item["id"])
    def enrich(item):
        return {"id": item["id"], "y": item["x"] * 10}

    @wf.foreach("enrich")
    def double(item):
        return item["y"] * 2

    @wf.step
    def report(double):
        return sum(double)

    run = wf.run(params={"n": n}, **run_options)
    assert run.wait(timeout=WAIT_S) == "paused"
    return run


def paused(run: nbflow.Run) -> list[str]:
    return sorted(f"{v.step}:{v.key}" if v.key is not None else v.step for v in run.instances(status="paused"))


# ---------------------------------------------------------------------------------- nbflow step
def test_stepping_over_a_task_pauses_the_next_task_with_its_inputs_ready(db_url: str) -> None:
    run = chain(db_url, breakpoints=["load"])
    out = cli_json(db_url, "step", run.id, "load", "--force", "--reason", "see what total gets")
    (command,) = out["commands"]
    assert (out["verb"], command["step"], command["state"]) == ("step_over", "load", "applied")
    assert command["message"] == "stepped over load; pausing before: total"
    poll(lambda: run.instance("total").status == "paused", WAIT_S)
    assert paused(run) == ["total"]
    total = run.instance("total")
    assert total.pause_reason == "before: step over load"
    assert run.instance("load").status == "succeeded"
    assert cli_json(db_url, "show", run.id, "total", "--inputs-only") == {"load": [0, 1, 2, 3]}
    assert run.instance("report").status == "pending"


def test_stepping_over_item_3_of_a_foreach_pauses_only_the_item_that_consumes_it(db_url: str) -> None:
    run = fanout(db_url, breakpoints=["enrich:3"])
    assert paused(run) == ["enrich:3"]
    res = cli(db_url, "step", run.id, "enrich:3", "--force")
    assert res.returncode == 0, res.stderr
    assert "stepped over enrich:3; pausing before: double" in res.stdout
    poll(lambda: [v.status for v in run.instances("double")] == ["succeeded"] * 3 + ["paused", "succeeded"], WAIT_S)
    assert paused(run) == ["double:3"]
    assert run.instance("report").status == "pending"
    assert cli_json(db_url, "show", run.id, "double:3", "--inputs-only") == {"item": {"id": 3, "y": 30}}
    shown = cli_json(db_url, "show", run.id)
    assert shown["stepped_over"]["holding"] == ["3"]
    assert [b for b in shown["breakpoints"] if b["one_shot"]] == []  # removed once it fired


def test_step_text_asks_nothing_with_force_and_prints_the_owners_answer(db_url: str) -> None:
    run = chain(db_url, breakpoints=["load"])
    res = cli(db_url, "step", run.id, "load", "--force")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "step_over load: stepped over load; pausing before: total"


def test_step_without_force_and_without_a_terminal_is_refused_and_changes_nothing(db_url: str) -> None:
    run = chain(db_url, breakpoints=["load"])
    res = cli(db_url, "step", run.id, "load")
    assert res.returncode == 1 and "pass --force" in res.stderr
    assert paused(run) == ["load"]
    assert not [e for e in run.history() if e.kind == "command"]


def test_step_on_a_foreach_without_a_key_is_refused_naming_its_paused_keys(db_url: str) -> None:
    run = fanout(db_url, breakpoints=["enrich:1", "enrich:3"])
    res = cli(db_url, "step", run.id, "enrich", "--force")
    assert res.returncode == 1
    assert ("step 'enrich' is a foreach step: step over names one instance by its key "
            f"(`nbflow step {run.id} enrich:KEY`); its paused 2 instances: enrich:1, enrich:3") in res.stderr
    assert "Traceback" not in res.stderr
    assert not [e for e in run.history() if e.kind == "command"]
    assert paused(run) == ["enrich:1", "enrich:3"]


def test_step_on_an_unknown_key_exits_1_naming_it(db_url: str) -> None:
    run = fanout(db_url, breakpoints=["enrich:3"])
    res = cli(db_url, "step", run.id, "enrich:99", "--force")
    assert res.returncode == 1 and "no instance with key 99" in res.stderr


def test_help_lists_step() -> None:
    res = subprocess.run([sys.executable, "-m", "nbflow", "--help"], capture_output=True, text=True, timeout=60,
                         check=False)
    assert res.returncode == 0 and "\n  step " in res.stdout
    assert "step-over" not in res.stdout  # the verb's command is `step`, written by hand


# ---------------------------------------------------------------------------------- logpoints, hit counts
def test_a_logpoint_over_200_items_pauses_nothing_and_history_shows_200_values(db_url: str) -> None:
    run = fanout(db_url, n=200, breakpoints=["load"])
    added = cli_json(db_url, "breakpoint", "add", "--run", run.id, "enrich", "--log", "item['x'] * 3")
    assert (added["action"], added["expression"], added["label"]) == ("log", "item['x'] * 3",
                                                                      "log item['x'] * 3 · before enrich")
    assert cli(db_url, "resume", run.id, "load", "--force").returncode == 0
    assert run.wait(timeout=WAIT_S) == "succeeded"
    events = cli_json(db_url, "history", run.id, "--kind", "logpoint")
    assert len(events) == 200
    assert sorted((int(e["key"]), e["data"]["value"]) for e in events) == [(i, i * 3) for i in range(200)]
    assert {(e["step"], e["data"]["expression"], e["data"]["when"]) for e in events} == {
        ("enrich", "item['x'] * 3", "before")}
    kinds = {e["kind"] for e in cli_json(db_url, "history", run.id, "--step", "enrich")}
    assert "paused" not in kinds


def test_hit_count_3_with_a_condition_matching_10_items_pauses_8(db_url: str) -> None:
    run = fanout(db_url, n=20, breakpoints=["load"])
    added = cli_json(db_url, "breakpoint", "add", "--run", run.id, "enrich", "--if", "item['x'] % 2 == 0",
                     "--hit-count", "3")
    assert added["hit_count"] == 3
    assert cli(db_url, "resume", run.id, "load", "--force").returncode == 0
    poll(lambda: len(run.instances("enrich", status="paused")) == 8
         and not run.instances("enrich", status="pending") and not run.instances("enrich", status="running"), WAIT_S)
    keys = [int(v.key) for v in run.instances("enrich", status="paused")]
    assert len(keys) == 8 and all(k % 2 == 0 for k in keys)
    assert len(run.instances("enrich", status="succeeded")) == 12
    (listed,) = [b for b in cli_json(db_url, "breakpoint", "list", "--run", run.id) if b["step"] == "enrich"]
    assert (listed["hits"], listed["hit_count"]) == (10, 3)
    assert listed["label"] == "before enrich if item['x'] % 2 == 0 · hit 10 of >= 3"


def test_breakpoint_list_text_shows_action_hit_count_and_hits(db_url: str) -> None:
    run = fanout(db_url, n=6, breakpoints=["load"])
    assert cli(db_url, "breakpoint", "add", "--run", run.id, "enrich", "--log", "item['x']").returncode == 0
    assert cli(db_url, "breakpoint", "add", "--run", run.id, "double", "--hit-count", "4").returncode == 0
    assert cli(db_url, "resume", run.id, "load", "--force").returncode == 0
    poll(lambda: len(run.instances("double", status="paused")) == 3, WAIT_S)
    res = cli(db_url, "breakpoint", "list", "--run", run.id)
    assert res.returncode == 0, res.stderr
    for col in ("ACTION", "HIT COUNT", "HITS"):
        assert col in res.stdout
    lines = {line.split()[4]: line for line in res.stdout.splitlines() if line.strip()[:1].isdigit()}
    assert "log item['x']" in lines["enrich"] and lines["enrich"].split()[-2] == "6"
    assert ">= 4" in lines["double"] and lines["double"].split()[-2] == "6"


def test_breakpoint_add_log_text_says_it_is_a_logpoint(db_url: str) -> None:
    run = fanout(db_url, n=3, breakpoints=["load"])
    res = cli(db_url, "breakpoint", "add", "--run", run.id, "enrich", "--when", "after", "--log", "output")
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("logpoint ") and "(output) added on enrich (after) for run" in res.stdout


@pytest.mark.parametrize(("args", "message"), [
    (("--hit-count", "0"), "hit_count"),
    (("--log", "item["), "item["),
])
def test_a_bad_hit_count_or_log_expression_is_refused_and_adds_nothing(
    db_url: str, args: tuple[str, ...], message: str
) -> None:
    run = fanout(db_url, n=3, breakpoints=["load"])
    res = cli(db_url, "breakpoint", "add", "--run", run.id, "enrich", *args)
    assert res.returncode == 1 and message in res.stderr and "Traceback" not in res.stderr
    assert [b["step"] for b in cli_json(db_url, "breakpoint", "list", "--run", run.id)] == ["load"]


def test_show_text_names_what_a_step_over_paused_and_each_breakpoints_hits(db_url: str) -> None:
    run = fanout(db_url, breakpoints=["enrich:3"])
    assert cli(db_url, "step", run.id, "enrich:3", "--force").returncode == 0
    poll(lambda: [str(v.key) for v in run.instances("double", status="paused")] == ["3"], WAIT_S)
    res = cli(db_url, "show", run.id)
    assert res.returncode == 0, res.stderr
    assert "paused by a step over: double:3" in res.stdout
    assert "ACTION" in res.stdout and "HITS" in res.stdout
    detail = cli(db_url, "show", run.id, "double:3")
    assert "held by" in detail.stdout and "step over" in detail.stdout


def test_breakpoint_list_of_every_workflow_counts_each_runs_own_hits(db_url: str) -> None:
    run = fanout(db_url, n=4, breakpoints=["load"])
    assert cli(db_url, "breakpoint", "add", "--run", run.id, "enrich", "--log", "item['x']").returncode == 0
    assert cli(db_url, "resume", run.id, "load", "--force").returncode == 0
    assert run.wait(timeout=WAIT_S) == "succeeded"
    other = fanout(db_url, n=2, breakpoints=["enrich"])
    listed = cli_json(db_url, "breakpoint", "list")
    assert [(b["run_id"], b["step"], b["hits"]) for b in listed] == [(other.id, "enrich", 2)]  # the finished run's went
    assert [b["hits"] for b in cli_json(db_url, "breakpoint", "list", "--run", other.id)] == [2]
