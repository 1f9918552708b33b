"""Resume, don't regenerate: a background response survives a broken stream (issue 9).

Every test drives the real openai SDK over real HTTP against the simulator's
Responses API, through a real Temporal dev server and worker.
"""

from __future__ import annotations

import functools
import time

import pytest
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError

from ai_orchestrator import Task, TaskClient, TaskConstraints, TaskStatus, apply_event
from ai_orchestrator.client import Restart, StreamEvent
from ai_orchestrator.errors import OUTPUT_TOO_LARGE
from ai_orchestrator.simulator import Fault, Simulator

from ..conftest import running_worker, unique

RESPONSES = TaskConstraints(openai_api="responses", timeout_seconds=120)


def _kinds(sim: Simulator) -> list[str]:
    return [str(r.kind) for r in sim.requests if r.api == "responses"]


async def _follow(tasks: TaskClient, task_id: str) -> list[StreamEvent]:
    return [event async for event in tasks.stream_events(task_id)]


async def test_a_cut_stream_is_reattached_and_readers_see_one_stream(
    client: Client, queue: str, sim: Simulator, tasks: TaskClient
) -> None:
    sim.tokens_per_second, sim.default_tokens = 60, 90
    # The first stream drops after ~30 tokens; the first re-attach drops too.
    sim.script(Fault.drop_stream(after_events=35), Fault.reattach_drop(after_events=20))
    task = Task(prompt="a long report", task_id=unique("cut"), constraints=RESPONSES)
    async with running_worker(client, queue, sim, checkpoint_interval=0.2):
        task_id = await tasks.submit_task(task)
        events = await _follow(tasks, task_id)
        result = await tasks.get_result(task_id)
    assert result.status == TaskStatus.COMPLETED, result.error
    kinds = _kinds(sim)
    assert kinds.count("create") == 1, kinds  # one answer paid for ...
    assert kinds.count("retrieve_stream") >= 2, kinds  # ... streamed over three connections
    (response,) = sim.responses.values()
    assert response.generated_tokens == 90 and response.status == "completed"
    assert len(result.output.split()) == 90
    # Readers saw one continuous text: no restart, nothing taken back.
    assert not [e for e in events if isinstance(e, Restart)]
    assert functools.reduce(apply_event, events, "") == result.output  # type: ignore[arg-type]
    assert result.metadata["restarts"] == 0 and result.metadata["attempts"] >= 3
    # Billed once, with the provider's own usage for the whole answer.
    billed = result.metadata["billing"]
    assert sum(b["completion_tokens"] for b in billed) == 90, billed
    assert not result.metadata["usage_estimated"]
    assert result.metadata["output_tokens"] == 90


async def test_an_expired_response_is_regenerated_with_a_restart(
    client: Client, queue: str, sim: Simulator, tasks: TaskClient
) -> None:
    sim.tokens_per_second, sim.default_tokens = 60, 60
    sim.script(Fault.drop_stream(after_events=30), Fault.expire())
    task = Task(prompt="expire me", task_id=unique("expired"), constraints=RESPONSES)
    async with running_worker(client, queue, sim, checkpoint_interval=0.2):
        task_id = await tasks.submit_task(task)
        events = await _follow(tasks, task_id)
        result = await tasks.get_result(task_id)
    assert result.status == TaskStatus.COMPLETED, result.error
    kinds = _kinds(sim)
    assert kinds.count("create") == 2 and kinds.count("retrieve_stream") == 1, kinds
    restarts = [e for e in events if isinstance(e, Restart)]
    assert len(restarts) == 1 and restarts[0].discarded  # the first answer's text taken back
    assert functools.reduce(apply_event, events, "") == result.output  # type: ignore[arg-type]
    assert len(result.output.split()) == 60 and result.metadata["restarts"] == 1
    # Both answers were generated, and both are billed: the expired one estimated from
    # what its stream carried (the provider cannot be asked any more), the new one at
    # the provider's own usage.
    expired, fresh = sim.responses.values()
    lost, answered = result.metadata["billing"]
    assert (lost["attempt"], lost["outcome"], lost["estimated"]) == (1, "failed", True), lost
    assert lost["completion_tokens"] == sim.requests[0].tokens_sent > 0
    assert lost["completion_tokens"] <= expired.generated_tokens  # never more than was made
    assert (answered["outcome"], answered["estimated"]) == ("completed", False), answered
    assert answered["completion_tokens"] == fresh.generated_tokens == 60
    assert answered["prompt_tokens"] == fresh.input_tokens
    assert result.metadata["usage_estimated"]  # one part of the bill is an estimate
    # The totals are the sum of the two bills.
    billed = (lost, answered)
    assert result.metadata["input_tokens"] == sum(b["prompt_tokens"] for b in billed)
    assert result.metadata["output_tokens"] == sum(b["completion_tokens"] for b in billed)
    assert result.tokens_used == sum(b["prompt_tokens"] + b["completion_tokens"] for b in billed)
    assert result.cost == pytest.approx(lost["cost"] + answered["cost"], rel=1e-9)


async def test_cancel_reaches_the_providers_cancel(
    client: Client, queue: str, sim: Simulator, tasks: TaskClient
) -> None:
    sim.tokens_per_second, sim.default_tokens = 20, 400  # 20 s: cancelled long before
    task = Task(prompt="cancel me", task_id=unique("cancel"), constraints=RESPONSES)
    async with running_worker(client, queue, sim):
        task_id = await tasks.submit_task(task)
        await sim.wait_for_tokens_sent(0, 10, timeout=30)
        assert await tasks.cancel_task(task_id) is True
        result = await tasks.get_result(task_id)
        reported_at = time.monotonic()
        (response,) = sim.responses.values()
        await sim.wait_until(lambda: response.finished_at is not None, timeout=30)
    assert result.status == TaskStatus.CANCELLED
    assert result.partial_output and len(result.partial_output.split()) >= 10
    # A background answer goes on generating unless told to stop: it was stopped
    # (not completed) before the task reported its end, 400 tokens short of done.
    assert response.status == "cancelled"
    assert response.finished_at is not None and response.finished_at <= reported_at
    assert "cancel" in _kinds(sim)
    assert len(result.partial_output.split()) <= response.generated_tokens < 400
    assert _kinds(sim).count("create") == 1


async def test_a_non_retryable_failure_stops_the_background_answer(
    client: Client, queue: str, sim: Simulator, tasks: TaskClient
) -> None:
    sim.tokens_per_second, sim.default_tokens = 50, 300
    task = Task(prompt="too long", task_id=unique("toolarge"), constraints=RESPONSES)
    async with running_worker(client, queue, sim, max_output_bytes=200):
        task_id = await tasks.submit_task(task)
        with pytest.raises(WorkflowFailureError) as failed:
            await client.get_workflow_handle(task_id).result()
        failed_at = time.monotonic()
        (response,) = sim.responses.values()
        await sim.wait_until(lambda: response.finished_at is not None, timeout=30)
    cause = failed.value.cause
    assert isinstance(cause, ApplicationError), cause
    assert cause.type == OUTPUT_TOO_LARGE and cause.non_retryable
    assert "exceeded 200 bytes" in cause.message and "max_tokens" in cause.message
    # Stopped, not completed, and before the task failed: nothing generates on.
    assert response.status == "cancelled" and response.generated_tokens < 300
    assert response.finished_at is not None and response.finished_at <= failed_at
    assert _kinds(sim).count("create") == 1  # not retried


async def test_chat_opt_in_continues_the_partial_message_without_a_restart(
    client: Client, queue: str, sim: Simulator, tasks: TaskClient
) -> None:
    sim.tokens_per_second, sim.default_tokens = 60, 80
    sim.script(Fault.disconnect(after_tokens=40))
    constraints = TaskConstraints(chat_resume="continue_final_message", timeout_seconds=120)
    task = Task(prompt="continue me", task_id=unique("chatcont"), constraints=constraints)
    async with running_worker(client, queue, sim, checkpoint_interval=0.2):
        task_id = await tasks.submit_task(task)
        events = await _follow(tasks, task_id)
        result = await tasks.get_result(task_id)
    assert result.status == TaskStatus.COMPLETED, result.error
    _, second = sim.requests
    assert second.continuation and 0 < (second.prefix_tokens or 0) <= 40
    # Only the rest was generated again: the continuation plus what the first streamed.
    assert second.tokens_sent + (second.prefix_tokens or 0) == 80
    assert not [e for e in events if isinstance(e, Restart)]
    assert functools.reduce(apply_event, events, "") == result.output  # type: ignore[arg-type]
    assert len(result.output.split()) == 80 and result.metadata["restarts"] == 0
