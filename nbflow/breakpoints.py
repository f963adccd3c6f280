"""Breakpoints: records, parsing of ``step[:key]``, keys as stored, condition compile and evaluation.
``wf.breakpoints`` (workflow-scoped, persisted, through the command path) is in :mod:`nbflow.workflow`."""
from __future__ import annotations

import builtins
from collections.abc import Mapping
from dataclasses import dataclass
from types import CodeType
from typing import Any

from .errors import DefinitionError, SerializationError
from .states import When
from .store import codec

_SAFE_BUILTINS = {"__builtins__": builtins}


@dataclass(frozen=True)
class Breakpoint:
    """A breakpoint on a step (optionally one item key). ``run_id`` None means every run of the workflow."""

    step: str
    key: str | None = None
    when: When = When.BEFORE
    condition: str | None = None
    id: int | None = None
    run_id: str | None = None
    workflow: str | None = None
    created_by: str | None = None

    @property
    def scope(self) -> str:
        return "workflow" if self.run_id is None else "run"

    def matches(self, step: str, key: str | None, when: str) -> bool:
        return self.step == step and self.when == when and (self.key is None or self.key == key)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "step": self.step,
            "key": self.key,
            "when": str(self.when),
            "condition": self.condition,
            "scope": self.scope,
            "run_id": self.run_id,
            "created_by": self.created_by,
        }

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Breakpoint:
        return cls(
            step=row["step"], key=row["key"], when=When(row["when"]), condition=row["condition"], id=row["id"],
            run_id=row["run_id"], workflow=row["workflow"], created_by=row["created_by"],
        )


def key_text(key: Any) -> str | None:
    """Keys are matched by their text: ``enrich:5`` matches the key ``5``, and ``caf\\udce9.txt`` the key
    ``"caf\udce9.txt"``."""
    return None if key is None else codec.utf8_text(str(key))


def encode_key(key: Any) -> tuple[str, tuple[str, bytes] | None]:
    """A foreach key as stored: its text (what addresses it, valid UTF-8) and its value as (codec, bytes),
    None when the text is the key (a str that is valid UTF-8). JSON when the key round-trips as JSON, else
    pickle (a tuple stays a tuple, a str with a lone surrogate stays that str); a key neither can store
    keeps only its text."""
    tp = type(key)
    if tp is str:
        text = codec.utf8_text(key)
        if text is key:
            return key, None
        enc = codec.encode(key)  # pickle: the JSON text of a lone surrogate is not UTF-8
        return text, (enc.codec, enc.data)
    if tp is int:
        text = int.__repr__(key)
        return text, (codec.JSON, text.encode())
    text = codec.utf8_text(str(key))
    try:
        enc = codec.encode(key)
    except SerializationError:
        return text, None
    return text, (enc.codec, enc.data)


def key_value(text: str | None, codec_name: str | None, data: bytes | None) -> Any:
    """The key an instance row stores (``key``, ``key_codec``, ``key_value``) as the key function returned
    it; its text when it has no stored value (a str key, a run recorded before keys kept their type) or
    when the value cannot be loaded here (a pickled key whose class this process cannot import)."""
    if codec_name is None:
        return text
    if codec_name == codec.JSON and data is not None:
        try:
            return int(data)  # the commonest key, and the JSON text of an int is its digits: 4x faster than json
        except ValueError:
            pass
    try:
        return codec.decode(codec_name, data)
    except Exception:  # noqa: BLE001 - the text still names the instance
        return text


def parse_target(text: str) -> tuple[str, str | None]:
    """``"step"`` -> (step, None); ``"step:key"`` -> (step, "key")."""
    step, sep, key = text.partition(":")
    if not step:
        raise DefinitionError(f"bad breakpoint target {text!r}: write STEP or STEP:KEY")
    return step, (key if sep else None)


def compile_condition(condition: str | None) -> CodeType | None:
    """Compile a condition expression; a syntax error is refused with the expression named."""
    if condition is None:
        return None
    if not isinstance(condition, str) or not condition.strip():
        raise DefinitionError("a breakpoint condition must be a non-empty Python expression, e.g. \"item['x'] > 3\"")
    try:
        return compile(condition, "<breakpoint condition>", "eval")
    except SyntaxError as exc:
        raise DefinitionError(
            f"breakpoint condition {condition!r} is not a valid Python expression ({exc.msg}); "
            "write an expression over the step's inputs, e.g. \"item['country'] == 'FR'\""
        ) from None


def evaluate(code: CodeType, inputs: Mapping[str, Any]) -> bool:
    """Evaluate a compiled condition over an instance's inputs (exceptions propagate to the caller)."""
    return bool(eval(code, dict(_SAFE_BUILTINS), dict(inputs)))  # noqa: S307 - the store is a trust boundary


def normalize(spec: Any, *, run_id: str | None = None) -> Breakpoint:
    """A breakpoint from ``"step"``, ``"step:key"`` or a :class:`Breakpoint`."""
    if isinstance(spec, Breakpoint):
        return Breakpoint(spec.step, key_text(spec.key), When(spec.when), spec.condition, run_id=run_id)
    if isinstance(spec, str):
        step, key = parse_target(spec)
        return Breakpoint(step, key, run_id=run_id)
    raise DefinitionError(f"a breakpoint is 'step', 'step:key' or nbflow.Breakpoint(...), got {spec!r}")


def validate(bp: Breakpoint, steps: Mapping[str, Any]) -> None:
    """Refuse a breakpoint on an unknown step, a bad `when`, or a condition that does not compile."""
    if bp.step not in steps:
        raise DefinitionError(
            f"no step {bp.step!r} to break on; steps are: {', '.join(sorted(steps)) or 'none'}"
        )
    if str(bp.when) not in {w.value for w in When}:
        raise DefinitionError(f"breakpoint when={bp.when!r}: use 'before', 'after' or 'error'")
    compile_condition(bp.condition)
