"""The debugger view's one endpoint, ``POST /nbflow/api/runs/<run>/actions/<name>``, against a real
`jupyter server`: the same controller as the notebook widget, so navigation moves the view state it
hands back, verbs go through the command path with the Jupyter user as actor, a refusal answers with
its code's status and the state as it is, and a cookie session without XSRF writes nothing."""
from __future__ import annotations

import secrets
from typing import Any

import pytest
import requests
from api_server import Server
from test_server import browser_session, command_count, paused_run, poll, server_user

pytestmark = pytest.mark.timeout(120)


def act(server: Server, run_id: str, name: str, args: dict[str, Any] | None = None,
        view: dict[str, Any] | None = None) -> requests.Response:
    return server.post(f"runs/{run_id}/actions/{name}", {"args": args, "view": view})


def test_a_first_look_opens_the_paused_step_and_navigation_moves_the_view(server: Server) -> None:
    run = paused_run(server.db, "act_nav")
    first = act(server, run.id, "refresh")
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["result"] == {"ok": True, "text": None, "action": "refresh", "command": None}
    state = body["state"]
    assert set(state) == {"summary", "dag", "selected_step", "instances", "selected", "detail", "live", "errors",
                          "selection", "timeline", "history", "diff"}
    assert state["selected_step"] == "double" and state["live"] is True
    assert [n["status"] for n in state["dag"]["nodes"]] == ["succeeded", "paused"]
    assert [r["key"] for r in state["instances"]["rows"]] == [1, 2, 3]  # user keys, as the widget has them

    picked = act(server, run.id, "select_instance", {"step": "double", "key": 2}, body["view"]).json()
    assert picked["state"]["selected"] == {"step": "double", "key": 2}
    assert picked["state"]["detail"]["status"] == "paused"
    assert picked["view"]["instance"] == {"step": "double", "key": "2"}
    filtered = act(server, run.id, "filter", {"status": "succeeded"}, picked["view"]).json()
    assert filtered["state"]["instances"]["rows"] == [] and filtered["view"]["status"] == "succeeded"


def test_a_verb_is_applied_by_the_owner_as_the_jupyter_user(server: Server) -> None:
    run = paused_run(server.db, "act_resume")
    session = browser_session(server)
    user = server_user()  # the actor of jupyter_server's made-up anonymous user (tests/test_actor_identity.py)
    xsrf = secrets.token_hex(16)
    session.cookies.set("_xsrf", xsrf)
    resp = session.post(server.api(f"runs/{run.id}/actions/resume"), headers={"X-XSRFToken": xsrf},
                        json={"args": {"step": "double", "keys": [2], "reason": "looks fine"}}, timeout=30)
    assert resp.status_code == 200, resp.text
    result = resp.json()["result"]
    assert result["ok"] is True and result["command"]["state"] == "applied", result
    poll(lambda: run.instance("double", key=2).status == "succeeded")
    assert run.instance("double", key=1).status == "paused"
    (resumed,) = [e for e in server.get(f"runs/{run.id}/history").json() if e["kind"] == "resumed"]
    assert (resumed["key"], resumed["actor"]) == ("2", user)


def test_a_refused_action_answers_409_with_the_state_and_changes_nothing(server: Server) -> None:
    run = paused_run(server.db, "act_refused")
    resp = act(server, run.id, "set_output", {"step": "double", "key": 1, "value": 9})
    assert resp.status_code == 409, resp.text
    body = resp.json()
    assert body["result"]["ok"] is False and body["result"]["code"] == "state"
    assert "cannot set_output double:1" in body["message"] and body["message"] == body["result"]["text"]
    assert body["state"]["summary"]["status"] == "paused"
    assert run.instance("double", key=1).status == "paused"


def test_an_unknown_action_or_a_bad_body_is_400(server: Server) -> None:
    run = paused_run(server.db, "act_bad")
    resp = act(server, run.id, "explode")
    assert resp.status_code == 400 and "unknown action 'explode'" in resp.json()["message"]
    resp = server.post(f"runs/{run.id}/actions/refresh", {"args": [1]})
    assert resp.status_code == 400 and set(resp.json()) == {"message"}
    resp = server.post(f"runs/{run.id}/actions/refresh", {"verb": "resume"})
    assert resp.status_code == 400 and "unknown field" in resp.json()["message"]
    assert act(server, "nope", "refresh").status_code == 404


def test_a_cookie_session_without_xsrf_is_refused_and_writes_nothing(server: Server) -> None:
    run = paused_run(server.db, "act_xsrf")
    session = browser_session(server)
    before = command_count(server.db)
    resp = session.post(server.api(f"runs/{run.id}/actions/resume"), json={"args": {"step": "double"}}, timeout=10)
    assert resp.status_code == 403
    assert command_count(server.db) == before
    assert run.instance("double", key=1).status == "paused"


def test_a_breakpoint_from_the_view_is_set_for_the_workflow_and_a_condition_must_be_text(server: Server) -> None:
    run = paused_run(server.db, "act_bp")
    made = act(server, run.id, "add_breakpoint", {"step": "double", "key": 3, "when": "after",
                                                  "condition": "item > 2"})
    assert made.status_code == 200, made.text
    assert made.json()["result"]["text"].startswith("breakpoint #")
    (bp,) = [b for b in server.get("breakpoints", params={"workflow": "act_bp"}).json() if b["key"] == "3"]
    assert (bp["when"], bp["condition"], bp["run_id"]) == ("after", "item > 2", None)
    node = next(n for n in made.json()["state"]["dag"]["nodes"] if n["step"] == "double")
    assert bp["id"] in [b["id"] for b in node["breakpoints"]]  # the answer's state shows it at once
    bad = act(server, run.id, "add_breakpoint", {"step": "double", "condition": {"not": "text"}})
    assert bad.status_code == 400 and "condition must be a Python expression" in bad.json()["message"]
    gone = act(server, run.id, "remove_breakpoint", {"step": "double", "key": 3})
    assert gone.status_code == 200 and gone.json()["result"]["text"] == "removed 1 breakpoint(s) on double:3"
