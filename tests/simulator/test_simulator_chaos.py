"""In-stream errors, content filtering, chaos mode, the rpm limiter and escape-heavy text.

Over real HTTP with the real openai SDK, so what is checked is what our
provider code will actually see.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import AsyncIterator, Iterator

import aiohttp
import openai
import pytest
import pytest_asyncio
from pydantic_core import to_json

from ai_orchestrator.errors import (
    PROVIDER_UNAVAILABLE,
    RATE_LIMITED,
    classify,
)
from ai_orchestrator.providers._tls import openai_http_client
from ai_orchestrator.simulator import Fault, Simulator
from ai_orchestrator.simulator import _state as state_module
from ai_orchestrator.simulator._state import SimulatorState

API_KEY = "sk-test-chaos-key"
MESSAGES = [{"role": "user", "content": "Tell me about the sea"}]
CHAOS_FAULTS = {"disconnect", "no_finish", "malformed", "status"}


@pytest_asyncio.fixture
async def chaos() -> AsyncIterator[Simulator]:
    async with Simulator(
        tokens_per_second=0, default_tokens=16, fault_rate=0.3, chaos_seed=1234
    ) as simulator:
        yield simulator


def _client(sim: Simulator) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=sim.base_url, api_key=API_KEY, max_retries=0, http_client=openai_http_client()
    )


async def _stream_text(
    openai_client: openai.AsyncOpenAI, **kwargs: object
) -> tuple[str, str | None]:
    """The streamed text and finish reason; raises whatever the SDK raises."""
    stream = await openai_client.chat.completions.create(
        model="gpt-4o-mini",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
        **kwargs,
    )
    parts: list[str] = []
    finish = None
    async for chunk in stream:
        if chunk.choices:
            parts.append(chunk.choices[0].delta.content or "")
            finish = chunk.choices[0].finish_reason or finish
    return "".join(parts), finish


# --- error event inside a 200 stream ----------------------------------------


@pytest.mark.asyncio
async def test_stream_error_raises_the_sdks_api_error_with_the_event_body(
    sim: Simulator, openai_client: openai.AsyncOpenAI
) -> None:
    sim.script(Fault.stream_error(after_tokens=3, code="overloaded", message="try later"))
    stream = await openai_client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True
    )
    contents: list[str] = []
    with pytest.raises(openai.APIError) as info:
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                contents.append(chunk.choices[0].delta.content)
    exc = info.value
    # A bare APIError: not a status error (the status was 200) nor a connection error.
    assert type(exc) is openai.APIError
    assert exc.body == {
        "message": "try later",
        "type": "server_error",
        "code": "overloaded",
        "param": None,
    }
    assert exc.message == "try later" and exc.type == "server_error"
    assert exc.code == "overloaded"
    assert len(contents) == 3
    record = sim.requests[0]
    assert (record.fault, record.status, record.tokens_sent) == ("stream_error", 200, 3)
    assert record.finished
    verdict = classify(exc)
    assert verdict.retryable and verdict.error_type == PROVIDER_UNAVAILABLE


@pytest.mark.asyncio
async def test_stream_error_defaults_and_types(
    sim: Simulator, openai_client: openai.AsyncOpenAI
) -> None:
    sim.script(
        Fault.stream_error(after_tokens=0),
        Fault.stream_error(error_type="invalid_request_error", code="context_length_exceeded"),
    )
    with pytest.raises(openai.APIError) as info:
        await _stream_text(openai_client)
    assert info.value.body == {
        "message": "The server had an error while processing your request. Sorry about that!",
        "type": "server_error",
        "code": None,
        "param": None,
    }
    with pytest.raises(openai.APIError) as info:
        await _stream_text(openai_client)
    assert info.value.code == "context_length_exceeded"
    assert not classify(info.value).retryable


@pytest.mark.asyncio
async def test_stream_error_without_stream_is_the_matching_status(
    sim: Simulator, openai_client: openai.AsyncOpenAI
) -> None:
    sim.script(
        Fault.stream_error(error_type="requests", code="rate_limit_exceeded"),
        Fault.stream_error(),
    )
    with pytest.raises(openai.RateLimitError):
        await openai_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    with pytest.raises(openai.InternalServerError):
        await openai_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert [(r.status, r.prompt_tokens) for r in sim.requests] == [(429, 0), (500, 0)]


# --- content filter ----------------------------------------------------------


@pytest.mark.asyncio
async def test_content_filter_cuts_the_answer_with_its_finish_reason(
    sim: Simulator, openai_client: openai.AsyncOpenAI
) -> None:
    full, _ = await _stream_text(openai_client)
    sim.script(Fault.content_filter(after_tokens=3), Fault.content_filter(after_tokens=5))
    stream = await openai_client.chat.completions.create(
        model="gpt-4o-mini",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [c async for c in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "content_filter" and full.startswith(text) and text != full
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 3
    assert sim.requests[1].fault == "content_filter" and sim.requests[1].tokens_sent == 3

    plain = await openai_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert plain.choices[0].finish_reason == "content_filter"
    assert plain.usage is not None and plain.usage.completion_tokens == 5
    assert full.startswith(plain.choices[0].message.content or "")


# --- chaos mode ----------------------------------------------------------------


async def _run_chaos(sim: Simulator, n: int) -> list[str | None]:
    async with _client(sim) as openai_client:
        for _ in range(n):
            try:
                await _stream_text(openai_client)
            except (openai.APIError, json.JSONDecodeError):
                pass
    await sim.wait_until(lambda: all(r.ended_at is not None for r in sim.requests))
    return [r.fault for r in sim.requests]


@pytest.mark.asyncio
async def test_chaos_with_a_seed_replays_the_same_faults_at_the_asked_rate(
    chaos: Simulator,
) -> None:
    first = await _run_chaos(chaos, 200)
    faulted = [f for f in first if f is not None]
    assert 0.2 <= len(faulted) / 200 <= 0.4
    assert set(faulted) == CHAOS_FAULTS
    statuses = Counter(r.status for r in chaos.requests if r.fault == "status")
    assert set(statuses) == {500, 503}
    for record in chaos.requests:
        if record.fault in ("disconnect", "no_finish", "malformed"):
            assert record.tokens_sent < 16  # cut somewhere within the answer

    chaos.reset()
    assert await _run_chaos(chaos, 200) == first
    async with Simulator(
        tokens_per_second=0, default_tokens=16, fault_rate=0.3, chaos_seed=1234
    ) as again:
        assert await _run_chaos(again, 50) == first[:50]


@pytest.mark.asyncio
async def test_scripted_faults_take_precedence_over_chaos(chaos: Simulator) -> None:
    chaos.fault_rate = 1.0
    chaos.script(Fault.ok(times=3), Fault.content_filter())
    faults = await _run_chaos(chaos, 8)
    assert faults[:4] == [None, None, None, "content_filter"]
    assert all(f in CHAOS_FAULTS for f in faults[4:])
    chaos.reset()
    chaos.fault_rate = 0.0
    assert await _run_chaos(chaos, 5) == [None] * 5


def test_chaos_config_is_checked() -> None:
    with pytest.raises(ValueError, match="fault_rate"):
        Simulator(fault_rate=1.5)
    with pytest.raises(ValueError, match="chaos_seed"):
        Simulator(chaos_seed="x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="rpm_limit"):
        Simulator(rpm_limit=0)
    with pytest.raises(ValueError, match="text_style"):
        Simulator(text_style="bold")


# --- rpm limiter ---------------------------------------------------------------


@pytest.mark.asyncio
async def test_rpm_limit_answers_429_with_retry_after(sim: Simulator) -> None:
    sim.rpm_limit = 3
    async with _client(sim) as openai_client:
        for _ in range(3):
            await openai_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        with pytest.raises(openai.RateLimitError) as info:
            await openai_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        retry_after = info.value.response.headers["retry-after"]
        assert retry_after in ("59", "60")  # the first request frees its slot in ~60 s
        assert "Limit 3" in info.value.message
        verdict = classify(info.value)
        assert verdict.error_type == RATE_LIMITED and verdict.retry_after == int(retry_after)
        # A scripted fault still goes through (and the limiter refuses the next one).
        sim.script(Fault.ok())
        await openai_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        with pytest.raises(openai.RateLimitError):
            await openai_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    faults = [(r.fault, r.status) for r in sim.requests]
    assert faults == [(None, 200)] * 3 + [("rate_limit", 429), (None, 200), ("rate_limit", 429)]
    sim.reset()  # empties the window
    async with _client(sim) as openai_client:
        await openai_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[float]]:
    """A settable monotonic clock for the limiter; sync tests only (no event loop)."""
    now = [1000.0]
    monkeypatch.setattr(state_module.time, "monotonic", lambda: now[0])
    yield now


def test_rpm_window_rolls_and_retry_after_rounds_up(clock: list[float]) -> None:
    state = SimulatorState(0, 16, rpm_limit=2)
    assert state.choose_fault(16) == (None, False)
    clock[0] += 20.5
    assert state.choose_fault(16) == (None, False)
    clock[0] += 10
    fault, by_limiter = state.choose_fault(16)
    assert by_limiter and fault is not None and fault.name == "rate_limit"
    assert fault.retry_after == 30  # 29.5 s until the first request leaves, rounded up
    clock[0] += 29.5
    assert state.choose_fault(16) == (None, False)  # a slot freed
    fault, _ = state.choose_fault(16)
    assert fault is not None and fault.retry_after == 21  # the second leaves in 20.5 s


# --- escape-heavy text -------------------------------------------------------


@pytest.mark.asyncio
async def test_escapes_text_is_json_heavy_and_prefix_stable(sim: Simulator) -> None:
    sim.text_style = "escapes"
    sim.default_tokens = 64
    async with _client(sim) as openai_client:
        streamed, finish = await _stream_text(openai_client)
        plain = await openai_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        short, short_finish = await _stream_text(openai_client, max_tokens=10)
    text = plain.choices[0].message.content or ""
    assert streamed == text and finish == "stop" and short_finish == "length"
    assert text.startswith("[simulated]") and streamed.startswith(short) and short != text
    raw = len(text.encode("utf-8"))
    assert len(json.dumps(text)) >= 2 * raw  # non-ASCII escaped
    assert len(to_json(text)) >= 2 * raw  # non-ASCII kept as UTF-8, as pydantic does
    assert {"\t", "\n", '"', "\\", "\x01"} <= set(text)
    assert any(ord(c) > 127 for c in text)


@pytest.mark.asyncio
async def test_escapes_text_is_deterministic(sim: Simulator) -> None:
    sim.text_style = "escapes"
    async with _client(sim) as openai_client:
        first, _ = await _stream_text(openai_client)
        second, _ = await _stream_text(openai_client)
        sim.text_style = "words"
        words, _ = await _stream_text(openai_client)
    assert first == second and first != words and words.isprintable()


# --- what a provider would bill ------------------------------------------------


@pytest.mark.asyncio
async def test_prompt_tokens_are_recorded_as_usage_reports_them(
    sim: Simulator, openai_client: openai.AsyncOpenAI
) -> None:
    sim.script(Fault.ok(), Fault.status(503), Fault.disconnect(after_tokens=2))
    plain = await openai_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    with pytest.raises(openai.InternalServerError):
        await openai_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    with pytest.raises(openai.APIConnectionError):
        await _stream_text(openai_client)
    assert plain.usage is not None
    billed = [(r.prompt_tokens, r.tokens_sent) for r in sim.requests]
    assert billed == [(plain.usage.prompt_tokens, 16), (0, 0), (plain.usage.prompt_tokens, 2)]


# --- admin API and fault JSON ------------------------------------------------------


@pytest.mark.asyncio
async def test_admin_config_sets_and_validates_every_key(sim: Simulator) -> None:
    async with aiohttp.ClientSession(base_url=sim.url) as http:
        async with http.get("/_simulator/config") as resp:
            assert await resp.json() == {
                "tokens_per_second": 0.0,
                "default_tokens": 16,
                "fault_rate": 0.0,
                "chaos_seed": None,
                "rpm_limit": None,
                "text_style": "words",
            }
        update = {"fault_rate": 0.25, "chaos_seed": 7, "rpm_limit": 100, "text_style": "escapes"}
        async with http.post("/_simulator/config", json=update) as resp:
            assert resp.status == 200
            assert {k: v for k, v in (await resp.json()).items() if k in update} == update
        assert (sim.fault_rate, sim.chaos_seed, sim.rpm_limit, sim.text_style) == (
            0.25,
            7,
            100,
            "escapes",
        )
        bad = [
            {"fault_rate": 1.5},
            {"fault_rate": -0.1},
            {"fault_rate": "0.5"},
            {"fault_rate": True},
            {"chaos_seed": 1.5},
            {"chaos_seed": "7"},
            {"chaos_seed": False},
            {"rpm_limit": 0},
            {"rpm_limit": 2.5},
            {"rpm_limit": True},
            {"text_style": "bold"},
            {"text_style": 1},
            {"tokens_per_second": -1},
            {"fault_rate": 0.5, "rpm_limit": 0},  # one bad key: nothing is applied
            {"fault_rat": 0.5},
        ]
        for body in bad:
            async with http.post("/_simulator/config", json=body) as resp:
                assert resp.status == 400, body
                error = (await resp.json())["error"]
                assert error["type"] == "invalid_request_error"
                assert any(key in error["message"] for key in body), body
        assert sim.fault_rate == 0.25 and sim.rpm_limit == 100
        async with http.post("/_simulator/config", json={"chaos_seed": None, "rpm_limit": None}):
            pass
        assert sim.chaos_seed is None and sim.rpm_limit is None


@pytest.mark.asyncio
async def test_new_faults_round_trip_as_json_and_over_the_admin_api(
    sim: Simulator, openai_client: openai.AsyncOpenAI
) -> None:
    faults = [
        Fault.stream_error(),
        Fault.stream_error(after_tokens=1, error_type="tokens", code="x", message="m", times=2),
        Fault.content_filter(after_tokens=0),
    ]
    for fault in faults:
        assert Fault.from_dict(fault.to_dict()) == fault
    assert set(faults[0].to_dict()) == {"name", "times", "after_tokens", "error_type", "code"} | {
        "message"
    }
    with pytest.raises(ValueError):
        Fault.stream_error(error_type="")
    with pytest.raises(ValueError):
        Fault.from_dict({"name": "content_filter", "code": "x"})
    async with aiohttp.ClientSession(base_url=sim.url) as http:
        body = [Fault.stream_error(after_tokens=2, message="boom").to_dict()]
        async with http.post("/_simulator/script", json=body) as resp:
            assert resp.status == 200
    with pytest.raises(openai.APIError, match="boom"):
        await _stream_text(openai_client)
