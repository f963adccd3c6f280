"""Breakpoints: records, parsing of ``step[:key]``, keys as stored, condition compile and evaluation.
``wf.breakpoints`` (workflow-scoped, persisted, through the command path) is in :mod:`nbflow.workflow`."""
from __future__ import annotations

import builtins
from collections.abc import Mapping
from dataclasses import dataclass
from types import CodeType
from typing import Any

from ._compat import StrEnum
from ._jsontext import utf8_text
from .definition import StepSpec, StoredStep
from .errors import CommandRefused, DefinitionError, SerializationError
from .states import StepKind, When
from .store import codec
from .verbs import Refusal

_SAFE_BUILTINS = {"__builtins__": builtins}


class BreakpointRefused(CommandRefused, DefinitionError):
    """A breakpoint refused by the checks every surface shares (``code``: a :class:`nbflow.verbs.Refusal`
    value); nothing was written. Also a :class:`DefinitionError`, as ``wf.breakpoints`` and
    ``wf.run(breakpoints=...)`` have always raised."""


class Action(StrEnum):
    """What a breakpoint does to an instance it catches."""

    PAUSE = "pause"
    LOG = "log"  # a logpoint: records the value of its expression, never pauses


@dataclass(frozen=True)
class Breakpoint:
    """A breakpoint on a step (optionally one item key). ``run_id`` None means every run of the workflow.
    ``action="log"`` makes it a logpoint (``expression`` is what it records); ``hit_count=N`` lets the
    first N-1 instances of a run that reach it (and match its condition) pass. ``one_shot``: a step
    over's, removed once it caught what it was for (``origin`` says which step over)."""

    step: str
    key: str | None = None
    when: When = When.BEFORE
    condition: str | None = None
    id: int | None = None
    run_id: str | None = None
    workflow: str | None = None
    created_by: str | None = None
    action: Action = Action.PAUSE
    expression: str | None = None
    hit_count: int | None = None
    one_shot: bool = False
    origin: str | None = None

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
            "action": str(self.action),
            "expression": self.expression,
            "hit_count": self.hit_count,
            "one_shot": self.one_shot,
            "origin": self.origin,
        }

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Breakpoint:
        return cls(
            step=row["step"], key=row["key"], when=When(row["when"]), condition=row["condition"], id=row["id"],
            run_id=row["run_id"], workflow=row["workflow"], created_by=row["created_by"],
            action=Action(row["action"] or Action.PAUSE), expression=row["expression"], hit_count=row["hit_count"],
            one_shot=bool(row["one_shot"]), origin=row["origin"],
        )

    def row(self) -> dict[str, Any]:
        """The columns of the breakpoints table this record fills (but its id, scope and creation)."""
        return {"step": self.step, "key": self.key, "when": str(self.when), "condition": self.condition,
                "action": str(self.action), "expression": self.expression, "hit_count": self.hit_count,
                "one_shot": int(self.one_shot), "origin": self.origin}


def key_text(key: Any) -> str | None:
    """Keys are matched by their text: ``enrich:5`` matches the key ``5``, and ``caf\\udce9.txt`` the key
    ``"caf\udce9.txt"``."""
    return None if key is None else utf8_text(str(key))


def encode_key(key: Any) -> tuple[str, tuple[str, bytes] | None]:
    """A foreach key as stored: its text (what addresses it, valid UTF-8) and its value as (codec, bytes),
    None when the text is the key (a str that is valid UTF-8). JSON when the key round-trips as JSON, else
    pickle (a tuple stays a tuple, a str with a lone surrogate stays that str); a key neither can store
    keeps only its text."""
    tp = type(key)
    if tp is str:
        text = utf8_text(key)
        if text is key:
            return key, None
        enc = codec.encode(key)  # pickle: the JSON text of a lone surrogate is not UTF-8
        return text, (enc.codec, enc.data)
    if tp is int:
        text = int.__repr__(key)
        return text, (codec.JSON, text.encode())
    text = utf8_text(str(key))
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
        raise BreakpointRefused(f"bad breakpoint target {text!r}: write STEP or STEP:KEY", Refusal.INVALID)
    return step, (key if sep else None)


def parse_when(when: Any) -> When:
    """``before``, ``after`` or ``error``; anything else is refused (``invalid``)."""
    try:
        return When(when)
    except ValueError:
        raise BreakpointRefused(f"breakpoint when={when!r}: use 'before', 'after' or 'error'",
                                Refusal.INVALID) from None


def json_key(key: Any) -> str | None:
    """A key as a JSON surface sends it (a string, an integer or null), as its text."""
    if key is not None and (isinstance(key, bool) or not isinstance(key, (str, int))):
        raise BreakpointRefused("key must be a string, an integer or null", Refusal.INVALID)
    return key_text(key)


def check_condition(condition: Any) -> str | None:
    """The condition if it is null or a Python expression that compiles; else refused (``invalid``)."""
    if condition is not None and not isinstance(condition, str):
        raise BreakpointRefused("condition must be a Python expression (a string) or null", Refusal.INVALID)
    compile_condition(condition)
    return condition


def compile_condition(condition: str | None) -> CodeType | None:
    """Compile a condition expression; a syntax error is refused with the expression named."""
    return _compile(condition, "breakpoint condition", "a breakpoint condition", "item['x'] > 3",
                    "write an expression over the step's inputs, e.g. \"item['country'] == 'FR'\"")


def _compile(text: str | None, what: str, article: str, example: str, hint: str) -> CodeType | None:
    """Compile an expression a breakpoint evaluates (*what*: named in errors and as the code's file name);
    None stays None, anything but a non-empty expression that compiles is refused (``invalid``)."""
    if text is None:
        return None
    if not isinstance(text, str) or not text.strip():
        raise BreakpointRefused(f"{article} must be a non-empty Python expression, e.g. \"{example}\"",
                                Refusal.INVALID)
    try:
        return compile(text, f"<{what}>", "eval")
    except SyntaxError as exc:
        raise BreakpointRefused(f"{what} {text!r} is not a valid Python expression ({exc.msg}); {hint}",
                                Refusal.INVALID) from None


def parse_action(action: Any) -> Action:
    """``pause`` or ``log``; anything else is refused (``invalid``)."""
    try:
        return Action(action)
    except ValueError:
        raise BreakpointRefused(f"breakpoint action={action!r}: use 'pause' (the default) or 'log' (a logpoint)",
                                Refusal.INVALID) from None


def compile_expression(expression: str | None) -> CodeType | None:
    """Compile a logpoint's expression; refused (``invalid``) when it is not a Python expression."""
    return _compile(expression, "logpoint expression", "a logpoint's expression", "item['x']",
                    "write an expression over the step's inputs (and output after the body), e.g. \"item['x']\"")


def check_action(action: Any, expression: Any, hit_count: Any) -> tuple[Action, str | None, int | None]:
    """A breakpoint's action, logpoint expression and hit count, checked alike on every surface: a log
    needs an expression that compiles, a pause takes none, a hit count is an integer of at least 1."""
    act = parse_action(action)
    if act is Action.LOG and expression is None:
        raise BreakpointRefused("a logpoint (action='log') needs the expression it records, e.g. "
                                "expression=\"item['x']\"", Refusal.INVALID)
    if act is Action.PAUSE and expression is not None:
        raise BreakpointRefused("expression= is what a logpoint records: pass action='log' with it, or leave it out "
                                "to pause", Refusal.INVALID)
    compile_expression(expression)
    if hit_count is not None and (isinstance(hit_count, bool) or not isinstance(hit_count, int) or hit_count < 1):
        raise BreakpointRefused(f"hit_count={hit_count!r}: give a whole number of at least 1 (the breakpoint acts "
                                "from that hit on)", Refusal.INVALID)
    return act, expression, hit_count


def evaluate(code: CodeType, inputs: Mapping[str, Any]) -> bool:
    """Evaluate a compiled condition over an instance's inputs (exceptions propagate to the caller)."""
    return bool(eval(code, namespace(inputs)))  # noqa: S307 - the store is a trust boundary


def namespace(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """What a condition or a logpoint's expression is evaluated in: the inputs as its *globals* (with the
    builtins), so a generator expression or comprehension in it sees them too (its own scope does not
    see an eval's locals)."""
    return {**inputs, "__builtins__": builtins}


def value_of(code: CodeType, ns: dict[str, Any]) -> Any:
    """Evaluate a compiled logpoint expression in *ns* (:func:`namespace`; exceptions propagate)."""
    return eval(code, ns)  # noqa: S307 - the store is a trust boundary


def normalize(spec: Any, *, run_id: str | None = None) -> Breakpoint:
    """A breakpoint from ``"step"``, ``"step:key"`` or a :class:`Breakpoint`."""
    if isinstance(spec, Breakpoint):
        action, expression, hit_count = check_action(spec.action, spec.expression, spec.hit_count)
        return Breakpoint(spec.step, key_text(spec.key), parse_when(str(spec.when)), spec.condition, run_id=run_id,
                          action=action, expression=expression, hit_count=hit_count)
    if isinstance(spec, str):
        step, key = parse_target(spec)
        return Breakpoint(step, key, run_id=run_id)
    raise DefinitionError(f"a breakpoint is 'step', 'step:key' or nbflow.Breakpoint(...), got {spec!r}")


def validate(bp: Breakpoint, steps: Mapping[str, StepSpec | StoredStep]) -> None:
    """The checks every surface makes (the Python API, ``wf.run(breakpoints=...)``, the CLI, REST and the
    debugger view): refuse a breakpoint on an unknown step (``not_found``), a bad `when`, a condition that
    does not compile, or a key on a step that is not a foreach (``invalid``). *steps*: the workflow's
    steps, as :class:`~nbflow.workflow.StepSpec` or as a stored definition's
    :class:`~nbflow.definition.StoredStep`."""
    if bp.step not in steps:
        raise BreakpointRefused(
            f"no step {bp.step!r} to break on; steps are: {', '.join(sorted(steps)) or 'none'}", Refusal.NOT_FOUND
        )
    parse_when(str(bp.when))
    compile_condition(bp.condition)
    check_action(bp.action, bp.expression, bp.hit_count)
    kind = str(steps[bp.step].kind)
    if bp.key is not None and kind != StepKind.FOREACH:
        raise BreakpointRefused(
            f"step {bp.step!r} is a {kind} step with a single instance; a key only narrows a foreach step: "
            f"write {bp.step}", Refusal.INVALID
        )
