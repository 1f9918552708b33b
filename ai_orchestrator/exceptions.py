"""Exceptions users catch, in one place."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .streaming import StreamRestartedError

if TYPE_CHECKING:
    from .core import Result


class TaskValidationError(ValueError):
    """The task was refused before anything started; nothing was submitted."""


class TaskIdConflictError(TaskValidationError):
    """The task id already names a different task (another prompt, model or option).

    A task id is an idempotency key: re-submitting it attaches to the existing
    run only when the task is the same. Attaching to a different one would hand
    back someone else's answer, so nothing is started and this is raised.
    """

    def __init__(self, message: str, task_id: str) -> None:
        super().__init__(message)
        self.task_id = task_id


class TaskNotFoundError(LookupError):
    """No task with this id exists in the namespace."""


class TemporalUnavailableError(ConnectionError):
    """Temporal could not be reached; tasks are not lost, retry the call later.

    ``task_id`` is set when the call was a submission: the task may or may not
    have started, and re-submitting the same id (the same ``Task`` object, whose
    generated id was assigned onto it) attaches instead of paying twice.
    """

    def __init__(self, message: str, task_id: str | None = None) -> None:
        super().__init__(message)
        self.task_id = task_id


class TaskFailedError(RuntimeError):
    """The task failed; ``result`` holds the error and any partial output."""

    def __init__(self, result: Result) -> None:
        super().__init__(result.error or "task failed")
        self.result = result


__all__ = [
    "StreamRestartedError",
    "TaskFailedError",
    "TaskIdConflictError",
    "TaskNotFoundError",
    "TaskValidationError",
    "TemporalUnavailableError",
]
