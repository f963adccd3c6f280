"""Browser tests placed under tests/browser/ get the same fixtures (tests/test_browser.py imports them)."""
from __future__ import annotations

from .fixtures import browser, jupyter, page  # noqa: F401
