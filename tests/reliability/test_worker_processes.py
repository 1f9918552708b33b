"""A worker process killed mid-stream: the task completes on another worker."""

from __future__ import annotations

import asyncio
import functools
import signal
from datetime import timedelta

from temporalio.api.enums.v1 import TimeoutType
from temporalio.api.failure.v1 import Failure
from temporalio.client import Client

from ai_orchestrator import Task, TaskClient, TaskStatus, apply_event
from ai_orchestrator.errors import WORKER_SHUTDOWN
from ai_orchestrator.local.devserver import DevServer
from ai_orchestrator.simulator import Simulator

from ..conftest import FAST_RETRY, SECRET_KEY, unique
from ..support.helpers import history_events
from ..support.processes import sigkill_holder, spawn, spawn_ready_worker, stop, worker_env


async def retried_after(client: Client, task_id: str) -> tuple[Failure, timedelta]:
    """Why Temporal started the provider call's last attempt (the failure of the
    attempt before it), and the heartbeat timeout the call was scheduled with, as
    the server recorded them."""
    events = await history_events(client, task_id)
    (scheduled,) = [
        e.activity_task_scheduled_event_attributes
        for e in events
        if e.HasField("activity_task_scheduled_event_attributes")
    ]
    (started,) = [
        e.activity_task_started_event_attributes
        for e in events
        if e.HasField("activity_task_started_event_attributes")
    ]
    assert started.attempt == 2, started
    return started.last_failure, scheduled.heartbeat_timeout.ToTimedelta()


async def test_sigkill_mid_stream_then_new_worker_completes(
    temporal: DevServer, client: Client, queue: str, sim: Simulator, tasks: TaskClient
) -> None:
    sim.tokens_per_second = 20
    sim.default_tokens = 60  # 3 s per attempt
    env = worker_env(temporal.target, queue, sim.base_url, SECRET_KEY)
    # One started as a user starts it (a new interpreter), whatever the suite forks.
    workers = [await spawn_ready_worker(env, fresh=True), await spawn_ready_worker(env)]
    try:
        task_id = await tasks.submit_task(Task(prompt="survive a crash", task_id=unique("kill")))
        events: list[object] = []

        async def follow() -> None:
            async for event in tasks.stream_events(task_id):
                events.append(event)

        follower = asyncio.create_task(follow())
        await sim.wait_for_tokens_sent(0, 15, timeout=60)
        killed_at = await sigkill_holder(client, task_id, workers)
        result = await tasks.get_result(task_id, timeout=60)
        await asyncio.wait_for(follower, 30)
    finally:
        for worker in workers:
            await stop(worker)

    assert result.status == TaskStatus.COMPLETED
    assert len(sim.requests) == 2 and result.metadata["attempts"] == 2
    print(f"new attempt {sim.requests[1].received_at - killed_at:.2f}s after SIGKILL")
    # The kill ended the first stream, then the dead attempt's heartbeat timed out and
    # only then was the new one started: the task's 2 s heartbeat timeout, not its
    # whole time budget, bounds the wait (how long it takes is the benchmark's).
    first_ended = sim.requests[0].ended_at
    assert first_ended is not None and first_ended < sim.requests[1].received_at
    assert killed_at < sim.requests[1].received_at
    why, heartbeat_timeout = await retried_after(client, task_id)
    assert why.timeout_failure_info.timeout_type == TimeoutType.TIMEOUT_TYPE_HEARTBEAT, why
    assert heartbeat_timeout == timedelta(seconds=FAST_RETRY.heartbeat_timeout_seconds)
    assert len(result.output.split()) == 60
    # The follower saw the first attempt's text taken back, then the second attempt.
    assert functools.reduce(apply_event, events, "") == result.output  # type: ignore[arg-type]


async def test_sigterm_mid_stream_hands_the_attempt_over(
    temporal: DevServer, client: Client, queue: str, sim: Simulator, tasks: TaskClient
) -> None:
    """A hand-over, not a heartbeat timeout: with a 30 s heartbeat timeout the next
    attempt still starts within seconds, and with no provider fault allowed
    (max_attempts=1) the hand-over does not use up the task."""
    tasks = TaskClient(
        client,
        task_queue=queue,
        retry=FAST_RETRY.model_copy(update={"heartbeat_timeout_seconds": 30.0, "max_attempts": 1}),
    )
    sim.tokens_per_second = 10
    sim.default_tokens = 80  # 8 s: longer than the grace period
    env = worker_env(temporal.target, queue, sim.base_url, SECRET_KEY)
    env["AI_ORCHESTRATOR_GRACEFUL_SHUTDOWN_SECONDS"] = "1"
    first = await spawn("-m", "ai_orchestrator", "worker", env=env)
    second = None
    try:
        task_id = await tasks.submit_task(Task(prompt="graceful", task_id=unique("term")))
        await sim.wait_for_tokens_sent(0, 5, timeout=60)
        first.send_signal(signal.SIGTERM)
        await asyncio.wait_for(first.wait(), 60)  # a hang guard: it must exit by itself
        second = await spawn("-m", "ai_orchestrator", "worker", env=env)
        sim.tokens_per_second = 200
        result = await tasks.get_result(task_id, timeout=60)
    finally:
        await stop(first)
        if second is not None:
            await stop(second)
    assert first.returncode == 0  # it stopped cleanly, after its grace period
    # The stream was closed (not abandoned), and the next attempt called the
    # provider only after that.
    first_ended = sim.requests[0].ended_at
    assert sim.requests[0].disconnected and first_ended is not None
    assert first_ended < sim.requests[1].received_at
    assert result.status == TaskStatus.COMPLETED and result.metadata["attempts"] == 2
    # Handed over: the next attempt followed the first one's hand-over failure, not a
    # heartbeat timeout (30 s here) nor a provider fault (none was allowed).
    print(f"next attempt {sim.requests[1].received_at - first_ended:.2f}s after the first")
    why, heartbeat_timeout = await retried_after(client, task_id)
    assert why.application_failure_info.type == WORKER_SHUTDOWN, why
    assert not why.HasField("timeout_failure_info"), why
    assert heartbeat_timeout == timedelta(seconds=30)  # what it did not wait for
    assert [b["outcome"] for b in result.metadata["billing"]] == ["handed_over", "completed"]


async def test_sigterm_lets_a_short_attempt_finish(
    temporal: DevServer, client: Client, queue: str, sim: Simulator, tasks: TaskClient
) -> None:
    sim.tokens_per_second = 20
    sim.default_tokens = 30  # 1.5 s: well within the default 10 s grace period
    env = worker_env(temporal.target, queue, sim.base_url, SECRET_KEY)
    worker = await spawn("-m", "ai_orchestrator", "worker", env=env)
    successor = None
    try:
        task_id = await tasks.submit_task(Task(prompt="finish me", task_id=unique("fin")))
        await sim.wait_for_tokens_sent(0, 5, timeout=60)
        worker.send_signal(signal.SIGTERM)
        await asyncio.wait_for(worker.wait(), 20)
        # The attempt finished on the stopping worker; any live worker records the result.
        successor = await spawn("-m", "ai_orchestrator", "worker", env=env)
        result = await tasks.get_result(task_id, timeout=30)
    finally:
        await stop(worker)
        if successor is not None:
            await stop(successor)
    assert worker.returncode == 0
    assert result.status == TaskStatus.COMPLETED and result.metadata["attempts"] == 1
    assert len(sim.requests) == 1 and sim.requests[0].finished  # not paid for twice
