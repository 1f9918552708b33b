"""A task from submission to result against the real dev server and simulator."""

from __future__ import annotations

import asyncio

import pytest
from temporalio.client import Client, WorkflowExecutionStatus

from ai_orchestrator import Task, TaskClient, TaskConstraints, TaskStatus, TaskType
from ai_orchestrator.simulator import Simulator

from ..conftest import FAST_RETRY, running_worker, unique
from ..support.helpers import count, history_events


async def test_task_completes_with_output_tokens_and_cost(
    client: Client, queue: str, sim: Simulator, tasks: TaskClient
) -> None:
    async with running_worker(client, queue, sim):
        result = await tasks.execute(Task(prompt="Say hello", task_id=unique("done")))
    assert result.status == TaskStatus.COMPLETED and result.success
    assert result.output.startswith("[simulated]") and len(result.output.split()) == 24
    assert result.tokens_used == result.metadata["input_tokens"] + 24
    assert result.cost > 0 and result.metadata["cost_known"]
    assert result.metadata["attempts"] == 1 and result.metadata["finish_reason"] == "stop"
    assert result.task.prompt == "Say hello"
    assert len(sim.requests) == 1 and sim.requests[0].include_usage


async def test_status_moves_pending_running_completed(
    client: Client, queue: str, sim: Simulator, tasks: TaskClient
) -> None:
    sim.tokens_per_second = 20
    task_id = await tasks.submit_task(Task(prompt="slow one", task_id=unique("status")))
    assert await tasks.get_status(task_id) == TaskStatus.PENDING  # no worker yet
    async with running_worker(client, queue, sim):
        await sim.wait_for_tokens_sent(0, 2)
        assert await tasks.get_status(task_id) == TaskStatus.RUNNING
        result = await tasks.get_result(task_id, timeout=30)
    assert result.status == TaskStatus.COMPLETED
    assert await tasks.get_status(task_id) == TaskStatus.COMPLETED
    assert await tasks.get_status(unique("missing")) == TaskStatus.UNKNOWN


@pytest.mark.parametrize("live", [True, False], ids=["live-channel", "workflow-polling"])
async def test_stream_yields_chunks_before_completion(
    client: Client, queue: str, sim: Simulator, live: bool
) -> None:
    # 24 tokens over ~0.6 s live; over ~2.4 s when readers poll the workflow, whose
    # checkpoints come every 0.1 s at best (so text arrives before the end on a busy box)
    sim.tokens_per_second = 40 if live else 10
    tasks = TaskClient(client, task_queue=queue, retry=FAST_RETRY, live=live)
    # No workflow cache: every signal and query replays history, exercising determinism.
    worker_live = {} if live else {"live": None}
    async with running_worker(client, queue, sim, max_cached_workflows=0, **worker_live):
        task_id = await tasks.submit_task(Task(prompt="stream me", task_id=unique("stream")))
        chunks: list[str] = []
        before_end = 0
        async for chunk in tasks.stream_result(task_id):
            chunks.append(chunk)
            if not sim.requests[0].finished:
                before_end += 1
        result = await tasks.get_result(task_id)
    assert before_end >= 2, "text should arrive while the provider is still generating"
    assert "".join(chunks) == result.output
    if live:  # the text went live; the first text a reader saw is checkpointed at once,
        # and a 0.6 s answer needs no other checkpoint in history
        assert result.metadata["signals"] == 1
    else:  # readers follow the workflow, so the text was signalled as it came
        assert result.metadata["signals"] >= 2


async def test_late_consumer_gets_the_whole_text(
    client: Client, queue: str, sim: Simulator, tasks: TaskClient
) -> None:
    async with running_worker(client, queue, sim):
        result = await tasks.execute(Task(prompt="late", task_id=unique("late")))
        assert (
            "".join([c async for c in tasks.stream_result(result.task.task_id or "")])
            == result.output
        )
    # ... and after every worker is gone: the result comes from history.
    assert (
        "".join([c async for c in tasks.stream_result(result.task.task_id or "")]) == result.output
    )


async def test_short_task_sends_no_signal(
    client: Client, queue: str, sim: Simulator, tasks: TaskClient
) -> None:
    sim.tokens_per_second = 0
    async with running_worker(client, queue, sim):
        result = await tasks.execute(Task(prompt="quick", task_id=unique("quick")))
    events = await history_events(client, result.task.task_id or "")
    assert count(events, "workflow_execution_signaled_event_attributes") == 0
    assert result.metadata["signals"] == 0 and result.output


async def test_submit_is_idempotent(
    client: Client, queue: str, sim: Simulator, tasks: TaskClient
) -> None:
    task = Task(prompt="once", task_id=unique("idem"))
    ids = await asyncio.gather(*(tasks.submit_task(task) for _ in range(5)))
    assert set(ids) == {task.task_id}
    handle = client.get_workflow_handle(task.task_id or "")
    async with running_worker(client, queue, sim):
        first = await tasks.get_result(task.task_id or "", timeout=30)
        run_id = (await handle.describe()).run_id
        assert await tasks.submit_task(task) == task.task_id  # after completion too ...
        desc = await handle.describe()  # ... it started nothing: no new run to wait for
    assert desc.run_id == run_id and desc.status == WorkflowExecutionStatus.COMPLETED
    assert first.status == TaskStatus.COMPLETED and len(sim.requests) == 1


async def test_priority_and_web_ui_summary(client: Client, queue: str, tasks: TaskClient) -> None:
    task = Task(
        prompt="Summarise the design doc",
        type=TaskType.RESEARCH,
        priority=1,
        task_id=unique("ui"),
        constraints=TaskConstraints(model="gpt-4o", max_tokens=50),
    )
    await tasks.submit_task(task)
    desc = await client.get_workflow_handle(task.task_id or "").describe()
    assert desc.raw_description.workflow_execution_info.priority.priority_key == 1
    summary, details = await desc.static_summary(), await desc.static_details()
    assert summary and "gpt-4o" in summary and "Summarise the design doc" in summary
    assert details and "max_tokens=50" in details and "Summarise the design doc" in details
    await client.get_workflow_handle(task.task_id or "").terminate("test done")
