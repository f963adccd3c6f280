"""The debugger widget's Python side (no browser): each message the browser sends becomes the right
command through the one command path and the traits follow the store; a 10,000-item foreach ships
counts and one page; the static fallback (SVG or text) and the rich display bundle; the shipped ESM."""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from unchanged import snapshot

import nbflow
from nbflow import Workflow
from nbflow.notebook import render
from nbflow.notebook.widget import PAGE_SIZE, RunWidget

WAIT_S = 30
ROOT = Path(__file__).resolve().parent.parent
STATIC = ROOT / "nbflow" / "notebook" / "static"
JS = ROOT / "js"
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


def shop(db_url: str, n: int = 6, fail_item: int | None = None, name: str = "shop") -> Workflow:
    """load(n) -> enrich (a foreach; keys are the indexes) -> total."""
    wf = Workflow(name, store=db_url)

    @wf.step
    def load(n):
        return list(range(1, n + 1))

    @wf.foreach("load")
    def enrich(item):
        print(f"enriching {item}")
        if item == fail_item:
            raise ValueError(f"cannot enrich {item}")
        return item * 10

    @wf.step
    def total(enrich):
        return sum(enrich)

    return wf


def paused(wf: Workflow, n: int = 6, **kwargs: Any) -> nbflow.Run:
    run = wf.run(params={"n": n}, **{"breakpoints": ["enrich"], **kwargs})
    assert run.wait(timeout=WAIT_S) == "paused"
    return run


def until(cond: Callable[[], Any], what: str, timeout: float = WAIT_S) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def statuses(run: nbflow.Run, step: str = "enrich") -> dict[Any, str]:
    return {v.key: str(v.status) for v in run.instances(step)}



def node(w: RunWidget, step: str) -> dict[str, Any]:
    return next(n for n in w.dag["nodes"] if n["step"] == step)


# ------------------------------------------------------------------ first view
def test_the_widget_opens_on_the_paused_step_with_counts_and_one_page(db_url: str, widgets: Any) -> None:
    run = paused(shop(db_url))
    w = widgets(run, live=False)

    assert w.summary["status"] == "paused" and w.summary["id"] == run.id
    assert w.summary["progress"] == {"done": 1, "total": 8}
    assert node(w, "enrich")["counts"]["paused"] == 6 and node(w, "enrich")["kind"] == "foreach"
    assert node(w, "enrich")["status"] == "paused" and node(w, "load")["status"] == "succeeded"
    assert [b["when"] for b in node(w, "enrich")["breakpoints"]] == ["before"]
    assert sorted(map(tuple, w.dag["edges"])) == [("enrich", "total"), ("load", "enrich")]
    assert w.selected_step == "enrich"
    assert [r["key"] for r in w.instances["rows"]] == [0, 1, 2, 3, 4, 5]


def test_the_widget_names_what_a_step_uses_from_the_notebook(db_url: str, widgets: Any) -> None:
    lock = threading.Lock()  # a notebook object that cannot be pickled
    wf = nbflow.Workflow("uses", db_url)

    @wf.step
    def guarded() -> int:
        with lock:
            return 1

    run = wf.run(breakpoints=["guarded"])
    assert run.wait(timeout=WAIT_S) == "paused"
    w = widgets(run, live=False)
    assert [u["text"] for u in node(w, "guarded")["uses"]] == ["lock (_thread.lock)"]


# ------------------------------------------------------------------ operator actions
def test_resume_one_key_runs_only_that_instance(db_url: str, widgets: Any) -> None:
    run = paused(shop(db_url))
    w = widgets(run, live=False)

    w.handle_message({"action": "resume", "step": "enrich", "key": "2", "req": "r1"})

    assert w.message["ok"] is True and w.message["req"] == "r1", w.message
    until(lambda: statuses(run)[2] == "succeeded", "enrich:2 to succeed")
    assert {k: s for k, s in statuses(run).items() if k != 2} == dict.fromkeys([0, 1, 3, 4, 5], "paused")
    w.refresh()
    assert w.instances["status"] == "problems"  # the table opened on what needs a person: 2 is done
    assert 2 not in [r["key"] for r in w.instances["rows"]]
    w.handle_message({"action": "filter", "status": ""})
    row = next(r for r in w.instances["rows"] if r["key"] == 2)
    assert row["status"] == "succeeded"
    assert node(w, "enrich")["counts"]["paused"] == 5


def test_resume_selected_resumes_exactly_the_ticked_keys(db_url: str, widgets: Any) -> None:
    run = paused(shop(db_url))
    w = widgets(run, live=False)

    w.handle_message({"action": "resume", "step": "enrich", "keys": ["1", "4"]})

    assert w.message["ok"] is True, w.message
    until(lambda: statuses(run)[1] == statuses(run)[4] == "succeeded", "the selected keys to succeed")
    assert [k for k, s in statuses(run).items() if s == "paused"] == [0, 2, 3, 5]


def test_resume_all_finishes_the_run(db_url: str, widgets: Any) -> None:
    run = paused(shop(db_url))
    w = widgets(run, live=False)

    w.handle_message({"action": "resume_all"})

    assert w.message["ok"] is True and "resumed 6" in w.message["text"]
    assert run.wait(timeout=WAIT_S) == "succeeded"
    w.refresh()
    assert w.summary["status"] == "succeeded" and w.summary["progress"] == {"done": 8, "total": 8}


def test_skip_with_an_output_from_the_editor(db_url: str, widgets: Any) -> None:
    run = paused(shop(db_url))
    w = widgets(run, live=False)

    w.handle_message({"action": "skip", "step": "enrich", "key": "3", "json": '{"skipped": true}',
                      "reason": "row 3 is bad"})

    assert w.message["ok"] is True, w.message
    view = run.instance("enrich", 3)
    assert view.status == "skipped" and view.output == {"skipped": True}
    skipped = [e for e in run.history() if e.kind == "skipped"]
    assert [(e.key, e.data["output"], e.data["reason"]) for e in skipped] == [(3, {"skipped": True}, "row 3 is bad")]


def test_set_inputs_with_a_reason_shows_the_old_and_new_values_in_the_history(db_url: str, widgets: Any) -> None:
    run = paused(shop(db_url))
    w = widgets(run, live=False)
    w.handle_message({"action": "select_instance", "step": "enrich", "key": "5"})
    assert w.detail["inputs"] == {"item": 6} and "set_inputs" in w.detail["verbs"]

    w.handle_message({"action": "set_inputs", "step": "enrich", "key": "5", "json": '{"item": 60}',
                      "reason": "fix bad row"})

    assert w.message["ok"] is True, w.message
    changed = [e for e in run.history() if e.kind == "inputs_changed"]
    assert [(e.key, e.data["old"], e.data["new"], e.data["reason"]) for e in changed] == [
        (5, {"item": 6}, {"item": 60}, "fix bad row")
    ]
    assert w.detail["inputs"] == {"item": 60}
    assert [h["data"]["new"] for h in w.detail["history"] if h["kind"] == "inputs_changed"] == [{"item": 60}]
    w.handle_message({"action": "resume", "step": "enrich", "key": "5"})
    until(lambda: run.instance("enrich", 5).status == "succeeded", "enrich:5 to succeed")
    assert run.instance("enrich", 5).output == 600


def test_set_output_of_an_instance_paused_after_its_body(db_url: str, widgets: Any) -> None:
    wf = shop(db_url)
    run = wf.run(params={"n": 3}, breakpoints=[nbflow.Breakpoint("enrich", "1", when="after")])
    assert run.wait(timeout=WAIT_S) == "paused"
    w = widgets(run, live=False)
    w.handle_message({"action": "select_instance", "step": "enrich", "key": "1"})
    assert w.detail["output"] == 20 and "set_output" in w.detail["verbs"]

    w.handle_message({"action": "set_output", "step": "enrich", "key": "1", "json": "2000", "reason": "override"})
    w.handle_message({"action": "resume", "step": "enrich", "key": "1"})

    assert run.wait(timeout=WAIT_S) == "succeeded"
    assert run.output("total") == 10 + 2000 + 30


def test_retry_a_failed_instance_after_fixing_its_input(db_url: str, widgets: Any) -> None:
    run = shop(db_url, fail_item=2).run(params={"n": 3}, break_on_error=True)
    assert run.wait(timeout=WAIT_S) == "paused"
    w = widgets(run, live=False)
    assert w.selected_step == "enrich"
    w.handle_message({"action": "select_instance", "step": "enrich", "key": "1"})
    assert w.detail["error"]["type"] == "ValueError" and "cannot enrich 2" in w.detail["error"]["traceback"]
    assert "enriching 2" in w.detail["logs"] and w.detail["attempts"][-1]["outcome"] == "attempt_failed"

    w.handle_message({"action": "set_inputs", "step": "enrich", "key": "1", "json": '{"item": 5}'})
    w.handle_message({"action": "retry", "step": "enrich", "key": "1"})

    assert w.message["ok"] is True, w.message
    assert run.wait(timeout=WAIT_S) == "succeeded"
    assert run.output("enrich") == [10, 50, 30]


def test_invalid_json_is_refused_and_changes_nothing(db_url: str, widgets: Any) -> None:
    run = paused(shop(db_url))
    w = widgets(run, live=False)
    before = snapshot(run)

    w.handle_message({"action": "set_inputs", "step": "enrich", "key": "1", "json": '{"item": ', "req": "e1"})

    assert w.message["ok"] is False and "invalid JSON" in w.message["text"] and w.message["req"] == "e1"
    assert snapshot(run) == before


def test_nan_in_an_edit_is_refused_and_changes_nothing(db_url: str, widgets: Any) -> None:
    run = paused(shop(db_url))
    w = widgets(run, live=False)
    before = snapshot(run)

    w.handle_message({"action": "skip", "step": "enrich", "key": "1", "json": '{"total": NaN}', "req": "e2"})

    assert w.message["ok"] is False and "NaN is not JSON" in w.message["text"]
    assert snapshot(run) == before


def test_a_refused_verb_shows_the_refusal_and_changes_nothing(db_url: str, widgets: Any) -> None:
    run = paused(shop(db_url))
    w = widgets(run, live=False)
    before = snapshot(run)

    w.handle_message({"action": "set_output", "step": "enrich", "key": "1", "json": "5"})

    assert w.message["ok"] is False
    assert "cannot set_output enrich:1" in w.message["text"] and "allowed now: resume" in w.message["text"]
    assert snapshot(run) == before
    w.handle_message({"action": "resume", "step": "enrich", "key": "99"})
    assert w.message["ok"] is False and "no instance with key 99" in w.message["text"]
    assert snapshot(run) == before


def test_an_input_the_step_does_not_take_is_refused(db_url: str, widgets: Any) -> None:
    run = paused(shop(db_url))
    w = widgets(run, live=False)
    before = snapshot(run)

    w.handle_message({"action": "set_inputs", "step": "enrich", "key": "1", "json": '{"item": 1, "color": "red"}'})

    assert w.message["ok"] is False and "no input named 'color'" in w.message["text"]
    assert snapshot(run) == before


def test_add_and_remove_a_breakpoint_on_a_node(db_url: str, widgets: Any) -> None:
    wf = shop(db_url)
    run = paused(wf)
    w = widgets(run, live=False)

    w.handle_message({"action": "add_breakpoint", "step": "total", "when": "before", "condition": "len(enrich) > 2"})

    assert w.message["ok"] is True, w.message
    assert [(b.step, b.when, b.condition, b.scope) for b in wf.breakpoints.list()] == [
        ("total", "before", "len(enrich) > 2", "workflow")
    ]
    assert [b["condition"] for b in node(w, "total")["breakpoints"]] == ["len(enrich) > 2"]
    run.resume()
    assert run.wait(timeout=WAIT_S) == "paused"
    assert run.instance("total").status == "paused"

    w.handle_message({"action": "remove_breakpoint", "step": "total"})

    assert w.message["ok"] is True, w.message
    assert wf.breakpoints.list() == []
    assert run.wait(timeout=WAIT_S) == "succeeded"  # the breakpoint alone held total: removing it resumed it


def test_a_breakpoint_with_a_bad_condition_is_refused(db_url: str, widgets: Any) -> None:
    wf = shop(db_url)
    run = paused(wf)
    w = widgets(run, live=False)

    w.handle_message({"action": "add_breakpoint", "step": "total", "condition": "len(enrich >"})

    assert w.message["ok"] is False and "not a valid Python expression" in w.message["text"]
    assert wf.breakpoints.list() == []


def test_cancel_the_run(db_url: str, widgets: Any) -> None:
    run = paused(shop(db_url))
    w = widgets(run, live=False)

    w.handle_message({"action": "cancel", "reason": "wrong parameters"})

    assert w.message["ok"] is True, w.message
    assert run.wait(timeout=WAIT_S) == "cancelled"
    assert w.summary["status"] == "cancelled"
    w.handle_message({"action": "resume_all"})
    assert w.message["ok"] is False and "finished run cannot be changed" in w.message["text"]


def gated(db_url: str, name: str = "gated") -> nbflow.Run:
    """prepare -> gate (an approval) -> ship(gate), paused at the waiting gate."""
    wf = Workflow(name, store=db_url)

    @wf.step
    def prepare():
        return "artifact"

    wf.approval("gate", after=["prepare"])

    @wf.step
    def ship(gate):
        return {"decision": gate}

    run = wf.run()
    assert run.wait(timeout=WAIT_S) == "paused"
    return run


def test_approve_a_waiting_gate_with_a_comment_and_a_json_payload(
    db_url: str, widgets: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NBFLOW_ACTOR", "ana")
    run = gated(db_url)
    w = widgets(run, live=False)
    assert w.selected == {"step": "gate", "key": None} and {"approve", "reject"} <= set(w.detail["verbs"])

    w.handle_message({"action": "approve", "step": "gate", "comment": "looks good", "json": '{"region": "eu"}'})

    assert w.message["ok"] is True, w.message
    assert run.wait(timeout=WAIT_S) == "succeeded"
    assert run.output("ship") == {"decision": {"region": "eu"}}
    (approved,) = [e for e in run.history() if e.kind == "approved"]
    assert approved.actor == "ana" and approved.data == {"comment": "looks good", "payload": {"region": "eu"}}


def test_reject_a_waiting_gate_with_a_comment(db_url: str, widgets: Any) -> None:
    run = gated(db_url)
    w = widgets(run, live=False)

    w.handle_message({"action": "reject", "step": "gate", "comment": "not today", "json": ""})

    assert w.message["ok"] is True, w.message
    assert run.wait(timeout=WAIT_S) == "failed"
    assert run.instance("gate").error.message.endswith(": not today")


def test_an_approval_payload_that_is_not_json_is_refused(db_url: str, widgets: Any) -> None:
    run = gated(db_url)
    w = widgets(run, live=False)
    before = snapshot(run)

    w.handle_message({"action": "approve", "step": "gate", "json": '{"region": '})

    assert w.message["ok"] is False and "invalid JSON" in w.message["text"]
    assert snapshot(run) == before


def test_a_waiting_signal_shows_its_token_in_the_instance_detail(db_url: str, widgets: Any) -> None:
    wf = Workflow("hooked", store=db_url)

    @wf.step
    def prepare():
        return 1

    wf.wait("hook", after=["prepare"], timeout=120)
    run = wf.run()
    assert run.wait(timeout=WAIT_S) == "paused"
    w = widgets(run, live=False)

    assert w.selected == {"step": "hook", "key": None}
    assert w.detail["status"] == "waiting" and w.detail["pause_reason"] == "signal: hook"
    assert w.detail["token"] == run.instance("hook").token and w.detail["deadline"] is not None


def test_an_unknown_action_is_reported_not_raised(db_url: str, widgets: Any) -> None:
    run = paused(shop(db_url))
    w = widgets(run, live=False)

    w.handle_message({"action": "explode"})

    assert w.message["ok"] is False and "unknown action 'explode'" in w.message["text"]


# ------------------------------------------------------------------ navigation and scale
def test_a_10000_item_foreach_ships_counts_and_one_page(db_url: str, widgets: Any) -> None:
    run = paused(shop(db_url), n=10_000)
    w = widgets(run, live=False)

    def state_size() -> int:
        state = {k: v for k, v in w.get_state().items() if k not in ("_esm", "_css")}
        return len(json.dumps(state))

    assert node(w, "enrich")["counts"]["paused"] == 10_000 and w.summary["progress"]["total"] == 10_002
    assert len(w.instances["rows"]) == PAGE_SIZE and w.instances["total"] == 10_000
    assert state_size() < 200_000

    w.handle_message({"action": "page", "offset": 10_000 - PAGE_SIZE})
    assert [r["key"] for r in w.instances["rows"]][-1] == 9999 and len(w.instances["rows"]) == PAGE_SIZE

    w.handle_message({"action": "filter", "status": "paused", "text": "777"})
    keys = [r["key"] for r in w.instances["rows"]]
    assert w.instances["offset"] == 0 and keys[:3] == [777, 1777, 2777] and w.instances["total"] == 19
    w.handle_message({"action": "select_instance", "step": "enrich", "key": "7777"})
    assert w.detail["inputs"] == {"item": 7778}
    assert state_size() < 200_000


def test_selecting_a_task_node_opens_its_instance(db_url: str, widgets: Any) -> None:
    run = paused(shop(db_url))
    w = widgets(run, live=False)

    w.handle_message({"action": "select_step", "step": "load"})

    assert w.selected_step == "load" and [r["key"] for r in w.instances["rows"]] == [None]
    assert w.detail["status"] == "succeeded" and w.detail["output"] == [1, 2, 3, 4, 5, 6]
    assert w.detail["inputs"] == {"n": 6}


def test_the_widget_follows_changes_made_elsewhere_and_stops_when_the_run_ends(db_url: str, widgets: Any) -> None:
    run = paused(shop(db_url))
    w = widgets(run)
    assert w.live is True

    run.resume("enrich", key=0)  # not through the widget: the Python API, as another cell would
    until(lambda: node(w, "enrich")["counts"]["succeeded"] == 1, "the widget to show enrich:0 succeeded")
    run.resume()
    until(lambda: w.summary["status"] == "succeeded", "the widget to show the run succeeded")
    until(lambda: w.live is False, "the live updates to stop")
    thread = w._thread
    assert thread is not None
    until(lambda: not thread.is_alive(), "the watcher thread to end")


OWNER = textwrap.dedent("""
    import sys, time
    import nbflow
    sys.path.insert(0, sys.argv[2])
    from test_widget import shop
    run = shop(sys.argv[1]).run(params={"n": 3}, breakpoints=["enrich"])
    run.wait(timeout=30)
    print(run.id, flush=True)
    deadline = time.monotonic() + 60
    while not run.status.terminal and time.monotonic() < deadline:
        time.sleep(0.05)
""")


def test_a_run_owned_by_another_process_is_driven_through_its_owner(db_url: str, widgets: Any) -> None:
    proc = subprocess.Popen([sys.executable, "-c", OWNER, db_url, str(Path(__file__).parent)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        run_id = proc.stdout.readline().strip()
        assert run_id, proc.stderr.read() if proc.stderr else ""
        run = nbflow.attach(run_id, db_url)
        w = widgets(run)

        w.handle_message({"action": "resume", "step": "enrich", "key": "1", "req": "x"})

        assert w.message["ok"] is True and "waiting for the run's owner" in w.message["text"]
        until(lambda: w.message.get("text") == "resumed 1 instance", "the owner's answer in the widget")
        # the owner answers when the instance is ready; it succeeds a commit later
        until(lambda: statuses(run) == {0: "paused", 1: "succeeded", 2: "paused"}, "the resumed item to finish")
        w.handle_message({"action": "set_output", "step": "enrich", "key": "0", "json": "1"})
        until(lambda: w.message.get("text", "").startswith("refused: cannot set_output"), "the owner's refusal")
        assert w.message["ok"] is False
        w.handle_message({"action": "resume_all"})
        until(lambda: w.summary.get("status") == "succeeded", "the run to finish in its owner")
        assert proc.wait(timeout=WAIT_S) == 0
    finally:
        proc.kill()
        proc.wait()


# ------------------------------------------------------------------ static fallback and display
@pytest.mark.skipif(shutil.which("dot") is None, reason="needs graphviz's dot")
def test_the_static_render_is_an_svg_of_the_dag_when_dot_exists(db_url: str) -> None:
    run = paused(shop(db_url))

    svg = render.to_svg(run)
    page = render.to_html(run)

    assert svg is not None and svg.startswith("<svg") and "enrich" in svg and "6 paused" in svg
    assert "<svg" in page and run.id in page and "PAUSED" in page
    assert '"#fef3c7"' in render.to_dot(run) or "#fef3c7" in render.to_dot(run)  # paused amber


def test_the_static_render_is_a_text_summary_without_dot(db_url: str, monkeypatch: pytest.MonkeyPatch,
                                                           tmp_path: Path) -> None:
    run = paused(shop(db_url))
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing on PATH: no dot

    assert render.to_svg(run) is None
    page = render.to_html(run)
    text = render.to_text(run)

    assert "<svg" not in page and "<table" in page and "6 paused" in page
    assert f"nbflow run {run.id} of 'shop': paused, 1/8 done" in text
    assert "enrich  foreach  6 paused" in text and "breakpoint #" in text


def test_outside_a_kernel_a_run_displays_statically(db_url: str) -> None:
    run = paused(shop(db_url))

    data, _meta = run._repr_mimebundle_()

    assert WIDGET_MIME not in data
    assert set(data) == {"text/plain", "text/html"} and run.id in data["text/plain"]


KERNEL_CODE = textwrap.dedent("""
    import nbflow, sys
    sys.path.insert(0, {tests!r})
    from test_widget import shop
    run = shop({db!r}).run(params={{"n": 4}}, breakpoints=["enrich"])
    run.wait(timeout=30)
    run
""")


def test_in_a_kernel_a_run_displays_as_the_widget_with_a_static_html_copy(db_url: str) -> None:
    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(kernel_name="python3")
    try:
        results: list[dict[str, Any]] = []
        opened: list[dict[str, Any]] = []

        def hook(msg: dict[str, Any]) -> None:
            if msg["msg_type"] == "execute_result":
                results.append(msg["content"]["data"])
            elif msg["msg_type"] == "comm_open":
                opened.append(msg["content"])

        reply = kc.execute_interactive(KERNEL_CODE.format(tests=str(Path(__file__).parent), db=db_url),
                                       output_hook=hook, timeout=60)
        assert reply["content"]["status"] == "ok", reply["content"]
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)

    (data,) = results
    assert {WIDGET_MIME, "text/html", "text/plain"} <= set(data)
    model_id = data[WIDGET_MIME]["model_id"]
    state = next(o["data"]["state"] for o in opened if o["comm_id"] == model_id)
    assert state["summary"]["status"] == "paused" and state["selected_step"] == "enrich"
    assert "<svg" in data["text/html"] or "<table" in data["text/html"]
    assert "paused" in data["text/plain"]


# ------------------------------------------------------------------ the shipped ESM
def _source_digest() -> str:
    """The digest js/build.mjs writes into the bundle's banner (same recipe)."""
    inputs = sorted(["build.mjs", "package-lock.json", *(f"src/{p.name}" for p in (JS / "src").iterdir())])
    h = hashlib.sha256()
    for rel in inputs:
        h.update(rel.encode() + b"\0" + (JS / rel).read_bytes() + b"\0")
    return h.hexdigest()


def test_the_built_widget_ships_in_the_package_without_cdn_imports() -> None:
    js = (STATIC / "widget.js").read_text()
    css = (STATIC / "widget.css").read_text()

    assert re.search(r"export\s*\{[^}]*\bas default\b", js) and ".nbflow-widget" in css
    assert not re.search(r"""(\bfrom|\bimport)\s*\(?\s*["'`](https?:)?//""", js), "the ESM imports from the network"
    assert "@import" not in css and not re.search(r"url\(\s*[\"']?(https?:)?//", css)


def test_the_built_widget_matches_its_sources() -> None:
    banner = (STATIC / "widget.js").read_text().splitlines()[0]
    assert f"sources sha256:{_source_digest()}" in banner, "js/ changed: run `npm run build` in js/"
    assert f"sources sha256:{_source_digest()}" in (STATIC / "widget.css").read_text().splitlines()[0]


@pytest.mark.skipif(shutil.which("npm") is None or not (JS / "node_modules").is_dir(),
                    reason="needs npm and `npm ci` in js/")
def test_npm_run_build_reproduces_the_shipped_files_byte_for_byte(tmp_path: Path) -> None:
    out = subprocess.run(["npm", "run", "build", "--", "--outdir", str(tmp_path)], check=False, cwd=JS,
                         capture_output=True, text=True, timeout=120, env={**os.environ, "NO_COLOR": "1"})
    assert out.returncode == 0, out.stderr
    for name in ("widget.js", "widget.css"):
        assert (tmp_path / name).read_bytes() == (STATIC / name).read_bytes(), name
