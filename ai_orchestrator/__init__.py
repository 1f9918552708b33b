"""Durable LLM tasks on Temporal.

Each :class:`Task` runs as a Temporal workflow whose activity streams a chat
completion from OpenAI or any OpenAI-compatible server. Tasks survive worker
and server restarts, retry rate limits as the provider asks, stream live,
can be cancelled (keeping their partial output) and report tokens and cost.

Start with :class:`TaskClient` (durable) or :class:`AsyncChatGPTAdapter`
(in-process, the plans' original adapter).
"""

from .adapters import (
    AsyncBasePlatformAdapter,
    AsyncChatGPTAdapter,
    BasePlatformAdapter,
    ChatGPTAdapter,
)
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
    Finished,
    Restart,
    StreamEvent,
    TaskClient,
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
from .orchestrator import Orchestrator
from .pricing import ModelPrice, PricingTable, UnknownModelError, allow_list
from .retry import retry_on_rate_limit, retry_on_transient
from .streaming import StreamingResult, collect_stream

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
    "ChatGPTAdapter",
    "ConfigError",
    "Finished",
    "ModelPrice",
    "Orchestrator",
    "Platform",
    "PricingTable",
    "Restart",
    "Result",
    "RetrySettings",
    "StreamEvent",
    "StreamRestartedError",
    "StreamingResult",
    "Task",
    "TaskClient",
    "TaskConstraints",
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
