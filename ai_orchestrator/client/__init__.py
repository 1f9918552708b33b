"""The client side: submit, follow, cancel and collect durable tasks."""

from ..messages import MAX_INPUT_BYTES
from ._connect import connect_client
from ._describe import CapacityWait, ProviderBatchInfo, TaskDescription
from ._events import Finished, Restart, StreamEvent, TaskSummary, TextDelta, apply_event
from ._task_client import TaskClient

__all__ = [
    "MAX_INPUT_BYTES",
    "CapacityWait",
    "Finished",
    "ProviderBatchInfo",
    "Restart",
    "StreamEvent",
    "TaskClient",
    "TaskDescription",
    "TaskSummary",
    "TextDelta",
    "apply_event",
    "connect_client",
]
