"""A fork of chosen items: which of the parent's instances a new run reuses and which it runs again.

``run.fork("enrich", keys=[37])`` re-runs item 37 of ``enrich``, the item made from it in each foreach
that takes ``enrich`` item by item (``double`` over ``enrich``: the item whose source is ``enrich:37``,
and so on down such a chain), and everything after them that needs a whole list (tasks, and what
follows them) in full. The chosen step's other items are copied when the run is created; a foreach of
the chain is filled in when it expands, from the parent's instances whose source item was not run
again (:func:`reused_items`): indices shift when a re-run item ends otherwise (a dead letter that now
succeeds), so items are matched by their source's key, not by position."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..breakpoints import key_text
from ..definition import Plan
from ..errors import NbflowError
from ..states import TASK_ITEM, StepKind
from ..states import InstanceStatus as S
from ..store import Store
from .instances import Inst

_DONE = (S.SUCCEEDED, S.SKIPPED)
_RESET = ("inputs_codec", "inputs", "output_codec", "output", "saved_codec", "saved", "error_type",
          "error_message", "error_traceback", "error_signature", "pause_reason", "held_by", "released",
          "next_attempt_at", "deadline", "started_at", "finished_at", "logs", "token")


@dataclass(frozen=True)
class KeyedFork:
    """What a run forked with ``keys`` knows of it: its parent, the chosen step and keys (as text), the
    per-item foreach steps below them (:func:`chain`) and when it was created (an instance that finished
    before then was copied from the parent, not run again)."""

    parent: str
    from_step: str
    keys: frozenset[str]
    chain: frozenset[str]
    since: float


def below(plan: Plan, from_step: str) -> set[str]:
    """*from_step* and every step downstream of it."""
    out = {from_step}
    for s in plan.order:
        if any(u in out for u in plan.upstream[s]):
            out.add(s)
    return out


def chain(plan: Plan, from_step: str) -> frozenset[str]:
    """The foreach steps that take *from_step* item by item, recursively: a foreach over a step of the
    chain that reads no other step the fork runs again (a whole list, or a task after it); *from_step*
    included."""
    out = {from_step}
    rerun = below(plan, from_step)
    for s in plan.order:
        spec = plan.steps[s]
        if s in out or spec.kind != StepKind.FOREACH or spec.foreach not in out:
            continue
        reads = [b.name for b in plan.bindings[s] if b.source == "step"]
        if all(name not in rerun for name in reads):
            out.add(s)
    return frozenset(out)


def check_keys(plan: Plan, store: Store, parent: str, from_step: str, keys: Sequence[Any]) -> frozenset[str]:
    """The chosen keys as text; refused (nothing written) for a task step, no keys, or a key the
    parent's step does not have."""
    if plan.steps[from_step].kind != StepKind.FOREACH:
        raise NbflowError(f"fork keys= chooses items of a foreach step; {from_step!r} is a task: fork from it "
                          f"without keys to run it again with what follows")
    texts = [key_text(k) for k in keys]
    if not texts:
        raise NbflowError(f"fork keys= is empty: name the items of {from_step!r} to run again, e.g. keys=[37], "
                          "or leave keys out to run the whole step again")
    have = {r["key"] for r in store.instance_rows(parent, step=from_step) if r["item"] != TASK_ITEM}
    missing = [t for t in texts if t not in have]
    if missing:
        raise NbflowError(f"run {parent} has no item {', '.join(map(repr, missing))} of step {from_step!r}; "
                          f"it has {len(have)} items (see `nbflow show {parent} {from_step}`)")
    return frozenset(t for t in texts if t is not None)


def chosen_rows(store: Store, parent: str, from_step: str, keys: frozenset[str], run_id: str) -> list[dict[str, Any]]:
    """The chosen step's rows for the new run: the parent's finished items copied, the chosen ones (and
    any that had not succeeded) to run again, with their item and key."""
    out: list[dict[str, Any]] = []
    for r in store.instance_rows(parent, step=from_step):
        row = {**r, "run_id": run_id}
        if r["key"] in keys or r["status"] not in _DONE:
            row.update(dict.fromkeys(_RESET), status=str(S.PENDING), attempt=0)
        out.append(row)
    return out


def reused_items(store: Store, fork: KeyedFork, step: str, source: Sequence[Inst], keys: Sequence[str],
                 encs: Sequence[tuple[str, bytes] | None], run_id: str) -> dict[int, Inst]:
    """For a foreach of the fork's chain expanding over *source* (its upstream's finished instances in this
    run, in item order, one per new item): the new items the parent's instances stand in for, by index.
    An item is reused when its source item was copied (not run again) and the parent has its item
    finished; it gets the new item's index and key."""
    if step not in fork.chain or step == fork.from_step:
        return {}
    upstream = source[0].step if source else None
    if upstream is None:
        return {}
    parent_source = [r["key"] for r in store.instance_rows(fork.parent, step=upstream, status=list(_DONE))]
    parent_rows: Mapping[str, Mapping[str, Any]] = {
        parent_source[r["item"]]: r for r in store.instance_rows(fork.parent, step=step, status=list(_DONE))
        if 0 <= r["item"] < len(parent_source)
    }
    out: dict[int, Inst] = {}
    for i, src in enumerate(source):
        copied = src.finished_at is not None and src.finished_at < fork.since
        row = parent_rows.get(src.key) if copied and src.key is not None else None
        if row is None:
            continue
        inst = Inst.from_row({**row, "run_id": run_id})
        inst.item, inst.key, inst.key_enc, inst.new = i, keys[i], encs[i], True
        out[i] = inst
    return out


__all__ = ["KeyedFork", "below", "chain", "check_keys", "chosen_rows", "reused_items"]
