"""The operator verbs, each declared once: what it targets, the instance states that accept it, its
payload, the question a surface asks before it, and the codes it can be refused with. The engine
judges commands with this table; the CLI, the REST handlers, the widget and the sidebar are built
from it. Pure data: it imports nothing of nbflow but the states."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from ._compat import StrEnum
from .states import InstanceStatus as S
from .states import PauseReason


class Refusal(StrEnum):
    """Why a command was refused; the REST API maps each to an HTTP status (:data:`HTTP_STATUS`)."""

    INVALID = "invalid"  # the request itself is wrong: an unknown verb, a bad payload
    NOT_FOUND = "not_found"  # no such run, step, key or breakpoint
    FINISHED = "finished"  # the run is finished; nothing of it can change
    STATE = "state"  # the instance's state does not accept the verb now
    QUEUED = "queued"  # a command queued earlier will change the instance first


HTTP_STATUS: dict[Refusal, int] = {
    Refusal.INVALID: 400, Refusal.NOT_FOUND: 404, Refusal.FINISHED: 409, Refusal.STATE: 409,
    Refusal.QUEUED: 409,
}


class CommandState(StrEnum):
    """What became of a command (``CommandResult.state``)."""

    APPLIED = "applied"  # the owner applied it
    QUEUED = "queued"  # written; no owner runs now (the next owner applies it)
    SENT = "sent"  # written for a live owner in another process; not yet known to be applied
    REFUSED = "refused"  # the owner refused it; nothing changed
    DUPLICATE = "duplicate"  # a repeat of one already applied (a signal delivered twice)


class SignalOutcome(StrEnum):
    """What an applied signal delivery came to (the CLI's and REST's ``outcome``)."""

    DELIVERED = "delivered"  # the waiting instance received it and went on
    DUPLICATE = "duplicate"  # a repeat of a delivery already received: ignored
    RECEIVED = "received"  # kept for a step that has not started waiting yet


SIGNAL_MESSAGES: dict[SignalOutcome, str] = {
    SignalOutcome.DUPLICATE: "duplicate delivery: already received, ignored",
    SignalOutcome.RECEIVED: "received; the step will find it when it waits",
}
"""The owner's answer text for each outcome but delivered (written by the owner, read back by
:func:`signal_outcome`: both sides use this one table)."""


def signal_outcome(message: str | None) -> SignalOutcome:
    """The outcome of an applied signal from the owner's answer text."""
    for outcome, text in SIGNAL_MESSAGES.items():
        if message == text:
            return outcome
    return SignalOutcome.DELIVERED


class Target(StrEnum):
    """What a verb names."""

    INSTANCES = "instances"  # a step, with or without keys
    STEP = "step"  # one step (approvals: the gate itself)
    RUN = "run"  # the whole run
    TOKEN = "token"  # noqa: S105 - not a secret: the waiting instance a signed token names
    BREAKPOINT = "breakpoint"  # a breakpoint of a run or a workflow


def state_tag(status: str, pause_reason: str | None) -> str:
    """The state a verb is judged against: the status, and for a paused or waiting instance what
    holds it (``paused:before``, ``paused:after``, ``paused:error``, ``waiting:approval``, ``waiting:signal``)."""
    if status == S.PAUSED:
        return f"paused:{PauseReason.parse(pause_reason).when}"
    if status == S.WAITING:
        return "waiting:approval" if pause_reason == "approval" else "waiting:signal"
    return str(status)


@dataclass(frozen=True)
class Verb:
    """One operator verb. ``accepts`` holds :func:`state_tag` values; ``payload`` the payload's keys
    (required ones first, ``required`` of them); ``confirm`` the question asked before it, with
    ``{what}`` for the targets it names (the CLI's prompts name the verb as it is typed)."""

    name: str
    target: Target
    summary: str
    accepts: frozenset[str] = frozenset()
    payload: tuple[str, ...] = ()
    required: int = 0
    confirm: str | None = None
    refusals: frozenset[Refusal] = frozenset({Refusal.INVALID, Refusal.NOT_FOUND, Refusal.FINISHED})
    changes_state: bool = False

    @property
    def judged_on_state(self) -> bool:
        """Accepted or refused by the instance's state when the owner applies it."""
        return bool(self.accepts)


_PAUSED = frozenset({"paused:before", "paused:after", "paused:error"})
_ON_STATE = frozenset({Refusal.INVALID, Refusal.NOT_FOUND, Refusal.FINISHED, Refusal.STATE, Refusal.QUEUED})

# Table order is the order verbs are offered in ("allowed now: ..."), in refusals and in the UIs.
VERBS: dict[str, Verb] = {v.name: v for v in (
    Verb("resume", Target.INSTANCES, "Resume paused instances (all of the run's, or those named).",
         accepts=_PAUSED, confirm="resume {what}?", refusals=_ON_STATE, changes_state=True),
    Verb("step_over", Target.INSTANCES, "Resume one paused instance and pause what consumes its output when it "
         "is ready.", accepts=_PAUSED, confirm="step over {what}?", refusals=_ON_STATE, changes_state=True),
    Verb("approve", Target.STEP, "Approve an approval gate that waits for a decision.",
         accepts=frozenset({"waiting:approval"}), payload=("comment", "payload"), confirm="approve {what}?",
         refusals=_ON_STATE, changes_state=True),
    Verb("reject", Target.STEP, "Reject an approval gate: it fails and its downstream does not run.",
         accepts=frozenset({"waiting:approval"}), payload=("comment",), confirm="reject {what}?",
         refusals=_ON_STATE, changes_state=True),
    Verb("retry", Target.INSTANCES, "Run instances again from their (possibly edited) inputs.",
         accepts=_PAUSED | {"failed", "retrying"}, confirm="retry {what}?", refusals=_ON_STATE, changes_state=True),
    Verb("skip", Target.INSTANCES, "Mark instances skipped with a given output; downstream receives it.",
         accepts=_PAUSED | {"failed", "retrying", "waiting:approval", "waiting:signal"}, payload=("output",),
         required=1, confirm="skip {what}?", refusals=_ON_STATE, changes_state=True),
    # payload: {"inputs": {name: value}} for every instance named, or with "by_key": true,
    # {"inputs": {key text: {name: value}}}: a value of its own per instance (a bulk edit), in one command.
    Verb("set_inputs", Target.INSTANCES, "Change the inputs of instances paused before or on an error, or failed.",
         accepts=frozenset({"paused:before", "paused:error", "failed"}), payload=("inputs", "by_key"), required=1,
         confirm="set_inputs {what}?", refusals=_ON_STATE),
    Verb("set_output", Target.INSTANCES, "Change the output of instances paused after their body.",
         accepts=frozenset({"paused:after"}), payload=("value",), required=1,
         confirm="set_output {what}?", refusals=_ON_STATE),
    Verb("cancel", Target.RUN, "Cancel the run: every unfinished instance is cancelled.",
         confirm="cancel {what}?", changes_state=True),
    Verb("signal", Target.TOKEN, "Deliver a payload to the instance waiting on a signed token.",
         payload=("token", "item", "name", "payload"), required=3,
         refusals=frozenset({Refusal.INVALID, Refusal.NOT_FOUND, Refusal.FINISHED, Refusal.STATE})),
    # Adding or removing one is checked first, alike on every surface, by commands.check_breakpoint and
    # commands.remove_breakpoints: an unknown step, run or breakpoint to remove is not_found; a bad `when`
    # or condition, a key on a step that is not a foreach, both or neither scope invalid; a finished run's
    # scope finished.
    Verb("breakpoint", Target.BREAKPOINT, "Tell the owner that breakpoints were added or removed.",
         payload=("action",), required=1,
         refusals=frozenset({Refusal.INVALID, Refusal.NOT_FOUND, Refusal.FINISHED})),
)}


def verb(name: str) -> Verb:
    """The table entry of *name*; a KeyError names the verbs there are."""
    try:
        return VERBS[name]
    except KeyError:
        raise KeyError(f"unknown verb {name!r}; verbs are: {', '.join(VERBS)}") from None


def allowed_verbs(status: str, pause_reason: str | None) -> list[str]:
    """The verbs an instance in this state accepts now, in table order."""
    tag = state_tag(status, pause_reason)
    return [v.name for v in VERBS.values() if tag in v.accepts]


def state_verbs() -> Iterator[Verb]:
    """The verbs judged on an instance's state."""
    return (v for v in VERBS.values() if v.judged_on_state)
