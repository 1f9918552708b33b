"""Following a batch task: no text streams while it waits for its provider batch;
``stream_result`` yields the whole answer, in one piece, when the batch hands it over.
"""

from __future__ import annotations

import pytest
from temporalio.client import Client

from ai_orchestrator import Finished, Task, TaskClient, TaskConstraints, TaskStatus, TextDelta
from ai_orchestrator.simulator import BatchBehaviour, Simulator

from ..conftest import FAST_RETRY, running_worker, unique


@pytest.mark.parametrize("live", [True, False], ids=["live-channel", "progress-query"])
async def test_stream_result_of_a_batch_task_yields_its_answer_in_one_piece(
    client: Client, queue: str, sim: Simulator, monkeypatch: pytest.MonkeyPatch, live: bool
) -> None:
    monkeypatch.setenv("AI_ORCHESTRATOR_BATCH_WINDOW_SECONDS", "0.5")
    monkeypatch.setenv("AI_ORCHESTRATOR_BATCH_POLL_SECONDS", "0.3")
    sim.batch_behaviour = BatchBehaviour(turnaround=1)
    tasks = TaskClient(client, task_queue=queue, retry=FAST_RETRY, live=live)
    constraints = TaskConstraints(delivery="batch", max_tokens=12, timeout_seconds=120)
    async with running_worker(client, queue, sim):
        task_id = await tasks.submit_task(
            Task(prompt="answer in one piece", task_id=unique("bst"), constraints=constraints)
        )
        pieces = [piece async for piece in tasks.stream_result(task_id)]  # joined before it ends
        events = [event async for event in tasks.stream_events(task_id)]  # and after
        result = await tasks.get_result(task_id)
    assert result.status == TaskStatus.COMPLETED, result.error
    assert [bill["delivery"] for bill in result.metadata["billing"]] == ["batch"]
    assert len(sim.batches) == 1 and not sim.requests  # answered by the batch alone
    assert len(result.output.split()) == 12
    assert pieces == [result.output]
    assert [type(e) for e in events] == [TextDelta, Finished]
    delta = events[0]
    assert isinstance(delta, TextDelta) and (delta.text, delta.offset) == (result.output, 0)
