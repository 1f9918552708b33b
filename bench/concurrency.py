"""Many concurrent streamed tasks on one worker process, against bare parked workflows."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable

from ai_orchestrator import Task, TaskClient, TaskConstraints

from .baselines import ParkedWorkflow
from .context import Bench, peak_rss_mb, stop
from .stats import history_scan, timeout_totals


async def _measure(
    b: Bench,
    module: str,
    start_all: Callable[[str], Awaitable[list[str]]],
    wait_all: Callable[[list[str]], Awaitable[None]],
) -> dict[str, float]:
    queue = f"conc-{uuid.uuid4().hex[:8]}"
    proc = await b.spawn(module, *(["worker"] if module == "ai_orchestrator" else []), queue=queue)
    try:
        await asyncio.sleep(2)  # let the worker start before the clock does
        started = time.perf_counter()
        ids = await start_all(queue)
        await wait_all(ids)
        elapsed = time.perf_counter() - started
        rss = peak_rss_mb(proc.pid or 0)
    finally:
        await stop(proc)
    timeouts = timeout_totals(await history_scan(b.client, ids))
    return {"completion_s": elapsed, "worker_rss_mb": rss, **timeouts}


async def concurrent_streams(
    b: Bench, n: int, tokens: int, rate: float
) -> dict[str, dict[str, float]]:
    b.sim.tokens_per_second, b.sim.default_tokens = rate, tokens
    gate = asyncio.Semaphore(50)

    async def start_ours(queue: str) -> list[str]:
        tasks = TaskClient(b.client, task_queue=queue)

        async def one(i: int) -> str:
            async with gate:
                return await tasks.submit_task(
                    Task(prompt=f"concurrent {i}", constraints=TaskConstraints(timeout_seconds=600))
                )

        return list(await asyncio.gather(*(one(i) for i in range(n))))

    async def wait_ours(ids: list[str]) -> None:
        tasks = TaskClient(b.client)
        results = await asyncio.gather(*(tasks.get_result(i, timeout=None) for i in ids))
        failed = [r.error for r in results if not r.success]
        assert not failed, f"{len(failed)} tasks failed, e.g. {failed[0]}"

    async def start_parked(queue: str) -> list[str]:
        async def one(i: int) -> str:
            async with gate:
                workflow_id = f"parked-{uuid.uuid4().hex}"
                await b.client.start_workflow(
                    ParkedWorkflow.run, tokens / rate, id=workflow_id, task_queue=queue
                )
                return workflow_id

        return list(await asyncio.gather(*(one(i) for i in range(n))))

    async def wait_parked(ids: list[str]) -> None:
        await asyncio.gather(*(b.client.get_workflow_handle(i).result() for i in ids))

    return {
        "ours": await _measure(b, "ai_orchestrator", start_ours, wait_ours),
        "parked": await _measure(b, "bench.baselines", start_parked, wait_parked),
    }
