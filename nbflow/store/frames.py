"""Bulk reads for a run as data (``run.frame``, ``run.diff``): every instance of a run or a step with
the columns a frame shows, and the blobs rows of values stored as files. Read on the DB-API cursor as
plain tuples: a frame of a 100,000-item step reads 100,000 rows (bench/frame_100k.py)."""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa

from . import schema
from .store import Store

FRAME_COLUMNS = (
    "step", "item", "key", "key_codec", "key_value", "status", "attempt", "started_at", "finished_at",
    "error_type", "error_message", "output_codec", "output", "inputs_codec", "inputs",
)
"""The columns of :func:`frame_rows`' tuples, in their order."""

BLOB_CHUNK = 500
"""Hashes per ``IN (...)`` of :func:`blob_info` (well below every driver's parameter limit)."""


def _fetch(store: Store, stmt: sa.Select[Any], params: dict[str, Any]) -> list[Sequence[Any]]:
    """*stmt* executed on the driver's cursor, its rows as tuples (no SQLAlchemy row objects)."""
    return store.raw_rows(store.compiled(stmt), params)


def frame_rows(store: Store, run_id: str, step: str | None = None) -> list[Sequence[Any]]:
    """The run's instances as :data:`FRAME_COLUMNS` tuples, in (step, item) order: states, errors, the
    key's stored value, the output and the operator's input edits (no logs, tracebacks or checkpoints).
    With *step*: that step's, without the first column (``step``: a value per row the caller knows)."""
    t = schema.instances
    names = FRAME_COLUMNS if step is None else FRAME_COLUMNS[1:]
    stmt = sa.select(*(t.c[n] for n in names)).where(t.c.run_id == sa.bindparam("run_id"))
    params: dict[str, Any] = {"run_id": run_id}
    if step is not None:
        stmt = stmt.where(t.c.step == sa.bindparam("step"))
        params["step"] = step
    return _fetch(store, stmt.order_by(t.c.step, t.c.item), params)


OUTPUT_COLUMNS = ("step", "item", "key", "key_codec", "key_value", "status", "output_codec", "output")
"""The columns of :func:`output_rows`' tuples, in their order."""


def output_rows(store: Store, run_id: str) -> list[Sequence[Any]]:
    """Every instance of the run as :data:`OUTPUT_COLUMNS` tuples (what a diff compares), in (step, item) order."""
    t = schema.instances
    stmt = (sa.select(*(t.c[n] for n in OUTPUT_COLUMNS)).where(t.c.run_id == sa.bindparam("run_id"))
            .order_by(t.c.step, t.c.item))
    return _fetch(store, stmt, {"run_id": run_id})


def blob_info(store: Store, digests: Iterable[str]) -> dict[str, tuple[str, int]]:
    """hash -> (the value's own codec, its size in bytes) for the files of these digests that the store knows."""
    wanted: Sequence[str] = sorted(set(digests))
    t = schema.blobs
    out: dict[str, tuple[str, int]] = {}
    with store.engine.connect() as conn:
        for i in range(0, len(wanted), BLOB_CHUNK):
            chunk = list(wanted[i:i + BLOB_CHUNK])
            for digest, codec_name, size in conn.execute(
                sa.select(t.c.hash, t.c.codec, t.c.size).where(t.c.hash.in_(chunk))
            ):
                out[digest] = (codec_name, int(size))
    return out


__all__ = ["FRAME_COLUMNS", "OUTPUT_COLUMNS", "blob_info", "frame_rows", "output_rows"]
