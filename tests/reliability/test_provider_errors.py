"""5xx and 4xx: bounded, backed-off retries; client errors fail at once, leaking nothing."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest
from temporalio.client import Client, WorkflowHandle

from ai_orchestrator import RetrySettings, Task, TaskClient, TaskStatus
from ai_orchestrator.simulator import Fault, Simulator

from ..conftest import SECRET_KEY, running_worker, unique
from ..support.helpers import history_events

#: Temporal rounds retry delays under 1 s up to 1 s, so backoff is measured from 1 s.
BACKOFF = RetrySettings(
    max_attempts=4,
    initial_interval_seconds=1.0,
    backoff_coefficient=2.0,
    max_interval_seconds=30.0,
    heartbeat_timeout_seconds=2.0,
)


async def scheduled_delays(
    handle: WorkflowHandle[Any, Any], until: asyncio.Task[Any]
) -> list[float]:
    """The wait Temporal scheduled before each retry (by attempt), read from the pending
    activity while ``until`` runs: the policy's own numbers, whatever the machine's load."""
    delays: dict[int, float] = {}
    while not until.done():
        for pending in (await handle.describe()).raw_description.pending_activities:
            if pending.HasField("next_attempt_schedule_time"):
                wait = (
                    pending.next_attempt_schedule_time.ToDatetime()
                    - pending.last_attempt_complete_time.ToDatetime()
                )
                delays[pending.attempt] = wait.total_seconds()
        await asyncio.sleep(0.05)
    assert sorted(delays) == list(range(2, BACKOFF.max_attempts + 1)), delays
    return [delays[attempt] for attempt in sorted(delays)]


@pytest.mark.parametrize("status", [500, 503])
async def test_server_errors_forever_are_bounded_with_backoff(
    status: int, client: Client, queue: str, sim: Simulator
) -> None:
    sim.script(Fault.status(status, times=100))
    tasks = TaskClient(client, task_queue=queue, retry=BACKOFF)
    async with running_worker(client, queue, sim):
        task_id = await tasks.submit_task(Task(prompt="down", task_id=unique(f"s{status}")))
        outcome = asyncio.create_task(tasks.get_result(task_id, timeout=120))
        delays = await scheduled_delays(client.get_workflow_handle(task_id), outcome)
        result = await outcome
    assert result.status == TaskStatus.FAILED
    assert len(sim.requests) == BACKOFF.max_attempts  # no retry storm
    assert f"HTTP {status}" in (result.error or "") and "req_sim_" in (result.error or "")
    gaps = [b.received_at - a.received_at for a, b in itertools.pairwise(sim.requests)]
    print(f"{status}: delays {[round(d, 2) for d in delays]}, gaps {[round(g, 2) for g in gaps]}")
    # The waits back off: each longer than the one before, within the jittered band
    # of its step (1, 2, 4 s, each spread over [b, 2b]) ...
    assert delays == sorted(delays) and len(set(delays)) == len(delays), delays
    steps = [
        BACKOFF.initial_interval_seconds * BACKOFF.backoff_coefficient**i
        for i in range(len(delays))
    ]
    for delay, step in zip(delays, steps, strict=True):
        assert step <= delay <= 2 * step, (delays, steps)
    # ... and no request came before its wait was over (load only makes them later).
    for gap, delay in zip(gaps, delays, strict=True):
        assert gap >= delay, (gaps, delays)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
async def test_client_errors_fail_after_one_request_without_leaks(
    status: int, client: Client, queue: str, sim: Simulator, tasks: TaskClient
) -> None:
    prompt = f"Please summarise the confidential merger memo number {status}"
    # Providers sometimes echo the request in their error; ours does here.
    sim.script(Fault.status(status, message=f"Invalid request for: {prompt}"))
    task_id = unique(f"c{status}")
    async with running_worker(client, queue, sim):
        result = await tasks.execute(Task(prompt=prompt, task_id=task_id))
    error = result.error or ""
    assert result.status == TaskStatus.FAILED and len(sim.requests) == 1
    assert f"HTTP {status}" in error and "request id req_sim_0" in error
    assert prompt not in error and SECRET_KEY not in error
    events = await history_events(client, task_id)
    failures = b"".join(
        e.SerializeToString()
        for e in events
        if e.HasField("activity_task_failed_event_attributes")
        or e.HasField("workflow_execution_failed_event_attributes")
    )
    assert failures and f"HTTP {status}".encode() in failures
    assert prompt.encode() not in failures
    assert SECRET_KEY.encode() not in b"".join(e.SerializeToString() for e in events)
