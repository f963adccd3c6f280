"""Who the JupyterLab sidebar acts as, against a real `jupyter server`: the Jupyter user's name from the
server's identity provider; for the anonymous user jupyter_server makes up when no identity is
configured, the OS user that runs the server, which is what the notebook records for the same person."""
from __future__ import annotations

import contextvars
from collections.abc import Iterator

import pytest
import requests
from api_server import Server, running_server
from named_identity import NAME
from test_server import paused_run, poll, server_user

from nbflow._util import current_actor

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def named_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    provider = "--ServerApp.identity_provider_class=tests.named_identity.NamedIdentityProvider"
    with running_server(tmp_path_factory.mktemp("jpnamed"), (provider,)) as srv:
        yield srv


def identity(server: Server) -> dict[str, str]:
    """The identity jupyter_server gives a token-authenticated request (``GET /api/me``)."""
    resp = requests.get(f"{server.url}/api/me", headers=server.auth, timeout=10)
    assert resp.ok, resp.text
    return dict(resp.json()["identity"])


def resumed_by(server: Server, name: str) -> tuple[str, str]:
    """Resume `double:2` of a paused run through REST; the actor of the answer and of the history's event."""
    run = paused_run(server.db, name)
    resp = server.post(f"runs/{run.id}/commands", {"verb": "resume", "step": "double", "keys": [2]})
    assert resp.status_code == 200, resp.text
    poll(lambda: run.instance("double", key=2).status == "succeeded")
    (event,) = [e for e in run.history() if e.kind == "resumed"]
    return resp.json()["actor"], str(event.actor)


def test_with_the_default_identity_the_sidebar_acts_as_the_os_user_the_notebook_records(server: Server) -> None:
    os_user = server_user()  # the server runs as this process's user
    assert identity(server)["name"].startswith("Anonymous ")  # jupyter_server's made-up user: a random hex username
    assert resumed_by(server, "actor_default") == (os_user, os_user)
    assert contextvars.Context().run(current_actor) == os_user  # what a kernel of this user records


def test_with_a_configured_identity_the_sidebar_acts_as_the_users_name(named_server: Server) -> None:
    assert identity(named_server)["name"] == NAME
    assert resumed_by(named_server, "actor_named") == (NAME, NAME)
