"""Time travel: a run as it was right after one of its events (``run.at(event)``), derived from the
history. A run's events are folded once into a compact index (kept per process, extended as events are
appended): each instance's status code after every event, with a snapshot of every status every
:data:`SNAPSHOT_EVERY` events, so the counts at any event cost a copy and a few thousand steps, not a
pass over 200,000 events. An instance's other fields at an event (attempts, pause reason, error, times,
output and inputs) come from its own few events, read by id."""
from __future__ import annotations

import bisect
import itertools
import json
import re
import sys
import threading
import time
import zlib
from array import array
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from numbers import Integral
from typing import TYPE_CHECKING, Any

from .breakpoints import key_text, key_value
from .definition import StoredDefinition
from .engine.gates import APPROVAL, waiting_for
from .errors import NbflowError
from .states import TASK_ITEM, InstanceStatus, PauseReason, RunStatus, StepKind, When, status_filter
from .store import Store, codec, replay
from .store.reader import ValueReader

if TYPE_CHECKING:
    from .run import Event, InstanceView

STATUSES: tuple[str, ...] = tuple(s.value for s in InstanceStatus)
_CODE = {s: n for n, s in enumerate(STATUSES, 1)}  # 0: the instance does not exist (yet)
_NAME = (None, *STATUSES)
_PENDING, _READY = _CODE["pending"], _CODE["ready"]
_READY_BYTE = bytes([_READY])

STATE_KINDS: dict[str, str] = {
    "started": "running", "succeeded": "succeeded", "failed": "failed", "retrying": "retrying",
    "paused": "paused", "skipped": "skipped", "cancelled": "cancelled", "interrupted": "ready",
    "retry_requested": "ready", "resumed": "ready", "waiting": "waiting", "approved": "succeeded",
    "rejected": "failed",
}
"""The events that move an instance to a status (those that follow a ``resumed`` at once, as its
``succeeded`` or ``retrying``, move it on in the same turn)."""
_KIND_CODE = {k: _CODE[v] for k, v in STATE_KINDS.items()}
RUN_KINDS: dict[str, str] = {f"run_{s.value}": s.value for s in RunStatus}
"""The run-level events that record the run's status (``run_paused``...)."""
STEP_KINDS = frozenset({"expanded", "breakpoint_fired", "logpoint_armed"})
"""Events that name a step but no instance of it."""
_TERMINAL_KINDS = frozenset({"succeeded", "failed", "skipped", "cancelled", "approved", "rejected"})
_ERROR_KINDS = frozenset({"failed", "attempt_failed", "retrying", "rejected"})
_OK_KINDS = frozenset({"succeeded", "skipped", "approved"})

SNAPSHOT_EVERY = 2048
"""Events between two snapshots of every instance's status in the index."""
RUNS_INDEXED = 4
"""Runs whose index a process keeps (the least recently used goes first): a 100,000-instance run's
holds ~36 MB (bench/README.md)."""


FOLD_FORMAT = 1
"""The layout of a folded history kept in the store (:meth:`_Index.packed`); another one is folded again."""
_FINDS_BEFORE_DICT = 32
"""Lookups of an instance by key that scan the keys before :attr:`_Index.number` is built (a dict of
100,000 keys costs about as much as 30 scans)."""
_ARRAYS = ("items", "ev_ids", "ev_inst", "ev_prev", "last_pos")
_BYTES = ("copies", "initial", "status", "ev_code")


def _label(step: str, key: str | None) -> str:
    return step if key is None else f"{step}:{key}"


class _Rebuild(Exception):
    """An event names an instance the index has not numbered (the run grew): build it again."""


class _Finder:
    """``number.get`` for :meth:`_Index.fold` over :meth:`_Index.find` (a few new events need no dict)."""

    def __init__(self, ix: _Index) -> None:
        self.ix = ix

    def get(self, key: tuple[str, str | None]) -> int | None:
        return self.ix.find(*key)


class _Index:
    """A run's instances numbered in (DAG order, item order), and its history folded: for each event
    that touches an instance, the instance and the status it moved to, chained to that instance's
    previous event; snapshots of all statuses every :data:`SNAPSHOT_EVERY` events."""

    def __init__(self, store: Store, run_id: str, definition: StoredDefinition) -> None:
        """Reads the instances first, then the events up to the newest: every instance numbered was
        made by an event the fold sees (an instance made meanwhile is :class:`_Rebuild`)."""
        self.run_id = run_id
        self.order = list(definition.order)
        self.kinds = {s: definition.steps[s].kind for s in self.order}
        by_step: dict[str, list[tuple[Any, ...]]] = {}
        for r in replay.identities(store, run_id):
            by_step.setdefault(r[0], []).append(r)
        b = self.bounds = replay.bounds(store, run_id)
        self.low = b.low
        heads = replay.heads(store, run_id, b.low, b.last)
        expanded = {h[1] for h in heads if h[3] == "expanded"}
        self.start: dict[str, int] = {}  # a step's first instance number
        self.size: dict[str, int] = {}
        self.first_item: dict[str, int] = {}  # the number of a foreach step's item 0
        self._number: dict[tuple[str, str | None], int] | None = {}
        self._keys_zipped: bytes | None = None
        self._key_lists: dict[str, list[str | None]] | None = None
        self._finds = 0
        number = self._number
        self.items = array("q")
        initial = bytearray()
        copies = bytearray()  # the status an instance copied from the parent run has (0: not copied)
        for step in self.order:
            rows = by_step.get(step, [])
            self.start[step] = len(self.items)
            self.size[step] = len(rows)
            foreach = self.kinds[step] == StepKind.FOREACH
            self.first_item[step] = len(self.items) + sum(1 for r in rows if r[1] == TASK_ITEM)
            for _step, item, key, status, finished in rows:
                number[(step, key)] = len(self.items)
                self.items.append(item)
                copied = status in ("succeeded", "skipped") and finished is not None and finished < b.created_at
                copies.append(_CODE[status] if copied else 0)
                if foreach and item != TASK_ITEM and step in expanded:
                    initial.append(0)  # made when it expands (an item a fork reuses too)
                elif copied:
                    initial.append(_CODE[status])
                elif not foreach or item != TASK_ITEM:  # a task's, or an item made with the run (a fork's)
                    initial.append(_PENDING)
                else:
                    initial.append(0)
        self.copies = bytes(copies)
        self.initial = bytes(initial)
        self.status = bytearray(initial)
        self.ev_ids = array("q")
        self.ev_inst = array("q")  # the instance number, or -1 - step number for an expansion
        self.ev_code = bytearray()  # the status it moved to (0: none)
        self.ev_prev = array("q")  # the position of the instance's previous event (-1: none)
        self.last_pos = array("q", [-1]) * len(self.items)
        self.snaps: list[bytes] = [self.initial]
        self.zipped = 0  # the snapshots before this one are compressed (an index read from the store)
        self.run_ids: list[int] = []
        self.run_status: list[str] = []
        self._at: OrderedDict[int, bytes] = OrderedDict()  # the statuses at the events asked last
        self.last = b.low
        self.kept = b.low  # the newest event of the fold kept in the store
        self.fold(heads)

    def packed(self) -> bytes:
        """The index as bytes to keep in the store (``replay.save_fold``): a JSON header (the layout, the
        run-level statuses), then the arrays, the instances' keys and each snapshot, compressed apart: a
        process that reads it back decompresses the keys and a snapshot only when it needs them."""
        parts = [getattr(self, name).tobytes() for name in _ARRAYS] + [bytes(getattr(self, name)) for name in _BYTES]
        arrays = zlib.compress(b"".join(parts), 1)
        snaps = [s if k < self.zipped else zlib.compress(s, 1) for k, s in enumerate(self.snaps)]
        head = json.dumps({
            "byteorder": sys.byteorder, "order": self.order, "kinds": self.kinds, "start": self.start,
            "size": self.size, "first_item": self.first_item, "run_ids": self.run_ids, "run_status": self.run_status,
            "last": self.last, "low": self.low, "lengths": [len(p) for p in parts],
            "pieces": [len(arrays), len(self._keys()), *map(len, snaps)],
        }).encode()
        body = b"".join([len(head).to_bytes(8, "little"), head, arrays, self._keys(), *snaps])
        return zlib.crc32(body).to_bytes(4, "little") + body

    def _keys(self) -> bytes:
        """The instances' keys in number order, per step, as compressed JSON (what :attr:`number` is built from)."""
        if self._keys_zipped is None:
            self._keys_zipped = zlib.compress(json.dumps(self.keys()).encode(), 1)
        return self._keys_zipped

    @property
    def number(self) -> dict[tuple[str, str | None], int]:
        """Each instance's number by ``(step, key text)`` (built on first use in a process that read the
        index: ~0.1 s for 100,000 instances, so a few lookups go through :meth:`find` instead)."""
        if self._number is None:
            number: dict[tuple[str, str | None], int] = {}
            for step, keys in self.keys().items():
                a = self.start[step]
                number.update(zip(zip(itertools.repeat(step), keys), range(a, a + len(keys))))
            self._number = number
        return self._number

    def keys(self) -> dict[str, list[str | None]]:
        """Each step's instances' key texts, in number order."""
        if self._key_lists is None:
            if self._number is not None:
                lists: dict[str, list[str | None]] = {s: [None] * self.size[s] for s in self.order}
                for (step, key), n in self._number.items():
                    lists[step][n - self.start[step]] = key
                self._key_lists = lists
            else:
                self._key_lists = json.loads(zlib.decompress(self._keys()))
        assert self._key_lists is not None
        return self._key_lists

    def find(self, step: str, key: str | None) -> int | None:
        """The number of *step*'s instance with key text *key* (None: not numbered). Without the
        :attr:`number` dict a lookup is a scan of the step's keys in C; after a few the dict is built."""
        if self._number is None:
            self._finds += 1
            if self._finds <= _FINDS_BEFORE_DICT:
                keys = self.keys().get(step)
                if keys is None:
                    return None
                try:
                    return self.start[step] + keys.index(key)
                except ValueError:
                    return None
        return self.number.get((step, key))

    def snap(self, k: int) -> bytes:
        """Every instance's status after the first ``k * SNAPSHOT_EVERY`` events."""
        return zlib.decompress(self.snaps[k]) if k < self.zipped else self.snaps[k]

    @classmethod
    def unpacked(cls, data: bytes, run_id: str, definition: StoredDefinition, b: replay.Bounds) -> _Index | None:
        """An index from :meth:`packed` bytes, or None when they do not fit this run as it is now (another
        machine's byte order, another definition, events the store does not have). Damaged bytes (their
        checksum differs) are refused with ValueError: the keys and snapshots are decompressed later."""
        body = memoryview(data)[4:]
        if len(data) < 12 or zlib.crc32(body) != int.from_bytes(data[:4], "little"):
            raise ValueError("a kept fold whose checksum differs")
        data = data[4:]
        size = int.from_bytes(data[:8], "little")
        head = json.loads(data[8:8 + size])
        order = list(definition.order)
        kinds = {s: str(definition.steps[s].kind) for s in order}
        if (head["byteorder"], head["order"], head["kinds"], head["low"]) != (sys.byteorder, order, kinds, b.low) \
                or head["last"] > b.last:
            return None
        self = cls.__new__(cls)
        self.run_id, self.order, self.bounds, self.low, self.last = run_id, order, b, b.low, int(head["last"])
        self.kept = self.last
        self.kinds = {s: definition.steps[s].kind for s in order}
        self.start, self.size, self.first_item = head["start"], head["size"], head["first_item"]
        at = 8 + size
        pieces = []
        for n in head["pieces"]:
            pieces.append(data[at:at + n])
            at += n
        raw = zlib.decompress(pieces[0])
        at = 0
        for name, n in zip((*_ARRAYS, *_BYTES), head["lengths"]):
            chunk = raw[at:at + n]
            at += n
            if name in _ARRAYS:
                values = array("q")
                values.frombytes(chunk)
                setattr(self, name, values)
            else:
                setattr(self, name, bytearray(chunk) if name in ("status", "ev_code") else chunk)
        self._number, self._keys_zipped, self._key_lists, self._finds = None, pieces[1], None, 0
        self.snaps = pieces[2:]
        self.zipped = len(self.snaps)
        self.run_ids, self.run_status = list(head["run_ids"]), list(head["run_status"])
        self._at = OrderedDict()
        return self

    def fold(self, heads: Iterable[tuple[Any, ...]]) -> None:
        """Append events (``replay.heads`` tuples, oldest first) to the index (the hot loop of a first
        travel: 200,000 events for a 100,000-item foreach; names bound locally). A reader in another
        thread (:meth:`chain`) sees the events before the batch until the batch is whole: the batch's
        positions are kept aside and published into ``last_pos`` only after the arrays they point into."""
        number: Any = self._number if self._number is not None else _Finder(self)
        step_no, status, last_pos = {s: n for n, s in enumerate(self.order)}, self.status, self.last_pos
        moved: dict[int, int] = {}  # instance -> its newest position in this batch
        ids: list[int] = []
        insts: list[int] = []
        codes = bytearray()
        prevs: list[int] = []
        kind_code, step_kinds, run_kinds, snaps = _KIND_CODE, STEP_KINDS, RUN_KINDS, self.snaps
        pos = len(self.ev_ids)
        last = self.last
        try:
            for eid, step, key, kind in heads:
                last = eid
                if step is None:
                    run_status = run_kinds.get(kind)
                    if run_status is not None:
                        self.run_ids.append(eid)
                        self.run_status.append(run_status)
                    continue
                if kind in step_kinds:
                    if kind != "expanded" or step not in step_no:
                        continue
                    inst, code, prev = -1 - step_no[step], 0, -1
                    self._expand(status, step)
                else:
                    found = number.get((step, key))
                    if found is None:
                        if step in step_no:
                            raise _Rebuild(step)
                        continue
                    inst, code = found, kind_code.get(kind, 0)
                    if code:
                        status[inst] = code
                    prev = moved.get(inst, -2)
                    if prev == -2:
                        prev = last_pos[inst]
                    moved[inst] = pos
                ids.append(eid)
                insts.append(inst)
                codes.append(code)
                prevs.append(prev)
                pos += 1
                if pos % SNAPSHOT_EVERY == 0:
                    snaps.append(bytes(status))
        finally:  # what was folded stays consistent (a rebuild drops it anyway)
            self.ev_ids.extend(ids)
            self.ev_inst.extend(insts)
            self.ev_code.extend(codes)
            self.ev_prev.extend(prevs)
            for inst, at in moved.items():  # now that the positions exist
                last_pos[inst] = at
            self.last = last

    def _expand(self, status: bytearray, step: str) -> None:
        """The foreach's items come into being, ready (those a breakpoint holds move on in their own event)."""
        a, b = self.first_item[step], self.start[step] + self.size[step]
        copies = self.copies[a:b]
        if not copies.strip(b"\0"):  # no item reused from a parent run: every absent one is ready
            status[a:b] = status[a:b].replace(b"\0", _READY_BYTE)
            return
        for i in range(a, b):
            if not status[i]:
                status[i] = copies[i - a] or _READY  # an item a fork reused is there as it was copied

    def position(self, event_id: int) -> int:
        """How many of the index's events are at or before *event_id*."""
        return bisect.bisect_right(self.ev_ids, event_id)

    def statuses_at(self, event_id: int) -> bytes:
        """Every instance's status code right after *event_id* (the last few asked are kept: a view
        and its page ask for the same one)."""
        kept = self._at.get(event_id)
        if kept is not None:
            return kept
        pos = self.position(event_id)
        k = min(pos // SNAPSHOT_EVERY, len(self.snaps) - 1)
        status = bytearray(self.snap(k))
        inst_of, code_of = self.ev_inst, self.ev_code
        for j in range(k * SNAPSHOT_EVERY, pos):
            inst = inst_of[j]
            if inst >= 0:
                code = code_of[j]
                if code:
                    status[inst] = code
            else:
                self._expand(status, self.order[-1 - inst])
        done = self._at[event_id] = bytes(status)
        while len(self._at) > 8:
            self._at.popitem(last=False)
        return done

    def run_status_at(self, event_id: int) -> str:
        n = bisect.bisect_right(self.run_ids, event_id)
        return self.run_status[n - 1] if n else RunStatus.RUNNING.value

    def counts(self, status: bytes) -> dict[str, dict[str, int]]:
        """``{step: {status: n}}`` of the instances that exist in *status*."""
        out: dict[str, dict[str, int]] = {}
        for step in self.order:
            a = self.start[step]
            part = status[a:a + self.size[step]]
            out[step] = {name: part.count(code) for code, name in enumerate(_NAME) if name and part.count(code)}
        return out

    def statuses_named(self, status: bytes, numbers: Iterable[int]) -> dict[int, str | None]:
        """The status names of *numbers* in *status* (None: absent)."""
        return {i: _NAME[status[i]] for i in numbers}

    def chain(self, inst: int) -> list[int]:
        """The ids of the instance's events, oldest first."""
        ids: list[int] = []
        pos = self.last_pos[inst]
        while pos >= 0:
            ids.append(self.ev_ids[pos])
            pos = self.ev_prev[pos]
        return ids[::-1]


_INDEXES: OrderedDict[tuple[str, str], _Index] = OrderedDict()
_RUN_LOCKS: dict[tuple[str, str], threading.Lock] = {}  # one per run: who builds or extends its index
_LOCK = threading.Lock()  # guards the two dicts


def index(store: Store, run_id: str) -> tuple[_Index, replay.Bounds]:
    """The run's index, folded up to its newest event: this process's, the store's (:func:`_kept`) or
    folded now, then extended with the events since. One run's index is built by one thread at a time;
    other runs' reads go on meanwhile. A long fold is kept in the store for the next process."""
    row = store.run_row(run_id)
    definition = store.definition(row["workflow"], row["version"])
    key = (str(store.url), run_id)
    with _LOCK:
        run_lock = _RUN_LOCKS.setdefault(key, threading.Lock())
    with run_lock:
        b = replay.bounds(store, run_id)
        with _LOCK:
            found = _INDEXES.get(key)
        if found is not None and (found.last > b.last or found.order != list(definition.order)):
            found = None
        if found is None:
            found = _kept(store, run_id, definition, b)
        if found is not None and found.last < b.last:
            try:
                found.fold(replay.heads(store, run_id, found.last, b.last))
            except _Rebuild:
                found = None
        for tries_left in reversed(range(3)):
            if found is not None:
                break
            try:
                found = _Index(store, run_id, definition)
                b = found.bounds
            except _Rebuild:  # the run made instances while it was read: read it again
                if not tries_left:
                    raise NbflowError(f"run {run_id} changes too fast to be read as it was; try again") from None
        assert found is not None
        if found.position(found.last) - found.position(found.kept) >= PREPARE_EVENTS:
            _keep(store, found)
        with _LOCK:
            _INDEXES[key] = found
            _INDEXES.move_to_end(key)
            while len(_INDEXES) > RUNS_INDEXED:
                _INDEXES.popitem(last=False)
        return found, b


def _kept(store: Store, run_id: str, definition: StoredDefinition, b: replay.Bounds) -> _Index | None:
    """The run's index as the store keeps it, if it fits the run (None: fold it)."""
    saved = replay.saved_fold(store, run_id, FOLD_FORMAT)
    if saved is None:
        return None
    try:
        return _Index.unpacked(saved[1], run_id, definition, b)
    except (ValueError, KeyError, TypeError, IndexError, zlib.error):  # a damaged row is only a cache: fold again
        return None


def _keep(store: Store, ix: _Index) -> None:
    """Keep *ix* in the store for other processes. A cache: a store that cannot be written now (read-only,
    or another connection holds its write lock) keeps none, and the fold is done again where it is
    needed; this index does not try again until :data:`PREPARE_EVENTS` more events are folded."""
    replay.save_fold(store, ix.run_id, ix.last, FOLD_FORMAT, ix.packed(), time.time())
    ix.kept = ix.last  # kept or not, not tried again before as many events again


PREPARE_EVENTS = 20_000
"""A history at least this long is folded ahead of time by :func:`prepare` (a shorter one folds in
well under a tenth of a second when first asked)."""
_PREPARING: set[tuple[str, str]] = set()


def prepare(store: Store, run_id: str, events: int) -> bool:
    """Fold the history of *run_id* (*events* long) in a background thread, if it is long and not
    folded yet: what a history scrubber asks when it appears (``views.history_marks``), so that its
    first move costs what the others do. True when a fold was started."""
    key = (str(store.url), run_id)
    with _LOCK:
        if events < PREPARE_EVENTS or key in _INDEXES or key in _PREPARING:
            return False
        _PREPARING.add(key)

    def fold() -> None:
        try:
            index(store, run_id)
        except Exception:  # noqa: BLE001, S110 - ahead of time only: the read that needs it reports its error
            pass
        finally:
            with _LOCK:
                _PREPARING.discard(key)

    threading.Thread(target=fold, name=f"nbflow-fold-{run_id[:6]}", daemon=True).start()
    return True


def resolve(b: replay.Bounds, run_id: str, event: Any) -> int:
    """The id of *event*: an event id, a 1-based position in the history (any integer, a numpy one read
    from a frame too; not a bool), or an ``Event`` (its ``id``)."""
    value = getattr(event, "id", event)
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise NbflowError(f"an event is an event id, a position in the history (1..{b.total}) or an Event; "
                          f"got {event!r}")
    value = int(value)
    if b.low < value <= b.last:
        return value
    if 1 <= value <= b.total:
        return b.low + value
    if not b.total:
        raise NbflowError(f"run {run_id} has no events yet")
    raise NbflowError(f"run {run_id} has no event {value}: its history has {b.total} events, positions 1..{b.total} "
                      f"(ids {b.low + 1}..{b.last})")


_SAYS = re.compile(b"[" + b"".join(re.escape(bytes([_CODE[s]])) for s in ("failed", "retrying", "paused", "waiting"))
                   + b"]")
"""The status codes of the events after which an instance has a pause reason or an error."""
_ROWS_READ = 500
"""Instances whose rows of a moment one read asks for (a text filter's candidates)."""


@dataclass
class Moment:
    """Where a view of the past stands: the run's index, the event's id, its row, every status then."""

    index: _Index
    bounds: replay.Bounds
    event_id: int
    event: Mapping[str, Any]
    status: bytes = field(repr=False)
    store: Store = field(repr=False)

    @property
    def n(self) -> int:
        return self.event_id - self.bounds.low

    @property
    def run_status(self) -> str:
        return self.index.run_status_at(self.event_id)

    def counts(self) -> dict[str, dict[str, int]]:
        return self.index.counts(self.status)

    def numbers(self, step: str, statuses: Iterable[str] | None = None, text: str | None = None) -> list[int]:
        """The numbers of *step*'s instances that existed then, in item order, narrowed by their status
        then and by *text* found, in any case, in their key or in their pause reason or error message
        then (what a live page's filter matches)."""
        ix = self.index
        a = ix.start[step]
        names = status_filter(list(statuses), InstanceStatus) if statuses else None
        codes = {_CODE[s] for s in names} if names else None
        status = self.status
        found = [i for i in range(a, a + ix.size[step]) if status[i] and (codes is None or status[i] in codes)]
        if text:
            needle = text.casefold()
            keys = dict(enumerate(ix.keys()[step], a))
            hits = {i for i in found if needle in (keys.get(i) or "").casefold()}
            hits.update(self._said(step, [i for i in found if i not in hits], needle))
            found = [i for i in found if i in hits]
        return found

    def _said(self, step: str, numbers: Sequence[int], needle: str) -> set[int]:
        """Those of *numbers* whose pause reason or error message then has *needle* (casefolded). Only an
        instance with a ``failed``, ``retrying``, ``paused`` or ``waiting`` event up to the moment can have
        one (a byte scan of the index finds them); their rows then are read from their events."""
        ix = self.index
        wanted = set(numbers)
        if not wanted:
            return set()
        inst_of = ix.ev_inst
        candidates = sorted({inst_of[m.start()] for m in _SAYS.finditer(ix.ev_code, 0, ix.position(self.event_id))}
                            & wanted)
        out: set[int] = set()
        for c in range(0, len(candidates), _ROWS_READ):
            chunk = candidates[c:c + _ROWS_READ]
            by_item = {ix.items[i]: i for i in chunk}
            for r in rows_at(self.store, self, step, chunk):
                if any(needle in str(r[col] or "").casefold() for col in ("pause_reason", "error_message")):
                    out.add(by_item[r["item"]])
        return out


    def page(self, step: str, statuses: Iterable[str] | None, text: str | None, offset: int, limit: int,
             desc: bool = False) -> tuple[int, int, list[int]]:
        """``(total, offset, numbers)``: how many of *step*'s instances existed then (and matched, as
        :meth:`numbers` says), the offset of the page (the last page's when the matches end before
        *offset*) and the numbers of the page's *limit* instances, counted in the status bytes (no list of
        100,000 numbers for one page)."""
        if text:
            found = self.numbers(step, statuses, text)
            if desc:
                found.reverse()
            total = len(found)
            offset = (total - 1) // limit * limit if offset >= total and total else offset
            return total, offset, found[offset:offset + limit]
        ix = self.index
        a = ix.start[step]
        part = self.status[a:a + ix.size[step]]
        names = status_filter(list(statuses), InstanceStatus) if statuses else None
        codes = sorted({_CODE[s] for s in names}) if names else [c for c in range(1, len(_NAME)) if part.count(c)]
        total = sum(part.count(c) for c in codes)
        offset = (total - 1) // limit * limit if offset >= total and total else offset
        if not codes:
            return total, offset, []
        if total == len(part):  # every one matches: the page is a range
            picked = range(offset, min(offset + limit, total))
            return total, offset, [a + (len(part) - 1 - i if desc else i) for i in picked]
        pattern = re.compile(b"[" + b"".join(re.escape(bytes([c])) for c in codes) + b"]")
        hay = part[::-1] if desc else part
        hits = itertools.islice(pattern.finditer(hay), offset, offset + limit)
        return total, offset, [a + (len(part) - 1 - m.start() if desc else m.start()) for m in hits]


def moment(store: Store, run_id: str, event: Any) -> Moment:
    """The run right after *event* (see :func:`resolve`); an unknown event is refused naming the range."""
    ix, b = index(store, run_id)
    eid = resolve(b, run_id, event)
    row = replay.event_row(store, run_id, eid)
    if row is None:
        raise NbflowError(f"run {run_id} has no event {eid}")
    return Moment(ix, b, eid, row, ix.statuses_at(eid), store)


def _data(text: str | None) -> dict[str, Any]:
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def rows_at(store: Store, m: Moment, step: str, numbers: Sequence[int]) -> list[dict[str, Any]]:
    """The instance rows of *numbers* (of *step*) as they were at the moment: whole rows of the
    instances table, their state columns (and ``output``/``inputs``, encoded) replaced when the
    instance changed after it. In the order of *numbers*. The events newer than the index (the run went
    on since it was folded, or another thread is folding them) are read too: the live rows show them."""
    ix = m.index
    folded = ix.last
    items = [ix.items[i] for i in numbers]
    live = replay.instance_rows_at(store, m.index.run_id, step, items)
    chains = {i: ix.chain(i) for i in numbers}
    events = replay.events_by_id(store, [eid for ids in chains.values() for eid in ids])
    newer: dict[int, list[Mapping[str, Any]]] = {}
    for e in store.event_rows(ix.run_id, folded, step=step, kinds=_ROW_KINDS):
        n = ix.find(step, e["key"])
        if n in chains and int(e["id"]) not in events:
            newer.setdefault(n, []).append(e)
    out = []
    for i, item in zip(numbers, items):
        r = live.get(item)
        if r is None:
            continue
        evs = [events[e] for e in chains[i] if e in events] + newer.get(i, [])
        before = [e for e in evs if e["id"] <= m.event_id]
        after = [e for e in evs if e["id"] > m.event_id]
        out.append(_row_at(store, ix, r, before, after, m.status[i], ix.copies[i]))
    return out


_ROW_KINDS = (*STATE_KINDS, "output_changed", "inputs_changed")
"""The kinds of event after a moment that :func:`_row_at` reads (``started`` is one of the state kinds)."""


def _row_at(store: Store, ix: _Index, live: Mapping[str, Any], before: list[Mapping[str, Any]],
            after: list[Mapping[str, Any]], code: int, copied: int) -> dict[str, Any]:
    """One instance's row at the moment from its events before it (and the old values of the edits after)."""
    row = dict(live)
    state_after = [e for e in after if e["kind"] in STATE_KINDS or e["kind"] == "started"]
    if state_after:
        row.update(_replayed(ix, live, before, code, copied))
    output_ok = row["status"] in ("succeeded", "skipped") or (
        row["status"] == "paused" and PauseReason.parse(row["pause_reason"]).when == When.AFTER.value)
    # the first re-run or output edit after the moment decides: a re-run's output (edited or not) is not
    # the moment's; an edit's ``old`` is
    decides = next((e for e in after if e["kind"] in ("started", "output_changed")), None)
    if not output_ok or (decides is not None and decides["kind"] == "started"):
        row["output_codec"], row["output"] = None, None
    elif decides is not None:
        enc = codec.encode(_data(decides["data"]).get("old"), "an output as it was")  # in memory: no file
        row["output_codec"], row["output"] = enc.codec, enc.data
    edits = [e for e in after if e["kind"] == "inputs_changed"]
    if edits:
        over = dict(store.decode(live["inputs_codec"], live["inputs"]) or {})
        for e in reversed(edits):  # the first edit after the moment has the value of the moment
            over.update(_data(e["data"]).get("old") or {})
        enc = codec.encode(over, "inputs as they were")
        row["inputs_codec"], row["inputs"] = enc.codec, enc.data
    return row


def _replayed(ix: _Index, live: Mapping[str, Any], before: list[Mapping[str, Any]], code: int,
              copied: int) -> dict[str, Any]:
    """The state columns of an instance after the events *before* (its status then is *code*)."""
    status = _NAME[code] or "pending"
    attempt = 0
    started_at = finished_at = next_at = deadline = None
    pause_reason: str | None = None
    held_by: list[Any] = []
    error: str | None = None
    traceback = ""
    for e in before:
        data = _data(e["data"])
        kind = e["kind"]
        if isinstance(data.get("attempt"), int):
            attempt = data["attempt"]
        if kind == "started":
            started_at, finished_at, next_at = e["ts"], None, None
        if kind in _TERMINAL_KINDS:
            finished_at = e["ts"]
        if kind in _ERROR_KINDS:
            error = data.get("error") or error
            traceback = data.get("traceback") or ""
        elif kind in _OK_KINDS:
            error = None
        if kind == "retrying":
            next_at = e["ts"] + float(data.get("delay") or 0)
        if kind == "paused":
            pause_reason, held_by = data.get("reason"), list(data.get("breakpoints") or [])
            if pause_reason and PauseReason.parse(pause_reason).when != When.BEFORE.value:
                finished_at = e["ts"]
        elif kind == "waiting":
            name = str(data.get("name") or "")
            pause_reason = APPROVAL if ix.kinds.get(live["step"]) == StepKind.APPROVAL else waiting_for(name)
            deadline = data.get("deadline")
        elif kind in STATE_KINDS:
            pause_reason, held_by = None, []
    if not before and code and code == copied:
        return {}  # copied from the parent run: as it is
    err_type = err_msg = None
    if error is not None:
        err_type, _, err_msg = str(error).partition(": ")
        if live["error_type"] == err_type and (live["error_message"] or "") == err_msg:
            traceback = live["error_traceback"] or traceback
    return {
        "status": status, "attempt": attempt, "pause_reason": pause_reason if status in ("paused", "waiting") else None,
        "held_by": json.dumps(held_by) if status == "paused" and held_by else None,
        "error_type": err_type, "error_message": err_msg, "error_traceback": traceback if err_type else None,
        "started_at": started_at, "finished_at": finished_at if status not in ("running", "ready", "pending") else None,
        "next_attempt_at": next_at if status == "retrying" else None,
        "deadline": deadline if status == "waiting" else None,
    }


View = Callable[[ValueReader, Mapping[str, Any]], "InstanceView"]
"""How ``Run`` shows an instance row (``nbflow.run``): what :class:`RunAt` returns its rows as."""


class RunAt:
    """A read-only view of a run as it was right after one of its events (``run.at(event)``): its
    ``status``, ``counts()``, ``instances()`` and ``instance()`` as they were then. Instances that did
    not exist yet (a foreach's items before it expanded) are absent; an instance that had not yet
    succeeded has no output; an output or inputs changed later show their values of the moment."""

    def __init__(self, store: Store, run_id: str, event: Any, view: View,
                 make_event: Callable[[Mapping[str, Any], Any], Event]) -> None:
        self.store = store
        self.run_id = run_id
        self._m = moment(store, run_id, event)
        self._view = view
        e = self._m.event
        self.event: Event = make_event(e, self._typed_key(e["step"], e["key"]))
        """The event it stands at (its ``key`` as the key function returned it)."""

    def __repr__(self) -> str:
        return (f"<nbflow.RunAt {self.run_id} at event {self._m.n} of {self._m.bounds.total} "
                f"({self.event.kind}): {self.status}>")

    @property
    def n(self) -> int:
        """The event's 1-based position in the history."""
        return self._m.n

    @property
    def status(self) -> RunStatus:
        """The run's status right after the event (from the run-level ``run_*`` events before it)."""
        return RunStatus(self._m.run_status)

    def counts(self) -> dict[str, int]:
        """``{status: n}`` over the run's instances then (every status, 0 included)."""
        total = dict.fromkeys(STATUSES, 0)
        for per in self._m.counts().values():
            for s, n in per.items():
                total[s] += n
        return total

    def _typed_key(self, step: str | None, key: str | None) -> Any:
        ix = self._m.index
        number = ix.find(step, key) if step is not None and key is not None else None
        if number is None:
            return key
        row = replay.instance_rows_at(self.store, self.run_id, str(step), [ix.items[number]]).get(ix.items[number])
        return key if row is None else key_value(key, row["key_codec"], row["key_value"])

    def _reader(self) -> ValueReader:
        return ValueReader(self.store, self.store.run_row(self.run_id))

    def instances(self, step: str | None = None, status: str | Iterable[str] | None = None) -> list[InstanceView]:
        """The instances that existed then, in (DAG order, item order), as they were; *status* narrows
        by their status then."""
        ix = self._m.index
        if step is not None and step not in ix.order:
            raise NbflowError(f"run {self.run_id} has no step {step!r}; steps are: {', '.join(ix.order)}")
        wanted = status_filter(status, InstanceStatus)
        reader = self._reader()
        out: list[InstanceView] = []
        for s in ix.order if step is None else [step]:
            numbers = self._m.numbers(s, wanted)
            out.extend(self._view(reader, r) for r in rows_at(self.store, self._m, s, numbers))
        return out

    def instance(self, step: str, key: Any = None) -> InstanceView:
        """The instance of *step* whose key has the text of *key*, as it was then."""
        ix = self._m.index
        if step not in ix.order:
            raise NbflowError(f"run {self.run_id} has no step {step!r}; steps are: {', '.join(ix.order)}")
        k = key_text(key)
        number = ix.find(step, k)
        if number is None or not self._m.status[number]:
            raise NbflowError(f"step {step!r} of run {self.run_id} had no instance with key {k} at event "
                              f"{self._m.n} ({_label(step, k)} did not exist yet)")
        rows = rows_at(self.store, self._m, step, [number])
        return self._view(self._reader(), rows[0])


__all__ = ["PREPARE_EVENTS", "RUN_KINDS", "SNAPSHOT_EVERY", "STATE_KINDS", "Moment", "RunAt", "index", "moment",
           "prepare", "resolve", "rows_at"]
