"""One run per task id however it is submitted; payload limits never cause retry loops."""

from __future__ import annotations

import asyncio

import pytest
from temporalio.client import Client

from ai_orchestrator import Task, TaskClient, TaskStatus, TaskValidationError
from ai_orchestrator.messages import MAX_INPUT_BYTES
from ai_orchestrator.simulator import Simulator

from ..conftest import running_worker, unique
from ..integration.helpers import count, history_events


async def test_ten_concurrent_submissions_make_one_run_and_one_call(
    client: Client, queue: str, sim: Simulator
) -> None:
    task = Task(prompt="exactly once", task_id=unique("ten"))
    submitters = [TaskClient(client, task_queue=queue) for _ in range(10)]  # ten "processes"
    async with running_worker(client, queue, sim):
        ids = await asyncio.gather(*(s.submit_task(task) for s in submitters))
        results = await asyncio.gather(
            *(s.get_result(task.task_id or "", timeout=30) for s in submitters)
        )
    assert set(ids) == {task.task_id}
    assert {r.output for r in results} == {results[0].output} and results[0].success
    assert len(sim.requests) == 1
    runs = [w async for w in client.list_workflows(f"WorkflowId = '{task.task_id}'")]
    assert len(runs) == 1


@pytest.mark.parametrize("field", ["prompt", "context"])
async def test_input_over_the_payload_limit_is_refused_at_submit(
    field: str, client: Client, queue: str, tasks: TaskClient
) -> None:
    big = "x" * (MAX_INPUT_BYTES + 1)
    task_id = unique("big")
    task = (
        Task(prompt=big, task_id=task_id)
        if field == "prompt"
        else Task(prompt="small", context={"document": big}, task_id=task_id)
    )
    with pytest.raises(TaskValidationError, match=f"limit is {MAX_INPUT_BYTES:,} bytes"):
        await tasks.submit_task(task)
    assert await tasks.get_status(task_id) == TaskStatus.UNKNOWN  # nothing was started


async def test_output_over_the_payload_limit_fails_once_and_clearly(
    client: Client, queue: str, sim: Simulator, tasks: TaskClient
) -> None:
    sim.tokens_per_second = 0
    sim.default_tokens = 30_000  # ~180 KB of text
    task_id = unique("huge")
    # A smaller cap than the default keeps the test quick; the mechanism is the same.
    async with running_worker(client, queue, sim, max_output_bytes=100_000):
        result = await tasks.execute(Task(prompt="write forever", task_id=task_id))
    assert result.status == TaskStatus.FAILED
    assert "exceeded 100,000 bytes" in (result.error or "") and "max_tokens" in (result.error or "")
    assert len(sim.requests) == 1  # not re-paid by retries
    assert sim.requests[0].disconnected or not sim.requests[0].finished
    events = await history_events(client, task_id)
    assert count(events, "activity_task_failed_event_attributes") == 1
    assert result.partial_output  # what was streamed before the cut is kept


def test_default_limits_keep_the_final_result_under_temporal_payload_limit() -> None:
    from ai_orchestrator.messages import MAX_OUTPUT_BYTES

    # The Result carries the task (input) and the output; 2 MB is Temporal's default cap.
    assert MAX_INPUT_BYTES + MAX_OUTPUT_BYTES + 100_000 < 2 * 1024 * 1024
