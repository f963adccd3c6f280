"""A fork of chosen items: which of the parent's instances a new run reuses and which it runs again.

``run.fork("enrich", keys=[37])`` re-runs item 37 of ``enrich``, the item made from it in each foreach
that takes ``enrich`` item by item (``double`` over ``enrich``: the item whose source is ``enrich:37``,
and so on down such a chain), and everything after them that needs a whole list (tasks, and what
follows them) in full. The chosen step's other items are copied when the run is created; a foreach of
the chain is filled in when it expands, from the parent's instances whose source item was not run
again (:func:`reused_items`): indices shift when a re-run item ends otherwise (a dead letter that now
succeeds), so items are matched by the key of the chosen step's item they descend from (:func:`roots`),
not by position or by their own key."""
from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
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


def roots(plan: Plan, from_step: str, step: str,
          items_of: Callable[[str], Sequence[tuple[int, str | None, bool]]]) -> dict[int, str | None]:
    """For each item of *step* (a foreach of the chain below *from_step*), the key of the *from_step* item
    it descends from: a foreach over a foreach makes its i-th item from the i-th finished item of its
    upstream, so the key of an item below changes when an item above it ends otherwise, the root's
    does not. *items_of(s)*: the (item, key, finished) of step *s*, in item order."""
    path = [step]
    while path[-1] != from_step:
        up = plan.steps[path[-1]].foreach
        assert up is not None
        path.append(up)
    path.reverse()
    found: dict[int, str | None] = {item: key for item, key, _done in items_of(from_step) if item != TASK_ITEM}
    for above, below_step in itertools.pairwise(path):
        finished = [found.get(item) for item, _key, done in items_of(above) if item != TASK_ITEM and done]
        found = {item: finished[item] for item, _key, _done in items_of(below_step)
                 if item != TASK_ITEM and 0 <= item < len(finished)}
    return found


def reused_items(store: Store, plan: Plan, fork: KeyedFork, step: str, source: Sequence[Inst],
                 keys: Sequence[str], encs: Sequence[tuple[str, bytes] | None], run_id: str,
                 fork_items_of: Callable[[str], Sequence[tuple[int, str | None, bool]]]) -> dict[int, Inst]:
    """For a foreach of the fork's chain expanding over *source* (its upstream's finished instances in this
    run, in item order, one per new item): the new items the parent's instances stand in for, by index.
    An item is reused when its source item was copied (not run again), its root (:func:`roots`) is not
    a chosen key, and the parent has the item of that root finished; it gets the new item's index and key.
    *fork_items_of*: :func:`roots`' reader over this run's instances."""
    if step not in fork.chain or step == fork.from_step or not source:
        return {}
    upstream = source[0].step
    parent: dict[str, list[Mapping[str, Any]]] = {}

    def parent_items_of(s: str) -> list[tuple[int, str | None, bool]]:
        if s not in parent:
            parent[s] = list(store.instance_rows(fork.parent, step=s))
        return [(r["item"], r["key"], r["status"] in _DONE) for r in parent[s]]

    parent_roots = roots(plan, fork.from_step, step, parent_items_of)
    by_root = {parent_roots[r["item"]]: r for r in parent[step] if r["status"] in _DONE and r["item"] in parent_roots}
    source_roots = roots(plan, fork.from_step, upstream, fork_items_of)
    finished = [source_roots.get(i.item) for i in source]  # the root of each new item, by index
    out: dict[int, Inst] = {}
    for i, src in enumerate(source):
        root = finished[i]
        copied = src.finished_at is not None and src.finished_at < fork.since
        row = by_root.get(root) if copied and root is not None and root not in fork.keys else None
        if row is None:
            continue
        inst = Inst.from_row({**row, "run_id": run_id})
        inst.item, inst.key, inst.key_enc, inst.new = i, keys[i], encs[i], True
        out[i] = inst
    return out


__all__ = ["KeyedFork", "below", "chain", "check_keys", "chosen_rows", "reused_items", "roots"]
