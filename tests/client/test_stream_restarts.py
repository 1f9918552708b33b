"""A retry whose text ends shorter than what was already streamed: never a silent wrong text.

The simulator's text is deterministic per prompt and a shorter answer is a
prefix of a longer one, so lowering ``default_tokens`` between attempts gives a
second attempt that agrees with everything streamed so far, then stops early.
"""

from __future__ import annotations

import asyncio

import pytest
from temporalio.client import Client

from ai_orchestrator import (
    StreamRestartedError,
    Task,
    TaskClient,
    TaskStatus,
    apply_event,
)
from ai_orchestrator.simulator import Fault, Simulator

from ..conftest import running_worker, unique


async def start_shrinking_task(sim: Simulator, tasks: TaskClient, prefix: str) -> str:
    """A task whose first attempt streams 12 tokens and breaks; the retry says 4."""
    sim.tokens_per_second, sim.default_tokens = 20, 24
    sim.script(Fault.disconnect(after_tokens=12))
    return await tasks.submit_task(Task(prompt="shrink on retry", task_id=unique(prefix)))


async def shrink_after_first_attempt(sim: Simulator) -> None:
    # The fault cuts the connection right after token 12; the retry comes >= 1 s later.
    await sim.wait_until(lambda: bool(sim.requests) and sim.requests[0].tokens_sent >= 12, 30)
    sim.default_tokens = 4  # read per request: attempt 2 is a 4-token prefix


async def test_stream_result_raises_when_the_final_text_is_shorter_than_streamed(
    client: Client, queue: str, sim: Simulator, tasks: TaskClient
) -> None:
    """Promise: stream_result yields exactly the final output or raises."""
    got: list[str] = []
    shown = ""

    async def plain(task_id: str) -> None:
        async for chunk in tasks.stream_result(task_id):
            got.append(chunk)

    async def events(task_id: str) -> None:
        nonlocal shown
        async for event in tasks.stream_events(task_id):
            shown = apply_event(shown, event)

    async with running_worker(client, queue, sim):
        task_id = await start_shrinking_task(sim, tasks, "shorter")
        readers = [asyncio.ensure_future(plain(task_id)), asyncio.ensure_future(events(task_id))]
        await shrink_after_first_attempt(sim)
        outcomes = await asyncio.wait_for(asyncio.gather(*readers, return_exceptions=True), 30)
        result = await tasks.get_result(task_id, timeout=30)
    assert result.status == TaskStatus.COMPLETED and len(result.output.split()) == 4
    assert len(sim.requests) == 2 and sim.requests[0].tokens_sent == 12
    delivered = "".join(got)
    assert len(delivered.split()) > 4, "the reader should have seen the first attempt's text"
    assert delivered.startswith(result.output)
    assert isinstance(outcomes[0], StreamRestartedError), outcomes[0]
    assert outcomes[0].delivered == delivered and outcomes[0].final == result.output
    assert outcomes[1] is None and shown == result.output  # events fold to the final text


async def test_stream_result_ends_normally_when_the_retry_repeats_the_text(
    client: Client, queue: str, sim: Simulator, tasks: TaskClient
) -> None:
    """Promise: a retry that regenerates the same text continues seamlessly."""
    sim.tokens_per_second, sim.default_tokens = 40, 16
    sim.script(Fault.disconnect(after_tokens=8))
    async with running_worker(client, queue, sim):
        task_id = await tasks.submit_task(Task(prompt="same again", task_id=unique("same")))
        text = "".join([c async for c in tasks.stream_result(task_id)])
        result = await tasks.get_result(task_id)
    assert result.status == TaskStatus.COMPLETED and text == result.output
    assert len(sim.requests) == 2


async def test_stream_result_of_a_missing_task_raises(tasks: TaskClient) -> None:
    from ai_orchestrator import TaskNotFoundError

    with pytest.raises(TaskNotFoundError):
        async for _ in tasks.stream_result(unique("nope")):
            pass
