"""Batch delivery survives what production throws at it: a worker SIGKILLed while
tasks gather or while it asks a slow provider how the batch is doing, and the
Temporal server SIGKILLed while answers are handed out. Never two provider
batches, never a lost answer.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import EventType, TimeoutType
from temporalio.client import Client
from temporalio.service import RetryConfig

from ai_orchestrator import Task, TaskClient, TaskConstraints, TaskStatus
from ai_orchestrator.delivery import POLL_ACTIVITY, PROVIDER_BATCH_WORKFLOW
from ai_orchestrator.local.devserver import DevServer
from ai_orchestrator.payloads.converter import data_converter
from ai_orchestrator.simulator import BatchBehaviour, Simulator

from ..conftest import FAST_RETRY, SECRET_KEY, running_worker, unique
from ..support.helpers import wait_until
from ..support.processes import spawn_ready_worker, stop, worker_env

BATCH = TaskConstraints(delivery="batch", max_tokens=20, timeout_seconds=300)
SETTINGS = {
    "AI_ORCHESTRATOR_BATCH_WINDOW_SECONDS": "1",
    "AI_ORCHESTRATOR_BATCH_POLL_SECONDS": "0.5",
    "AI_ORCHESTRATOR_BATCH_POLL_MAX_SECONDS": "1",
}


def _answered_once(sim: Simulator, prompts: list[str], *, batches: int | None = 1) -> None:
    """Every task went to a provider batch once (in ``batches`` batches, if given);
    nothing was asked in real time."""
    sent = [item for batch in sim.batches.values() for item in batch.items]
    assert len(sent) == len(prompts)
    if batches is not None:
        assert len(sim.batches) == batches
    assert not sim.requests


@pytest.mark.parametrize("phase", ["gathering", "waiting"])
async def test_a_worker_killed_mid_batch_sends_it_once_and_loses_no_answer(
    temporal: DevServer, client: Client, sim: Simulator, phase: str
) -> None:
    # Waiting: the provider takes 3 s to say how the batch is doing, and the worker
    # dies while it asks (the batch is still out: it ends after 6 s).
    sim.batch_behaviour = BatchBehaviour(turnaround=2)
    if phase == "waiting":
        sim.batch_behaviour = BatchBehaviour(turnaround=6, status_latency=3)
    queue = unique("tq-bk")
    env = {**worker_env(temporal.target, queue, sim.base_url, SECRET_KEY), **SETTINGS}
    if phase == "gathering":  # a window the submissions cannot outlast: killed mid-gathering
        env["AI_ORCHESTRATOR_BATCH_WINDOW_SECONDS"] = "5"
    tasks = TaskClient(client, task_queue=queue, retry=FAST_RETRY)
    prompts = [f"durable {i}" for i in range(30)]
    first = await spawn_ready_worker(env)
    second = None
    try:
        ids = [
            await tasks.submit_task(Task(prompt=p, task_id=unique("bk"), constraints=BATCH))
            for p in prompts
        ]
        if phase == "waiting":
            await wait_until(
                lambda: any(b.status_requests_held for b in sim.batches.values()),
                60,
                "a request for the batch's state, held by the provider",
            )
            assert not any(b.ended for b in sim.batches.values())  # killed while it is out
        if phase == "gathering":
            assert not sim.batches  # nothing sent yet
        first.kill()
        await first.wait()
        second = await spawn_ready_worker(env)
        results = await asyncio.gather(*(tasks.get_result(i, timeout=240) for i in ids))
    finally:
        await stop(first)
        if second is not None:
            await stop(second)
    assert [r.status for r in results] == [TaskStatus.COMPLETED] * len(ids), results[0].error
    # A task whose join was on the killed worker joins again, maybe a later batch.
    _answered_once(sim, prompts, batches=1 if phase == "waiting" else None)
    if phase == "waiting":
        # The dead worker's question was taken over once its heartbeats stopped, not
        # when its start-to-close timeout (a minute) ran out.
        assert await _poll_retries(client, queue) == [TimeoutType.TIMEOUT_TYPE_HEARTBEAT]


async def _poll_retries(client: Client, queue: str) -> list[TimeoutType]:
    """Why each retried batch-state request of the queue's provider batch was retried."""
    query = f"WorkflowType = '{PROVIDER_BATCH_WORKFLOW}' AND TaskQueue = '{queue}'"
    (batch,) = [w async for w in client.list_workflows(query)]
    polls: set[int] = set()
    why: list[TimeoutType] = []
    async for event in client.get_workflow_handle(batch.id).fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            if event.activity_task_scheduled_event_attributes.activity_type.name == POLL_ACTIVITY:
                polls.add(event.event_id)
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            started = event.activity_task_started_event_attributes
            if started.scheduled_event_id in polls and started.attempt > 1:
                why.append(started.last_failure.timeout_failure_info.timeout_type)
    return why


async def test_the_server_killed_while_answers_are_handed_out_loses_none(
    tmp_path: Path, sim: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in SETTINGS.items():
        monkeypatch.setenv(name, value)
    sim.batch_behaviour = BatchBehaviour(turnaround=1)
    db = tmp_path / "temporal.db"
    server = await DevServer(db_file=db).start()
    port = server.port
    try:
        client = await Client.connect(
            server.target,
            data_converter=data_converter(),
            retry_config=RetryConfig(initial_interval_millis=100, max_retries=2),
        )
        queue = unique("tq-bs")
        tasks = TaskClient(client, task_queue=queue, retry=FAST_RETRY)
        prompts = [f"outlive {i}" for i in range(150)]
        async with running_worker(client, queue, sim):
            ids = [
                await tasks.submit_task(Task(prompt=p, task_id=unique("bs"), constraints=BATCH))
                for p in prompts
            ]
            (batch,) = [b async for b in _first_batch(sim)]
            # The batch has ended: the worker is handing out its answers now.
            await wait_until(lambda: batch.ended, 60, "the provider batch to end")
            server.kill()
            await asyncio.sleep(1)
            server = await DevServer(db_file=db, port=port).start()
            results = await asyncio.gather(*(tasks.get_result(i, timeout=240) for i in ids))
    finally:
        await server.stop()
    assert [r.status for r in results] == [TaskStatus.COMPLETED] * len(ids), results[0].error
    _answered_once(sim, prompts)


async def _first_batch(sim: Simulator):  # type: ignore[no-untyped-def]
    await wait_until(lambda: bool(sim.batches), 60, "the provider batch")
    for batch in sim.batches.values():
        yield batch
