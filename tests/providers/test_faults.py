"""Provider faults through the durable path: Temporal is the only retry layer."""

from __future__ import annotations

import functools

import pytest
from temporalio.client import Client

from ai_orchestrator import (
    Finished,
    Restart,
    RetrySettings,
    Task,
    TaskClient,
    TaskConstraints,
    TaskFailedError,
    TaskStatus,
    TaskValidationError,
    allow_list,
    apply_event,
)
from ai_orchestrator.simulator import Fault, Simulator

from ..conftest import SECRET_KEY, running_worker, unique
from ..support.helpers import activity_attempts, history_events, raw_history


async def test_rate_limit_waits_for_retry_after(
    client: Client, queue: str, sim: Simulator, tasks: TaskClient
) -> None:
    sim.script(Fault.rate_limit(retry_after=2))
    async with running_worker(client, queue, sim):
        result = await tasks.execute(Task(prompt="busy", task_id=unique("429")))
    assert result.status == TaskStatus.COMPLETED
    assert len(sim.requests) == 2
    gap = sim.requests[1].received_at - sim.requests[0].received_at
    assert gap >= 2.0, f"next attempt after {gap:.2f}s, Retry-After asked 2s"
    events = await history_events(client, result.task.task_id or "")
    assert activity_attempts(events) == [2]  # the completed attempt, recorded by Temporal


async def test_auth_error_fails_after_one_request_without_leaking_the_key(
    client: Client, queue: str, sim: Simulator, tasks: TaskClient
) -> None:
    sim.script(Fault.status(401))
    task_id = unique("401")
    async with running_worker(client, queue, sim):
        result = await tasks.execute(Task(prompt="who am i", task_id=task_id))
    assert result.status == TaskStatus.FAILED and len(sim.requests) == 1
    assert "HTTP 401" in (result.error or "") and "req_sim_0" in (result.error or "")
    assert "Incorrect API key" in (result.error or "")
    assert SECRET_KEY not in (result.error or "")
    assert sim.requests[0].authorization == f"Bearer {SECRET_KEY}"  # the key was really used
    stored = await raw_history(client, task_id)
    assert b"who am i" in stored  # positive control: payloads are searchable raw
    assert SECRET_KEY.encode() not in stored and SECRET_KEY[:12].encode() not in stored


async def test_api_key_never_in_history_of_a_streamed_task(
    client: Client, queue: str, sim: Simulator, tasks: TaskClient
) -> None:
    sim.tokens_per_second = 60
    task_id = unique("secret")
    # Checkpoints as often as they come, so that several chunk signals are searched.
    async with running_worker(client, queue, sim, checkpoint_interval=0.1):
        result = await tasks.execute(Task(prompt="stream with secret around", task_id=task_id))
    assert result.metadata["signals"] >= 1
    assert SECRET_KEY.encode() not in await raw_history(client, task_id)


async def test_restart_after_cut_stream_is_visible_and_never_mixed(
    client: Client, queue: str, sim: Simulator, tasks: TaskClient
) -> None:
    sim.tokens_per_second = 40
    sim.script(Fault.disconnect(after_tokens=12))
    async with running_worker(client, queue, sim):
        task_id = await tasks.submit_task(Task(prompt="flaky", task_id=unique("restart")))
        events = [e async for e in tasks.stream_events(task_id)]
    result = events[-1].result if isinstance(events[-1], Finished) else None
    assert result is not None and result.status == TaskStatus.COMPLETED
    assert len(sim.requests) == 2 and result.metadata["attempts"] == 2
    # Replaying the events the way a UI would gives exactly the final text.
    assert functools.reduce(apply_event, events, "") == result.output
    assert any(isinstance(e, Restart) for e in events), "first attempt streamed text before the cut"


async def test_plain_stream_continues_seamlessly_over_identical_retry(
    client: Client, queue: str, sim: Simulator, tasks: TaskClient
) -> None:
    sim.tokens_per_second = 40
    sim.script(Fault.no_finish(after_tokens=12))
    async with running_worker(client, queue, sim):
        task_id = await tasks.submit_task(Task(prompt="deterministic", task_id=unique("seam")))
        text = "".join([c async for c in tasks.stream_result(task_id)])
        result = await tasks.get_result(task_id)
    assert result.metadata["attempts"] == 2 and text == result.output
    assert len(result.output.split()) == 24  # one attempt's complete text, not 12 + 24


async def test_failed_task_raises_from_plain_stream(
    client: Client, queue: str, sim: Simulator, tasks: TaskClient
) -> None:
    sim.script(Fault.status(400, message="bad request"))
    async with running_worker(client, queue, sim):
        task_id = await tasks.submit_task(Task(prompt="bad", task_id=unique("fail")))
        with pytest.raises(TaskFailedError, match="HTTP 400"):
            async for _ in tasks.stream_result(task_id):
                pass


async def test_server_errors_are_bounded(
    client: Client, queue: str, sim: Simulator, tasks: TaskClient
) -> None:
    sim.script(Fault.status(503, times=50))
    async with running_worker(client, queue, sim):
        result = await tasks.execute(Task(prompt="down", task_id=unique("503")))
    assert result.status == TaskStatus.FAILED and "HTTP 503" in (result.error or "")
    assert len(sim.requests) == tasks.retry.max_attempts


async def test_bad_input_is_rejected_before_anything_starts(
    client: Client, queue: str, tasks: TaskClient
) -> None:
    strict = TaskClient(client, task_queue=queue, pricing=allow_list(["gpt-4o-mini"]))
    with pytest.raises(TaskValidationError, match="gpt-9"):
        await strict.submit_task(
            Task(prompt="x", task_id=unique("model"), constraints=TaskConstraints(model="gpt-9"))
        )
    with pytest.raises(TaskValidationError, match="limit"):
        await tasks.submit_task(Task(prompt="x" * 1_000_000, task_id=unique("huge")))
    with pytest.raises(ValueError, match="max_interval_seconds"):
        RetrySettings(initial_interval_seconds=60)  # Temporal would refuse this policy
