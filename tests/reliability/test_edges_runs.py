"""Edges of a run's life: operator resets, cancels during outages, cancels after a restart."""

from __future__ import annotations

import asyncio
import functools
import signal
import uuid

import pytest
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.workflowservice.v1 import ResetWorkflowExecutionRequest
from temporalio.client import Client, WorkflowExecutionStatus

from ai_orchestrator import Task, TaskClient, TaskStatus, apply_event
from ai_orchestrator.errors import CONNECTION_FAILED
from ai_orchestrator.local.devserver import DevServer
from ai_orchestrator.messages import CHUNKS_SIGNAL, ChunkBatch
from ai_orchestrator.simulator import Fault, Simulator
from ai_orchestrator.simulator._text import simulated_tokens

from ..conftest import SECRET_KEY, running_worker, unique
from ..support.helpers import history_events
from ..support.processes import spawn_ready_worker, stop, worker_env


def _answer(sim: Simulator, index: int, n: int, style: str = "words") -> str:
    request = sim.requests[index]
    return "".join(simulated_tokens(request.messages, request.model, n, style))


async def test_operator_reset_never_splices_two_runs_text(
    client: Client, queue: str, sim: Simulator, tasks: TaskClient
) -> None:
    """A reset run ignores the old run's re-applied chunks: one run's text, exactly."""
    sim.tokens_per_second, sim.default_tokens = 20, 60
    async with running_worker(client, queue, sim):
        task_id = await tasks.submit_task(Task(prompt="reset me", task_id=unique("reset")))
        handle = client.get_workflow_handle(task_id)
        # Wait until the old run holds streamed text (at least one chunk signal).
        for _ in range(200):
            events = await history_events(client, task_id)
            if any(e.HasField("workflow_execution_signaled_event_attributes") for e in events):
                break
            await asyncio.sleep(0.05)
        old_run = (await handle.describe()).run_id
        first_wft = next(
            e.event_id for e in events if e.HasField("workflow_task_completed_event_attributes")
        )
        sim.text_style = "escapes"  # the new run's answer differs from the old one's
        await client.workflow_service.reset_workflow_execution(
            ResetWorkflowExecutionRequest(
                namespace=client.namespace,
                workflow_execution=WorkflowExecution(workflow_id=task_id, run_id=old_run),
                reason="operator reset (test)",
                workflow_task_finish_event_id=first_wft,
                request_id=str(uuid.uuid4()),
            )
        )
        result = await tasks.get_result(task_id, timeout=60)
    new_run = (await handle.describe()).run_id
    assert new_run != old_run
    assert result.status == TaskStatus.COMPLETED
    assert result.output == _answer(sim, len(sim.requests) - 1, 60, "escapes")
    # Positive control: the old run's chunks really were re-applied to the new run.
    reapplied = 0
    for event in await history_events(client, task_id):
        attrs = event.workflow_execution_signaled_event_attributes
        if event.HasField("workflow_execution_signaled_event_attributes") and (
            attrs.signal_name == CHUNKS_SIGNAL
        ):
            batch = (await client.data_converter.decode(attrs.input.payloads, [ChunkBatch]))[0]
            reapplied += batch.run_id == old_run
    assert reapplied >= 1


async def test_cancel_while_the_worker_is_dead_pays_for_nothing_more(
    temporal: DevServer, client: Client, queue: str, sim: Simulator, tasks: TaskClient
) -> None:
    """A task cancelled while its worker is dead makes no provider request after the cancel."""
    sim.tokens_per_second, sim.default_tokens = 10, 200
    env = worker_env(temporal.target, queue, sim.base_url, SECRET_KEY)
    victim = await spawn_ready_worker(env)
    try:
        task_id = await tasks.submit_task(Task(prompt="orphaned", task_id=unique("dead")))
        await sim.wait_for_tokens_sent(0, 12, timeout=60)
        victim.send_signal(signal.SIGKILL)
        await victim.wait()
        assert await tasks.cancel_task(task_id) is True
        # The dead attempt times out and Temporal schedules a retry despite the
        # cancel: only then does a worker come back, to be offered that retry.
        handle = client.get_workflow_handle(task_id)
        for _ in range(300):
            pending = (await handle.describe()).raw_description.pending_activities
            if pending and pending[0].attempt >= 2:
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("Temporal never retried the dead attempt")
        async with running_worker(client, queue, sim):
            result = await tasks.get_result(task_id, timeout=60)
    finally:
        await stop(victim)
    assert result.status == TaskStatus.CANCELLED, result.error
    assert len(sim.requests) == 1, "an attempt called the provider after the cancel"
    # The partial output is the dead attempt's checkpointed text, not a new attempt's.
    assert result.partial_output and _answer(sim, 0, 200).startswith(result.partial_output)
    desc = await client.get_workflow_handle(task_id).describe()
    assert desc.status == WorkflowExecutionStatus.CANCELED


async def test_cancel_after_a_restart_keeps_the_new_attempts_text(
    client: Client, queue: str, sim: Simulator, tasks: TaskClient
) -> None:
    """Cancelled during attempt 2: its text is the partial output, and nothing is mixed."""
    sim.tokens_per_second, sim.default_tokens = 20, 200
    sim.script(Fault.disconnect(after_tokens=15))
    async with running_worker(client, queue, sim):
        task_id = await tasks.submit_task(Task(prompt="cut then cancel", task_id=unique("cr")))
        events: list[object] = []

        async def follow() -> None:
            async for event in tasks.stream_events(task_id):
                events.append(event)

        follower = asyncio.create_task(follow())
        await sim.wait_for_tokens_sent(1, 10, timeout=30)
        assert await tasks.cancel_task(task_id) is True
        result = await tasks.get_result(task_id, timeout=30)
        await asyncio.wait_for(follower, 30)
    assert result.status == TaskStatus.CANCELLED
    assert len(sim.requests) == 2
    partial = result.partial_output or ""
    assert len(partial.split()) >= 10 and _answer(sim, 1, 200).startswith(partial)
    assert functools.reduce(apply_event, events, "") == partial  # type: ignore[arg-type]
    # Both attempts were billed, and say so: the cut one for the 15 tokens it got
    # before the fault, the cancelled one for the partial output's tokens.
    first, second = result.metadata["billing"]
    assert (first["attempt"], first["outcome"], first["error_type"]) == (
        1,
        "failed",
        CONNECTION_FAILED,
    )
    assert first["completion_tokens"] == sim.requests[0].tokens_sent == 15
    assert (second["attempt"], second["outcome"], second["error_type"]) == (2, "cancelled", None)
    assert second["completion_tokens"] == len(partial.split())
    for bill in (first, second):
        assert bill["prompt_tokens"] > 0 and bill["cost"] > 0 and bill["estimated"], bill
    # The totals are the sum of the attempts' bills.
    billing = (first, second)
    assert result.metadata["input_tokens"] == sum(b["prompt_tokens"] for b in billing)
    assert result.metadata["output_tokens"] == sum(b["completion_tokens"] for b in billing)
    assert result.tokens_used == sum(b["prompt_tokens"] + b["completion_tokens"] for b in billing)
    assert result.cost == pytest.approx(first["cost"] + second["cost"], rel=1e-9)
