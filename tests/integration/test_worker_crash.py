"""A worker process killed mid-stream: the task completes on another worker."""

from __future__ import annotations

import asyncio
import signal
import time

from temporalio.client import Client

from ai_orchestrator import Restart, Task, TaskClient, TaskStatus, TextDelta
from ai_orchestrator.devserver import DevServer
from ai_orchestrator.simulator import Simulator

from ..conftest import FAST_RETRY, SECRET_KEY, unique
from .processes import spawn, stop, worker_env


async def test_sigkill_mid_stream_then_new_worker_completes(
    temporal: DevServer, client: Client, queue: str, sim: Simulator, tasks: TaskClient
) -> None:
    sim.tokens_per_second = 20
    sim.default_tokens = 60  # 3 s per attempt
    env = worker_env(temporal.target, queue, sim.base_url, SECRET_KEY)
    first = await spawn("-m", "ai_orchestrator", "worker", env=env)
    second = None
    try:
        task_id = await tasks.submit_task(Task(prompt="survive a crash", task_id=unique("kill")))
        events: list[object] = []

        async def follow() -> None:
            async for event in tasks.stream_events(task_id):
                events.append(event)

        follower = asyncio.create_task(follow())
        await sim.wait_for_tokens_sent(0, 15, timeout=60)
        first.send_signal(signal.SIGKILL)
        await first.wait()
        killed_at = time.monotonic()
        second = await spawn("-m", "ai_orchestrator", "worker", env=env)
        result = await tasks.get_result(task_id, timeout=60)
        await asyncio.wait_for(follower, 30)
    finally:
        await stop(first)
        if second is not None:
            second.send_signal(signal.SIGTERM)
            await asyncio.wait_for(second.wait(), 30)

    assert result.status == TaskStatus.COMPLETED
    assert len(sim.requests) == 2 and result.metadata["attempts"] == 2
    restart_after = sim.requests[1].received_at - killed_at
    assert (
        restart_after <= FAST_RETRY.heartbeat_timeout_seconds + 2 + FAST_RETRY.max_interval_seconds
    )
    assert len(result.output.split()) == 60
    # The follower saw the first attempt's text taken back, then the second attempt.
    shown = ""
    for event in events:
        if isinstance(event, Restart):
            shown = shown[: len(shown) - len(event.discarded)]
        elif isinstance(event, TextDelta):
            shown += event.text
    assert shown == result.output
    assert second is not None and second.returncode == 0  # SIGTERM: clean exit
