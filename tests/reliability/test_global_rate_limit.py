"""A requests-per-second ceiling enforced by the Temporal server across all workers."""

from __future__ import annotations

import asyncio
import itertools

from temporalio.client import Client

from ai_orchestrator import Task, TaskClient, TaskStatus
from ai_orchestrator.local.devserver import DevServer
from ai_orchestrator.simulator import Simulator

from ..conftest import SECRET_KEY, unique
from ..support.helpers import history_events
from ..support.processes import spawn, stop, worker_env

RATE = 2.0
TASKS = 14
WORKERS = 3
#: The server's token bucket lets a burst through at once (seen: 4 every 2 s at 2/s) ...
BURST = 2 * RATE
#: ... and a worker takes a moment between being handed a task and calling the provider.
LAG = 1.0


def over_the_ceiling(times: list[float]) -> list[tuple[int, int]]:
    """Pairs of requests (sorted by arrival) too close for the ceiling: the ``j - i``
    requests after one that came at ``times[i]`` may not come sooner than a token
    bucket of ``RATE`` a second and ``BURST`` at once lets them, give or take ``LAG``."""
    return [
        (i, j)
        for i, j in itertools.combinations(range(len(times)), 2)
        if j - i > BURST + RATE * (times[j] - times[i] + LAG)
    ]


async def worker_processes(client: Client, task_ids: list[str]) -> set[str]:
    """The worker processes (pids) whose provider calls the tasks' histories record."""
    pids: set[str] = set()
    for task_id in task_ids:
        for event in await history_events(client, task_id):
            if event.HasField("activity_task_started_event_attributes"):
                pids.add(event.activity_task_started_event_attributes.identity.split("@")[0])
    return pids


async def test_worker_processes_together_stay_under_the_ceiling(
    temporal: DevServer, queue: str, sim: Simulator, tasks: TaskClient
) -> None:
    sim.tokens_per_second = 0
    env = worker_env(temporal.target, queue, sim.base_url, SECRET_KEY)
    env["AI_ORCHESTRATOR_MAX_REQUESTS_PER_SECOND"] = str(RATE)
    workers = [await spawn("-m", "ai_orchestrator", "worker", env=env) for _ in range(WORKERS)]
    try:
        ids = [
            await tasks.submit_task(Task(prompt=f"limited {i}", task_id=unique("rl")))
            for i in range(TASKS)
        ]
        results = await asyncio.gather(*(tasks.get_result(i, timeout=90) for i in ids))
    finally:
        for worker in workers:
            await stop(worker)
    assert all(r.status == TaskStatus.COMPLETED for r in results)  # none lost
    assert len(sim.requests) == TASKS  # none called twice
    times = sorted(r.received_at for r in sim.requests)
    print(f"{TASKS} requests at {[round(t - times[0], 2) for t in times]} s")
    # Unlimited, three workers send all of them within a fraction of a second. The
    # promise is a relation between the requests, not a duration: none came sooner
    # after another than the shared ceiling allows ...
    assert not over_the_ceiling(times), over_the_ceiling(times)
    # ... though more than one worker process was calling the provider.
    assert len(await worker_processes(tasks.client, ids)) > 1
