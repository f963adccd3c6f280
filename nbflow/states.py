"""Instance and run states (DESIGN.md section 3); members compare equal to their lower-case names."""
from __future__ import annotations

from collections.abc import Iterable

from ._compat import StrEnum


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
