"""The live channel across processes: readers in their own process, workers killed.

A reader process (``reader_process.py``) has its own ``TaskClient`` configured
from its environment only, as a user's program would be.
"""

from __future__ import annotations

import asyncio
import functools

from temporalio.client import Client

from ai_orchestrator import Task, TaskClient, TaskStatus, apply_event
from ai_orchestrator.client._events import StreamEvent
from ai_orchestrator.core import Result
from ai_orchestrator.local.devserver import DevServer
from ai_orchestrator.simulator import Simulator

from ..conftest import FAST_RETRY, SECRET_KEY, running_worker, unique
from ..support.processes import sigkill_holder, spawn, spawn_ready_worker, stop, worker_env
from .reader_process import Reader, spawn_reader


def reader_env(temporal: DevServer, queue: str, **extra: str) -> dict[str, str]:
    return {**worker_env(temporal.target, queue, None, None), **extra}


def folds(events: list[StreamEvent]) -> list[str]:
    """Every text a reader showed, event by event."""
    shown = [""]
    for event in events:
        shown.append(apply_event(shown[-1], event))
    return shown


def assert_exact(reader: Reader, result: Result) -> None:
    assert reader.output == result.output
    shown = folds(reader.events())
    assert shown[-1] == result.output
    # Never mixed text: the simulator's answer to one prompt is the same on every
    # attempt, so whatever a reader shows at any moment is a prefix of the output.
    for text in shown:
        assert result.output.startswith(text), (text, result.output)


async def test_a_reader_process_joins_mid_stream_and_reads_live(
    temporal: DevServer, client: Client, queue: str, sim: Simulator
) -> None:
    sim.tokens_per_second = 20
    sim.default_tokens = 80  # 4 s
    tasks = TaskClient(client, task_queue=queue, retry=FAST_RETRY)
    reader = await spawn_reader(temporal.target, queue, reader_env(temporal, queue))
    try:
        async with running_worker(client, queue, sim):
            task_id = await tasks.submit_task(Task(prompt="join me", task_id=unique("join")))
            await sim.wait_for_tokens_sent(0, 10, timeout=60)
            await reader.follow(task_id)
            await reader.finish()
            result = await tasks.get_result(task_id, timeout=60)
    finally:
        await stop(reader.proc)
    assert result.status == TaskStatus.COMPLETED and len(result.output.split()) == 80
    assert_exact(reader, result)
    assert reader.of("restart") == []
    assert "".join(r["text"] for r in reader.of("text")) == result.output
    (request,) = sim.requests
    (joined,) = reader.of("joined")
    assert joined["t"] > request.token_sent_at[9]  # it joined mid-stream...
    assert request.ended_at is not None and reader.first_text_at < request.ended_at  # ...live
    signals, chunks = result.metadata["signals"], result.metadata["chunks"]
    assert chunks >= 80 and signals * 5 <= chunks, result.metadata
    # Following the workflow gives at most one piece per chunk signal: many more
    # pieces than signals came from the worker's endpoint.
    live_pieces = [r for r in reader.of("text") if r["t"] < request.ended_at]
    assert len(live_pieces) > signals + 2, (len(live_pieces), result.metadata)


async def test_readers_survive_a_worker_sigkill_and_a_late_reader_after_both_stopped(
    temporal: DevServer, client: Client, queue: str, sim: Simulator
) -> None:
    sim.tokens_per_second = 20
    sim.default_tokens = 60  # 3 s per attempt
    tasks = TaskClient(client, task_queue=queue, retry=FAST_RETRY)
    env = worker_env(temporal.target, queue, sim.base_url, SECRET_KEY)
    workers = [await spawn_ready_worker(env), await spawn_ready_worker(env)]
    reader = await spawn_reader(temporal.target, queue, reader_env(temporal, queue))
    events: list[StreamEvent] = []
    try:
        task_id = await tasks.submit_task(Task(prompt="survive a kill", task_id=unique("kill")))

        async def follow() -> None:
            async for event in TaskClient(client, task_queue=queue).stream_events(task_id):
                events.append(event)

        follower = asyncio.create_task(follow())
        await sim.wait_for_tokens_sent(0, 5, timeout=60)
        await reader.follow(task_id)
        await sim.wait_for_tokens_sent(0, 20, timeout=60)
        killed_at = await sigkill_holder(client, task_id, workers)
        result = await tasks.get_result(task_id, timeout=60)
        await reader.finish()
        await asyncio.wait_for(follower, 30)
    finally:
        for worker in workers:
            await stop(worker)
        await stop(reader.proc)

    assert result.status == TaskStatus.COMPLETED and result.metadata["attempts"] == 2
    assert len(sim.requests) == 2 and len(result.output.split()) == 60
    assert_exact(reader, result)
    shown = folds(events)
    assert shown[-1] == result.output
    assert all(result.output.startswith(text) for text in shown)
    assert functools.reduce(apply_event, events, "") == result.output  # type: ignore[arg-type]
    # The reader process read the first worker live before it died, and the
    # second attempt's text as it was produced, not only at the end.
    assert reader.first_text_at < killed_at
    second = sim.requests[1]
    assert second.ended_at is not None
    during = [r for r in reader.of("text") if second.received_at <= r["t"] < second.ended_at]
    assert during, (
        f"the reader process got no text during the second attempt "
        f"({second.received_at - killed_at:.1f}-{second.ended_at - killed_at:.1f} s after the "
        f"kill); its events after the kill came at "
        f"{[round(r['t'] - killed_at, 1) for r in reader.records if r['t'] > killed_at]} s"
    )

    # Both workers are gone: a late reader in another process still gets it all.
    late = await spawn_reader(temporal.target, queue, reader_env(temporal, queue))
    try:
        await late.follow(task_id)
        await late.finish()
    finally:
        await stop(late.proc)
    assert_exact(late, result)
    assert "".join(r["text"] for r in late.of("text")) == result.output


async def test_redis_channel_between_a_worker_process_and_a_reader_process(
    temporal: DevServer, client: Client, queue: str, sim: Simulator, redis_url: str
) -> None:
    sim.tokens_per_second = 20
    sim.default_tokens = 60
    tasks = TaskClient(client, task_queue=queue, retry=FAST_RETRY)
    env = worker_env(temporal.target, queue, sim.base_url, SECRET_KEY)
    env.update(AI_ORCHESTRATOR_LIVE="redis", AI_ORCHESTRATOR_LIVE_REDIS_URL=redis_url)
    worker = await spawn_ready_worker(env)
    reader = await spawn_reader(
        temporal.target,
        queue,
        reader_env(temporal, queue, AI_ORCHESTRATOR_LIVE_REDIS_URL=redis_url),
    )
    try:
        task_id = await tasks.submit_task(Task(prompt="redis procs", task_id=unique("rproc")))
        await sim.wait_for_tokens_sent(0, 5, timeout=60)
        await reader.follow(task_id)
        await reader.finish()
        result = await tasks.get_result(task_id, timeout=60)
    finally:
        await stop(worker)
        await stop(reader.proc)
    assert result.status == TaskStatus.COMPLETED
    assert_exact(reader, result)
    assert "".join(r["text"] for r in reader.of("text")) == result.output
    (request,) = sim.requests
    assert request.ended_at is not None and reader.first_text_at < request.ended_at
    signals = result.metadata["signals"]
    live_pieces = [r for r in reader.of("text") if r["t"] < request.ended_at]
    assert len(live_pieces) > signals + 2, (len(live_pieces), result.metadata)


async def test_a_worker_process_with_an_unknown_channel_says_so(
    temporal: DevServer, queue: str
) -> None:
    env = worker_env(temporal.target, queue, "http://127.0.0.1:9", SECRET_KEY)
    env["AI_ORCHESTRATOR_LIVE"] = "bogus"
    proc = await spawn("-m", "ai_orchestrator", "worker", env=env)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        await stop(proc)
    text = (out + err).decode(errors="replace")
    assert proc.returncode not in (0, None), text[-2000:]
    assert "AI_ORCHESTRATOR_LIVE" in text and "bogus" in text, text[-2000:]
    assert "Traceback" not in text, f"a traceback instead of a message:\n{text[-3000:]}"
