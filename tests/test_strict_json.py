"""JSON in, JSON out: the CLI and REST refuse NaN, Infinity and lone surrogates in JSON they are given,
naming the option or field; whatever a step returned, printed or raised, every `-o json` output and REST
body is strict JSON in valid UTF-8, such values shown as text (``{"repr": "nan"}``, ``\\udcff``)."""
from __future__ import annotations

import json
import os
from typing import Any

import pytest
import requests
from api_server import Server

import nbflow
from tests.test_cli import cli, start
from tests.test_server import command_count

LONE = "\udcff"
"""A lone surrogate: what Python makes of the byte 0xff in an undecodable file name or argument."""


def strict_loads(data: str | bytes) -> Any:
    """Parse as a strict parser (a browser's JSON.parse, RFC 8259) would accept: UTF-8, no NaN or
    Infinity, no lone surrogate in any string."""
    text = data.decode("utf-8") if isinstance(data, bytes) else data
    text.encode("utf-8")  # a lone surrogate in the text itself is not UTF-8

    def refuse(name: str) -> None:
        raise AssertionError(f"{name} in the JSON output")

    value = json.loads(text, parse_constant=refuse)
    json.dumps(value, ensure_ascii=False).encode("utf-8")  # nor one escaped as \udcff
    return value


def odd_values_run(db_url: str) -> nbflow.Run:
    """A finished run whose steps returned NaN and a lone-surrogate string (stored with pickle), printed
    and raised one; set_output and skip replaced NaN outputs, and a signal delivered Infinity."""
    wf = nbflow.Workflow("odd", store=db_url)
    wf.wait("hook", timeout=120)

    @wf.step
    def nan() -> float:
        return float("nan")

    @wf.step
    def name(nan: float) -> str:
        print("opened", "report" + LONE + ".csv")
        return "report" + LONE + ".csv"

    @wf.step
    def broken(name: str) -> None:
        raise ValueError(f"cannot read {name}")

    @wf.step
    def use(hook: Any, nan: float) -> dict[str, Any]:
        return {"hook": hook, "nan": nan}

    run = wf.run(breakpoints=[nbflow.Breakpoint("nan", when="after")], break_on_error=True)
    assert run.wait(timeout=30) == "paused"
    run.set_output("nan", value=float("-inf"))
    run.resume("nan")
    assert nbflow.signal(run.instance("hook").token, float("inf"), db_url).applied
    assert run.wait(timeout=30) == "paused"  # broken, on its error
    run.skip("broken", output=float("nan"))
    assert run.wait(timeout=30) == "succeeded"
    return run


# ---------------------------------------------------------------------------------- CLI input
@pytest.mark.parametrize(("args", "says"), [
    (["skip", "{run}", "enrich:2", "--output", "NaN"], "Invalid value for '--output': NaN is not JSON"),
    (["skip", "{run}", "enrich:2", "--output", "-Infinity"], "Invalid value for '--output': -Infinity is not JSON"),
    (["skip", "{run}", "enrich:2", "--output", '{"rows": [1, Infinity]}'], "Infinity is not JSON at rows[1]"),
    (["skip", "{run}", "enrich:2", "--output", '"\\udcff"'], "the string holds a lone surrogate (\\udcff)"),
    (["skip", "{run}", "enrich:2", "--output", os.fsdecode(b'"caf\xe9"')], "holds a lone surrogate (\\udce9)"),
    (["set", "{run}", "enrich:2", "--inputs", '{"item": NaN}'], "'--inputs': NaN is not JSON at item"),
], ids=["nan", "-infinity", "nested-infinity", "escaped-surrogate", "latin-1-argument", "inputs"])
def test_the_cli_refuses_json_with_nan_infinity_or_a_lone_surrogate_and_changes_nothing(
    db_url: str, args: list[str], says: str
) -> None:
    run = start(db_url, breakpoints=["enrich"])
    res = cli(db_url, *[run.id if a == "{run}" else a for a in args], "--force")
    assert res.returncode == 2
    assert says in res.stderr and "Traceback" not in res.stderr
    assert "write null or a number" in res.stderr or "send valid UTF-8 text" in res.stderr
    assert run.instance("enrich", 2).status == "paused"
    assert not [e for e in run.history() if e.kind == "command"]


# ---------------------------------------------------------------------------------- CLI output
def test_history_and_show_json_are_strict_whatever_the_steps_returned(db_url: str) -> None:
    run = odd_values_run(db_url)
    history = cli(db_url, "history", run.id, "-o", "json")
    assert history.returncode == 0, history.stderr
    events = strict_loads(history.stdout)
    data = {e["kind"]: e["data"] for e in events}
    assert data["output_changed"]["old"] == {"repr": "nan"} and data["output_changed"]["new"] == {"repr": "-inf"}
    assert data["signal_received"]["payload"] == {"repr": "inf"}
    assert data["skipped"]["output"] == {"repr": "nan"}
    assert data["attempt_failed"]["error"] == "ValueError: cannot read report\\udcff.csv"
    show = cli(db_url, "show", run.id, "-o", "json")
    assert show.returncode == 0, show.stderr
    assert strict_loads(show.stdout)["status"] == "succeeded"
    assert run.output("use")["hook"] == float("inf")  # the values themselves are kept (pickled)
    assert run.output("name") == "report" + LONE + ".csv"


def test_a_step_printing_and_raising_a_lone_surrogate_fails_cleanly_with_the_text_escaped(db_url: str) -> None:
    run = odd_values_run(db_url)
    name = run.instance("name")
    assert "opened report\\udcff.csv" in name.logs
    assert run.instance("broken").error.message == "cannot read report\\udcff.csv"


# ---------------------------------------------------------------------------------- REST
def raw_post(server: Server, path: str, body: bytes, auth: bool = True) -> requests.Response:
    headers = {"Content-Type": "application/json", **(server.auth if auth else {})}
    return requests.post(path if path.startswith("http") else server.api(path), data=body, headers=headers, timeout=30)


def test_rest_commands_refuse_nan_and_lone_surrogates_naming_the_field(server: Server) -> None:
    run = start(server.db, breakpoints=["enrich"])
    before = command_count(server.db)
    for body, says in [
        (b'{"verb": "skip", "step": "enrich", "keys": ["2"], "payload": {"output": NaN}}',
         "NaN is not JSON at payload.output"),
        (b'{"verb": "set_inputs", "step": "enrich", "keys": ["2"], "payload": {"inputs": {"item": -Infinity}}}',
         "-Infinity is not JSON at payload.inputs.item"),
        (b'{"verb": "skip", "step": "enrich", "keys": ["2"], "payload": {"output": "\\udcff"}}',
         "the string at payload.output holds a lone surrogate"),
        (b'{"verb": "resume", "reason": "\xed\xb3\xbf"}', "the string at reason holds a lone surrogate"),
    ]:
        resp = raw_post(server, f"runs/{run.id}/commands", body)
        assert resp.status_code == 400, resp.text
        assert says in strict_loads(resp.content)["message"]
    assert command_count(server.db) == before
    assert run.instance("enrich", 2).status == "paused"


def test_the_signal_endpoint_refuses_nan_and_lone_surrogates(server: Server) -> None:
    wf = nbflow.Workflow("strict_signal", store=server.db)
    wf.wait("hook", timeout=120)
    run = wf.run()
    assert run.wait(timeout=30) == "paused"
    url = f"{server.url}/nbflow/signal/{run.instance('hook').token}"
    before = command_count(server.db)
    for body, says in [(b"NaN", "NaN is not JSON"), (b'{"rows": [Infinity]}', "Infinity is not JSON at rows[0]"),
                       (b'{"name": "\\udcff"}', "the string at name holds a lone surrogate")]:
        resp = raw_post(server, url, body, auth=False)
        assert resp.status_code == 400, resp.text
        assert says in strict_loads(resp.content)["message"]
    assert command_count(server.db) == before
    assert run.instance("hook").status == "waiting"


def test_rest_bodies_are_strict_json_whatever_the_steps_returned(server: Server) -> None:
    run = odd_values_run(server.db)
    history = strict_loads(server.get(f"runs/{run.id}/history").content)
    assert {"repr": "nan"} in [e["data"].get("output") for e in history]
    for path in (f"runs/{run.id}", f"runs/{run.id}?light=1", "runs", f"runs/{run.id}/instances?step=name"):
        resp = server.get(path)
        assert resp.status_code == 200, resp.text
        strict_loads(resp.content)
    assert strict_loads(server.get(f"runs/{run.id}/instances/nan").content)["output"] == {"repr": "-inf"}
    name = strict_loads(server.get(f"runs/{run.id}/instances/name").content)
    assert (name["output"], name["output_editable"]) == ({"repr": "'report\\udcff.csv'"}, False)
    assert "opened report\\udcff.csv" in name["logs"]
    assert strict_loads(server.get(f"runs/{run.id}/instances/use").content)["output"] == {
        "repr": "{'hook': inf, 'nan': -inf}"}
