"""Exceptions users catch, in one place."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .streaming import StreamRestartedError

if TYPE_CHECKING:
    from .core import Result


class TaskValidationError(ValueError):
    """The task was refused before anything started; nothing was submitted."""


class TaskNotFoundError(LookupError):
    """No task with this id exists in the namespace."""


class TemporalUnavailableError(ConnectionError):
    """Temporal could not be reached; tasks are not lost, retry the call later."""


class TaskFailedError(RuntimeError):
    """The task failed; ``result`` holds the error and any partial output."""

    def __init__(self, result: Result) -> None:
        super().__init__(result.error or "task failed")
        self.result = result


__all__ = [
    "StreamRestartedError",
    "TaskFailedError",
    "TaskNotFoundError",
    "TaskValidationError",
    "TemporalUnavailableError",
]
