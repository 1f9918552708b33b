"""The adapter contracts: the plans' async lifecycle, and the older sync one."""

from __future__ import annotations

import asyncio
import uuid
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable
from datetime import datetime, timezone
from types import TracebackType
from typing import Any, TypeVar

from ..core import Platform, Result, Task, TaskStatus

T = TypeVar("T")


class BasePlatformAdapter(ABC):
    """A platform that runs a task to completion in the calling thread."""

    platform: Platform = Platform.CHATGPT

    @property
    @abstractmethod
    def is_implemented(self) -> bool: ...

    @property
    @abstractmethod
    def implementation_status(self) -> str: ...

    @abstractmethod
    def get_adapter_status(self) -> dict[str, Any]: ...

    @abstractmethod
    def execute(self, task: Task) -> Result: ...


class AsyncBasePlatformAdapter(ABC):
    """The task lifecycle every async adapter (and ``TaskClient``) offers.

    ``submit_task`` returns at once; the other methods follow the task by id.
    """

    platform: Platform = Platform.CHATGPT

    def __init__(self) -> None:
        self._pending_tasks: dict[str, Any] = {}

    async def __aenter__(self: T) -> T:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    @property
    def is_implemented(self) -> bool:
        return True

    @property
    def implementation_status(self) -> str:
        return "working" if self.is_implemented else "unavailable"

    def get_adapter_status(self) -> dict[str, Any]:
        return {
            "name": type(self).__name__,
            "is_implemented": self.is_implemented,
            "status": self.implementation_status,
        }

    @abstractmethod
    async def submit_task(self, task: Task) -> str: ...

    @abstractmethod
    async def get_status(self, task_id: str) -> TaskStatus: ...

    @abstractmethod
    async def get_result(self, task_id: str, timeout: float | None = 300) -> Result: ...

    @abstractmethod
    def stream_result(self, task_id: str) -> AsyncIterator[str]: ...

    @abstractmethod
    async def cancel_task(self, task_id: str) -> bool: ...

    def _generate_task_id(self, task: Task) -> str:
        """``{platform}_{timestamp}_{uuid8}``: sortable by time, unique, readable in the UI."""
        platform = (task.platform_hint or self.platform).value
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        return f"{platform}_{stamp}_{uuid.uuid4().hex[:8]}"

    async def _wait_with_timeout(self, awaitable: Awaitable[T], timeout: float | None) -> T:
        """Wait for ``awaitable`` without letting a timeout cancel it.

        A caller that gives up waiting for a result must not kill the task that
        produces it; cancelling the caller stops only the waiting.

        Raises:
            asyncio.TimeoutError: ``timeout`` passed; the work goes on.
        """
        return await asyncio.wait_for(asyncio.shield(awaitable), timeout)
