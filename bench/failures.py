"""Cancel latency and recovery from a killed worker."""

from __future__ import annotations

import asyncio
import time
import uuid

from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

from ai_orchestrator import RetrySettings, Task, TaskClient

from .context import Bench, stop


async def cancel_latency_ms(b: Bench) -> float:
    """From ``cancel_task`` to the simulator seeing its connection closed."""
    b.sim.tokens_per_second, b.sim.default_tokens = 20, 400
    index = len(b.sim.requests)
    task_id = await b.tasks.submit_task(Task(prompt="cancel me"))
    await b.sim.wait_for_tokens_sent(index, 10, timeout=30)
    start = time.monotonic()
    await b.tasks.cancel_task(task_id)
    await b.sim.wait_until(lambda: b.sim.requests[index].disconnected, timeout=15)
    ended = b.sim.requests[index].ended_at
    assert ended is not None
    return (ended - start) * 1000


async def _activity_pollers(b: Bench, queue: str) -> int:
    response = await b.client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=b.client.namespace,
            task_queue=TaskQueue(name=queue),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
        )
    )
    return len(response.pollers)


async def sigkill_recovery_s(b: Bench, retry: RetrySettings) -> float:
    """From SIGKILL of the streaming worker to the next attempt's first token.

    A standby worker is already polling, as in any deployment with more than one.
    """
    b.sim.tokens_per_second, b.sim.default_tokens = 20, 400
    queue = f"kill-{uuid.uuid4().hex[:8]}"
    tasks = TaskClient(b.client, task_queue=queue, retry=retry)
    first = await b.spawn("ai_orchestrator", "worker", queue=queue)
    standby = None
    try:
        index = len(b.sim.requests)
        task_id = await tasks.submit_task(Task(prompt="survive"))
        await b.sim.wait_for_tokens_sent(index, 10, timeout=60)
        standby = await b.spawn("ai_orchestrator", "worker", queue=queue)
        for _ in range(150):
            if await _activity_pollers(b, queue) >= 2:
                break
            await asyncio.sleep(0.2)
        killed = time.monotonic()
        first.kill()
        await first.wait()
        await b.sim.wait_for_requests(index + 2, timeout=60)
        await b.sim.wait_until(lambda: bool(b.sim.requests[index + 1].token_sent_at), timeout=30)
        recovery = b.sim.requests[index + 1].token_sent_at[0] - killed
        await tasks.cancel_task(task_id)
        await tasks.get_result(task_id, timeout=30)
        return recovery
    finally:
        await stop(first)
        if standby is not None:
            await stop(standby)
