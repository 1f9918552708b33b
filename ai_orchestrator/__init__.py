"""Durable LLM tasks on Temporal.

Each :class:`Task` runs as a Temporal workflow whose activity streams a chat
completion from OpenAI or any OpenAI-compatible server. Tasks survive worker
and server restarts, retry rate limits as the provider asks, stream live,
can be cancelled (keeping their partial output) and report tokens and cost.

Start with :class:`TaskClient` (durable) or :class:`AsyncChatGPTAdapter`
(in-process, the plans' original adapter).

The package imports lazily (PEP 562): ``import ai_orchestrator`` loads nothing
but this file, and each name loads its module on first use. That keeps the
command line quick to start, and it lets Temporal's workflow sandbox import
``ai_orchestrator.workflows`` on its own, without the openai SDK and the rest,
which workflow code never uses and the sandbox would refuse.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .adapters import (
        AsyncBasePlatformAdapter,
        AsyncChatGPTAdapter,
        BasePlatformAdapter,
        ChatGPTAdapter,
    )
    from .adapters._orchestrator import Orchestrator
    from .batch import (
        BatchInputError,
        BatchProgress,
        BatchReport,
        BatchSummary,
        read_results,
        read_tasks,
        run_batch,
        write_results,
    )
    from .client import (
        CapacityWait,
        Finished,
        ProviderBatchInfo,
        Restart,
        StreamEvent,
        TaskClient,
        TaskDescription,
        TaskSummary,
        TextDelta,
        apply_event,
    )
    from .config import DEFAULT_TASK_QUEUE, ConfigError
    from .core import Platform, Result, Task, TaskConstraints, TaskStatus, TaskType
    from .exceptions import (
        StreamRestartedError,
        TaskFailedError,
        TaskIdConflictError,
        TaskNotFoundError,
        TaskValidationError,
        TemporalUnavailableError,
    )
    from .messages import RetrySettings, Usage
    from .pricing import ModelPrice, PricingTable, UnknownModelError, allow_list
    from .retry import retry_on_rate_limit, retry_on_transient
    from .streaming import StreamingResult, collect_stream

#: Public name -> the module that defines it.
_EXPORTS = {
    "AsyncBasePlatformAdapter": ".adapters",
    "AsyncChatGPTAdapter": ".adapters",
    "BasePlatformAdapter": ".adapters",
    "BatchInputError": ".batch",
    "BatchProgress": ".batch",
    "BatchReport": ".batch",
    "BatchSummary": ".batch",
    "CapacityWait": ".client",
    "ChatGPTAdapter": ".adapters",
    "ConfigError": ".config",
    "DEFAULT_TASK_QUEUE": ".config",
    "Finished": ".client",
    "ModelPrice": ".pricing",
    "Orchestrator": ".adapters._orchestrator",
    "Platform": ".core",
    "PricingTable": ".pricing",
    "ProviderBatchInfo": ".client",
    "Restart": ".client",
    "Result": ".core",
    "RetrySettings": ".messages",
    "StreamEvent": ".client",
    "StreamRestartedError": ".exceptions",
    "StreamingResult": ".streaming",
    "Task": ".core",
    "TaskClient": ".client",
    "TaskConstraints": ".core",
    "TaskDescription": ".client",
    "TaskFailedError": ".exceptions",
    "TaskIdConflictError": ".exceptions",
    "TaskNotFoundError": ".exceptions",
    "TaskStatus": ".core",
    "TaskSummary": ".client",
    "TaskType": ".core",
    "TaskValidationError": ".exceptions",
    "TemporalUnavailableError": ".exceptions",
    "TextDelta": ".client",
    "UnknownModelError": ".pricing",
    "Usage": ".messages",
    "allow_list": ".pricing",
    "apply_event": ".client",
    "collect_stream": ".streaming",
    "read_results": ".batch",
    "read_tasks": ".batch",
    "retry_on_rate_limit": ".retry",
    "retry_on_transient": ".retry",
    "run_batch": ".batch",
    "write_results": ".batch",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


__version__ = "0.1.0"

__all__ = [
    "DEFAULT_TASK_QUEUE",
    "AsyncBasePlatformAdapter",
    "AsyncChatGPTAdapter",
    "BasePlatformAdapter",
    "BatchInputError",
    "BatchProgress",
    "BatchReport",
    "BatchSummary",
    "CapacityWait",
    "ChatGPTAdapter",
    "ConfigError",
    "Finished",
    "ModelPrice",
    "Orchestrator",
    "Platform",
    "PricingTable",
    "ProviderBatchInfo",
    "Restart",
    "Result",
    "RetrySettings",
    "StreamEvent",
    "StreamRestartedError",
    "StreamingResult",
    "Task",
    "TaskClient",
    "TaskConstraints",
    "TaskDescription",
    "TaskFailedError",
    "TaskIdConflictError",
    "TaskNotFoundError",
    "TaskStatus",
    "TaskSummary",
    "TaskType",
    "TaskValidationError",
    "TemporalUnavailableError",
    "TextDelta",
    "UnknownModelError",
    "Usage",
    "__version__",
    "allow_list",
    "apply_event",
    "collect_stream",
    "read_results",
    "read_tasks",
    "retry_on_rate_limit",
    "retry_on_transient",
    "run_batch",
    "write_results",
]
