"""Cancel latency and recovery from a killed worker."""

from __future__ import annotations

import time
import uuid

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


async def sigkill_recovery_s(b: Bench, retry: RetrySettings) -> float:
    """From SIGKILL of the streaming worker to the next attempt's first token.

    Two workers poll the queue, as in any deployment with more than one; the one
    that the server says runs the attempt is killed.
    """
    b.sim.tokens_per_second, b.sim.default_tokens = 20, 400
    queue = f"kill-{uuid.uuid4().hex[:8]}"
    tasks = TaskClient(b.client, task_queue=queue, retry=retry)
    workers = [await b.spawn_ready(queue), await b.spawn_ready(queue)]
    try:
        index = len(b.sim.requests)
        task_id = await tasks.submit_task(Task(prompt="survive"))
        await b.sim.wait_for_tokens_sent(index, 10, timeout=60)
        desc = await b.client.get_workflow_handle(task_id).describe()
        holder = desc.raw_description.pending_activities[0].last_worker_identity
        victim = next(w for w in workers if holder.startswith(f"{w.pid}@"))
        killed = time.monotonic()
        victim.kill()
        await victim.wait()
        await b.sim.wait_for_requests(index + 2, timeout=60)
        await b.sim.wait_until(lambda: bool(b.sim.requests[index + 1].token_sent_at), timeout=30)
        recovery = b.sim.requests[index + 1].token_sent_at[0] - killed
        await tasks.cancel_task(task_id)
        await tasks.get_result(task_id, timeout=30)
        return recovery
    finally:
        for worker in workers:
            await stop(worker)
