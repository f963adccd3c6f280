"""JSON text of exactly JSON's types, and the UTF-8 checks that go with it: the one place that
decides whether a value is stored, shown or sent as JSON. Pure: below the store and every surface."""
from __future__ import annotations

import json
from typing import Any

_encode_str = json.encoder.encode_basestring  # ensure_ascii=False: no escaping beyond JSON's own
_COMPACT = json.JSONEncoder(separators=(",", ":"), allow_nan=False, ensure_ascii=False).encode
"""json.dumps with these options, without building an encoder per call (stateless, thread-safe)."""


_LEAVES = frozenset({str, int, float, bool, type(None)})


def _plain(value: Any) -> bool:
    """Only JSON's own types, exactly: a subclass (defaultdict, Counter, IntEnum, numpy.float64)
    would be written as JSON and read back as the base type, so it does not round-trip."""
    tp = type(value)
    if tp in _LEAVES:
        return True
    if tp is list:
        return all(type(v) in _LEAVES or _plain(v) for v in value)
    if tp is dict:
        return all(type(k) is str and (type(v) in _LEAVES or _plain(v)) for k, v in value.items())
    return False


def has_lone_surrogate(text: str) -> bool:
    """Whether *text* cannot be written as UTF-8: it holds a lone surrogate (e.g. an undecodable file
    name from ``os.listdir``), which is Python text but not Unicode."""
    if text.isascii():
        return False
    try:
        text.encode()
    except UnicodeEncodeError:
        return True
    return False


def utf8_text(text: str) -> str:
    """*text* as valid UTF-8: a lone surrogate backslash-escaped (``caf\\udce9.txt``), so the store, JSON and
    addresses can carry it; *text* itself when it is valid already."""
    return text.encode("utf-8", "backslashreplace").decode() if has_lone_surrogate(text) else text


def to_json_text(value: Any) -> str | None:
    """The compact JSON text of *value* when it decodes back to an equal value of the same types and
    is valid UTF-8 (no lone surrogate), else None."""
    text = json_text(value)
    return None if text is None or has_lone_surrogate(text) else text


def json_text(value: Any) -> str | None:
    """:func:`to_json_text` without the UTF-8 check (:func:`encode` makes the bytes anyway)."""
    tp = type(value)
    try:
        # The commonest outputs, as json.dumps writes them; they always round-trip.
        if tp is int:
            return int.__repr__(value)  # ValueError past Python's digit limit
        if tp is str:
            return _encode_str(value)
        if value is None or tp is bool:
            return "null" if value is None else "true" if value else "false"
        if not _plain(value):
            return None
        # Plain data round-trips, except what the encoder refuses: NaN and infinities, a cycle,
        # an int past Python's digit limit.
        return _COMPACT(value)
    except (TypeError, ValueError, RecursionError):
        return None
