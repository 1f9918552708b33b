"""A worker SIGKILLed mid-answer: another worker re-attaches to the same response."""

from __future__ import annotations

import asyncio
import functools
from datetime import timedelta

from temporalio.api.enums.v1 import TimeoutType
from temporalio.client import Client

from ai_orchestrator import Task, TaskClient, TaskConstraints, TaskStatus, apply_event
from ai_orchestrator.client import Restart, StreamEvent
from ai_orchestrator.local.devserver import DevServer
from ai_orchestrator.simulator import Simulator

from ..conftest import FAST_RETRY, SECRET_KEY, unique
from ..support.helpers import history_events
from ..support.processes import sigkill_holder, spawn_ready_worker, stop, worker_env


async def test_sigkilled_workers_answer_continues_on_the_standby_from_its_checkpoint(
    temporal: DevServer, client: Client, queue: str, sim: Simulator, tasks: TaskClient
) -> None:
    sim.tokens_per_second, sim.default_tokens = 20, 80  # 4 s per answer
    env = worker_env(temporal.target, queue, sim.base_url, SECRET_KEY)
    env["AI_ORCHESTRATOR_OPENAI_API"] = "responses"  # the worker's setting, not the task's
    workers = [await spawn_ready_worker(env), await spawn_ready_worker(env)]
    try:
        task = Task(prompt="survive a crash", task_id=unique("kill"))
        task.constraints = TaskConstraints(timeout_seconds=120)
        task_id = await tasks.submit_task(task)
        events: list[StreamEvent] = []

        async def follow() -> None:
            async for event in tasks.stream_events(task_id):
                events.append(event)

        follower = asyncio.create_task(follow())
        await sim.wait_for_tokens_sent(0, 30, timeout=60)
        killed_at = await sigkill_holder(client, task_id, workers)
        result = await tasks.get_result(task_id, timeout=60)
        await asyncio.wait_for(follower, 30)
    finally:
        for worker in workers:
            await stop(worker)

    assert result.status == TaskStatus.COMPLETED, result.error
    calls = [(r.kind, r.received_at) for r in sim.requests if r.api == "responses"]
    kinds = [kind for kind, _ in calls]
    assert kinds.count("create") == 1, kinds  # the answer was paid for once
    reattached_at = next(at for kind, at in calls if kind == "retrieve_stream")
    print(f"re-attached {reattached_at - killed_at:.2f}s after SIGKILL")
    # The standby re-attached after the kill, in the attempt Temporal started once the
    # dead one's heartbeat timed out: the task's 2 s heartbeat timeout, not its whole
    # time budget, bounds the wait (how long it takes is the benchmark's to measure).
    assert killed_at < reattached_at
    history = await history_events(client, task_id)
    (scheduled,) = [
        e.activity_task_scheduled_event_attributes
        for e in history
        if e.HasField("activity_task_scheduled_event_attributes")
    ]
    heartbeat_timeout = scheduled.heartbeat_timeout.ToTimedelta()
    assert heartbeat_timeout == timedelta(seconds=FAST_RETRY.heartbeat_timeout_seconds)
    (started,) = [
        e.activity_task_started_event_attributes
        for e in history
        if e.HasField("activity_task_started_event_attributes")
    ]
    why = started.last_failure
    assert started.attempt == 2, started
    assert why.timeout_failure_info.timeout_type == TimeoutType.TIMEOUT_TYPE_HEARTBEAT, why
    (response,) = sim.responses.values()
    assert response.generated_tokens == 80 and len(result.output.split()) == 80
    # One continuous text for the reader: no restart, nothing mixed.
    assert not [e for e in events if isinstance(e, Restart)]
    assert functools.reduce(apply_event, events, "") == result.output  # type: ignore[arg-type]
    assert result.metadata["restarts"] == 0 and result.metadata["attempts"] == 2
    billed = result.metadata["billing"]
    assert sum(b["completion_tokens"] for b in billed) == 80, billed  # the lost part is not extra
