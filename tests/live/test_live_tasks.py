"""The live channel end to end, with in-process workers and readers.

Whether text "came live" is decided by counting: a reader following the
workflow gets at most one new piece per chunk signal (the workflow's text
changes only then), so a reader with many more text events than the run has
signals read them from the live channel.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import struct
import time
from dataclasses import dataclass, field

import aiohttp
import pytest
import redis.asyncio as aioredis
from temporalio.client import Client

from ai_orchestrator import Task, TaskClient, TaskStatus, apply_event
from ai_orchestrator.client._events import Finished, StreamEvent, TextDelta
from ai_orchestrator.client._live_source import look
from ai_orchestrator.core import Result
from ai_orchestrator.live import unseal
from ai_orchestrator.live._auth import LiveAuth
from ai_orchestrator.live._config import channel, publisher_from_env
from ai_orchestrator.live._http import HttpLivePublisher, HttpLiveSubscriber, LiveConfigError
from ai_orchestrator.live._redis import RedisLivePublisher, RedisLiveSubscriber, stream_key
from ai_orchestrator.local.devserver import DevServer
from ai_orchestrator.payloads.codec import EncryptionCodec
from ai_orchestrator.payloads.converter import data_converter
from ai_orchestrator.simulator import Simulator
from ai_orchestrator.worker import running

from ..conftest import FAST_RETRY, provider_for, running_worker, unique

TOKENS = 60  # at 20 tokens/s: 3 s of streaming, about 3 checkpoints with live on


@dataclass
class Seen:
    """One reader's events, each with the monotonic time it arrived."""

    events: list[StreamEvent] = field(default_factory=list)
    times: list[float] = field(default_factory=list)

    @property
    def deltas(self) -> list[TextDelta]:
        return [e for e in self.events if isinstance(e, TextDelta) and e.text]

    @property
    def first_text_at(self) -> float:
        pairs = zip(self.events, self.times, strict=True)
        return next(t for e, t in pairs if isinstance(e, TextDelta) and e.text)

    @property
    def folded(self) -> str:
        return functools.reduce(apply_event, self.events, "")  # type: ignore[arg-type]

    @property
    def result(self) -> Result:
        last = self.events[-1]
        assert isinstance(last, Finished), last
        return last.result


async def read(tasks: TaskClient, task_id: str) -> Seen:
    seen = Seen()

    async def follow() -> None:
        async for event in tasks.stream_events(task_id):
            seen.events.append(event)
            seen.times.append(time.monotonic())

    await asyncio.wait_for(follow(), 90)
    return seen


def slow(sim: Simulator) -> None:
    sim.tokens_per_second = 20
    sim.default_tokens = TOKENS


def assert_exact_and_live(seen: Seen, result: Result, sim: Simulator, index: int = 0) -> None:
    assert result.status == TaskStatus.COMPLETED
    assert seen.folded == result.output
    assert "".join(d.text for d in seen.deltas) == result.output  # no restart, no duplicate
    signals, chunks = result.metadata["signals"], result.metadata["chunks"]
    assert chunks >= TOKENS and signals * 5 <= chunks, result.metadata
    assert len(seen.deltas) > signals + 2, (len(seen.deltas), result.metadata)
    ended = sim.requests[index].ended_at
    assert ended is not None and seen.first_text_at < ended


async def test_late_joiners_after_completion_and_after_the_worker_stopped(
    client: Client, queue: str, sim: Simulator
) -> None:
    slow(sim)
    tasks = TaskClient(client, task_queue=queue, retry=FAST_RETRY)
    async with running_worker(client, queue, sim):
        task_id = await tasks.submit_task(Task(prompt="late joiners", task_id=unique("late")))
        result = await tasks.get_result(task_id, timeout=60)
        while_up = await read(TaskClient(client, task_queue=queue), task_id)
    after_stop = await read(TaskClient(client, task_queue=queue), task_id)
    assert result.status == TaskStatus.COMPLETED and len(result.output.split()) == TOKENS
    for seen in (while_up, after_stop):
        assert seen.folded == result.output
        assert seen.result.output == result.output
    chunks = [c async for c in TaskClient(client, task_queue=queue).stream_result(task_id)]
    assert "".join(chunks) == result.output


async def test_ten_readers_on_one_task_all_get_exactly_the_output(
    client: Client, queue: str, sim: Simulator
) -> None:
    slow(sim)
    tasks = TaskClient(client, task_queue=queue, retry=FAST_RETRY)
    async with running_worker(client, queue, sim):
        task_id = await tasks.submit_task(Task(prompt="ten readers", task_id=unique("ten")))
        await sim.wait_for_tokens_sent(0, 5, timeout=60)
        readers = [read(TaskClient(client, task_queue=queue), task_id) for _ in range(10)]
        seen = await asyncio.gather(*readers)
        result = await tasks.get_result(task_id, timeout=60)
    assert len(sim.requests) == 1
    for one in seen:
        assert_exact_and_live(one, result, sim)


async def raw_read(address: str, task_id: str, run_id: str, headers: dict[str, str]) -> bytes:
    url = f"{address}/v1/live/{task_id}/{run_id}"
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as response:
        body = await response.read()
        if response.status != 200:
            raise PermissionError(response.status)
        return body


def frames_of(body: bytes) -> list[bytes]:
    out, at = [], 0
    while at < len(body):
        (size,) = struct.unpack(">I", body[at : at + 4])
        out.append(body[at + 4 : at + 4 + size])
        at += 4 + size
    return out


async def test_encrypted_frames_tokens_and_a_reader_with_another_secret(
    temporal: DevServer, queue: str, sim: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    slow(sim)
    codec = EncryptionCodec({"k1": os.urandom(32)}, "k1")
    converter = data_converter(codec)
    auth = LiveAuth.from_codec(codec)
    enc = await Client.connect(temporal.target, data_converter=converter)
    tasks = TaskClient(enc, task_queue=queue, retry=FAST_RETRY)
    right = TaskClient(
        enc, task_queue=queue, live_subscribers=[HttpLiveSubscriber(converter, auth=auth)]
    )
    wrong = TaskClient(
        enc,
        task_queue=queue,
        live_subscribers=[
            HttpLiveSubscriber(converter, auth=LiveAuth.from_secret("not the deployment's"))
        ],
    )
    publisher = HttpLivePublisher(converter, auth=auth)
    caplog.set_level(logging.WARNING, logger="ai_orchestrator.client._live_source")
    async with running_worker(enc, queue, sim, live=publisher):
        task_id = await tasks.submit_task(Task(prompt="sealed frames", task_id=unique("enc")))
        handle = enc.get_workflow_handle(task_id)
        now = await look(handle, converter)
        while now is not None and not now.address:
            await asyncio.sleep(0.05)
            now = await look(handle, converter)
        assert now is not None and now.address == publisher.address
        token = auth.token(task_id, now.run_id)
        reads = [
            raw_read(now.address, task_id, now.run_id, {"Authorization": f"Bearer {token}"}),
            read(right, task_id),
            read(wrong, task_id),
        ]
        body, seen_right, seen_wrong = await asyncio.gather(*reads)
        refused = [
            {},
            {"Authorization": "Bearer " + "0" * 64},
            {"Authorization": f"Bearer {auth.token(task_id, 'another-run')}"},
            {"Authorization": f"Bearer {LiveAuth.from_secret('x').token(task_id, now.run_id)}"},
        ]
        for headers in refused:
            with pytest.raises(PermissionError) as denied:
                await raw_read(now.address, task_id, now.run_id, headers)
            assert denied.value.args == (403,), headers
        result = await tasks.get_result(task_id, timeout=60)

    assert_exact_and_live(seen_right, result, sim)
    # The other secret was refused, so that reader followed the workflow: exact all the same.
    assert seen_wrong.folded == result.output and seen_wrong.result.output == result.output
    assert any("through Temporal instead" in r.getMessage() for r in caplog.records)
    # The raw frames carry the whole answer, sealed: no word of it in the bytes.
    frames = [await unseal(f, converter) for f in frames_of(body)]
    assert "".join(f.text for f in frames) == result.output and frames[-1].end == "completed"
    words = {w for w in result.output.split() if len(w) >= 4}
    assert words
    for word in words:
        assert word.encode() not in body, f"{word!r} in plaintext on the wire"
    assert b"simulated" not in body


async def test_redis_channel_end_to_end(
    client: Client, queue: str, sim: Simulator, redis_url: str
) -> None:
    slow(sim)
    converter = client.data_converter
    tasks = TaskClient(client, task_queue=queue, retry=FAST_RETRY)
    reader = TaskClient(
        client, task_queue=queue, live_subscribers=[RedisLiveSubscriber(redis_url, converter)]
    )
    async with running_worker(client, queue, sim, live=RedisLivePublisher(redis_url, converter)):
        task_id = await tasks.submit_task(Task(prompt="via redis", task_id=unique("redis")))
        await sim.wait_for_tokens_sent(0, 5, timeout=60)
        seen = await read(reader, task_id)
        result = await tasks.get_result(task_id, timeout=60)
    assert_exact_and_live(seen, result, sim)
    run_id = (await client.get_workflow_handle(task_id).describe()).run_id
    raw = aioredis.from_url(redis_url)
    try:
        assert await raw.exists(stream_key(task_id, run_id)), "nothing was published on Redis"
    finally:
        await raw.aclose()


async def test_a_worker_with_live_off_and_a_default_reader(
    client: Client, queue: str, sim: Simulator
) -> None:
    slow(sim)
    tasks = TaskClient(client, task_queue=queue, retry=FAST_RETRY)
    async with running_worker(client, queue, sim, live=None):
        task_id = await tasks.submit_task(Task(prompt="no live", task_id=unique("off")))
        handle = client.get_workflow_handle(task_id)
        await sim.wait_for_tokens_sent(0, 5, timeout=60)
        now = await look(handle, client.data_converter)
        seen = await read(TaskClient(client, task_queue=queue), task_id)
        result = await tasks.get_result(task_id, timeout=60)
    assert now is not None and now.address is None  # nothing advertised
    assert result.status == TaskStatus.COMPLETED
    assert seen.folded == result.output
    assert "".join(d.text for d in seen.deltas) == result.output
    ended = sim.requests[0].ended_at
    assert ended is not None and seen.first_text_at < ended  # via the workflow, still streamed


async def test_refusing_a_keyless_public_endpoint_and_an_unknown_channel(
    client: Client, queue: str, sim: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    converter = data_converter()
    for host in ("0.0.0.0", "::", "10.1.2.3", "example.com"):
        with pytest.raises(LiveConfigError, match="AI_ORCHESTRATOR_LIVE_SECRET"):
            HttpLivePublisher(converter, host=host)
    with pytest.raises(LiveConfigError, match="AI_ORCHESTRATOR_LIVE_SECRET"):
        publisher_from_env(converter, {"AI_ORCHESTRATOR_LIVE_LISTEN": "0.0.0.0:0"})
    keyed = publisher_from_env(
        converter,
        {"AI_ORCHESTRATOR_LIVE_LISTEN": "0.0.0.0:0", "AI_ORCHESTRATOR_LIVE_SECRET": "s3cret"},
    )
    assert isinstance(keyed, HttpLivePublisher)
    for host in ("127.0.0.1", "localhost", "::1"):
        HttpLivePublisher(converter, host=host)  # loopback needs no key

    for value in ("bogus", "HTTP2", "redis-streams"):
        with pytest.raises(LiveConfigError) as bad:
            channel({"AI_ORCHESTRATOR_LIVE": value})
        message = str(bad.value)
        assert "AI_ORCHESTRATOR_LIVE" in message and value.strip().lower() in message
        assert all(name in message for name in ("http", "redis", "off"))
    assert channel({"AI_ORCHESTRATOR_LIVE": " Redis "}) == "redis"
    assert channel({}) == "http"
    monkeypatch.setenv("AI_ORCHESTRATOR_LIVE", "bogus")
    with pytest.raises(LiveConfigError, match="bogus"):
        async with running(client, task_queue=queue, provider=provider_for(sim)):
            pass
