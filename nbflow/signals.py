"""Correlation tokens for waits and approvals-by-callback: signed with the store's secret, so a
forged token is refused before anything is written. ``nbflow.signal()``, which delivers a payload
through the command path, is :func:`nbflow.commands.signal`."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

from .errors import NbflowError


class SignalRefused(NbflowError):
    """A signal was refused: a forged or malformed token, a finished wait, a timed-out wait."""


class WaitForSignal(BaseException):  # control flow, not an error
    """Raised inside a step by ``ctx.wait_for_signal`` to suspend it until the signal arrives.
    A BaseException, so a step's ``except Exception`` does not swallow it."""

    def __init__(self, name: str, timeout: float | None) -> None:
        super().__init__(name)
        self.name = name
        self.timeout = timeout

    def __reduce__(self) -> tuple[Any, ...]:  # travels back from a process or Dask worker
        return (WaitForSignal, (self.name, self.timeout))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def make_token(secret: bytes, run_id: str, step: str, item: int, name: str) -> str:
    """A deterministic token for one wait (the same on every attempt, so a step can hand it out early)."""
    body = _b64(json.dumps([run_id, step, item, name], separators=(",", ":")).encode())
    mac = hmac.new(secret, body.encode(), hashlib.sha256).digest()[:20]
    return f"{body}.{_b64(mac)}"


def read_token(secret: bytes, token: str) -> tuple[str, str, int, str]:
    """(run_id, step, item, name) of a token signed with *secret*; SignalRefused otherwise."""
    try:
        body, mac = token.strip().split(".")
        expected = hmac.new(secret, body.encode(), hashlib.sha256).digest()[:20]
        if not hmac.compare_digest(expected, _unb64(mac)):
            raise ValueError("bad signature")
        run_id, step, item, name = json.loads(_unb64(body))
        return str(run_id), str(step), int(item), str(name)
    except Exception:  # noqa: BLE001 - whatever a malformed token raises, it is refused
        raise SignalRefused(
            "the signal token is not valid for this store (forged, truncated or from another store); "
            "nothing was delivered"
        ) from None
