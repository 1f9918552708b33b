"""Rebuild a task's state from its recorded history, with no worker needed.

A cancelled or failed run returns no result payload, yet the user is owed the
partial output; the history holds every chunk signal and the input task, and
:class:`OutputBuffer` folds them exactly as the workflow did.
"""

from __future__ import annotations

from dataclasses import dataclass

from temporalio.client import WorkflowHandle
from temporalio.converter import DataConverter

from ..core import Task
from ..messages import CHUNKS_SIGNAL, ChunkBatch, CompletionOutput, TaskInput
from ..output import OutputBuffer


@dataclass
class HistoryView:
    task: Task | None
    output: OutputBuffer


async def replay_history(handle: WorkflowHandle, converter: DataConverter) -> HistoryView:
    task: Task | None = None
    buffer = OutputBuffer()
    async for event in handle.fetch_history_events():
        if event.HasField("workflow_execution_started_event_attributes"):
            payloads = event.workflow_execution_started_event_attributes.input.payloads
            if payloads:
                task = (await converter.decode(payloads, [TaskInput]))[0].task
        elif event.HasField("workflow_execution_signaled_event_attributes"):
            attrs = event.workflow_execution_signaled_event_attributes
            if attrs.signal_name == CHUNKS_SIGNAL and attrs.input.payloads:
                buffer.apply((await converter.decode(attrs.input.payloads, [ChunkBatch]))[0])
        elif event.HasField("activity_task_completed_event_attributes"):
            payloads = event.activity_task_completed_event_attributes.result.payloads
            if payloads:
                out = (await converter.decode(payloads, [CompletionOutput]))[0]
                buffer.apply(ChunkBatch(attempt=out.attempt, offset=out.offset, text=out.tail))
    return HistoryView(task=task, output=buffer)
