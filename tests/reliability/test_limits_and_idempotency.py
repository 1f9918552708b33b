"""One run per task id however it is submitted; payload limits never cause retry loops."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest
from temporalio.client import Client, WorkflowExecutionStatus

from ai_orchestrator import (
    Task,
    TaskClient,
    TaskIdConflictError,
    TaskStatus,
    TaskValidationError,
)
from ai_orchestrator.messages import MAX_INPUT_BYTES
from ai_orchestrator.simulator import Simulator

from ..conftest import running_worker, unique
from ..support.helpers import count, history_events


async def one_closed_run(client: Client, task_id: str) -> str:
    """The id's only run, once visibility lists it closed (it is eventually consistent)."""
    deadline = time.monotonic() + 10
    while True:
        runs = [w async for w in client.list_workflows(f"WorkflowId = '{task_id}'")]
        if any(r.status != WorkflowExecutionStatus.RUNNING for r in runs) or (
            time.monotonic() > deadline
        ):
            assert len(runs) == 1, runs
            return runs[0].run_id
        await asyncio.sleep(0.05)


async def racing(n: int, submit: Callable[[int], Awaitable[str]]) -> list[str | BaseException]:
    """Run ``n`` submissions released at the same moment (none waits for another)."""
    go = asyncio.Event()

    async def one(i: int) -> str:
        await go.wait()
        return await submit(i)

    pending = [asyncio.ensure_future(one(i)) for i in range(n)]
    await asyncio.sleep(0)  # every submitter is parked at the barrier
    go.set()
    return await asyncio.gather(*pending, return_exceptions=True)


async def test_ten_concurrent_submissions_make_one_run_and_one_call(
    client: Client, queue: str, sim: Simulator
) -> None:
    """Promise: one run per task id however many processes submit it at once."""
    task = Task(prompt="exactly once", task_id=unique("ten"))
    submitters = [TaskClient(client, task_queue=queue) for _ in range(10)]  # ten "processes"
    # No worker yet: every submission races against a run that has not moved.
    ids = await racing(10, lambda i: submitters[i].submit_task(task))
    assert ids == [task.task_id] * 10
    async with running_worker(client, queue, sim):
        results = await asyncio.gather(
            *(s.get_result(task.task_id or "", timeout=30) for s in submitters)
        )
    assert {r.output for r in results} == {results[0].output} and results[0].success
    assert len(sim.requests) == 1
    run_id = await one_closed_run(client, task.task_id or "")
    assert (await client.get_workflow_handle(task.task_id or "").describe()).run_id == run_id


async def test_concurrent_submissions_with_conflicting_prompts_make_one_run(
    client: Client, queue: str, sim: Simulator
) -> None:
    """Promise: one result per task id, never a silent mix-up (racing different prompts)."""
    task_id = unique("clash")
    prompts = ["the question" if i % 2 else "another question" for i in range(10)]
    submitters = [TaskClient(client, task_queue=queue) for _ in range(10)]
    outcomes = await racing(
        10, lambda i: submitters[i].submit_task(Task(prompt=prompts[i], task_id=task_id))
    )
    won = {prompts[i] for i, o in enumerate(outcomes) if o == task_id}
    assert len(won) == 1, outcomes  # one prompt got the id; every other submission refused
    lost = [o for i, o in enumerate(outcomes) if prompts[i] not in won]
    assert len(lost) == 5 and all(isinstance(o, TaskIdConflictError) for o in lost), lost
    async with running_worker(client, queue, sim):
        result = await submitters[0].get_result(task_id, timeout=30)
    assert result.success and result.task.prompt in won
    assert len(sim.requests) == 1 and sim.requests[0].messages[-1]["content"] in won
    await one_closed_run(client, task_id)


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
