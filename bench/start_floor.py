"""The floor under "time to first chunk from submission": bare workflows started together.

When hundreds of tasks are submitted at once, a task's first chunk waits first
for its workflow to start and its activity to be dispatched, which is the
server's work whatever the task does. Bare one-activity workflows (no
streaming, no live channel, on a worker polling like ours), submitted the same
way in the same run, measure that wait: from submit to the provider request.
"""

from __future__ import annotations

import asyncio
import time
import uuid

from ai_orchestrator.config import WorkerTuning

from .baselines import BareWorkflow, baseline_worker
from .context import Bench, prompt_of
from .stats import pct


async def bare_start_floor(b: Bench, n: int, parallel: int) -> dict[str, float] | None:
    """p50/p95 ms from each bare workflow's submit to its provider request; None if
    none could be timed."""
    queue = f"floor-{uuid.uuid4().hex[:6]}"
    pollers = WorkerTuning().workflow_pollers
    async with baseline_worker(b.client, queue, b.openai, workflow_pollers=pollers):
        return await _measure(b, queue, n, parallel)


async def _measure(b: Bench, queue: str, n: int, parallel: int) -> dict[str, float] | None:
    saved = b.sim.tokens_per_second, b.sim.default_tokens
    b.sim.tokens_per_second, b.sim.default_tokens = 0, 4
    first = len(b.sim.requests)
    tag = uuid.uuid4().hex[:6]
    gate = asyncio.Semaphore(parallel)
    submitted: dict[str, float] = {}

    async def one(i: int) -> None:
        prompt = f"floor {tag} {i}"
        async with gate:
            at = time.monotonic()
            handle = await b.client.start_workflow(
                BareWorkflow.run, prompt, id=f"floor-{tag}-{i}", task_queue=queue
            )
        submitted[prompt] = at
        await handle.result()

    try:
        await asyncio.gather(*(one(i) for i in range(n)))
    finally:
        b.sim.tokens_per_second, b.sim.default_tokens = saved
    arrived: dict[str, float] = {}
    for record in b.sim.requests[first:]:
        arrived.setdefault(prompt_of(record), record.received_at)
    delays = [(arrived[p] - at) * 1000 for p, at in submitted.items() if p in arrived]
    if not delays:
        return None
    return {"p50": pct(delays, 0.5), "p95": pct(delays, 0.95), "n": float(len(delays))}
