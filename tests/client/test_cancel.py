"""Cancelling a task mid-stream: the HTTP stream closes, the partial output is kept."""

from __future__ import annotations

import asyncio
from typing import Any

from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle

from ai_orchestrator import (
    Finished,
    Restart,
    StreamEvent,
    Task,
    TaskClient,
    TaskStatus,
    TextDelta,
)
from ai_orchestrator.live._http import HttpLivePublisher, HttpLiveSubscriber
from ai_orchestrator.messages import PROGRESS_QUERY, Progress, ProgressQuery
from ai_orchestrator.simulator import Simulator
from ai_orchestrator.simulator._text import simulated_tokens

from ..conftest import FAST_RETRY, running_worker, unique
from ..support.helpers import history_events

#: What a cancel leaves in the run's history, in the order it must happen.
CANCEL_ORDER = (
    "activity_task_cancel_requested_event_attributes",
    "activity_task_canceled_event_attributes",
    "workflow_execution_canceled_event_attributes",
)


def seen_text(events: list[StreamEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


async def checkpointed(handle: WorkflowHandle[Any, Any]) -> int:
    """Characters of the task's text the workflow holds (its last checkpoint)."""
    progress = await handle.query(PROGRESS_QUERY, ProgressQuery(offset=0), result_type=Progress)
    return progress.length


async def test_cancel_mid_stream_keeps_partial_output(
    client: Client, queue: str, sim: Simulator
) -> None:
    """Promise: a cancel stops the provider mid-answer, and the partial output is the
    text readers saw: none of it lost, none of it taken back."""
    sim.tokens_per_second = 10
    sim.default_tokens = 200  # would take 20 s
    converter = client.data_converter
    # Readers follow the live channel and checkpoints are a minute apart, so when the
    # cancel arrives readers hold text the workflow lacks: only the cancelled
    # attempt's final flush can bring it into the partial output.
    tasks = TaskClient(
        client,
        task_queue=queue,
        retry=FAST_RETRY,
        live_subscribers=[HttpLiveSubscriber(converter)],
    )
    publisher = HttpLivePublisher(converter)
    async with running_worker(client, queue, sim, live=publisher, checkpoint_interval=60.0):
        task_id = await tasks.submit_task(Task(prompt="long answer", task_id=unique("cancel")))
        handle = client.get_workflow_handle(task_id)
        streamed: list[str] = []
        events: list[StreamEvent] = []

        async def consume() -> None:
            async for chunk in tasks.stream_result(task_id):
                streamed.append(chunk)

        async def follow() -> None:
            async for event in tasks.stream_events(task_id):
                events.append(event)

        readers = [asyncio.create_task(consume()), asyncio.create_task(follow())]
        deadline = asyncio.get_running_loop().time() + 60
        while True:  # until a reader holds 8 words the workflow has not checkpointed
            seen = seen_text(events)
            if len(seen.split()) >= 8 and await checkpointed(handle) < len(seen):
                break
            assert asyncio.get_running_loop().time() < deadline, "no reader got ahead"
            await asyncio.sleep(0.05)
        assert await tasks.cancel_task(task_id) is True
        result = await tasks.get_result(task_id, timeout=60)
        ended = await asyncio.wait_for(asyncio.gather(*readers, return_exceptions=True), 30)

    assert result.status == TaskStatus.CANCELLED and not result.success
    partial = result.partial_output or ""
    # Nothing a reader saw before the cancel is missing from the partial output ...
    assert partial.startswith(seen) and len(seen.split()) >= 8, (seen, partial)
    # ... and readers end on exactly the partial output, nothing taken back.
    assert not [e for e in events if isinstance(e, Restart)], events
    assert isinstance(events[-1], Finished) and events[-1].result.status == TaskStatus.CANCELLED
    assert seen_text(events) == partial
    assert ended == [None, None], ended
    assert "".join(streamed) == partial  # the plain stream ends with the partial text
    # The cancel reached the provider before the answer ended, and the partial
    # output is text it actually sent.
    request = sim.requests[0]
    await sim.wait_until(lambda: request.disconnected, timeout=10)
    assert not request.finished and request.tokens_sent < 200
    sent = "".join(simulated_tokens(request.messages, request.model, request.tokens_sent))
    assert partial.startswith("[simulated]") and sent.startswith(partial)
    history = await history_events(client, task_id)
    cancel = [a for e in history for a in CANCEL_ORDER if e.HasField(a)]
    assert cancel == list(CANCEL_ORDER), cancel  # the workflow waited for the attempt
    desc = await handle.describe()
    assert desc.status == WorkflowExecutionStatus.CANCELED  # what the Web UI shows
    assert await tasks.cancel_task(task_id) is False  # already ended


async def test_cancel_unknown_or_finished_task_returns_false(
    client: Client, queue: str, sim: Simulator, tasks: TaskClient
) -> None:
    assert await tasks.cancel_task(unique("nothing")) is False
    async with running_worker(client, queue, sim):
        result = await tasks.execute(Task(prompt="done", task_id=unique("fin")))
    assert await tasks.cancel_task(result.task.task_id or "") is False
