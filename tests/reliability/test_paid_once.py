"""Cancel stops paying, and every attempt is billed, whatever state the task is in.

Each test puts a task in one unlucky state (a create still on its way, the
backoff between attempts, a re-attach refused for good, a fallback) and checks
the provider's side: the simulator's own record of each response says whether
it was stopped and how much it generated, and the task's bill must match it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from temporalio.api.enums.v1 import PendingActivityState
from temporalio.client import Client

from ai_orchestrator import RetrySettings, Task, TaskClient, TaskConstraints, TaskStatus
from ai_orchestrator.simulator import Fault, Simulator

from ..conftest import FAST_RETRY, running_worker, unique
from ..providers.test_platforms import vendor_worker

#: Long enough a backoff (5-10 s) to cancel a task inside it.
SLOW_RETRY = RetrySettings(
    max_attempts=4,
    initial_interval_seconds=5.0,
    max_interval_seconds=20.0,
    heartbeat_timeout_seconds=2.0,
)
ANSWER = 60  # tokens, 6 s at 10/s: long enough to be stopped midway


def _task(prefix: str, **constraints: Any) -> Task:
    return Task(
        prompt="a long answer",
        task_id=unique(prefix),
        constraints=TaskConstraints(timeout_seconds=120, **constraints),
    )


async def _in_backoff(client: Client, task_id: str) -> None:
    """Until the provider activity has failed once and waits for its next attempt."""
    handle = client.get_workflow_handle(task_id)
    for _ in range(300):
        desc = await handle.describe()
        for pending in desc.raw_description.pending_activities:
            if (
                pending.state == PendingActivityState.PENDING_ACTIVITY_STATE_SCHEDULED
                and pending.attempt >= 2
                and pending.HasField("last_failure")
            ):
                return
        await asyncio.sleep(0.1)
    raise AssertionError("the activity never went into backoff")


def _real_bill(billing: list[dict[str, Any]], response_id: str) -> dict[str, Any]:
    [bill] = [b for b in billing if b["response_id"] == response_id]
    assert not bill["estimated"], billing
    return bill


async def test_a_cancel_during_the_backoff_stops_the_background_answer_and_bills_it(
    client: Client, queue: str, sim: Simulator
) -> None:
    sim.tokens_per_second, sim.default_tokens = 10, ANSWER
    sim.script(Fault.drop_stream(after_events=8))  # 4 deltas, then the connection drops
    tasks = TaskClient(client, task_queue=queue, retry=SLOW_RETRY)
    async with running_worker(client, queue, sim):
        task_id = await tasks.submit_task(_task("paid-bo", openai_api="responses"))
        await _in_backoff(client, task_id)
        await tasks.cancel_task(task_id)
        result = await tasks.get_result(task_id, timeout=60)
    assert result.status == TaskStatus.CANCELLED, result.error
    (response,) = sim.responses.values()
    assert response.status == "cancelled" and response.generated_tokens < ANSWER
    bill = _real_bill(result.metadata["billing"], response.id)
    assert (bill["prompt_tokens"], bill["completion_tokens"]) == (
        response.input_tokens,
        response.generated_tokens,
    )
    assert result.cost == bill["cost"] > 0 and result.tokens_used == (
        response.input_tokens + response.generated_tokens
    )
    assert len(result.partial_output.split()) == 4  # the text readers saw


async def test_chat_a_cancel_during_the_backoff_keeps_the_broken_attempts_bill(
    client: Client, queue: str, sim: Simulator
) -> None:
    sim.tokens_per_second, sim.default_tokens = 50, ANSWER
    sim.script(Fault.disconnect(after_tokens=5))
    tasks = TaskClient(client, task_queue=queue, retry=SLOW_RETRY)
    async with running_worker(client, queue, sim):
        task_id = await tasks.submit_task(_task("paid-chat"))
        await _in_backoff(client, task_id)
        await tasks.cancel_task(task_id)
        result = await tasks.get_result(task_id, timeout=60)
    assert result.status == TaskStatus.CANCELLED, result.error
    [bill] = result.metadata["billing"]
    assert (bill["outcome"], bill["completion_tokens"], bill["estimated"]) == ("failed", 5, True)
    assert bill["cost"] > 0 and result.cost == bill["cost"]
    assert result.tokens_used == bill["prompt_tokens"] + 5 and bill["prompt_tokens"] > 0
    assert len(result.partial_output.split()) == 5  # what readers saw is kept too


@pytest.mark.parametrize(
    "fault",
    [
        # Created at once, its reply's first byte 3 s later: the create is in flight.
        Fault.slow_start(seconds=3.0),
        # Headers at once, ``response.created`` 3 s later: the attempt is already
        # reading the stream, and must not lose the answer's name with the cancel.
        Fault.slow_events(seconds=3.0),
    ],
    ids=["create-in-flight", "first-event-late"],
)
async def test_a_cancel_before_the_answer_is_named_stops_it_once_it_is(
    client: Client, queue: str, sim: Simulator, tasks: TaskClient, fault: Fault
) -> None:
    sim.tokens_per_second, sim.default_tokens = 10, ANSWER
    sim.script(fault)
    async with running_worker(client, queue, sim):
        task_id = await tasks.submit_task(_task("paid-named", openai_api="responses"))
        await sim.wait_until(lambda: len(sim.responses) == 1, timeout=30)
        await asyncio.sleep(0.5)  # headers in (first-event-late), nothing named either way
        await tasks.cancel_task(task_id)
        result = await tasks.get_result(task_id, timeout=60)
    assert result.status == TaskStatus.CANCELLED, result.error
    (response,) = sim.responses.values()
    await sim.wait_until(lambda: response.status == "cancelled", timeout=20)
    assert response.generated_tokens < ANSWER
    assert [r.kind for r in sim.requests].count("create") == 1
    bill = _real_bill(result.metadata["billing"], response.id)
    assert bill["prompt_tokens"] == response.input_tokens and result.cost > 0


async def test_a_reattach_refused_for_good_stops_the_answer(
    client: Client, queue: str, sim: Simulator, tasks: TaskClient
) -> None:
    sim.tokens_per_second, sim.default_tokens = 10, ANSWER
    sim.script(Fault.drop_stream(after_events=8), Fault.reattach_refused(status_code=403))
    async with running_worker(client, queue, sim):
        result = await tasks.execute(_task("paid-403", openai_api="responses"))
    assert result.status == TaskStatus.FAILED and "403" in (result.error or "")
    (response,) = sim.responses.values()
    await sim.wait_until(lambda: response.status == "cancelled", timeout=20)
    assert response.generated_tokens < ANSWER
    bill = _real_bill(result.metadata["billing"], response.id)
    assert bill["completion_tokens"] == response.generated_tokens and result.cost > 0


async def test_a_fallback_stops_the_answer_it_leaves_and_names_what_it_called(
    client: Client, queue: str, sim: Simulator, tasks: TaskClient
) -> None:
    """A 429 beyond the deadline while re-attaching moves the task to Claude."""
    sim.tokens_per_second, sim.default_tokens = 10, ANSWER
    sim.script(
        Fault.drop_stream(after_events=8), Fault.reattach_refused(status_code=429, retry_after=900)
    )
    task = Task(
        prompt="a long answer",
        task_id=unique("paid-fb"),
        constraints=TaskConstraints(
            openai_api="responses", fallback_models=["claude-sonnet-4-6"], timeout_seconds=120
        ),
    )
    async with vendor_worker(client, queue, sim):
        result = await tasks.execute(task)
    assert result.status == TaskStatus.COMPLETED, result.error
    [response] = [r for r in sim.responses.values()]
    assert response.status == "cancelled" and response.generated_tokens < ANSWER
    # The leg that failed is named by what was called: the worker's default model.
    leg = result.metadata["route"][0]
    assert (leg["model"], leg["platform"], leg["outcome"]) == ("gpt-4o-mini", "chatgpt", "failed")
    assert leg["error_type"] == "RateLimitedBeyondDeadline"
    stopped = _real_bill(result.metadata["billing"], response.id)
    assert stopped["completion_tokens"] == response.generated_tokens
    assert result.cost > stopped["cost"] > 0  # both models' answers are in the bill


async def test_retries_without_retry_after_back_off_with_jitter(
    client: Client, queue: str, sim: Simulator
) -> None:
    """Temporal's own backoff has no jitter and rounds early delays up to 1 s: three
    retries in a row would all wait exactly 1 s. The server's schedule for each
    retry shows the delay the attempt asked for."""
    sim.tokens_per_second = 200
    sim.script(Fault.status(500, times=3))
    retry = FAST_RETRY.model_copy(update={"max_attempts": 6, "max_interval_seconds": 8.0})
    tasks = TaskClient(client, task_queue=queue, retry=retry)
    delays: dict[int, float] = {}
    async with running_worker(client, queue, sim):
        task_id = await tasks.submit_task(_task("paid-jit"))
        handle = client.get_workflow_handle(task_id)
        result_task = asyncio.create_task(tasks.get_result(task_id, timeout=60))
        while not result_task.done():
            for pending in (await handle.describe()).raw_description.pending_activities:
                if pending.HasField("next_attempt_schedule_time"):
                    wait = (
                        pending.next_attempt_schedule_time.ToDatetime()
                        - pending.last_attempt_complete_time.ToDatetime()
                    )
                    delays[pending.attempt] = wait.total_seconds()
            await asyncio.sleep(0.1)
        result = await result_task
    assert result.status == TaskStatus.COMPLETED, result.error
    assert sorted(delays) == [2, 3, 4], delays
    assert all(1.0 <= d <= 8.0 for d in delays.values()), delays
    assert len({round(d, 3) for d in delays.values()}) == 3, delays  # never one fixed interval
