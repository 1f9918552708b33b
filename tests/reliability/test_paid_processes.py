"""Worker processes SIGKILLed at unlucky moments: nothing paid twice, nothing seen lost.

Real worker processes, a real dev server, the openai SDK against the simulator.
The history of each run says how it recovered: a workflow task that waited on
the dead worker's sticky queue shows as a schedule-to-start timeout.
"""

from __future__ import annotations

import asyncio
import time

from temporalio.api.enums.v1 import EventType, TimeoutType
from temporalio.client import Client

from ai_orchestrator import Task, TaskClient, TaskConstraints, TaskStatus
from ai_orchestrator.local.devserver import DevServer
from ai_orchestrator.simulator import Fault, Simulator

from ..conftest import FAST_RETRY, SECRET_KEY, unique
from ..support.processes import sigkill_holder, spawn_ready_worker, stop, worker_env


async def _sticky_timeouts(client: Client, task_id: str) -> int:
    """Workflow tasks that waited out their schedule-to-start timeout (a dead sticky queue)."""
    count = 0
    async for event in client.get_workflow_handle(task_id).fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT:
            attrs = event.workflow_task_timed_out_event_attributes
            count += attrs.timeout_type == TimeoutType.TIMEOUT_TYPE_SCHEDULE_TO_START
    return count


async def _recorded_response_id(client: Client, task_id: str, timeout: float = 60) -> str:
    """The answer's id once the running attempt's heartbeat has reached the server."""
    deadline = time.monotonic() + timeout
    handle = client.get_workflow_handle(task_id)
    while time.monotonic() < deadline:
        for pending in (await handle.describe()).raw_description.pending_activities:
            payloads = pending.heartbeat_details.payloads
            if payloads:
                [details] = await client.data_converter.decode(payloads[:1])
                if isinstance(details, dict) and details.get("response_id"):
                    return str(details["response_id"])
        await asyncio.sleep(0.05)
    raise AssertionError("the answer's id never reached Temporal")


async def test_a_worker_killed_after_the_answer_was_created_but_before_its_text(
    temporal: DevServer, client: Client, queue: str, sim: Simulator, tasks: TaskClient
) -> None:
    """The id is known at ``response.created``: the standby re-attaches, never re-creates."""
    sim.tokens_per_second, sim.default_tokens = 20, 40
    sim.script(Fault.stall(after_tokens=0, seconds=6))  # created, then no text for 6 s
    env = worker_env(temporal.target, queue, sim.base_url, SECRET_KEY)
    env["AI_ORCHESTRATOR_OPENAI_API"] = "responses"
    workers = [await spawn_ready_worker(env), await spawn_ready_worker(env)]
    try:
        task = Task(prompt="created, then killed", task_id=unique("kill-created"))
        task.constraints = TaskConstraints(timeout_seconds=120)
        task_id = await tasks.submit_task(task)
        await sim.wait_until(lambda: len(sim.responses) == 1, timeout=60)
        # Recorded at once: the id is in Temporal before the first text has left.
        assert await _recorded_response_id(client, task_id) in sim.responses
        assert not any(r.tokens_sent for r in sim.requests)
        await sigkill_holder(client, task_id, workers)
        result = await tasks.get_result(task_id, timeout=90)
    finally:
        for worker in workers:
            await stop(worker)
    assert result.status == TaskStatus.COMPLETED, result.error
    kinds = [r.kind for r in sim.requests if r.api == "responses"]
    assert kinds.count("create") == 1 and "retrieve_stream" in kinds, kinds
    (response,) = sim.responses.values()
    assert response.generated_tokens == 40 and len(result.output.split()) == 40
    assert sum(b["completion_tokens"] for b in result.metadata["billing"]) == 40
    assert await _sticky_timeouts(client, task_id) == 0


async def test_what_a_reader_saw_survives_a_kill_and_the_lost_attempt_is_priced(
    temporal: DevServer, client: Client, queue: str, sim: Simulator
) -> None:
    """Readers see text live at once; the first text is checkpointed at once too, so a
    worker dying in its first second cannot take it with it."""
    sim.tokens_per_second, sim.default_tokens = 10, 60
    tasks = TaskClient(client, task_queue=queue, retry=FAST_RETRY)
    env = worker_env(temporal.target, queue, sim.base_url, SECRET_KEY)
    workers = [await spawn_ready_worker(env), await spawn_ready_worker(env)]
    try:
        task_id = await tasks.submit_task(Task(prompt="seen, then killed", task_id=unique("seen")))
        seen = ""
        async for text in tasks.stream_result(task_id):
            seen += text
            break
        await asyncio.sleep(0.3)  # well inside the usual 1 s checkpoint interval
        await sigkill_holder(client, task_id, workers)
        await tasks.cancel_task(task_id)
        result = await tasks.get_result(task_id, timeout=90)
    finally:
        for worker in workers:
            await stop(worker)
    assert result.status == TaskStatus.CANCELLED, result.error
    assert seen and result.partial_output
    assert seen.startswith(result.partial_output) or result.partial_output.startswith(seen)
    lost = [b for b in result.metadata["billing"] if b["outcome"] == "lost"]
    assert lost and all(b["cost"] > 0 and b["estimated"] for b in lost), result.metadata
    assert result.cost >= sum(b["cost"] for b in lost) > 0


async def test_the_standby_finishes_without_waiting_on_the_dead_workers_sticky_queue(
    temporal: DevServer, client: Client, queue: str, sim: Simulator, tasks: TaskClient
) -> None:
    sim.tokens_per_second, sim.default_tokens = 20, 60
    env = worker_env(temporal.target, queue, sim.base_url, SECRET_KEY)
    workers = [await spawn_ready_worker(env), await spawn_ready_worker(env)]
    try:
        task = Task(prompt="recover at once", task_id=unique("sticky"))
        task_id = await tasks.submit_task(task)
        await sim.wait_for_tokens_sent(0, 20, timeout=60)
        killed_at = await sigkill_holder(client, task_id, workers)
        result = await tasks.get_result(task_id, timeout=90)
        done_at = time.monotonic()
    finally:
        for worker in workers:
            await stop(worker)
    assert result.status == TaskStatus.COMPLETED, result.error
    assert result.metadata["attempts"] == 2
    retry = sim.requests[-1]
    assert retry.ended_at is not None
    print(
        f"SIGKILL -> result {done_at - killed_at:.2f}s: heartbeat timeout "
        f"{FAST_RETRY.heartbeat_timeout_seconds:.0f}s, then generation "
        f"{retry.ended_at - retry.received_at:.2f}s"
    )
    # Every workflow task after the kill went to a live worker at once.
    assert await _sticky_timeouts(client, task_id) == 0
