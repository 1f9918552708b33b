"""Cancelling a task mid-stream: the HTTP stream closes, the partial output is kept."""

from __future__ import annotations

import asyncio
import time

from temporalio.client import Client, WorkflowExecutionStatus

from ai_orchestrator import Task, TaskClient, TaskStatus
from ai_orchestrator.simulator import Simulator

from ..conftest import running_worker, unique


async def test_cancel_mid_stream_keeps_partial_output(
    client: Client, queue: str, sim: Simulator, tasks: TaskClient
) -> None:
    sim.tokens_per_second = 10
    sim.default_tokens = 200  # would take 20 s
    async with running_worker(client, queue, sim):
        task_id = await tasks.submit_task(Task(prompt="long answer", task_id=unique("cancel")))
        streamed: list[str] = []

        async def consume() -> None:
            async for chunk in tasks.stream_result(task_id):
                streamed.append(chunk)

        consumer = asyncio.create_task(consume())
        await sim.wait_for_tokens_sent(0, 8)
        started = time.monotonic()
        assert await tasks.cancel_task(task_id) is True
        result = await tasks.get_result(task_id, timeout=15)
        elapsed = time.monotonic() - started
        await asyncio.wait_for(consumer, 10)

    assert result.status == TaskStatus.CANCELLED and not result.success
    assert result.partial_output and result.partial_output.startswith("[simulated]")
    assert len(result.partial_output.split()) >= 8
    assert "".join(streamed) == result.partial_output  # the stream ends with the partial text
    await sim.wait_until(lambda: sim.requests[0].disconnected, timeout=5)
    assert sim.requests[0].tokens_sent < 200
    desc = await client.get_workflow_handle(task_id).describe()
    assert desc.status == WorkflowExecutionStatus.CANCELED  # what the Web UI shows
    assert elapsed < 15
    assert await tasks.cancel_task(task_id) is False  # already ended


async def test_cancel_unknown_or_finished_task_returns_false(
    client: Client, queue: str, sim: Simulator, tasks: TaskClient
) -> None:
    assert await tasks.cancel_task(unique("nothing")) is False
    async with running_worker(client, queue, sim):
        result = await tasks.execute(Task(prompt="done", task_id=unique("fin")))
    assert await tasks.cancel_task(result.task.task_id or "") is False
