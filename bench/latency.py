"""Non-streamed tasks: one at a time (latency) and many at once (throughput)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable
from typing import Any

from ai_orchestrator import Task

from .baselines import BareWorkflow
from .context import Bench
from .stats import history_stats, pct


async def _timed(awaitable: Awaitable[Any]) -> float:
    start = time.perf_counter()
    await awaitable
    return (time.perf_counter() - start) * 1000


async def one_at_a_time(b: Bench, n: int) -> dict[str, dict[str, float]]:
    """p50/p95 ms of ours, a direct SDK call and a bare one-activity workflow, interleaved;
    and the history events of one short task of each workflow kind."""
    b.sim.tokens_per_second, b.sim.default_tokens = 0, 16
    runs: dict[str, list[float]] = {"ours": [], "direct": [], "bare": []}
    for i in range(n):
        direct = b.openai.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": f"direct {i}"}]
        )
        runs["direct"].append(await _timed(direct))
        bare = b.client.execute_workflow(
            BareWorkflow.run, f"bare {i}", id=f"bare-{uuid.uuid4().hex}", task_queue=b.base_queue
        )
        runs["bare"].append(await _timed(bare))
        runs["ours"].append(await _timed(b.tasks.execute(Task(prompt=f"ours {i}"))))
    summary = {k: {"p50": pct(v, 0.5), "p95": pct(v, 0.95)} for k, v in runs.items()}
    short = await b.tasks.execute(Task(prompt="one short task"))
    bare_id = f"bare-{uuid.uuid4().hex}"
    await b.client.execute_workflow(BareWorkflow.run, "short", id=bare_id, task_queue=b.base_queue)
    summary["ours"]["events"] = (await history_stats(b.client, short.task.task_id or ""))[0]
    summary["bare"]["events"] = (await history_stats(b.client, bare_id))[0]
    return summary


async def throughput(b: Bench, total: int, open_max: int) -> dict[str, float]:
    """Tasks per second with at most ``open_max`` open at once."""
    b.sim.tokens_per_second, b.sim.default_tokens = 0, 16
    gate = asyncio.Semaphore(open_max)

    async def ours(i: int) -> None:
        async with gate:
            task_id = await b.tasks.submit_task(Task(prompt=f"load {i}"))
            await b.tasks.get_result(task_id, timeout=None)

    async def bare(i: int) -> None:
        async with gate:
            handle = await b.client.start_workflow(
                BareWorkflow.run,
                f"load {i}",
                id=f"load-{uuid.uuid4().hex}",
                task_queue=b.base_queue,
            )
            await handle.result()

    rates = {}
    for name, job in (("bare", bare), ("ours", ours)):
        start = time.perf_counter()
        await asyncio.gather(*(job(i) for i in range(total)))
        rates[name] = total / (time.perf_counter() - start)
    return rates
