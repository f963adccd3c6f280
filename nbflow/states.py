"""Instance and run states (DESIGN.md section 3); members compare equal to their lower-case names."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ._compat import StrEnum

TASK_ITEM = -1
"""The ``item`` of a task, approval or wait step's one instance (foreach items count from 0)."""
BREAK_ON_ERROR = 0
"""The id in ``held_by`` that stands for the run's ``break_on_error`` flag (breakpoint ids start at 1)."""
STEPPED_OVER = -1
"""The id in ``held_by`` of an instance a step over paused: its one-shot breakpoint is gone once it fired."""


class InstanceStatus(StrEnum):
    PENDING = "pending"
    READY = "ready"
    RUNNING = "running"
    RETRYING = "retrying"
    PAUSED = "paused"
    WAITING = "waiting"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in _TERMINAL

    @property
    def done_ok(self) -> bool:
        """True when downstream may read this instance's output."""
        return self in _DONE_OK


_DONE_OK = frozenset({InstanceStatus.SUCCEEDED, InstanceStatus.SKIPPED})
_TERMINAL = frozenset(
    {InstanceStatus.SUCCEEDED, InstanceStatus.FAILED, InstanceStatus.SKIPPED, InstanceStatus.CANCELLED}
)


class RunStatus(StrEnum):
    RUNNING = "running"
    PAUSED = "paused"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED)


class StepKind(StrEnum):
    TASK = "task"
    FOREACH = "foreach"
    APPROVAL = "approval"
    WAIT = "wait"


class When(StrEnum):
    BEFORE = "before"
    AFTER = "after"
    ERROR = "error"


@dataclass(frozen=True)
class PauseReason:
    """Why a paused instance holds: ``when`` (before, after or error) and an optional detail. Stored
    as the text ``"when"`` or ``"when: detail"`` in ``instances.pause_reason``; this is its one parser."""

    when: str
    detail: str | None = None

    @classmethod
    def parse(cls, text: str | None) -> PauseReason:
        when, sep, detail = (text or "").partition(": ")
        return cls(when, detail if sep else None)

    def __str__(self) -> str:
        return f"{self.when}: {self.detail}" if self.detail else self.when

    def as_json(self) -> dict[str, Any]:
        return {"when": self.when, "detail": self.detail}


def label(step: str | None, key: Any = None) -> str:
    """How an instance is named to people and on the command line: ``step`` or ``step:key``."""
    if step is None:
        return "the run"
    return step if key is None else f"{step}:{key}"


def status_filter(status: str | Iterable[str] | None, kind: type[InstanceStatus | RunStatus]) -> list[str] | None:
    """A ``status=`` argument (one status or several) as a list of names; a name that is not a
    status of *kind* gets an error listing the ones that are (a typo must not read as "none")."""
    if status is None:
        return None
    wanted = [status] if isinstance(status, str) else list(status)
    names = [str(s) for s in wanted]
    unknown = [n for n in names if n not in kind._value2member_map_]
    if unknown:
        from .errors import NbflowError

        what = "an instance" if kind is InstanceStatus else "a run"
        raise NbflowError(
            f"{', '.join(map(repr, unknown))} is not a status of {what}; use one of: {', '.join(m.value for m in kind)}"
        )
    return names
