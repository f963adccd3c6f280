"""Instance and run states (DESIGN.md section 3); members compare equal to their lower-case names."""
from __future__ import annotations

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
