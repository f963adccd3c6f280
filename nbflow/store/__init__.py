"""The store: every durable fact about workflows and runs, behind SQLAlchemy Core."""
from __future__ import annotations

from .store import Store, default_url

__all__ = ["Store", "default_url"]
