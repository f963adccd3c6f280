"""The executor choices (``executor=``): threads, processes, Dask or an object of one's own;
:func:`resolve` makes the backend a run uses, :func:`check` refuses what cannot be one early."""
from __future__ import annotations

import os
from typing import Any, Protocol

from ..errors import ExecutorError
from .executor import Executor, Hooks, ThreadExecutor


class Backend(Protocol):
    """An executor choice: makes each run's :class:`Executor` and describes itself for the run's record."""

    def describe(self) -> Any: ...

    def for_run(self, hooks: Hooks, max_workers: int | None, name: str) -> Executor: ...


class Threads:
    """``executor="threads"`` (the default): a daemon thread pool per run."""

    def describe(self) -> str:
        return "threads"

    def for_run(self, hooks: Hooks, max_workers: int | None, name: str) -> Executor:
        return ThreadExecutor(max_workers or DEFAULT_THREADS, hooks.sink, name)


class Processes:
    """``executor="processes"``: a pool of local worker processes shared by the kernel's runs."""

    def describe(self) -> str:
        return "processes"

    def for_run(self, hooks: Hooks, max_workers: int | None, name: str) -> Executor:
        from .processes import ProcessExecutor

        return ProcessExecutor(hooks, max_workers)


DEFAULT_THREADS = 8
EXECUTORS = ("threads", "processes", "dask")


def resolve(choice: Any) -> Backend:
    """The backend for ``executor=``: a name, a DaskExecutor, or a run's recorded description.
    Nothing chosen: ``NBFLOW_EXECUTOR`` (so a batch run can move to a cluster without editing
    its notebook), else threads."""
    if choice is None:
        choice = os.environ.get("NBFLOW_EXECUTOR") or "threads"
    if choice == "threads":
        return Threads()
    if choice == "processes":
        return Processes()
    if choice == "dask":
        from .dask_executor import DaskExecutor

        return DaskExecutor()
    if isinstance(choice, dict) and set(choice) == {"dask"}:
        from .dask_executor import DaskExecutor

        return DaskExecutor(choice["dask"])
    check(choice)
    return choice  # type: ignore[no-any-return]


def check(choice: Any) -> None:
    """Refuse what cannot be an executor, without connecting to anything (Workflow() checks early)."""
    if choice is None or choice in EXECUTORS or (isinstance(choice, dict) and set(choice) == {"dask"}):
        return
    if hasattr(choice, "for_run") and hasattr(choice, "describe"):
        return
    raise ExecutorError(
        f"unknown executor {choice!r}; use 'threads' (default), 'processes', 'dask' or nbflow.DaskExecutor(client)"
    )


def check_workers(max_workers: Any) -> int | None:
    """*max_workers* if it can bound a run's concurrency (None: the executor's default), else a clear error."""
    if max_workers is None or (type(max_workers) is int and max_workers >= 1):
        return max_workers
    raise ExecutorError(
        f"max_workers must be a whole number of at least 1 (how many step bodies of a run may run at once), "
        f"got {max_workers!r}; leave it out for the executor's default"
    )
