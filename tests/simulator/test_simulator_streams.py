"""Stream faults, client disconnects, pacing, concurrency and shutdown."""

from __future__ import annotations

import asyncio
import itertools
import json
import time

import openai
import pytest
from openai.types.chat import ChatCompletionChunk

from ai_orchestrator.providers._tls import openai_http_client
from ai_orchestrator.simulator import Fault, Simulator, serve_forever

API_KEY = "sk-test-streams-key"
MESSAGES = [{"role": "user", "content": "Tell me about the sea"}]


async def _open_stream(
    openai_client: openai.AsyncOpenAI, **kwargs: object
) -> openai.AsyncStream[ChatCompletionChunk]:
    return await openai_client.chat.completions.create(
        model="gpt-4o-mini",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
        **kwargs,
    )


@pytest.mark.asyncio
async def test_disconnect_mid_stream(sim: Simulator, openai_client: openai.AsyncOpenAI) -> None:
    sim.script(Fault.disconnect(after_tokens=3))
    stream = await _open_stream(openai_client)
    contents: list[str] = []
    with pytest.raises(openai.APIConnectionError):
        async for chunk in stream:
            assert not chunk.choices or chunk.choices[0].finish_reason is None
            if chunk.choices and chunk.choices[0].delta.content:
                contents.append(chunk.choices[0].delta.content)
    assert len(contents) == 3
    await sim.wait_for_requests(1)
    rec = sim.requests[0]
    assert rec.fault == "disconnect" and rec.tokens_sent == 3
    assert not rec.finished and not rec.disconnected  # the server hung up, not the client

    # The server is unharmed: the next request works.
    text = "".join(
        [
            c.choices[0].delta.content or ""
            async for c in await _open_stream(openai_client)
            if c.choices
        ]
    )
    assert text.startswith("[simulated]")


@pytest.mark.asyncio
async def test_a_cut_stall_drops_the_connection(
    sim: Simulator, openai_client: openai.AsyncOpenAI
) -> None:
    """``cut_stalls`` ends a stall as a network cut: the client sees a broken
    connection after the tokens sent before it, not the rest of the answer."""
    sim.script(Fault.stall(after_tokens=3, seconds=120))
    stream = await _open_stream(openai_client)
    contents: list[str] = []

    async def read() -> None:
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                contents.append(chunk.choices[0].delta.content)

    reader = asyncio.create_task(read())
    await sim.wait_until(lambda: sim.requests[0].tokens_sent == 3)
    sim.cut_stalls()
    with pytest.raises(openai.APIConnectionError):
        await asyncio.wait_for(reader, 30)  # never the 120 s stall
    assert len(contents) == 3
    assert sim.requests[0].fault == "stall" and not sim.requests[0].finished


@pytest.mark.asyncio
async def test_disconnect_non_stream(sim: Simulator, openai_client: openai.AsyncOpenAI) -> None:
    sim.script(Fault.disconnect())
    with pytest.raises(openai.APIConnectionError):
        await openai_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert sim.requests[0].fault == "disconnect" and not sim.requests[0].finished


@pytest.mark.asyncio
async def test_no_finish(sim: Simulator, openai_client: openai.AsyncOpenAI) -> None:
    sim.script(Fault.no_finish(after_tokens=4), Fault.no_finish())
    chunks = [c async for c in await _open_stream(openai_client)]
    assert len(chunks) == 5  # role chunk + 4 tokens, then [DONE]
    assert all(c.choices and c.choices[0].finish_reason is None for c in chunks)
    assert all(c.usage is None for c in chunks)
    assert sim.requests[0].tokens_sent == 4 and sim.requests[0].finished

    plain = await openai_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert plain.choices[0].finish_reason is None


@pytest.mark.asyncio
async def test_malformed(sim: Simulator, openai_client: openai.AsyncOpenAI) -> None:
    sim.script(Fault.malformed(after_tokens=2), Fault.malformed())
    stream = await _open_stream(openai_client)
    seen = 0
    with pytest.raises(json.JSONDecodeError):
        async for _ in stream:
            seen += 1
    assert seen == 3  # role chunk + 2 tokens
    with pytest.raises(json.JSONDecodeError):
        await openai_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert [r.fault for r in sim.requests] == ["malformed", "malformed"]


@pytest.mark.asyncio
async def test_stall(sim: Simulator, openai_client: openai.AsyncOpenAI) -> None:
    sim.script(Fault.stall(after_tokens=2, seconds=0.3))
    arrivals: list[float] = []
    finish = None
    async for chunk in await _open_stream(openai_client):
        if chunk.choices and chunk.choices[0].delta.content:
            arrivals.append(time.monotonic())
        if chunk.choices and chunk.choices[0].finish_reason:
            finish = chunk.choices[0].finish_reason
    assert finish == "stop" and len(arrivals) == 16
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    assert gaps[1] >= 0.28 and max(gaps[:1] + gaps[2:]) < 0.2
    sent = sim.requests[0].token_sent_at
    assert sent[2] - sent[1] >= 0.29


@pytest.mark.asyncio
async def test_client_close_is_recorded(sim: Simulator, openai_client: openai.AsyncOpenAI) -> None:
    sim.tokens_per_second = 50
    sim.default_tokens = 500
    stream = await _open_stream(openai_client)
    for _ in range(2):
        await stream.__anext__()
    await stream.close()
    rec = sim.requests[0]
    await sim.wait_until(lambda: rec.disconnected, timeout=2.0)
    assert not rec.finished
    assert rec.ended_at is not None and rec.tokens_sent < 500


@pytest.mark.asyncio
async def test_pacing_and_runtime_speed_change(
    sim: Simulator, openai_client: openai.AsyncOpenAI
) -> None:
    sim.tokens_per_second = 20  # 50 ms per token
    sim.default_tokens = 10
    stream = await _open_stream(openai_client)
    await sim.wait_for_tokens_sent(0, 3, timeout=2)
    sim.tokens_per_second = 1000
    async for _ in stream:
        pass
    sent = sim.requests[0].token_sent_at
    assert sent[2] - sent[0] >= 0.09  # two paced gaps at 20 tok/s
    assert sent[-1] - sent[4] < 0.15  # 5 gaps at 1000 tok/s (would be 0.25 s unchanged)


@pytest.mark.asyncio
async def test_waiters(sim: Simulator, openai_client: openai.AsyncOpenAI) -> None:
    with pytest.raises(TimeoutError):
        await sim.wait_for_requests(1, timeout=0.05)
    sim.script(Fault.no_finish(after_tokens=2))
    task = asyncio.create_task(
        openai_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    )
    await sim.wait_for_requests(1, timeout=2)
    stream = await task
    async for _ in stream:
        pass
    with pytest.raises(TimeoutError):  # fails fast: the request ended after 2 tokens
        await sim.wait_for_tokens_sent(0, 5, timeout=5)


@pytest.mark.asyncio
async def test_200_concurrent_streams(sim: Simulator) -> None:
    sim.tokens_per_second = 200
    sim.default_tokens = 20

    async def one(i: int, openai_client: openai.AsyncOpenAI) -> tuple[str, str | None]:
        stream = await openai_client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": f"question {i}"}],
            stream=True,
        )
        text, finish = "", None
        async for chunk in stream:
            text += chunk.choices[0].delta.content or ""
            finish = chunk.choices[0].finish_reason or finish
        return text, finish

    async with openai.AsyncOpenAI(
        base_url=sim.base_url, api_key=API_KEY, max_retries=0, http_client=openai_http_client()
    ) as c:
        results = await asyncio.gather(*(one(i, c) for i in range(200)))
    assert all(finish == "stop" and len(text.split()) == 20 for text, finish in results)
    assert len({text for text, _ in results}) > 150  # different prompts, different text
    assert len(sim.requests) == 200 and all(r.finished for r in sim.requests)
    # Served side by side, not one after another: most streams were open at once.
    edges = sorted(
        [(r.received_at, 1) for r in sim.requests]
        + [(r.ended_at or r.received_at, -1) for r in sim.requests]
    )
    open_at_once = max(itertools.accumulate(step for _, step in edges))
    assert open_at_once > 100, open_at_once


@pytest.mark.asyncio
async def test_stop_with_streams_in_flight() -> None:
    simulator = Simulator(tokens_per_second=0, default_tokens=8)
    await simulator.start()
    openai_client = openai.AsyncOpenAI(
        base_url=simulator.base_url,
        api_key=API_KEY,
        max_retries=0,
        http_client=openai_http_client(),
    )
    try:
        simulator.script(Fault.stall(after_tokens=1, seconds=30, times=5))
        streams = [await _open_stream(openai_client) for _ in range(5)]
        for i in range(5):
            await simulator.wait_for_tokens_sent(i, 1, timeout=2)
        started = time.monotonic()
        await simulator.stop()
        assert time.monotonic() - started < 3
        for stream in streams:
            with pytest.raises(openai.APIConnectionError):
                async for _ in stream:
                    pass
        assert all(not r.finished and not r.disconnected for r in simulator.requests)
        await simulator.stop()  # idempotent
    finally:
        await simulator.stop()
        await openai_client.close()


@pytest.mark.asyncio
async def test_fixed_port_and_restart() -> None:
    first = Simulator(port=0)
    async with first:
        port = first.port
        assert first.base_url == f"http://127.0.0.1:{port}/v1"
    with pytest.raises(RuntimeError):
        _ = first.base_url
    async with Simulator(port=port) as again:
        assert again.port == port


@pytest.mark.asyncio
async def test_non_stream_takes_generation_time(
    sim: Simulator, openai_client: openai.AsyncOpenAI
) -> None:
    sim.tokens_per_second = 100
    sim.default_tokens = 10
    started = time.monotonic()
    await openai_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert time.monotonic() - started >= 0.09


@pytest.mark.asyncio
async def test_serve_forever_runs_until_cancelled() -> None:
    task = asyncio.create_task(serve_forever(port=0, tokens_per_second=0))
    await asyncio.sleep(0.1)
    assert not task.done()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
