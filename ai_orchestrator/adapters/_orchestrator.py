"""The plans' synchronous entry point: route a task to a platform adapter and run it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..core import Platform, Result, Task
from ._base import BasePlatformAdapter
from ._chatgpt import ChatGPTAdapter


class Orchestrator:
    """Routes tasks to the adapters configured for each platform.

    Only ChatGPT (any OpenAI-compatible server) has an adapter here; a task
    hinting at another platform is refused with a clear error rather than
    silently sent elsewhere.
    """

    def __init__(self, adapters: Mapping[Platform, BasePlatformAdapter] | None = None) -> None:
        self.adapters: dict[Platform, BasePlatformAdapter] = dict(
            adapters if adapters is not None else {Platform.CHATGPT: ChatGPTAdapter()}
        )

    def validate_environment(self) -> dict[str, dict[str, Any]]:
        """Each configured platform's adapter status, keyed by platform name."""
        return {platform.value: a.get_adapter_status() for platform, a in self.adapters.items()}

    def route(self, task: Task) -> BasePlatformAdapter:
        platform = task.platform_hint or Platform.CHATGPT
        adapter = self.adapters.get(platform)
        if adapter is None:
            raise ValueError(
                f"no adapter for platform {platform.value!r}; configured: "
                f"{', '.join(p.value for p in self.adapters) or 'none'}"
            )
        return adapter

    def execute(self, task: Task) -> Result:
        return self.route(task).execute(task)
