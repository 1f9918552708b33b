"""The floor under the batches scenario's "batch end -> last answer".

As many bare workflows as tasks (:class:`bench.baselines.AnsweredWorkflow`), parked
on a signal, each handed its answer as our fan-out hands them (as many at once) and
awaited by the client, on as many worker processes polling like ours. Whatever the
batch path does, its tasks cannot close faster than these on the same machine and
server, since each must run one workflow task to take its answer and close.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from temporalio.client import Client

from ai_orchestrator.config import WorkerTuning
from bench.baselines import AnsweredWorkflow
from bench.quotas import Worker

#: As many answers in flight at once as the fan-out sends (``activities/_batches.py``).
SIGNALS_AT_ONCE = 32


async def floor_run(
    client: Client, env: dict[str, str], queue: str, tasks: int, workers: int
) -> dict[str, Any]:
    """Times from the moment every workflow is parked: last signal sent, closes."""
    env = {**env, "BENCH_WORKFLOW_POLLERS": str(WorkerTuning().workflow_pollers)}
    procs = await asyncio.gather(
        *(Worker.start(env, command=("-m", "bench.baselines")) for _ in range(workers))
    )
    try:
        handles = [
            await client.start_workflow(AnsweredWorkflow.run, id=f"{queue}-{i}", task_queue=queue)
            for i in range(tasks)
        ]
        gate = asyncio.Semaphore(SIGNALS_AT_ONCE)

        async def parked(handle: Any) -> bool:
            async with gate:  # its first workflow task completed: waiting, cached
                described = await handle.describe()
            return described.raw_description.workflow_execution_info.history_length >= 4

        for _ in range(600):
            if all(await asyncio.gather(*(parked(h) for h in handles))):
                break
            await asyncio.sleep(0.5)
        else:
            raise TimeoutError("the floor's workflows did not all park within 5 minutes")
        t0 = time.monotonic()
        signalled: list[float] = []
        closed: list[float] = []

        async def answer(handle: Any) -> None:
            async with gate:
                await handle.signal(AnsweredWorkflow.give, "answer")
            signalled.append(time.monotonic() - t0)

        async def close(handle: Any) -> None:
            await handle.result()
            closed.append(time.monotonic() - t0)

        await asyncio.gather(*(answer(h) for h in handles), *(close(h) for h in handles))
    finally:
        for proc in procs:
            await proc.kill()
    closed.sort()
    return {
        "tasks": tasks,
        "last_signalled_s": max(signalled),
        "signals_per_s": tasks / max(signalled),
        "closed_p50_s": closed[len(closed) // 2],
        "last_closed_s": closed[-1],
    }
