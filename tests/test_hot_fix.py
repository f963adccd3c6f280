"""Hot fix, made visible (issue 17): redefining a step while a run of its workflow is live in this
process is adopted at once, so the ``code_changed`` event (old and new version, the unified diff)
is in the history while the run is still paused; retrying a whole error group afterwards runs the
new code. Side effects (a Trail file) count which body ran for which item."""
from __future__ import annotations

from pathlib import Path

from sidefx import Trail

import nbflow
from nbflow import Workflow

N = 40
WAIT_S = 60
FAILING = frozenset(x for x in range(N) if x % 9 == 4)  # 4, 13, 22, 31


def failing_etl(db_url: str, trail: Trail) -> Workflow:
    """load -> enrich (foreach keyed by id; fails on FAILING) -> report."""
    wf = Workflow("hotfix", store=db_url)

    @wf.step
    def load(n):
        return [{"id": i, "x": i} for i in range(n)]

    @wf.foreach("load", key=lambda item: item["id"])
    def enrich(item):
        trail.add(["old", item["id"]])
        if item["x"] % 9 == 4:
            raise ValueError(f"bad row {item['id']}")
        return item["x"] * 2

    @wf.step
    def report(enrich):
        return sum(enrich)

    return wf


def fix(wf: Workflow, trail: Trail) -> None:
    """The hot fix: enrich no longer raises on the bad rows."""

    @wf.foreach("load", key=lambda item: item["id"])
    def enrich(item):
        trail.add(["new", item["id"]])
        return item["x"] * 2


def paused_on_errors(db_url: str, tmp_path: Path) -> tuple[Workflow, nbflow.Run, Trail]:
    trail = Trail(str(tmp_path / "trail.jsonl"))
    wf = failing_etl(db_url, trail)
    run = wf.run(params={"n": N}, break_on_error=True)
    assert run.wait(timeout=WAIT_S) == "paused"
    return wf, run, trail


def test_redefining_a_step_of_a_paused_run_records_code_changed_at_once_with_its_diff(
    db_url: str, tmp_path: Path
) -> None:
    wf, run, trail = paused_on_errors(db_url, tmp_path)
    old_version = run.version

    fix(wf, trail)  # no verb, no wait: the redefinition alone

    changes = [e for e in run.history() if e.kind == "code_changed"]
    assert len(changes) == 1
    data = changes[0].data
    assert data["old_version"] == old_version != data["new_version"]
    assert data["steps"] == ["enrich"]
    assert set(data["diffs"]) == {"enrich"}
    assert data["diff"] == data["diffs"]["enrich"]
    assert f"--- enrich ({old_version})" in data["diff"]
    assert f"+++ enrich ({data['new_version']})" in data["diff"]
    assert "-        raise ValueError(f\"bad row {item['id']}\")" in data["diff"]
    assert "+    trail.add([\"new\", item[\"id\"]])" in data["diff"]
    assert run.status == "paused"  # still paused: nothing was resumed
    assert run.version == data["new_version"]


def test_retrying_the_error_group_after_a_hot_fix_runs_the_new_code_on_exactly_that_group(
    db_url: str, tmp_path: Path
) -> None:
    wf, run, trail = paused_on_errors(db_url, tmp_path)
    [group] = run.error_groups("enrich")
    assert sorted(group.keys) == sorted(FAILING)
    ran_before = len(trail.items())

    fix(wf, trail)
    run.retry("enrich", keys=group, reason="fixed the bad rows")

    assert run.wait(timeout=WAIT_S) == "succeeded"
    after = trail.items()[ran_before:]
    assert sorted(after) == sorted(["new", k] for k in FAILING)  # the new body, once per item of the group
    assert run.output("report") == sum(2 * x for x in range(N))
    assert [e.kind for e in run.history() if e.kind in ("code_changed", "command")] == ["code_changed", "command"]


def test_a_redefinition_that_changes_the_graph_is_refused_at_once_and_the_run_keeps_its_code(
    db_url: str, tmp_path: Path
) -> None:
    wf, run, _trail = paused_on_errors(db_url, tmp_path)
    version = run.version

    @wf.foreach("load", key=lambda item: item["id"])
    def enrich(item, n):  # now also reads the run parameter n: another graph
        return item["x"] * n

    kinds = [e.kind for e in run.history()]
    assert "code_change_ignored" in kinds and "code_changed" not in kinds
    [ignored] = [e for e in run.history() if e.kind == "code_change_ignored"]
    assert "fork the run to use the new graph" in ignored.data["reason"]
    assert run.version == version
