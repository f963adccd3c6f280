"""Expressions in the sidebar's view are code run in the Jupyter server: a user who may drive runs but
not execute code there is refused watch columns and bulk edits (and a view that holds watch columns),
while every other action still works."""
from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from api_server import Server, running_server
from test_server import paused_run

pytestmark = pytest.mark.timeout(120)

TESTS = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def no_code_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    path = os.pathsep.join(p for p in (str(TESTS), os.environ.get("PYTHONPATH", "")) if p)
    with running_server(tmp_path_factory.mktemp("nocode"), ("--ServerApp.authorizer_class=authorizers.NoCode",),
                        {"PYTHONPATH": path}) as srv:
        yield srv


def act(server: Server, run_id: str, name: str, args: dict[str, Any] | None = None,
        view: dict[str, Any] | None = None) -> requests.Response:
    return server.post(f"runs/{run_id}/actions/{name}", {"args": args, "view": view})


def test_without_the_right_to_execute_code_watch_columns_and_bulk_edits_are_refused(
        no_code_server: Server) -> None:
    run = paused_run(no_code_server.db, "rights")
    first = act(no_code_server, run.id, "refresh")
    assert first.status_code == 200, first.text
    view = first.json()["view"]

    for name, args in (("watch_add", {"expr": "item"}), ("preview_edit", {"input": "item", "expr": "item"}),
                       ("edit_selected", {"input": "item", "expr": "item"})):
        refused = act(no_code_server, run.id, name, args, view)
        assert refused.status_code == 403, (name, refused.text)
        assert "execute code" in refused.json()["message"]
    sneaked = act(no_code_server, run.id, "refresh", None, {**view, "watch": ["item"]})
    assert sneaked.status_code == 403, sneaked.text

    picked = act(no_code_server, run.id, "select_instance", {"step": "double", "key": 2}, view)
    assert picked.status_code == 200 and picked.json()["state"]["selected"] == {"step": "double", "key": 2}
