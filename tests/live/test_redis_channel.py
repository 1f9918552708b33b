"""The live channel on Redis Streams, against a real redis-server (see conftest)."""

from __future__ import annotations

import asyncio
import base64
import logging
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from ai_orchestrator.config import ConfigError
from ai_orchestrator.live._frames import (
    END_CANCELLED,
    END_COMPLETED,
    END_FAILED,
    END_HANDED_OVER,
    LiveFrame,
)
from ai_orchestrator.live._redis import (
    ENV_LIVE_REDIS_URL,
    RedisLiveDecodeError,
    RedisLivePublisher,
    RedisLiveSubscriber,
    RedisLiveUnavailable,
    stream_key,
)
from ai_orchestrator.local.devserver import free_port
from ai_orchestrator.payloads.codec import EncryptionCodec, generate_key
from ai_orchestrator.payloads.converter import data_converter

PLAIN = data_converter()
TEXT = "Streams of text: héllo wörld ✓ 🚀 " * 5


@pytest.fixture
async def publisher(redis_url: str) -> AsyncIterator[RedisLivePublisher]:
    pub = RedisLivePublisher(redis_url, PLAIN, flush_interval=0.002)
    await pub.start()
    yield pub
    await pub.stop()


@pytest.fixture
async def subscriber(redis_url: str) -> AsyncIterator[RedisLiveSubscriber]:
    sub = RedisLiveSubscriber(redis_url, PLAIN, block_seconds=0.2, missing_timeout=2.0)
    yield sub
    await sub.aclose()


@pytest.fixture
async def raw(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(redis_url)
    yield client
    await client.aclose()


def ids() -> tuple[str, str]:
    return f"wf-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex


async def collect(
    sub: RedisLiveSubscriber, wf: str, run: str, generation: int = 1, offset: int = 0
) -> list[LiveFrame]:
    async def read_all() -> list[LiveFrame]:
        return [frame async for frame in sub.read("redis", wf, run, generation, offset)]

    return await asyncio.wait_for(read_all(), 20)


def joined(frames: list[LiveFrame], generation: int | None = None) -> str:
    return "".join(f.text for f in frames if generation is None or f.generation == generation)


def assert_contiguous(frames: list[LiveFrame], first: int) -> None:
    at = first
    for frame in frames:
        assert frame.offset == at, (frame, at)
        at += len(frame.text)


def publish(sink, text: str, piece: int = 3) -> None:
    for i in range(0, len(text), piece):
        sink.add(text[i : i + piece])


async def wait_for_entries(raw: aioredis.Redis, key: str, at_least: int = 1) -> None:
    for _ in range(1000):
        if await raw.xlen(key) >= at_least:
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"{key} has fewer than {at_least} entries")


async def test_round_trip_exact_text_and_the_address_holds_no_secret(
    publisher: RedisLivePublisher, subscriber: RedisLiveSubscriber, redis_url: str
) -> None:
    wf, run = ids()
    sink = publisher.open(wf, run, generation=1)
    publish(sink, TEXT)
    sink.close(END_COMPLETED)
    frames = await collect(subscriber, wf, run)
    assert joined(frames) == TEXT
    assert_contiguous(frames, 0)
    assert frames[-1].end == END_COMPLETED and all(f.end is None for f in frames[:-1])
    assert {f.generation for f in frames} == {1} and {f.run_id for f in frames} == {run}
    # Coalesced: far fewer frames than adds.
    assert len(frames) < len(TEXT) // 3
    password = redis_url.split(":")[2].split("@")[0]
    assert publisher.address == "redis" and subscriber.handles("redis")
    assert password not in repr(publisher) and password not in repr(subscriber)
    assert not subscriber.handles("http://127.0.0.1:1234")


async def test_readers_joining_mid_stream_and_after_close_get_the_whole_text(
    publisher: RedisLivePublisher, subscriber: RedisLiveSubscriber, raw: aioredis.Redis
) -> None:
    wf, run = ids()
    sink = publisher.open(wf, run, generation=1)
    half = len(TEXT) // 2
    publish(sink, TEXT[:half])
    await wait_for_entries(raw, stream_key(wf, run))
    early = asyncio.create_task(collect(subscriber, wf, run))
    await asyncio.sleep(0.05)
    assert not early.done()  # waiting for more, not finished
    for i in range(half, len(TEXT), 4):
        sink.add(TEXT[i : i + 4])
        await asyncio.sleep(0.001)
    sink.close(END_COMPLETED)
    frames = await early
    assert joined(frames) == TEXT and frames[-1].end == END_COMPLETED
    late = await collect(subscriber, wf, run)
    assert joined(late) == TEXT and late[-1].end == END_COMPLETED
    assert_contiguous(late, 0)


async def test_an_offset_inside_a_frame_trims_its_text(
    publisher: RedisLivePublisher, subscriber: RedisLiveSubscriber
) -> None:
    wf, run = ids()
    sink = publisher.open(wf, run, generation=1)
    sink.add("abcdefghij")
    sink.close(END_COMPLETED)
    frames = await collect(subscriber, wf, run, offset=3)
    assert frames[0].offset == 3 and frames[0].text == "defghij"
    assert joined(frames) == "defghij" and frames[-1].end == END_COMPLETED
    past = await collect(subscriber, wf, run, offset=10)
    assert joined(past) == "" and [f.end for f in past] == [END_COMPLETED]
    assert past[0].offset == 10


async def test_a_newer_generation_supersedes_an_older_one(
    publisher: RedisLivePublisher, subscriber: RedisLiveSubscriber, raw: aioredis.Redis
) -> None:
    wf, run = ids()
    old = publisher.open(wf, run, generation=1)
    old.add("old text, abandoned")
    # A reader following generation 1 while it is live...
    await wait_for_entries(raw, stream_key(wf, run))
    following = asyncio.create_task(collect(subscriber, wf, run, generation=1, offset=4))
    await asyncio.sleep(0.05)
    old.close(END_FAILED)
    new = publisher.open(wf, run, generation=2)
    new.add("new text")
    new.close(END_COMPLETED)
    # ...sees the old text, then the new generation from its start, to its end.
    frames = await following
    assert joined(frames, 1) == "text, abandoned"
    assert joined(frames, 2) == "new text" and frames[-1].generation == 2
    assert_contiguous([f for f in frames if f.generation == 2], 0)
    assert frames[-1].end == END_COMPLETED
    assert all(f.end is None for f in frames[:-1])  # generation 1's end was superseded
    # A reader joining later skips generation 1 altogether, whatever offset it asks.
    late = await collect(subscriber, wf, run, generation=1, offset=5)
    assert {f.generation for f in late} == {2} and joined(late) == "new text"
    assert late[0].offset == 0 and late[-1].end == END_COMPLETED


async def test_a_hand_over_within_a_generation_continues_without_duplicates(
    publisher: RedisLivePublisher, subscriber: RedisLiveSubscriber, raw: aioredis.Redis
) -> None:
    wf, run = ids()
    first = publisher.open(wf, run, generation=1)
    first.add("abcdef")
    first.close(END_HANDED_OVER)
    frames = await collect(subscriber, wf, run)
    assert joined(frames) == "abcdef" and frames[-1].end == END_HANDED_OVER
    # The next attempt resumes from a checkpoint at 4 and knows the text before it.
    flushed = await raw.xlen(stream_key(wf, run))
    second = publisher.open(wf, run, generation=1, start=4, prefix="abcd")
    second.add("efgh")
    await wait_for_entries(raw, stream_key(wf, run), flushed + 1)
    reading = asyncio.create_task(collect(subscriber, wf, run, offset=6))
    await asyncio.sleep(0.1)
    assert not reading.done()  # the hand-over's end is not the last: more frames follow it
    second.close(END_COMPLETED)
    again = await reading
    assert joined(again) == "gh" and again[0].offset == 6
    assert again[-1].end == END_COMPLETED
    whole = await collect(subscriber, wf, run)
    assert joined(whole) == "abcdefgh" and [f.end for f in whole][-1] == END_COMPLETED
    assert END_HANDED_OVER not in [f.end for f in whole]


async def test_prefix_is_published_from_offset_zero_and_start_marks_a_gap(
    publisher: RedisLivePublisher, subscriber: RedisLiveSubscriber
) -> None:
    wf, run = ids()
    sink = publisher.open(wf, run, generation=3, start=5, prefix="hello")
    sink.add(" world")
    sink.close(END_COMPLETED)
    frames = await collect(subscriber, wf, run, generation=3)
    assert joined(frames) == "hello world" and frames[0].offset == 0
    assert {f.start for f in frames} == {0}
    wf, run = ids()
    sink = publisher.open(wf, run, generation=3, start=5)
    sink.add(" world")
    sink.close(END_COMPLETED)
    frames = await collect(subscriber, wf, run, generation=3)
    assert frames[0].offset == 5 and frames[0].start == 5 and joined(frames) == " world"


async def test_ten_concurrent_readers_of_one_stream(
    publisher: RedisLivePublisher, subscriber: RedisLiveSubscriber
) -> None:
    wf, run = ids()
    readers = [asyncio.create_task(collect(subscriber, wf, run)) for _ in range(10)]
    await asyncio.sleep(0.05)  # the readers wait for a stream that does not exist yet
    sink = publisher.open(wf, run, generation=1)
    for i in range(0, len(TEXT), 2):
        sink.add(TEXT[i : i + 2])
        if i % 20 == 0:
            await asyncio.sleep(0.003)
    sink.close(END_COMPLETED)
    for frames in await asyncio.gather(*readers):
        assert joined(frames) == TEXT and frames[-1].end == END_COMPLETED
        assert_contiguous(frames, 0)


async def test_frames_are_encrypted_in_redis(redis_url: str, raw: aioredis.Redis) -> None:
    key = base64.urlsafe_b64decode(generate_key())
    encrypted = data_converter(EncryptionCodec({"k1": key}, "k1"))
    secret = "the patient's diagnosis is confidential-42"
    pub = RedisLivePublisher(redis_url, encrypted, flush_interval=0.002)
    await pub.start()
    wf, run = ids()
    sink = pub.open(wf, run, generation=1, start=4, prefix="pre:")
    publish(sink, secret, piece=5)
    sink.close(END_COMPLETED)
    await pub.stop()
    entries = await raw.xrange(stream_key(wf, run))
    stored = b"".join(v for _, fields in entries for v in fields.values())
    assert entries and b"confidential" not in stored and b"diagnosis" not in stored
    assert b"binary/encrypted" in stored
    reader = RedisLiveSubscriber(redis_url, encrypted, block_seconds=0.2)
    frames = await collect(reader, wf, run)
    assert joined(frames) == "pre:" + secret
    await reader.aclose()
    plaintext_reader = RedisLiveSubscriber(redis_url, PLAIN, block_seconds=0.2)
    with pytest.raises(RedisLiveDecodeError, match="encryption") as raised:
        await collect(plaintext_reader, wf, run)
    assert isinstance(raised.value, ConnectionError)
    await plaintext_reader.aclose()
    # And the other way round: an encrypting client refuses plaintext frames.
    wf, run = ids()
    async with publisher_of(redis_url) as plain_pub:
        plain_sink = plain_pub.open(wf, run, generation=1)
        plain_sink.add("plain")
        plain_sink.close(END_COMPLETED)
    reader = RedisLiveSubscriber(redis_url, encrypted, block_seconds=0.2)
    with pytest.raises(RedisLiveDecodeError):
        await collect(reader, wf, run)
    await reader.aclose()


class publisher_of:
    def __init__(self, url: str, **options: object) -> None:
        self.pub = RedisLivePublisher(url, PLAIN, flush_interval=0.002, **options)  # type: ignore[arg-type]

    async def __aenter__(self) -> RedisLivePublisher:
        await self.pub.start()
        return self.pub

    async def __aexit__(self, *exc: object) -> None:
        await self.pub.stop()


async def test_redis_down_never_fails_the_publisher_and_readers_get_a_connection_error(
    caplog: pytest.LogCaptureFixture, start_redis
) -> None:
    password, port = "hunter2-not-logged", free_port()
    url = f"redis://:{password}@127.0.0.1:{port}/0"
    caplog.set_level(logging.WARNING, logger="ai_orchestrator.live._redis")
    pub = RedisLivePublisher(url, PLAIN, flush_interval=0.001, retry_after=0.0)
    await pub.start()
    sinks = [pub.open(*ids(), generation=1) for _ in range(3)]
    for round_ in range(20):
        for sink in sinks:
            sink.add(f"text {round_} ")
        await asyncio.sleep(0.005)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "unreachable" in warnings[0].getMessage()
    # Redis comes back: the same publisher (and sinks) carry on, with a gap readers can see.
    start_redis(port, password)
    wf, run = ids()
    later = pub.open(wf, run, generation=1)
    later.add("back")
    for sink in sinks:
        sink.add("after ")
        sink.close(END_COMPLETED)
    later.close(END_COMPLETED)
    await pub.stop()
    assert password not in caplog.text
    sub = RedisLiveSubscriber(url, PLAIN, block_seconds=0.1)
    assert joined(await collect(sub, wf, run)) == "back"
    await sub.aclose()
    sub = RedisLiveSubscriber(f"redis://:{password}@127.0.0.1:{free_port()}/0", PLAIN)
    with pytest.raises(RedisLiveUnavailable, match="workflow") as raised:
        await collect(sub, *ids())
    assert isinstance(raised.value, ConnectionError) and password not in str(raised.value)
    await sub.aclose()


async def test_finished_streams_expire_and_are_capped(redis_url: str, raw: aioredis.Redis) -> None:
    wf, run = ids()
    async with publisher_of(redis_url, expire_seconds=120, max_frames=10) as pub:
        sink = pub.open(wf, run, generation=1)
        for i in range(1000):
            sink.add(f"{i},")
            await asyncio.sleep(0)
            if i % 50 == 0:
                await asyncio.sleep(0.004)  # let the writer send a frame
        sink.close(END_COMPLETED)
    key = stream_key(wf, run)
    assert 0 < await raw.ttl(key) <= 120
    assert 0 < await raw.xlen(key) < 200  # approximate trimming keeps about max_frames


async def test_a_missing_a_silent_and_a_deleted_stream(
    redis_url: str, publisher: RedisLivePublisher, raw: aioredis.Redis
) -> None:
    short = RedisLiveSubscriber(
        redis_url, PLAIN, block_seconds=0.1, missing_timeout=0.3, idle_timeout=0.5
    )
    # Never published (a worker that cannot reach Redis): fall back to the workflow.
    with pytest.raises(RedisLiveUnavailable, match="no stream"):
        await collect(short, *ids())
    # Opened, no text yet: the stream exists at once; silent too long, the read ends.
    wf, run = ids()
    quiet = publisher.open(wf, run, generation=1)
    await wait_for_entries(raw, stream_key(wf, run))
    assert await collect(short, wf, run) == []
    quiet.close(END_CANCELLED)
    assert [f.end for f in await collect(short, wf, run)] == [END_CANCELLED]
    wf, run = ids()
    sink = publisher.open(wf, run, generation=1)
    sink.add("never finished")
    await wait_for_entries(raw, stream_key(wf, run))
    reading = asyncio.create_task(collect(short, wf, run))
    await asyncio.sleep(0.2)
    await raw.delete(stream_key(wf, run))  # as its expiry would
    frames = await reading
    assert joined(frames) == "never finished" and frames[-1].end is None
    await short.aclose()


def test_from_env(redis_url: str) -> None:
    assert RedisLivePublisher.from_env({}, PLAIN) is None
    assert RedisLiveSubscriber.from_env({ENV_LIVE_REDIS_URL: " "}, PLAIN) is None
    env = {ENV_LIVE_REDIS_URL: redis_url}
    pub = RedisLivePublisher.from_env(env, PLAIN)
    assert pub is not None and pub.address == "redis"
    assert RedisLiveSubscriber.from_env(env, PLAIN) is not None
    with pytest.raises(ConfigError, match=ENV_LIVE_REDIS_URL) as raised:
        RedisLivePublisher.from_env({ENV_LIVE_REDIS_URL: "host:6379:secretpw"}, PLAIN)
    assert "secretpw" not in str(raised.value)
