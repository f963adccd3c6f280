"""Exceptions raised to users; each message names the thing and says what to do."""
from __future__ import annotations


class NbflowError(Exception):
    """Base class of every error nbflow raises on purpose."""


class DefinitionError(NbflowError, ValueError):
    """A workflow definition is invalid (cycle, unknown dependency, duplicate step...)."""


class CycleError(DefinitionError):
    """The steps' dependencies form a cycle."""


class StoreError(NbflowError):
    """The store cannot be opened or used (for example a schema newer than this nbflow)."""


class SerializationError(NbflowError, TypeError):
    """A value cannot be stored: neither JSON nor cloudpickle can encode it."""


class UnknownRunError(NbflowError, LookupError):
    """No run with that id exists in the store."""


class CommandRefused(NbflowError):
    """An operator command does not fit the current state; nothing was changed. ``code`` says why,
    as a :class:`nbflow.verbs.Refusal` value (``state`` unless told)."""

    def __init__(self, message: str, code: str = "state") -> None:
        super().__init__(message)
        self.code = code

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (str(self), self.code))


class OwnershipError(NbflowError):
    """The run is owned by a live process, so it cannot be taken over."""


class RemoteError(NbflowError):
    """A step attempt failed away from its owner: its worker died, the cluster gave up on the task,
    or the step's exception could not be sent back (its type and message are kept)."""


class ExecutorError(NbflowError, ValueError):
    """An executor cannot be used as given (unknown name, unreachable Dask scheduler...)."""
