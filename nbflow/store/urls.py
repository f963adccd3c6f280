"""What surfaces need to know about a store's address and its database's errors, so that none of
them imports SQLAlchemy: the URL to show (never its password), the SQLite file it names, and the
exception classes a driver raises."""
from __future__ import annotations

import sqlite3
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url

BadUrl = sa.exc.ArgumentError
"""Raised by :meth:`nbflow.store.Store.open` for a URL SQLAlchemy cannot use."""
CannotConnect = sa.exc.OperationalError
"""Raised when the database a URL names cannot be reached or opened."""
DATABASE_ERRORS: tuple[type[BaseException], ...] = (sa.exc.SQLAlchemyError, sqlite3.Error)
"""Any error from the database or its driver."""


def shown(url: str | None) -> str:
    """*url* as it may be shown or logged: its password hidden; ``(default)`` for none."""
    if not url:
        return "(default)"
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - whatever a malformed URL raises, it is not shown
        return "(unparsable URL)"


def sqlite_file(url: str) -> Path | None:
    """The database file of a SQLite *url* (None for another database or an in-memory one)."""
    u = make_url(url)
    if not u.drivername.startswith("sqlite") or not u.database or u.database == ":memory:":
        return None
    return Path(u.database)
