"""An identity provider that knows who the person is, for a real `jupyter server` in the tests
(``--ServerApp.identity_provider_class=tests.named_identity.NamedIdentityProvider``): a token-authenticated
request is Ada Lovelace (username ``ada``) instead of jupyter_server's made-up anonymous user."""
from __future__ import annotations

from jupyter_server.auth.identity import IdentityProvider, User
from tornado import web

USERNAME, NAME = "ada", "Ada Lovelace"


class NamedIdentityProvider(IdentityProvider):
    """jupyter_server's token check, with a user that has a name."""

    def generate_anonymous_user(self, handler: web.RequestHandler) -> User:
        return User(USERNAME, NAME, "Ada", "AL", None, None)
