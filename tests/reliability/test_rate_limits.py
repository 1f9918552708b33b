"""429s: Retry-After honoured (seconds and ms), deadlines respected, quota not retried."""

from __future__ import annotations

import itertools

from temporalio.client import Client

from ai_orchestrator import Task, TaskClient, TaskConstraints, TaskStatus
from ai_orchestrator.errors import DEADLINE_EXCEEDED
from ai_orchestrator.simulator import Fault, Simulator

from ..conftest import running_worker, unique
from ..support.helpers import activity_attempts, history_events


def gaps(sim: Simulator) -> list[float]:
    times = [r.received_at for r in sim.requests]
    return [b - a for a, b in itertools.pairwise(times)]


async def test_repeated_429_waits_each_time_then_succeeds(
    client: Client, queue: str, sim: Simulator, tasks: TaskClient
) -> None:
    sim.script(
        Fault.rate_limit(retry_after=1),
        Fault.rate_limit(retry_after=None, retry_after_ms=1500),
        Fault.rate_limit(retry_after=0.5),
    )
    async with running_worker(client, queue, sim):
        result = await tasks.execute(Task(prompt="popular", task_id=unique("429s")))
    assert result.status == TaskStatus.COMPLETED
    assert len(sim.requests) == 4  # faults + 1
    asked = [1.0, 1.5, 0.5]
    print(f"429 x3: {len(sim.requests)} requests, gaps {[round(g, 2) for g in gaps(sim)]} s")
    for gap, wanted in zip(gaps(sim), asked, strict=True):
        assert gap >= wanted, f"waited {gap:.2f}s, Retry-After asked {wanted}s"
    assert activity_attempts(await history_events(client, result.task.task_id or "")) == [4]


async def test_retry_after_beyond_deadline_fails_fast(
    client: Client, queue: str, sim: Simulator, tasks: TaskClient
) -> None:
    sim.script(Fault.rate_limit(retry_after=60))
    task = Task(
        prompt="hurry", task_id=unique("late"), constraints=TaskConstraints(timeout_seconds=10)
    )
    async with running_worker(client, queue, sim):
        result = await tasks.get_result(await tasks.submit_task(task), timeout=20)
    assert result.status == TaskStatus.FAILED and len(sim.requests) == 1
    assert "rate limited beyond the task's deadline" in (result.error or "")
    assert "60.0s" in (result.error or "")
    events = await history_events(client, task.task_id or "")
    failed = [e for e in events if e.HasField("activity_task_failed_event_attributes")]
    assert len(failed) == 1  # one attempt, no waiting
    failure = failed[0].activity_task_failed_event_attributes.failure
    assert failure.application_failure_info.type == DEADLINE_EXCEEDED
    assert failure.application_failure_info.non_retryable


async def test_quota_exhausted_is_one_request_and_a_clear_error(
    client: Client, queue: str, sim: Simulator, tasks: TaskClient
) -> None:
    sim.script(Fault.rate_limit(quota_exhausted=True))
    async with running_worker(client, queue, sim):
        result = await tasks.execute(Task(prompt="broke", task_id=unique("quota")))
    assert result.status == TaskStatus.FAILED and len(sim.requests) == 1
    assert "HTTP 429" in (result.error or "") and "quota" in (result.error or "")
