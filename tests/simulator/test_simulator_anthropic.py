"""The simulator's Anthropic Messages API, driven by the real anthropic SDK over real HTTP.

What is asserted is what the provider layer will see: the SDK's own exception
classes, statuses, headers and parsed events.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import anthropic
import httpx2
import openai
import pytest
import pytest_asyncio

from ai_orchestrator.providers._tls import anthropic_http_client
from ai_orchestrator.simulator import Fault, Simulator
from ai_orchestrator.simulator._text import simulated_tokens

API_KEY = "sk-ant-test-simulator-0123456789"
MODEL = "claude-haiku-4-5"
SYSTEM = "You are terse."
MESSAGES = [{"role": "user", "content": "Say something nice about rivers"}]
PROMPT_WORDS = 8  # 3 system words + 5 user words
SEED = [{"role": "system", "content": SYSTEM}, *MESSAGES]
EXPECTED = "".join(simulated_tokens(SEED, MODEL, 16))


@pytest_asyncio.fixture
async def claude(sim: Simulator) -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with anthropic.AsyncAnthropic(
        base_url=sim.url, api_key=API_KEY, max_retries=0, http_client=anthropic_http_client()
    ) as c:
        yield c


async def _create(claude: anthropic.AsyncAnthropic, **kwargs: Any) -> anthropic.types.Message:
    args: dict[str, Any] = {
        "model": MODEL,
        "max_tokens": 1024,
        "system": SYSTEM,
        "messages": MESSAGES,
    }
    return await claude.messages.create(**{**args, **kwargs})


async def _events(claude: anthropic.AsyncAnthropic, **kwargs: Any) -> list[Any]:
    """Every parsed event of a raw ``stream=True`` call; raises what the SDK raises."""
    stream = await _create(claude, stream=True, **kwargs)
    return [event async for event in stream]  # type: ignore[attr-defined]


def _text(events: list[Any]) -> str:
    return "".join(
        e.delta.text
        for e in events
        if e.type == "content_block_delta" and e.delta.type == "text_delta"
    )


@pytest.mark.asyncio
async def test_message_text_usage_and_record(
    sim: Simulator, claude: anthropic.AsyncAnthropic
) -> None:
    raw = await claude.messages.with_raw_response.create(
        model=MODEL,
        max_tokens=1024,
        system=SYSTEM,
        messages=MESSAGES,
        extra_body={"temperature": 0.5},  # this SDK version has no `temperature` argument
    )
    message = await raw.parse()
    assert raw.headers["request-id"] == "req_sim_0" and raw.headers["x-request-id"] == "req_sim_0"
    assert raw.headers["x-ai-orchestrator-simulator"] == "1"
    assert message.id == "msg_sim_0" and message.model == MODEL and message.role == "assistant"
    assert [block.type for block in message.content] == ["text"]
    assert message.content[0].text == EXPECTED  # type: ignore[union-attr]
    assert EXPECTED.startswith("[simulated] ")
    assert message.stop_reason == "end_turn" and message.stop_details is None
    assert message.usage.input_tokens == PROMPT_WORDS and message.usage.output_tokens == 16
    assert message.usage.cache_read_input_tokens == 0

    [rec] = sim.requests
    assert (rec.api, rec.model, rec.stream, rec.max_tokens) == ("anthropic", MODEL, False, 1024)
    assert rec.messages == MESSAGES and rec.system == SYSTEM and rec.temperature == 0.5
    # This SDK sends the key as a Bearer token; Claude Code sends x-api-key.
    assert rec.api_key == API_KEY and rec.authorization == f"Bearer {API_KEY}"
    assert (rec.fault, rec.status, rec.prompt_tokens, rec.tokens_sent) == (None, 200, 8, 16)
    assert rec.finished and not rec.disconnected


@pytest.mark.asyncio
async def test_stream_has_the_real_event_sequence_and_matches(
    sim: Simulator, claude: anthropic.AsyncAnthropic
) -> None:
    events = await _events(claude)
    types = [e.type for e in events]
    assert types == [
        "message_start",
        "content_block_start",
        *["content_block_delta"] * 16,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]  # the `ping` after content_block_start is dropped by the SDK, as for the real API
    start = events[0].message
    assert start.id == "msg_sim_0" and start.stop_reason is None and start.content == []
    assert start.usage.input_tokens == PROMPT_WORDS
    assert start.usage.cache_creation_input_tokens == 0
    assert events[1].content_block.type == "text"
    assert _text(events) == EXPECTED
    delta = events[-2]
    assert delta.delta.stop_reason == "end_turn" and delta.usage.output_tokens == 16

    # The SDK's stream helper accumulates the same message.
    async with claude.messages.stream(
        model=MODEL, max_tokens=1024, system=SYSTEM, messages=MESSAGES
    ) as stream:
        final = await stream.get_final_message()
    assert final.content[0].text == EXPECTED  # type: ignore[union-attr]
    assert final.stop_reason == "end_turn" and final.usage.output_tokens == 16
    rec = sim.requests[0]
    assert rec.stream and rec.tokens_sent == 16 and rec.token_sent_at == sorted(rec.token_sent_at)


@pytest.mark.asyncio
async def test_max_tokens_stop_reason_and_prefix(
    sim: Simulator, claude: anthropic.AsyncAnthropic
) -> None:
    short = await _create(claude, max_tokens=5)
    assert short.stop_reason == "max_tokens" and short.usage.output_tokens == 5
    assert EXPECTED.startswith(short.content[0].text)  # type: ignore[union-attr]
    events = await _events(claude, max_tokens=3)
    assert len(_text(events).split()) == 3 and events[-2].delta.stop_reason == "max_tokens"
    roomy = await _create(claude, max_tokens=16)
    assert roomy.stop_reason == "end_turn"
    warm = await _create(claude, max_tokens=0)  # only warms the cache: no content
    assert warm.content == [] and warm.stop_reason == "max_tokens"
    assert warm.usage.output_tokens == 0


@pytest.mark.asyncio
async def test_what_claude_code_sends_is_accepted(
    sim: Simulator, claude: anthropic.AsyncAnthropic
) -> None:
    """System blocks with cache_control, tools, thinking, metadata, beta headers."""
    system = [
        {"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": "Be terse."},
    ]
    tools = [
        {
            "name": "Bash",
            "description": "Run a command",
            "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}},
        }
    ]
    stream = await claude.messages.create(
        model=MODEL,
        max_tokens=32000,
        system=system,  # type: ignore[arg-type]
        messages=[{"role": "user", "content": [{"type": "text", "text": "hello"}]}],
        tools=tools,  # type: ignore[arg-type]
        thinking={"type": "enabled", "budget_tokens": 1024},
        metadata={"user_id": "user_abc"},
        stream=True,
        extra_headers={"anthropic-beta": "claude-code-20250219,interleaved-thinking-2025-05-14"},
        extra_body={"context_management": {"edits": []}, "some_future_field": 1},
    )
    text = _text([e async for e in stream])
    assert text.startswith("[simulated]") and len(text.split()) == 16
    assert sim.requests[0].system == system and sim.requests[0].prompt_tokens == 7


@pytest.mark.asyncio
async def test_invalid_requests_are_anthropic_shaped_400s(
    sim: Simulator, claude: anthropic.AsyncAnthropic
) -> None:
    sim.script(Fault.status(500))
    with pytest.raises(anthropic.BadRequestError) as info:
        await _create(claude, messages=[])
    assert info.value.type == "invalid_request_error"
    assert info.value.api_message == "messages: at least one message is required"
    headers = {"anthropic-version": "2023-06-01", "x-api-key": API_KEY}
    bad_bodies = [
        ({"model": MODEL, "messages": MESSAGES}, "max_tokens: Field required"),
        ({"max_tokens": 5, "messages": MESSAGES}, "model: Field required"),
        ({"model": MODEL, "max_tokens": 5, "messages": MESSAGES, "system": 3}, "system"),
        ({"model": MODEL, "max_tokens": -1, "messages": MESSAGES}, "max_tokens"),
        ({"model": MODEL, "max_tokens": 5, "messages": [{"role": "bot", "content": "x"}]}, "role"),
    ]
    async with aiohttp.ClientSession(base_url=sim.url, headers=headers) as http:
        for body, message in bad_bodies:
            async with http.post("/v1/messages", json=body) as resp:
                assert resp.status == 400, body
                error = await resp.json()
                assert error["type"] == "error" and message in error["error"]["message"]
                assert error["error"]["type"] == "invalid_request_error"
        async with http.post("/v1/messages", data=b"{nope") as resp:
            assert resp.status == 400
        async with http.get("/v1/nope") as resp:  # router errors take the asking API's shape
            assert resp.status == 404 and (await resp.json())["type"] == "error"
    assert [r.status for r in sim.requests] == [400] * 7
    assert len(sim.pending_faults) == 1  # rejected requests consume no fault


# --- error statuses ------------------------------------------------------------------


@pytest.mark.asyncio
async def test_rate_limit_has_retry_after(sim: Simulator, claude: anthropic.AsyncAnthropic) -> None:
    sim.script(Fault.rate_limit(retry_after=2), Fault.rate_limit(retry_after=0.5))
    with pytest.raises(anthropic.RateLimitError) as info:
        await _create(claude)
    exc = info.value
    assert exc.status_code == 429 and exc.type == "rate_limit_error"
    assert exc.response.headers["retry-after"] == "2" and exc.request_id == "req_sim_0"
    assert exc.error_code is None and exc.body["request_id"] == "req_sim_0"  # type: ignore[index]
    assert exc.response.headers["anthropic-ratelimit-requests-remaining"] == "0"
    assert exc.response.headers["anthropic-ratelimit-requests-reset"].endswith("Z")
    with pytest.raises(anthropic.RateLimitError) as info:
        await _events(claude)  # a streamed request is refused before the stream
    assert info.value.response.headers["retry-after"] == "0.5"
    assert [(r.fault, r.status, r.prompt_tokens) for r in sim.requests] == [
        ("rate_limit", 429, 0)
    ] * 2


@pytest.mark.asyncio
async def test_spend_limit_is_a_429_without_retry_after(
    sim: Simulator, claude: anthropic.AsyncAnthropic
) -> None:
    sim.script(Fault.rate_limit(quota_exhausted=True))
    with pytest.raises(anthropic.RateLimitError) as info:
        await _create(claude)
    exc = info.value
    # The SDK picks the subclass from error.details.error_code.
    assert type(exc).__name__ == "EnforcedSpendLimitReachedError"
    assert exc.error_code == "enforced_spend_limit_reached"
    assert "spend limit" in exc.message and "credit balance" in exc.message
    assert "retry-after" not in exc.response.headers
    assert "retry-after-ms" not in exc.response.headers


@pytest.mark.asyncio
async def test_overloaded_and_status_errors(
    sim: Simulator, claude: anthropic.AsyncAnthropic
) -> None:
    sim.script(
        Fault.overloaded(),
        Fault.status(529),
        Fault.status(500),
        Fault.status(503),
        Fault.status(401),
        Fault.status(400, "bad things"),
    )
    with pytest.raises(anthropic.OverloadedError) as overloaded:
        await _events(claude)
    assert isinstance(overloaded.value, anthropic.InternalServerError)
    assert overloaded.value.status_code == 529 and overloaded.value.type == "overloaded_error"
    with pytest.raises(anthropic.OverloadedError):
        await _create(claude)
    with pytest.raises(anthropic.InternalServerError) as e500:
        await _create(claude)
    assert e500.value.status_code == 500 and e500.value.type == "api_error"
    with pytest.raises(anthropic.ServiceUnavailableError):
        await _create(claude)
    with pytest.raises(anthropic.AuthenticationError) as e401:
        await _create(claude)
    assert e401.value.type == "authentication_error"
    assert API_KEY not in e401.value.message and API_KEY[-2:] in e401.value.message
    with pytest.raises(anthropic.BadRequestError, match="bad things"):
        await _create(claude)
    assert [r.status for r in sim.requests] == [529, 529, 500, 503, 401, 400]
    assert sim.requests[0].fault == "overloaded"


# --- faults inside the stream --------------------------------------------------------


@pytest.mark.asyncio
async def test_error_event_inside_a_200_stream(
    sim: Simulator, claude: anthropic.AsyncAnthropic
) -> None:
    sim.script(
        Fault.stream_error(after_tokens=3, error_type="overloaded_error"),
        Fault.stream_error(after_tokens=0),  # OpenAI's server_error maps to api_error
    )
    stream = await _create(claude, stream=True)
    seen: list[str] = []
    with pytest.raises(anthropic.APIStatusError) as info:
        async for event in stream:  # type: ignore[attr-defined]
            seen.append(event.type)
    exc = info.value
    # The status was 200, so the SDK raises the bare APIStatusError, not a subclass.
    assert type(exc) is anthropic.APIStatusError and exc.status_code == 200
    assert exc.type == "overloaded_error"
    assert exc.body == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
    }
    assert seen.count("content_block_delta") == 3 and "message_stop" not in seen
    with pytest.raises(anthropic.APIStatusError) as info:
        await _events(claude)
    assert info.value.type == "api_error"
    rec = sim.requests[0]
    assert (rec.fault, rec.status, rec.tokens_sent, rec.finished) == ("stream_error", 200, 3, True)


@pytest.mark.asyncio
async def test_stream_error_without_stream_is_the_matching_status(
    sim: Simulator, claude: anthropic.AsyncAnthropic
) -> None:
    sim.script(
        Fault.stream_error(error_type="overloaded_error"),
        Fault.stream_error(error_type="rate_limit_error"),
        Fault.stream_error(),
    )
    with pytest.raises(anthropic.OverloadedError):
        await _create(claude)
    with pytest.raises(anthropic.RateLimitError):
        await _create(claude)
    with pytest.raises(anthropic.InternalServerError):
        await _create(claude)
    assert [r.status for r in sim.requests] == [529, 429, 500]


@pytest.mark.asyncio
async def test_disconnect(sim: Simulator, claude: anthropic.AsyncAnthropic) -> None:
    sim.script(Fault.disconnect(after_tokens=3), Fault.disconnect())
    stream = await _create(claude, stream=True)
    seen: list[str] = []
    # Mid-stream, the SDK lets the transport error through unwrapped.
    with pytest.raises(httpx2.RemoteProtocolError):
        async for event in stream:  # type: ignore[attr-defined]
            seen.append(event.type)
    assert seen.count("content_block_delta") == 3
    with pytest.raises(anthropic.APIConnectionError):
        await _create(claude)
    assert [(r.tokens_sent, r.status, r.finished) for r in sim.requests] == [
        (3, 200, False),
        (0, 0, False),
    ]
    assert (await _create(claude)).stop_reason == "end_turn"  # the server is unharmed


@pytest.mark.asyncio
async def test_no_finish_and_malformed(sim: Simulator, claude: anthropic.AsyncAnthropic) -> None:
    sim.script(Fault.no_finish(after_tokens=4), Fault.no_finish(), Fault.malformed(after_tokens=2))
    events = await _events(claude)
    assert [e.type for e in events][-1] == "content_block_delta"  # no stop, no message_stop
    assert len(_text(events).split()) == 4
    assert (await _create(claude)).stop_reason is None
    seen = 0
    with pytest.raises(json.JSONDecodeError):
        async for _ in await _create(claude, stream=True):  # type: ignore[attr-defined]
            seen += 1
    assert seen == 4  # message_start, content_block_start, 2 deltas
    sim.script(Fault.malformed())
    with pytest.raises(json.JSONDecodeError):
        await _create(claude)


@pytest.mark.asyncio
async def test_refusal_cuts_the_answer(sim: Simulator, claude: anthropic.AsyncAnthropic) -> None:
    sim.script(Fault.refusal(after_tokens=3), Fault.content_filter(after_tokens=5))
    async with claude.messages.stream(
        model=MODEL, max_tokens=1024, system=SYSTEM, messages=MESSAGES
    ) as stream:
        final = await stream.get_final_message()
    assert final.stop_reason == "refusal" and final.usage.output_tokens == 3
    assert final.stop_details is not None and final.stop_details.type == "refusal"
    text = final.content[0].text  # type: ignore[union-attr]
    assert EXPECTED.startswith(text) and len(text.split()) == 3
    plain = await _create(claude)
    assert plain.stop_reason == "refusal" and plain.usage.output_tokens == 5
    assert [r.fault for r in sim.requests] == ["content_filter", "content_filter"]


@pytest.mark.asyncio
async def test_stall(sim: Simulator, claude: anthropic.AsyncAnthropic) -> None:
    sim.script(Fault.stall(after_tokens=2, seconds=0.3))
    arrivals: list[float] = []
    stream = await _create(claude, stream=True)
    async for event in stream:  # type: ignore[attr-defined]
        if event.type == "content_block_delta":
            arrivals.append(time.monotonic())
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    assert len(arrivals) == 16 and gaps[1] >= 0.28 and max(gaps[:1] + gaps[2:]) < 0.2


# --- other endpoints, environment, tool calls ------------------------------------------


@pytest.mark.asyncio
async def test_count_tokens_and_models(
    sim: Simulator, claude: anthropic.AsyncAnthropic, openai_client: openai.AsyncOpenAI
) -> None:
    count = await claude.messages.count_tokens(model=MODEL, system=SYSTEM, messages=MESSAGES)
    assert count.input_tokens == PROMPT_WORDS
    models = [m async for m in claude.models.list()]
    ids = [m.id for m in models]
    assert {"claude-sonnet-4-5", "claude-haiku-4-5", "claude-opus-4-1"} <= set(ids)
    assert models[0].type == "model" and models[0].display_name.endswith("(simulated)")
    assert (await claude.models.retrieve("claude-haiku-4-5")).id == "claude-haiku-4-5"
    with pytest.raises(anthropic.NotFoundError):
        await claude.models.retrieve("gpt-4o")
    # Same path, OpenAI openai_client: still OpenAI's listing.
    openai_ids = [m.id async for m in openai_client.models.list()]
    assert "gpt-4o-mini" in openai_ids and "claude-sonnet-4-5" not in openai_ids
    assert sim.requests == []  # counting and listing are not generations


@pytest.mark.asyncio
async def test_sdk_reads_anthropic_base_url_from_the_environment(
    sim: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_BASE_URL", sim.url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-from-env-0123456789")
    monkeypatch.delenv("ANTHROPIC_AUTH_TOKEN", raising=False)
    async with anthropic.AsyncAnthropic(
        max_retries=0, http_client=anthropic_http_client()
    ) as env_client:
        message = await _create(env_client)
    assert message.content[0].text == EXPECTED  # type: ignore[union-attr]
    assert sim.requests[0].api_key == "sk-ant-from-env-0123456789"


@pytest.mark.asyncio
async def test_write_instruction_becomes_a_write_tool_call(
    sim: Simulator, claude: anthropic.AsyncAnthropic
) -> None:
    tools = [
        {"name": "Read", "input_schema": {"type": "object"}},
        {"name": "Write", "input_schema": {"type": "object"}},
    ]
    ask = {"role": "user", "content": "Please.\nSIMULATOR: write file /tmp/out.txt with hi there\n"}
    async with claude.messages.stream(
        model=MODEL,
        max_tokens=1024,
        messages=[ask],
        tools=tools,  # type: ignore[list-item]
    ) as stream:
        call = await stream.get_final_message()
    assert call.stop_reason == "tool_use"
    [block] = call.content
    assert block.type == "tool_use" and block.name == "Write" and block.id == "toolu_sim_0"
    assert block.input == {"file_path": "/tmp/out.txt", "content": "hi there"}

    plain = await claude.messages.create(
        model=MODEL,
        max_tokens=1024,
        messages=[ask],
        tools=tools,  # type: ignore[list-item]
    )
    assert plain.content[0].type == "tool_use" and plain.stop_reason == "tool_use"
    # Without a Write tool on offer the instruction is just text.
    assert (await _create(claude, messages=[ask])).stop_reason == "end_turn"

    result = {"type": "tool_result", "tool_use_id": block.id, "content": "File created"}
    follow_up = [ask, {"role": "assistant", "content": [block.model_dump()]}]
    follow_up.append({"role": "user", "content": [result]})
    done = await claude.messages.create(
        model=MODEL,
        max_tokens=1024,
        messages=follow_up,
        tools=tools,  # type: ignore[arg-type]
    )
    assert done.stop_reason == "end_turn" and done.content[0].type == "text"


@pytest.mark.asyncio
async def test_rpm_limit_and_admin_records_cover_anthropic(
    sim: Simulator, claude: anthropic.AsyncAnthropic
) -> None:
    sim.rpm_limit = 2
    await _create(claude)
    await _create(claude)
    with pytest.raises(anthropic.RateLimitError) as info:
        await _create(claude)
    assert info.value.response.headers["retry-after"] in ("59", "60")
    async with aiohttp.ClientSession(base_url=sim.url) as http:
        async with http.get("/_simulator/requests") as resp:
            records = await resp.json()
    assert [(r["api"], r["status"]) for r in records] == [
        ("anthropic", 200),
        ("anthropic", 200),
        ("anthropic", 429),
    ]
    assert records[0]["system"] == SYSTEM and records[0]["api_key"] == API_KEY
