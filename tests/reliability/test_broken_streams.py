"""Streams that break are failures, never answers; the retry's text is the output."""

from __future__ import annotations

import pytest
from temporalio.client import Client

from ai_orchestrator import Task, TaskClient, TaskStatus
from ai_orchestrator.simulator import Fault, Simulator

from ..conftest import provider_for, running_worker, unique

FAULTS = {
    "disconnect": Fault.disconnect(after_tokens=10),
    "no_finish": Fault.no_finish(after_tokens=10),
    "malformed": Fault.malformed(after_tokens=10),
    "stall": Fault.stall(after_tokens=10, seconds=8),
}


@pytest.mark.parametrize("name", list(FAULTS))
async def test_broken_stream_is_detected_and_retried(
    name: str, client: Client, queue: str, sim: Simulator, tasks: TaskClient
) -> None:
    sim.tokens_per_second = 100
    sim.script(FAULTS[name])
    provider = provider_for(sim, read_timeout=1.0)  # the stall outlasts it
    async with running_worker(client, queue, sim, provider=provider):
        result = await tasks.execute(Task(prompt="fragile", task_id=unique(name)))
        clean = await tasks.execute(Task(prompt="fragile", task_id=unique("clean")))
    assert result.status == TaskStatus.COMPLETED
    assert len(sim.requests) == 3 and sim.requests[0].fault == name
    assert result.metadata["attempts"] == 2
    assert result.output == clean.output  # one attempt's complete text, nothing mixed in
    assert len(result.output.split()) == 24
