"""A worker process killed mid-stream: the task completes on another worker."""

from __future__ import annotations

import asyncio
import functools
import signal
import time

from temporalio.client import Client

from ai_orchestrator import Task, TaskClient, TaskStatus, apply_event
from ai_orchestrator.local.devserver import DevServer
from ai_orchestrator.simulator import Simulator

from ..conftest import FAST_RETRY, SECRET_KEY, unique
from ..integration.processes import sigkill_holder, spawn, spawn_ready_worker, stop, worker_env


async def test_sigkill_mid_stream_then_new_worker_completes(
    temporal: DevServer, client: Client, queue: str, sim: Simulator, tasks: TaskClient
) -> None:
    sim.tokens_per_second = 20
    sim.default_tokens = 60  # 3 s per attempt
    env = worker_env(temporal.target, queue, sim.base_url, SECRET_KEY)
    workers = [await spawn_ready_worker(env), await spawn_ready_worker(env)]
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
    restart_after = sim.requests[1].received_at - killed_at
    print(f"new attempt {restart_after:.2f}s after SIGKILL")
    assert restart_after <= FAST_RETRY.heartbeat_timeout_seconds + 2  # the bound
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
        termed_at = time.monotonic()
        await asyncio.wait_for(first.wait(), 15)
        exit_after = time.monotonic() - termed_at
        second = await spawn("-m", "ai_orchestrator", "worker", env=env)
        sim.tokens_per_second = 200
        result = await tasks.get_result(task_id, timeout=60)
    finally:
        await stop(first)
        if second is not None:
            await stop(second)
    assert first.returncode == 0 and exit_after < 10  # grace (1 s) + hand-over, bounded
    assert sim.requests[0].disconnected  # the stream was closed, not abandoned
    assert result.status == TaskStatus.COMPLETED and result.metadata["attempts"] == 2
    # Handed over at once: a heartbeat timeout would have taken 30 s.
    gap = sim.requests[1].received_at - sim.requests[0].ended_at  # type: ignore[operator]
    print(f"next attempt {gap:.2f}s after the first stream closed")
    assert gap < 15
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
