"""Inputs and answers at the edges: newer clients, filtered or failing streams, huge payloads."""

from __future__ import annotations

import pytest
from temporalio.client import Client

from ai_orchestrator import Task, TaskClient, TaskConstraints, TaskStatus
from ai_orchestrator.activities._relay import json_size
from ai_orchestrator.messages import WORKFLOW_TYPE, TaskInput
from ai_orchestrator.providers._base import build_messages
from ai_orchestrator.simulator import Fault, Simulator
from ai_orchestrator.simulator._text import simulated_tokens

from ..conftest import running_worker, unique
from ..support.helpers import history_events


async def test_input_from_a_newer_client_with_unknown_fields_runs(
    client: Client, queue: str, sim: Simulator, tasks: TaskClient
) -> None:
    """Fields this worker does not know (a newer client's) are ignored, not a jam."""
    task_id = unique("newer")
    payload = TaskInput(task=Task(prompt="from the future", task_id=task_id)).model_dump(
        mode="json"
    )
    payload["task"]["reasoning_effort"] = "high"
    payload["task"]["constraints"] = {"timeout_seconds": 60, "fallback_models": ["x"]}
    payload["future_option"] = True
    async with running_worker(client, queue, sim):
        await client.start_workflow(WORKFLOW_TYPE, payload, id=task_id, task_queue=queue)
        result = await tasks.get_result(task_id, timeout=30)
    assert result.status == TaskStatus.COMPLETED, result.error
    assert result.output.startswith("[simulated]")


async def test_content_filter_fails_clearly_and_keeps_the_partial_output(
    client: Client, queue: str, sim: Simulator, tasks: TaskClient
) -> None:
    sim.tokens_per_second = 100
    sim.script(Fault.content_filter(after_tokens=6))
    async with running_worker(client, queue, sim):
        result = await tasks.execute(Task(prompt="filtered", task_id=unique("cf")))
    assert result.status == TaskStatus.FAILED and len(sim.requests) == 1
    assert "content filter" in (result.error or "")
    assert len((result.partial_output or "").split()) == 6


async def test_error_events_inside_a_stream_are_judged_by_their_code(
    client: Client, queue: str, sim: Simulator, tasks: TaskClient
) -> None:
    sim.tokens_per_second = 100
    sim.script(Fault.stream_error(after_tokens=4, error_type="insufficient_quota"))
    async with running_worker(client, queue, sim):
        quota = await tasks.execute(Task(prompt="broke", task_id=unique("q")))
        assert quota.status == TaskStatus.FAILED and len(sim.requests) == 1
        assert "insufficient_quota" in (quota.error or "")
        sim.script(Fault.stream_error(after_tokens=4, error_type="server_error"))
        flaky = await tasks.execute(Task(prompt="flaky", task_id=unique("se")))
    assert flaky.status == TaskStatus.COMPLETED and len(sim.requests) == 3


async def test_errors_never_echo_the_context(
    client: Client, queue: str, sim: Simulator, tasks: TaskClient
) -> None:
    """Context is as private as the prompt: a provider quoting it is redacted."""
    private = "customer record 4711: Jane Roe, diagnosis confidential"
    sim.script(Fault.status(400, message=f"Invalid content in system message: {private}"))
    async with running_worker(client, queue, sim):
        result = await tasks.execute(
            Task(prompt="summarise", context={"record": private}, task_id=unique("ctx"))
        )
    assert result.status == TaskStatus.FAILED and "HTTP 400" in (result.error or "")
    assert private not in (result.error or "") and private[:64] not in (result.error or "")


async def _close_payload_bytes(client: Client, task_id: str) -> int:
    """Bytes of the result payload Temporal stored when the run completed."""
    for event in await history_events(client, task_id):
        if event.HasField("workflow_execution_completed_event_attributes"):
            payloads = event.workflow_execution_completed_event_attributes.result.payloads
            return sum(p.ByteSize() for p in payloads)
    raise AssertionError("the run did not complete")


def _prompt(size: int) -> str:
    words = " ".join(f"word{i}" for i in range(size // 6))
    return words[:size]


@pytest.mark.timeout(300)  # a megabyte through the codec: CPU-bound, slow on a busy box
async def test_escape_heavy_answer_over_the_encoded_cap_fails_without_jamming(
    client: Client, queue: str, sim: Simulator, tasks: TaskClient
) -> None:
    """The real worst case: a 480 KB prompt and an answer whose raw size (≈570 KB)
    passes a byte cap but whose JSON (≈2.4 MB) does not fit a payload. It stops at
    the encoded cap and fails once, clearly; nothing is left to jam the run."""
    sim.tokens_per_second, sim.default_tokens, sim.text_style = 0, 12_500, "escape_blocks"
    task = Task(prompt=_prompt(480_000), task_id=unique("esc"))
    messages = build_messages(task)
    full = "".join(simulated_tokens(messages, "gpt-4o-mini", 12_500, "escape_blocks"))
    assert len(full.encode()) < 1_000_000 < json_size(full)  # the case a raw cap misses
    async with running_worker(client, queue, sim):
        result = await tasks.execute(task)
    assert result.status == TaskStatus.FAILED and len(sim.requests) == 1
    assert "exceeded 1,000,000 bytes once encoded" in (result.error or "")
    assert sim.requests[0].tokens_sent < 12_500  # the stream was stopped


@pytest.mark.timeout(300)  # a megabyte through the codec: CPU-bound, slow on a busy box
async def test_escape_heavy_answer_just_under_the_cap_completes(
    client: Client, queue: str, sim: Simulator, tasks: TaskClient
) -> None:
    """Prompt and answer both near their caps, once encoded: the result still fits."""
    sim.tokens_per_second, sim.default_tokens, sim.text_style = 0, 12_500, "escape_blocks"
    task = Task(prompt=_prompt(480_000), task_id=unique("fit"))
    tokens = simulated_tokens(build_messages(task), "gpt-4o-mini", 12_500, "escape_blocks")
    size, n = 0, 0
    while size + json_size(tokens[n]) < 990_000:
        size += json_size(tokens[n])
        n += 1
    task.constraints = TaskConstraints(max_tokens=n, timeout_seconds=120)
    async with running_worker(client, queue, sim):
        result = await tasks.execute(task)
    assert result.status == TaskStatus.COMPLETED, result.error
    assert result.output == "".join(tokens[:n])
    stored = await _close_payload_bytes(client, task.task_id or "")
    assert 1_400_000 < stored < 2_000_000
