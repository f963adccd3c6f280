"""Triage of many failed instances: the signature that groups errors of one cause (the exception
type, its message with the values masked, the failing line), and the expressions a person writes
over an instance's inputs (watch columns, bulk edits). Pure: it imports nothing of nbflow's layers."""
from __future__ import annotations

import builtins
import hashlib
import re
from collections.abc import Mapping
from typing import Any

from .errors import NbflowError

SIGNATURE_CHARS = 500
"""A signature's longest text (the store keeps it per failed instance)."""

_QUOTED = re.compile(r"""'(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*\"""")
_NUMBER = re.compile(r"(?<![A-Za-z_\d.])[-+]?\d+(?:[.,]\d+)*(?:[eE][-+]?\d+)?")
_HEX = re.compile(  # 0x..., or 8+ hex digits with a letter and a digit among them
    r"(?<![0-9a-zA-Z])(?:0x[0-9a-fA-F]+|(?=[0-9a-fA-F]*[a-fA-F])(?=[0-9a-fA-F]*\d)[0-9a-fA-F]{8,})(?![0-9a-zA-Z])"
)
_SPACE = re.compile(r"\s+")
_FRAME = re.compile(r'^\s*File "(?P<file>[^"]*)", line (?P<line>\d+), in (?P<func>.*)$')


_DIGITS = re.compile(r"\d+")
_LETTERS = re.compile(r"[^\W\d_]+")


NAME_CHARS = 40
"""A quoted Python name up to this long may be kept as it is (see :func:`_shape`)."""

_NAMED_BY = re.compile(r"(?:attribute|name|module|not|type)\s*$")  # 'x' after these names code, not data


def _shape(m: re.Match[str], text: str, code: str) -> str:
    """A quoted value as its shape: runs of digits become ``9``, runs of letters ``a``, the rest stays
    (``'51,41'`` -> ``'9,9'``, ``'6O.66'`` -> ``'9a.9'``): values of one cause keep one shape. A quoted
    Python name that names code stays as it is: it is the cause, not the data. It names code when the
    message says so (``has no attribute 'strip'``, ``not 'NoneType'``, ``'int' object ...``) or when
    the failing line's source holds it (``KeyError: 'currency'`` from ``item["currency"]``); a name
    that is data (``KeyError: 'DE'`` from ``RATES[item["country"]]``, ``'abc'``) is masked."""
    inner = m.group(0)[1:-1]
    if inner.isidentifier() and len(inner) <= NAME_CHARS and (
        _NAMED_BY.search(text[:m.start()]) or text[m.end():].startswith(" object")
        or re.search(rf"(?<![\w]){re.escape(inner)}(?![\w])", code)
    ):
        return f"'{inner}'"
    inner = _HEX.sub("…", inner[:60])
    return "'" + _LETTERS.sub("a", _DIGITS.sub("9", inner)) + "'"


def mask_message(message: str, code: str = "") -> str:
    """*message* with what differs from one item to the next masked: a quoted value becomes its shape
    unless it is a Python name of the code (:func:`_shape`; *code*: the failing line's source), other
    numbers ``N``, long hex ids ``…``; whitespace is collapsed. Errors of one cause then read alike:
    ``could not convert string to float: '51,41'`` and ``... '7,5'`` both read ``could not convert
    string to float: '9,9'``, apart from ``... '6O.66'`` (``'9a.9'``)."""
    text = message or ""
    parts = []
    last = 0
    for m in _QUOTED.finditer(text):  # numbers are masked outside quotes only: a shape keeps its 9s
        parts.append(_NUMBER.sub("N", _HEX.sub("…", text[last:m.start()])))
        parts.append(_shape(m, text, code))
        last = m.end()
    parts.append(_NUMBER.sub("N", _HEX.sub("…", text[last:])))
    return _SPACE.sub(" ", "".join(parts)).strip()


def failing_line(traceback: str) -> str:
    """Where the error was raised, from a formatted traceback: the innermost frame's function and
    source line (``parse: return float(item['amount'])``), which stay the same when a cell is run
    again in another kernel (its file name and line number do not). Empty when there is no frame."""
    lines = (traceback or "").splitlines()
    for i in range(len(lines) - 1, -1, -1):
        m = _FRAME.match(lines[i])
        if m is None:
            continue
        source = ""
        for nxt in lines[i + 1:i + 3]:
            s = nxt.strip()
            if s and not s.startswith(("^", "~")) and not _FRAME.match(nxt):
                source = s
                break
        return f"{m['func']}: {source}" if source else f"{m['func']} (line {m['line']})"
    return ""


def error_signature(type_: str, message: str, traceback: str) -> str:
    """What groups errors of one cause: ``TYPE: masked message @ failing line`` (at most
    :data:`SIGNATURE_CHARS`)."""
    where = failing_line(traceback)[:SIGNATURE_CHARS // 2]
    tail = f" @ {where}" if where else ""
    masked = mask_message(message, where.partition(": ")[2])
    return f"{type_}: {masked}"[:SIGNATURE_CHARS - len(tail)] + tail  # the line is always kept


def group_id(signature: str) -> str:
    """A short, stable name for an error group (the CLI's ``--group``): 8 hex digits of its signature."""
    return hashlib.sha1(signature.encode("utf-8"), usedforsecurity=False).hexdigest()[:8]


_BUILTINS = {"__builtins__": builtins}


class Expression:
    """A Python expression over an instance's inputs by name (``item``, upstream step names,
    parameters) and, where it finished, its ``output``: a watch column, or a bulk edit's new value.
    It is evaluated in the process that reads the store, which the person already trusts with code."""

    def __init__(self, text: Any, what: str = "expression") -> None:
        if not isinstance(text, str) or not text.strip():
            raise NbflowError(f"the {what} must be a Python expression, e.g. item[\"amount\"]")
        self.text = text.strip()
        try:
            self.code = compile(self.text, f"<{what}>", "eval")
        except SyntaxError as exc:
            raise NbflowError(
                f"{what} {self.text!r} is not a valid Python expression ({exc.msg}); write one over the "
                "instance's inputs by name, e.g. {**item, \"amount\": item[\"amount\"].replace(\",\", \".\")}"
            ) from None

    def evaluate(self, names: Mapping[str, Any]) -> Any:
        """The expression's value with *names* in scope (its exceptions propagate)."""
        # The names as globals: a generator expression or a comprehension in it sees them (not an eval's locals).
        return eval(self.code, {**names, **_BUILTINS})  # noqa: S307 - see the class docstring

    def __repr__(self) -> str:
        return f"Expression({self.text!r})"


__all__ = ["SIGNATURE_CHARS", "Expression", "error_signature", "failing_line", "group_id", "mask_message"]
