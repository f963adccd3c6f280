"""The debugger view's controller (nbflow.notebook.controller), the one home of what the notebook
widget and the JupyterLab sidebar do: plain JSON in and out, the operator verbs taken from the verb
table, the view state as JSON that a new controller resumes from, and the widget's anywidget
command `act` answering the browser that asked through the comm."""
from __future__ import annotations

from typing import Any, ClassVar

import comm
import pytest
from comm.base_comm import BaseComm

import nbflow
from nbflow import verbs
from nbflow.notebook.controller import ACTIONS, NAVIGATION, VERB_ACTIONS, Controller
from nbflow.notebook.widget import RunWidget
from tests.test_widget import WAIT_S, paused, shop, statuses, until


def test_every_verb_of_the_table_that_names_instances_a_step_or_the_run_is_an_action() -> None:
    offered = {v.name for v in verbs.VERBS.values()
               if v.target in (verbs.Target.INSTANCES, verbs.Target.STEP, verbs.Target.RUN)}
    assert offered <= set(VERB_ACTIONS) and offered <= set(ACTIONS)
    assert {"signal", "breakpoint"}.isdisjoint(VERB_ACTIONS)  # a token's and the owner's, not the view's
    assert set(NAVIGATION).isdisjoint(VERB_ACTIONS)


def test_answers_are_plain_json_and_the_view_state_round_trips(db_url: str) -> None:
    run = paused(shop(db_url))
    c = Controller(run)
    assert c.view()["step"] == "enrich"  # a first look opens the step that waits on a person
    answer = c.act("select_instance", {"step": "enrich", "key": 3})
    assert answer == {"ok": True, "text": None, "action": "select_instance", "command": None}
    c.act("filter", {"status": "paused", "text": "3"})
    view = c.view()
    assert view == {"step": "enrich", "instance": {"step": "enrich", "key": "3"}, "offset": 0, "status": "paused",
                    "text": "3", "group": "", "errors": False, "sort": "item", "desc": False, "watch": [],
                    "chosen": {"kind": "none", "keys": [], "group": ""}}

    again = Controller(nbflow.Run(run.store, run.id), view=view)
    state = again.state()
    assert state["selected"] == {"step": "enrich", "key": 3} and state["detail"]["status"] == "paused"
    assert [r["key"] for r in state["instances"]["rows"]] == [3]
    assert {n["step"]: n["status"] for n in state["dag"]["nodes"]} == {
        "load": "succeeded", "enrich": "paused", "total": "pending"}


def test_verbs_take_the_tables_payload_fields(db_url: str) -> None:
    run = paused(shop(db_url))
    c = Controller(run)
    assert c.act("skip", {"step": "enrich", "key": 0, "output": {"skipped": True}})["ok"]
    assert c.act("set_output", {"step": "enrich", "key": 1, "value": 5})["code"] == "state"  # paused before
    res = c.act("set_inputs", {"step": "enrich", "key": 2, "inputs": {"item": 30}, "reason": "fix"})
    assert res["ok"] and res["command"]["state"] == "applied", res
    assert c.act("resume", {"step": "enrich", "keys": [2, 3]})["ok"]
    until(lambda: statuses(run)[3] == "succeeded", "enrich:3 to succeed")
    assert run.instance("enrich", key=0).output == {"skipped": True}
    assert run.instance("enrich", key=2).output == 300


def test_an_edited_value_comes_as_json_text_and_keeps_big_integers(db_url: str) -> None:
    wf = shop(db_url)
    run = wf.run(params={"n": 2}, breakpoints=[nbflow.Breakpoint("enrich", when="after")])
    assert run.wait(timeout=WAIT_S) == "paused"
    c = Controller(run)
    big = "123456789012345678901234567890"
    assert c.act("set_output", {"step": "enrich", "key": 0, "json": big})["ok"]
    assert run.instance("enrich", key=0).output == int(big)  # a browser's JSON.parse would round it
    bad = c.act("set_output", {"step": "enrich", "key": 1, "json": "[1, NaN]"})
    assert bad["ok"] is False and bad["code"] == "invalid" and "NaN" in bad["text"]
    missing = c.act("set_output", {"step": "enrich", "key": 1})  # judged by commands.check, as everywhere
    assert missing["code"] == "invalid" and "set_output needs a value" in missing["text"]


def test_refusals_say_why_with_a_code(db_url: str) -> None:
    run = paused(shop(db_url))
    c = Controller(run)
    assert c.act("explode")["code"] == "invalid"
    not_an_object: Any = ["enrich"]
    assert c.act("resume", not_an_object)["code"] == "invalid"
    no_step = c.act("retry", {})
    assert no_step["code"] == "invalid" and no_step["text"] == "retry needs a step; steps are: load, enrich, total"
    missing = c.act("resume", {"step": "enrich", "key": 99})
    assert missing["ok"] is False and "no instance with key 99" in missing["text"]
    assert c.act("remove_breakpoint", {"step": "total"})["code"] == "not_found"
    assert c.act("cancel", {"reason": "enough"})["ok"]
    after = c.act("resume_all")
    assert after["ok"] is False and "finished run cannot be changed" in after["text"]


class RecordingComm(BaseComm):
    """The kernel's side of a comm, as a test has it: what the widget sends is kept."""

    sent: ClassVar[list[dict[str, Any]]] = []

    def publish_msg(self, msg_type: str, data: Any = None, metadata: Any = None, buffers: Any = None,
                    **keys: Any) -> None:
        RecordingComm.sent.append({"type": msg_type, "data": data})


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    RecordingComm.sent = []
    monkeypatch.setattr(comm, "create_comm", RecordingComm)
    return RecordingComm.sent


def test_the_widgets_act_command_answers_the_browser_that_asked(db_url: str,
                                                                recorded: list[dict[str, Any]]) -> None:
    run = paused(shop(db_url))
    w = RunWidget(run, live=False)
    try:
        # what anywidget's invoke() sends from the browser
        w._handle_custom_msg({"kind": "anywidget-command", "id": "ask-1", "name": "act",
                              "msg": {"name": "resume", "args": {"step": "enrich", "key": 4}}}, [])
        responses = [m["data"]["content"] for m in recorded if m["data"].get("method") == "custom"
                     and m["data"]["content"].get("kind") == "anywidget-command-response"]
        (response,) = responses
        assert response["id"] == "ask-1"
        assert response["response"]["ok"] is True and response["response"]["action"] == "resume"
        assert response["response"]["command"]["state"] == "applied"
        until(lambda: statuses(run)[4] == "succeeded", "enrich:4 to succeed")
        assert w.message["ok"] is True and w.message["text"] == response["response"]["text"]
    finally:
        w.close()
