"""Issue 17's actions of the debugger view (:class:`nbflow.notebook.controller.Controller`, shared by the
notebook widget and the JupyterLab sidebar): ``step_over`` as a verb of the table, ``debug_cell`` in a
kernel (a real IPython shell) and refused without one, ``summary.kernel``, and the sidebar's endpoint
refusing ``debug_cell`` with the magic to use instead."""
from __future__ import annotations

from collections.abc import Iterator

import pytest
from api_server import Server
from IPython.core.interactiveshell import InteractiveShell

import nbflow
from nbflow.notebook.controller import ACTIONS, Controller
from tests.test_cli import poll
from tests.test_cli_step import fanout

pytestmark = pytest.mark.timeout(120)

WAIT_S = 60


@pytest.fixture
def shell() -> Iterator[InteractiveShell]:
    """A real IPython shell, as the kernel that shows the widget has."""
    ip = InteractiveShell.instance()
    yield ip
    InteractiveShell.clear_instance()


def test_step_over_is_an_action_of_the_view(db_url: str) -> None:
    run = fanout(db_url, breakpoints=["enrich:3"])
    assert "step_over" in ACTIONS
    answer = Controller(run).act("step_over", {"step": "enrich", "key": 3, "reason": "one more"})
    assert answer["ok"] is True, answer
    assert answer["text"].startswith("stepped over enrich:3; pausing before: double")
    poll(lambda: [str(v.key) for v in run.instances("double", status="paused")] == ["3"], WAIT_S)
    assert Controller(run).state()["summary"]["stepped_over"] == {"held": 1}


def test_the_view_without_a_kernel_says_so_and_with_one_too(db_url: str, shell: InteractiveShell) -> None:
    run = fanout(db_url, breakpoints=["enrich:3"])
    assert Controller(run).state()["summary"]["kernel"] is False
    assert Controller(run, shell=shell).state()["summary"]["kernel"] is True


def test_debug_cell_without_a_kernel_is_refused_naming_the_magic_to_run(db_url: str) -> None:
    run = fanout(db_url, breakpoints=["enrich:3"])
    answer = Controller(run).act("debug_cell", {"step": "enrich", "key": 3})
    assert answer["ok"] is False and answer["code"] == "invalid"
    assert "run `%nbflow debug enrich:3` in a notebook cell" in answer["text"]


def test_debug_cell_in_a_kernel_binds_the_inputs_and_answers_the_cell(db_url: str, shell: InteractiveShell) -> None:
    run = fanout(db_url, breakpoints=["enrich:3"])
    answer = Controller(run, shell=shell).act("debug_cell", {"step": "enrich", "key": 3})
    assert answer["ok"] is True, answer
    cell = answer["debug_cell"]
    assert cell["target"] == "enrich:3" and "item" in cell["bound"]
    assert answer["text"] == f"inputs of enrich:3 bound: {', '.join(cell['bound'])}"
    assert shell.user_ns["item"] == {"id": 3, "x": 3}
    assert 'item["x"] * 10' in cell["code"]


def test_debug_cell_names_the_selected_instance_when_given_none(db_url: str) -> None:
    run = fanout(db_url, breakpoints=["enrich:3"])
    controller = Controller(run)
    assert controller.act("select_instance", {"step": "enrich", "key": 3})["ok"]
    answer = controller.act("debug_cell", {})
    assert answer["ok"] is False and "`%nbflow debug enrich:3`" in answer["text"]


def test_each_nodes_breakpoints_carry_their_label_and_hits(db_url: str) -> None:
    run = fanout(db_url, breakpoints=["enrich:3"])
    nodes = {n["step"]: n for n in Controller(run).state()["dag"]["nodes"]}
    (bp,) = nodes["enrich"]["breakpoints"]
    assert (bp["label"], bp["hits"], bp["action"], bp["held"]) == ("before enrich:3", 1, "pause", 1)


def test_a_logpoint_from_the_view_is_set_for_every_run_of_the_workflow(db_url: str) -> None:
    run = fanout(db_url, breakpoints=["enrich:3"])
    answer = Controller(run).act("add_breakpoint", {"step": "double", "when": "after", "expression": "output",
                                                     "hit_count": "2"})
    assert answer["ok"] is True, answer
    assert answer["text"].startswith("logpoint #") and "on double (after, from hit 2 on)" in answer["text"]
    (bp,) = nbflow.views.breakpoints_list(run.store, workflow="step-fanout")
    assert (bp["action"], bp["expression"], bp["hit_count"], bp["scope"]) == ("log", "output", 2, "workflow")


# ---------------------------------------------------------------------------------- the sidebar
def test_the_sidebar_refuses_debug_cell_saying_to_use_the_magic_in_a_notebook(server: Server) -> None:
    run = fanout(server.db, breakpoints=["enrich:3"])
    resp = server.post(f"runs/{run.id}/actions/debug_cell", {"args": {"step": "enrich", "key": 3}, "view": None})
    assert resp.status_code == 400, resp.text
    body = resp.json()
    assert "`%nbflow debug enrich:3`" in body["message"] and body["result"]["ok"] is False
    assert body["state"]["summary"]["kernel"] is False


def test_step_over_goes_through_the_rest_apis_command_endpoint(server: Server) -> None:
    run = fanout(server.db, breakpoints=["enrich:3"])
    resp = server.post(f"runs/{run.id}/commands", {"verb": "step_over", "step": "enrich", "keys": ["3"]})
    assert resp.status_code == 200, resp.text
    assert resp.json()["state"] == "applied"
    poll(lambda: [str(v.key) for v in run.instances("double", status="paused")] == ["3"], WAIT_S)
