"""The Jupyter server extension against a real `jupyter server` subprocess on 127.0.0.1.

The test process owns the runs (its schedulers apply the commands the server writes), as a
kernel would; the server only reads the store and writes commands."""
from __future__ import annotations

import getpass
import json
import os
import secrets
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from api_server import Server

import nbflow
from nbflow import views
from nbflow.server.handlers import SIGNAL_MAX_BYTES
from nbflow.store import Store
from nbflow.store.codec import LARGE_VALUE_BYTES

pytestmark = pytest.mark.timeout(120)


def poll(fn: Any, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


def paused_run(db: str, name: str) -> nbflow.Run:
    """A live run (owned by this process) with `double:1..3` paused before their body."""
    wf = nbflow.Workflow(name, store=db)

    @wf.step
    def load():
        return [1, 2, 3]

    @wf.foreach("load", key=lambda x: x)
    def double(item):
        return item * 2

    run = wf.run(breakpoints=["double"])
    assert run.wait(timeout=30) == "paused"
    return run


def finished_run(db: str) -> nbflow.Run:
    wf = nbflow.Workflow("srv_done", store=db)

    @wf.step
    def load():
        return [1, 2]

    @wf.foreach("load", key=lambda x: x)
    def inc(item):
        print("inc", item)
        return item + 1

    run = wf.run()
    assert run.wait(timeout=30) == "succeeded"
    return run


def command_count(db: str) -> int:
    import sqlalchemy as sa

    from nbflow.store import schema

    with Store.open(db).engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(schema.commands)).scalar_one())


def assert_error(resp: requests.Response, status: int) -> str:
    """An error reply: the status, a JSON body with only a message, and no traceback."""
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"message"} and body["message"]
    assert "Traceback" not in resp.text and 'File "' not in resp.text
    return str(body["message"])


def server_user() -> str:
    """Who the sidebar acts as for jupyter_server's made-up anonymous user: the OS user running the server."""
    return os.environ.get("NBFLOW_ACTOR") or getpass.getuser()


def browser_session(server: Server) -> requests.Session:
    """A cookie-authenticated session, as a browser has after opening the server with its token."""
    s = requests.Session()
    assert s.get(f"{server.url}/api/status", params={"token": server.token}, timeout=10).ok
    assert any(c.name.startswith("username-") for c in s.cookies)  # the login cookie
    return s


# ---------------------------------------------------------------------------------- authentication
def test_every_api_endpoint_refuses_a_request_without_a_token(server: Server) -> None:
    run = finished_run(server.db)
    before = command_count(server.db)
    calls = [
        ("GET", "runs"), ("GET", f"runs/{run.id}"), ("GET", f"runs/{run.id}?light=1"),
        ("GET", f"runs/{run.id}/history"), ("GET", f"runs/{run.id}/instances?step=inc"),
        ("GET", f"runs/{run.id}/instances/inc/1"), ("GET", "breakpoints"),
        ("POST", f"runs/{run.id}/commands"), ("POST", "breakpoints"), ("DELETE", "breakpoints?workflow=x&step=y"),
    ]
    for method, path in calls:
        resp = requests.request(method, server.api(path), json={"verb": "cancel"}, timeout=10)
        assert resp.status_code == 403, (method, path, resp.status_code)
        assert "Traceback" not in resp.text
    bad = requests.get(server.api("runs"), headers={"Authorization": "token wrong"}, timeout=10)
    assert bad.status_code == 403
    assert command_count(server.db) == before


def test_with_the_token_the_api_returns_the_same_json_as_the_cli(server: Server) -> None:
    run = finished_run(server.db)
    store = Store.open(server.db)
    listed = server.get("runs").json()
    assert run.id in [r["id"] for r in listed]
    assert next(r for r in listed if r["id"] == run.id) == views.run_summary(store, store.run_row(run.id))
    assert server.get(f"runs/{run.id}").json() == views.run_view(store, run.id)
    assert server.get(f"runs/{run.id}?light=1").json() == views.run_state(store, run.id)
    assert server.get(f"runs/{run.id}/history").json() == views.history_view(store, run.id)
    page = server.get(f"runs/{run.id}/instances", params={"step": "inc", "status": "succeeded", "limit": 1}).json()
    assert (page["total"], len(page["rows"]), page["rows"][0]["key"]) == (2, 1, "1")
    detail = server.get(f"runs/{run.id}/instances/inc/2").json()
    assert (detail["status"], detail["output"], detail["inputs"]) == ("succeeded", 3, {"item": 2})
    assert "inc 2" in detail["logs"]
    assert server.get(f"runs/{run.id}/instances/load").json()["output"] == [1, 2]


def test_unknown_run_step_and_key_are_404_with_a_message(server: Server) -> None:
    run = finished_run(server.db)
    assert "no run 'nope'" in assert_error(server.get("runs/nope"), 404)
    assert_error(server.get("runs/nope/history"), 404)
    assert_error(server.post("runs/nope/commands", {"verb": "resume"}), 404)
    assert "no step 'zzz'" in assert_error(server.get(f"runs/{run.id}/instances/zzz/1"), 404)
    assert_error(server.get(f"runs/{run.id}/instances/inc/99"), 404)


@pytest.mark.parametrize("value", ["99999999999999999999", str(2**53), "-1", "ten", "1e3",
                                   pytest.param("9" * 5000, id="5000-digits")])
@pytest.mark.parametrize(("path", "name"), [
    ("runs", "limit"), ("runs/{run}", "limit"), ("runs/{run}/history", "after"),
    ("runs/{run}/instances?step=inc", "offset"),
])
def test_a_numeric_query_argument_out_of_range_is_400_naming_it_and_its_range(
    server: Server, path: str, name: str, value: str
) -> None:
    run = finished_run(server.db)
    url = path.format(run=run.id)
    message = assert_error(server.get(url, params={name: value}), 400)
    assert f"query argument {name!r} must be a whole number from 0 to {2**53 - 1}" in message
    assert server.get(url, params={name: 2**53 - 1}).ok  # the top of the range is answered


def test_an_instance_page_larger_than_1000_is_400_naming_the_range(server: Server) -> None:
    run = finished_run(server.db)
    message = assert_error(server.get(f"runs/{run.id}/instances", params={"step": "inc", "limit": 1001}), 400)
    assert "query argument 'limit' must be a whole number from 0 to 1000, got '1001'" in message
    page = server.get(f"runs/{run.id}/instances", params={"step": "inc", "limit": 1000}).json()
    assert (page["limit"], page["total"]) == (1000, 2)


# ---------------------------------------------------------------------------------- commands
def test_a_cookie_session_post_without_xsrf_is_refused_and_writes_nothing(server: Server) -> None:
    run = paused_run(server.db, "srv_xsrf")
    session = browser_session(server)
    assert session.get(server.api(f"runs/{run.id}"), timeout=10).ok  # the cookie alone can read
    before = command_count(server.db)
    resp = session.post(server.api(f"runs/{run.id}/commands"), json={"verb": "resume", "step": "double",
                                                                      "keys": ["1"]}, timeout=10)
    assert_error(resp, 403)
    assert command_count(server.db) == before
    assert run.instance("double", key=1).status == "paused"


def test_command_round_trip_resumes_one_key_authored_by_the_jupyter_user(server: Server) -> None:
    run = paused_run(server.db, "srv_roundtrip")
    session = browser_session(server)
    user = server_user()  # the actor of jupyter_server's made-up anonymous user (tests/test_actor_identity.py)
    xsrf = secrets.token_hex(16)  # the browser sends its _xsrf cookie back in the header
    session.cookies.set("_xsrf", xsrf)
    resp = session.post(server.api(f"runs/{run.id}/commands"), headers={"X-XSRFToken": xsrf},
                        json={"verb": "resume", "step": "double", "keys": [2], "reason": "looks fine"}, timeout=30)
    assert resp.status_code == 200, resp.text
    assert (resp.json()["state"], resp.json()["actor"]) == ("applied", user)
    poll(lambda: run.instance("double", key=2).status == "succeeded")
    assert run.instance("double", key=2).output == 4
    assert run.instance("double", key=1).status == "paused"
    (resumed,) = [e for e in server.get(f"runs/{run.id}/history").json() if e["kind"] == "resumed"]
    assert (resumed["key"], resumed["actor"]) == ("2", user)


def test_a_token_header_post_needs_no_xsrf(server: Server) -> None:
    run = paused_run(server.db, "srv_token")
    resp = server.post(f"runs/{run.id}/commands", {"verb": "skip", "step": "double", "keys": ["3"],
                                                    "payload": {"output": 0}})
    assert resp.status_code == 200, resp.text
    assert run.instance("double", key=3).status == "skipped"
    assert run.instance("double", key=3).output == 0


def test_a_command_the_owner_refuses_is_409_with_its_reason(server: Server) -> None:
    run = paused_run(server.db, "srv_refused")
    message = assert_error(server.post(f"runs/{run.id}/commands", {"verb": "set_output", "step": "double",
                                                                    "keys": ["1"], "payload": {"value": 9}}), 409)
    assert "paused (before)" in message
    assert run.instance("double", key=1).status == "paused"


def test_invalid_json_is_400_and_writes_nothing(server: Server) -> None:
    run = paused_run(server.db, "srv_badjson")
    before = command_count(server.db)
    resp = requests.post(server.api(f"runs/{run.id}/commands"), data=b"{verb: resume", timeout=10,
                         headers={**server.auth, "Content-Type": "application/json"})
    assert "not valid JSON" in assert_error(resp, 400)
    assert "unknown verb 'explode'" in assert_error(server.post(f"runs/{run.id}/commands", {"verb": "explode"}), 400)
    assert "unknown field" in assert_error(server.post(f"runs/{run.id}/commands", {"verb": "resume", "x": 1}), 400)
    assert command_count(server.db) == before
    assert run.instance("double", key=1).status == "paused"


def test_a_command_refused_before_it_is_written_gets_the_status_of_its_refusal_code(server: Server) -> None:
    """commands.check refuses with a code; verbs.HTTP_STATUS maps it: not found 404, invalid 400."""
    run = paused_run(server.db, "srv_codes")
    before = command_count(server.db)
    url = f"runs/{run.id}/commands"
    assert "no step 'nope'" in assert_error(server.post(url, {"verb": "resume", "step": "nope"}), 404)
    assert "no instance with key 9" in assert_error(server.post(url, {"verb": "resume", "step": "double",
                                                                      "keys": ["9"]}), 404)
    assert "single instance" in assert_error(server.post(url, {"verb": "retry", "step": "load", "keys": ["1"]}), 400)
    assert "not an approval gate" in assert_error(server.post(url, {"verb": "approve", "step": "double"}), 400)
    assert "skip needs the output" in assert_error(server.post(url, {"verb": "skip", "step": "double",
                                                                     "keys": ["1"]}), 400)
    assert "takes no input named 'x'" in assert_error(server.post(url, {
        "verb": "set_inputs", "step": "double", "keys": ["1"], "payload": {"inputs": {"x": 1}}}), 400)
    assert command_count(server.db) == before
    assert run.instance("double", key=1).status == "paused"


def test_finished_run_commands_are_409(server: Server) -> None:
    run = finished_run(server.db)
    assert "succeeded" in assert_error(server.post(f"runs/{run.id}/commands", {"verb": "cancel"}), 409)


# ---------------------------------------------------------------------------------- breakpoints
def test_breakpoints_are_added_listed_and_removed_through_the_api(server: Server) -> None:
    run = paused_run(server.db, "srv_bps")
    added = server.post("breakpoints", {"run": run.id, "step": "double", "key": 1, "when": "after",
                                        "condition": "item > 0"})
    assert added.status_code == 201, added.text
    assert {k: added.json()[k] for k in ("step", "key", "when", "condition", "scope")} == {
        "step": "double", "key": "1", "when": "after", "condition": "item > 0", "scope": "run"}
    listed = server.get("breakpoints", params={"run": run.id}).json()
    assert added.json()["id"] in [b["id"] for b in listed]
    assert "no step 'nope'" in assert_error(server.post("breakpoints", {"run": run.id, "step": "nope"}), 404)
    assert_error(server.post("breakpoints", {"run": run.id, "step": "double", "condition": "item >"}), 400)
    gone = requests.delete(server.api("breakpoints"), params={"run": run.id, "step": "double", "key": "1"},
                           headers=server.auth, timeout=10)
    assert gone.json()["removed"] == 1
    assert added.json()["id"] not in [b["id"] for b in server.get("breakpoints", params={"run": run.id}).json()]


def breakpoint_rows(db: str, workflow: str, run_id: str) -> list[Any]:
    store = Store.open(db)
    return [*store.breakpoint_rows(workflow), *store.breakpoint_rows(workflow, run_id)]


@pytest.mark.parametrize(("target", "code", "status", "message"), [
    ("load:1", "invalid", 400,
     "step 'load' is a task step with a single instance; a key only narrows a foreach step: write load"),
    ("nope", "not_found", 404, "no step 'nope' to break on; steps are: double, load"),
])
def test_a_bad_breakpoint_is_refused_alike_by_python_the_cli_rest_and_the_view(
    server: Server, target: str, code: str, status: int, message: str,
) -> None:
    """One check behind every surface: the same code, the same message, nothing written."""
    run = paused_run(server.db, "srv_bp_bad")
    wf = nbflow.Workflow("srv_bp_bad", store=server.db)
    wf.step(lambda: [1, 2, 3], name="load")
    wf.foreach("load", key=lambda x: x, name="double")(lambda item: item * 2)
    step, _, key = target.partition(":")
    before = breakpoint_rows(server.db, "srv_bp_bad", run.id)
    with pytest.raises(nbflow.CommandRefused) as err:
        wf.breakpoints.add(step, key=key or None)
    assert (err.value.code, str(err.value)) == (code, message)
    assert isinstance(err.value, nbflow.DefinitionError)  # what wf.breakpoints has always raised
    for scope in (["--workflow", "srv_bp_bad"], ["--run", run.id]):
        res = subprocess.run([sys.executable, "-m", "nbflow", "--db", server.db, "breakpoint", "add", *scope, target],
                             stdin=subprocess.DEVNULL, capture_output=True, check=False, text=True, timeout=120)
        assert (res.returncode, res.stdout, res.stderr) == (1, "", f"Error: {message}\n")
    for where in ({"workflow": "srv_bp_bad"}, {"run": run.id}):
        assert assert_error(server.post("breakpoints", {**where, "step": target}), status) == message
    view = server.post(f"runs/{run.id}/actions/add_breakpoint", {"args": {"step": step, "key": key or None}})
    assert view.status_code == status, view.text
    assert (view.json()["result"]["code"], view.json()["result"]["text"]) == (code, message)
    assert breakpoint_rows(server.db, "srv_bp_bad", run.id) == before


def test_removing_no_breakpoint_is_404_and_a_finished_runs_breakpoint_409(server: Server) -> None:
    run = paused_run(server.db, "srv_bp_gone")
    gone = requests.delete(server.api("breakpoints"), params={"workflow": "srv_bp_gone", "step": "double"},
                           headers=server.auth, timeout=10)
    assert assert_error(gone, 404) == ("no breakpoint on double in workflow 'srv_bp_gone'; list them with "
                                       "wf.breakpoints.list() or `nbflow breakpoint list`")
    done = finished_run(server.db)
    assert assert_error(server.post("breakpoints", {"run": done.id, "step": "inc"}), 409) == (
        f"run {done.id} is succeeded; a run-scoped breakpoint only applies to an unfinished run "
        "(add it to workflow 'srv_done' for later runs)")
    assert "exactly one of a workflow or a run" in assert_error(
        server.post("breakpoints", {"workflow": "srv_done", "run": done.id, "step": "inc"}), 400)
    assert run.status == "paused"


# ---------------------------------------------------------------------------------- signal endpoint
def waiting_run(db: str) -> tuple[nbflow.Run, str]:
    wf = nbflow.Workflow("srv_signal", store=db)
    wf.wait("hook", timeout=120)

    @wf.step
    def use(hook):
        return {"got": hook}

    run = wf.run()
    assert run.wait(timeout=30) == "paused"
    return run, run.instance("hook").token


def test_signal_with_a_valid_token_needs_no_login_and_delivers_once(server: Server) -> None:
    run, token = waiting_run(server.db)
    url = f"{server.url}/nbflow/signal/{token}"
    resp = requests.post(url, json={"rows": 42}, timeout=30)  # no token, no cookie, no XSRF
    assert resp.status_code == 200, resp.text
    assert resp.json()["result"] == "delivered"
    assert run.wait(timeout=30) == "succeeded"
    assert run.output("use") == {"got": {"rows": 42}}
    again = requests.post(url, json={"rows": 43}, timeout=30)
    assert again.status_code == 200, again.text
    assert again.json()["result"] == "duplicate"
    assert run.output("use") == {"got": {"rows": 42}}


def test_signal_with_a_forged_token_is_403_and_writes_nothing(server: Server) -> None:
    run, token = waiting_run(server.db)
    before = command_count(server.db)
    body, mac = token.split(".")
    forged = f"{body}.{'A' * len(mac)}"
    assert "not valid" in assert_error(requests.post(f"{server.url}/nbflow/signal/{forged}", json=1, timeout=10), 403)
    assert_error(requests.post(f"{server.url}/nbflow/signal/garbage", json=1, timeout=10), 403)
    assert command_count(server.db) == before
    assert run.instance("hook").status == "waiting"


def test_signal_body_must_be_json_and_at_most_1_mb(server: Server) -> None:
    _run, token = waiting_run(server.db)
    url = f"{server.url}/nbflow/signal/{token}"
    assert_error(requests.post(url, data=b"{nope", timeout=10), 400)
    assert_error(requests.post(url, data=b"1" * (1024 * 1024 + 1), timeout=30), 413)


def post_chunked(url: str, chunks: Iterator[bytes]) -> tuple[int, str]:
    """POST *chunks* with ``Transfer-Encoding: chunked`` (no Content-Length); the status and body."""
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.request("POST", parts.path, body=chunks, encode_chunked=True,
                     headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


def test_a_chunked_signal_body_over_1_mb_is_413_and_delivers_nothing(server: Server) -> None:
    run, token = waiting_run(server.db)
    status, text = post_chunked(f"{server.url}/nbflow/signal/{token}", (b"1" * 65536 for _ in range(17)))
    assert status == 413, text
    assert "larger than 1048576 bytes" in json.loads(text)["message"]
    assert run.instance("hook").status == "waiting"


def test_a_chunked_signal_body_within_1_mb_is_delivered(server: Server) -> None:
    run, token = waiting_run(server.db)
    status, text = post_chunked(f"{server.url}/nbflow/signal/{token}", iter([b'{"rows": ', b"42", b"}"]))
    assert status == 200, text
    assert run.wait(timeout=30) == "succeeded"
    assert run.output("use") == {"got": {"rows": 42}}


def test_signal_to_a_finished_wait_is_409(server: Server) -> None:
    run, token = waiting_run(server.db)
    assert server.post(f"runs/{run.id}/commands", {"verb": "cancel", "reason": "no longer needed"}).ok
    assert run.wait(timeout=30) == "cancelled"
    message = assert_error(requests.post(f"{server.url}/nbflow/signal/{token}", json=1, timeout=30), 409)
    assert "no longer waits" in message


@pytest.mark.parametrize("size", [LARGE_VALUE_BYTES - 64, LARGE_VALUE_BYTES + 64, SIGNAL_MAX_BYTES - 64],
                         ids=["below_artifact_threshold", "above_artifact_threshold", "just_under_1_mb"])
def test_a_large_signal_body_under_the_1_mb_limit_is_delivered(server: Server, size: int) -> None:
    run, token = waiting_run(server.db)
    blob = "x" * (size - 2)  # a JSON string of *size* bytes
    resp = requests.post(f"{server.url}/nbflow/signal/{token}", data=json.dumps(blob),
                         headers={"Content-Type": "application/json"}, timeout=30)
    assert resp.status_code == 200, resp.text
    assert resp.json()["result"] == "delivered"
    assert run.wait(timeout=30) == "succeeded"
    assert run.output("hook") == blob and run.output("use") == {"got": blob}


@pytest.mark.parametrize("size", [LARGE_VALUE_BYTES - 64, LARGE_VALUE_BYTES + 64], ids=["below", "above"])
def test_a_command_with_a_large_payload_is_applied(server: Server, size: int) -> None:
    run = paused_run(server.db, "srv_large_skip")
    blob = "x" * (size - 2)
    resp = server.post(f"runs/{run.id}/commands", {"verb": "skip", "step": "double", "keys": ["3"],
                                                    "payload": {"output": blob}})
    assert resp.status_code == 200, resp.text
    assert resp.json()["state"] == "applied"
    assert run.instance("double", key=3).output == blob


# ---------------------------------------------------------------------------------- "Resume here"
def test_takeover_needs_a_login(server: Server) -> None:
    run = paused_run(server.db, "srv_takeover_auth")
    resp = requests.post(server.api(f"runs/{run.id}/takeover"), json={}, timeout=20)
    assert_error(resp, 403)
    assert live_owner_pid(server.db, run.id) == os.getpid()


def test_takeover_of_a_run_whose_owner_is_alive_is_409_naming_it(server: Server) -> None:
    run = paused_run(server.db, "srv_takeover_live")
    message = assert_error(server.post(f"runs/{run.id}/takeover", {}), 409)
    assert str(os.getpid()) in message
    assert live_owner_pid(server.db, run.id) == os.getpid()


def test_takeover_of_a_finished_run_is_409(server: Server) -> None:
    run = finished_run(server.db)
    assert "succeeded" in assert_error(server.post(f"runs/{run.id}/takeover", {}), 409)


ORPHAN_SCRIPT = """
import sys

import nbflow

wf = nbflow.Workflow("srv_orphan", store=sys.argv[1])


@wf.step
def load():
    print("loading")
    return 1


run = wf.run(breakpoints=["load"])
print(run.id, run.wait(timeout=60))
"""


def paused_by_script(script: Path, text: str, db: str) -> str:
    """A run started by a script of its own (it pauses, prints its id and status, and exits)."""
    script.write_text(text)
    proc = subprocess.run([sys.executable, str(script), db], capture_output=True, text=True, timeout=120,
                          check=True)
    run_id, status = proc.stdout.split()
    assert status == "paused", proc.stderr
    return run_id


def test_a_takeover_worker_log_is_readable_by_its_owner_only(server: Server, tmp_path: Path) -> None:
    run_id = paused_by_script(tmp_path / "orphan.py", ORPHAN_SCRIPT, server.db)
    resp = server.post(f"runs/{run_id}/takeover", {})
    assert resp.status_code in (200, 202), resp.text
    workers = Path(server.db.removeprefix("sqlite:///")).parent / "workers"
    log = workers / f"{run_id}.log"
    assert oct(stat.S_IMODE(workers.stat().st_mode)) == oct(0o700)
    assert oct(stat.S_IMODE(log.stat().st_mode)) == oct(0o600)
    assert server.post(f"runs/{run_id}/commands", {"verb": "cancel"}).status_code in (200, 202)
    run = nbflow.Run(Store.open(server.db), run_id)
    assert run.wait(timeout=30) == "cancelled"
    poll(lambda: "is cancelled" in log.read_text())  # the worker said so and is done


def live_owner_pid(db: str, run_id: str) -> int | None:
    return Store.open(db).run_row(run_id)["owner_pid"]


USES_SCRIPT = """
import sys
import threading

import nbflow

lock = threading.Lock()  # a notebook object: not stored with the run's code
wf = nbflow.Workflow("srv_uses", store=sys.argv[1])


@wf.step
def guarded():
    with lock:
        return 1


run = wf.run(breakpoints=["guarded"])
print(run.id, run.wait(timeout=60))
"""


def test_resume_here_of_a_run_needing_the_notebook_is_409_naming_what_it_needs(server: Server, tmp_path: Path) -> None:
    run_id = paused_by_script(tmp_path / "uses.py", USES_SCRIPT, server.db)
    message = assert_error(server.post(f"runs/{run_id}/takeover", {}), 409)
    assert "step 'guarded'" in message and "lock (_thread.lock)" in message and "--notebook" in message
    row = nbflow.Store.open(server.db).run_row(run_id)
    assert row["status"] == "paused" and not views.owner_view(row)["alive"]  # nobody took it over
