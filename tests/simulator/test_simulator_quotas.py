"""Per-key provider quotas: each vendor's rate-limit headers, 429s and refill, over real SDKs.

Limits are small and buckets refill per second (capacity / 60), so a test
waits at most the Retry-After it was given, about a second. Tests that check
exact header values stop the quota clock (``frozen``), so a slow machine
cannot refill a bucket between two requests.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from types import SimpleNamespace
from typing import Any

import aiohttp
import anthropic
import openai
import pytest
import pytest_asyncio
from google import genai
from google.genai import errors, types

from ai_orchestrator.errors import RATE_LIMITED, classify
from ai_orchestrator.providers._tls import (
    anthropic_http_client,
    genai_http_options,
    openai_http_client,
)
from ai_orchestrator.simulator import Fault, QuotaLimits, Quotas, Simulator, parse_model_limits
from ai_orchestrator.simulator import _quotas as quotas_module
from ai_orchestrator.simulator._quota_replies import go_duration
from ai_orchestrator.simulator._text import count_prompt_words

from .conftest import API_KEY

MODEL = "gpt-4o-mini"
MESSAGES = [{"role": "user", "content": "Tell me about the sea"}]
PROMPT = count_prompt_words(MESSAGES)
OTHER_KEY = "sk-test-other-key-0123456789"
CLAUDE = "claude-haiku-4-5"
GEMINI = "gemini-2.5-flash"


@pytest.fixture
def sim_options() -> dict[str, Any]:
    # 1200 tokens per minute refill 20 per second: a short answer fits again in under 1 s.
    return {"tokens_per_second": 0, "default_tokens": 16, "quotas": Quotas(rpm=100, tpm=1200)}


@pytest.fixture
def frozen(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[float]]:
    """The buckets' clock, stopped (and settable); the event loop's own clock runs on."""
    now = [1000.0]
    monkeypatch.setattr(quotas_module, "time", SimpleNamespace(monotonic=lambda: now[0]))
    yield now


@pytest_asyncio.fixture
async def claude(sim: Simulator) -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with anthropic.AsyncAnthropic(
        base_url=sim.url, api_key=API_KEY, max_retries=0, http_client=anthropic_http_client()
    ) as c:
        yield c


@pytest_asyncio.fixture
async def gemini(sim: Simulator) -> AsyncIterator[genai.client.AsyncClient]:
    options = genai_http_options(base_url=sim.url, retry_options=types.HttpRetryOptions(attempts=1))
    async with genai.Client(api_key=API_KEY, http_options=options).aio as client:
        yield client


async def _chat(client: openai.AsyncOpenAI, max_tokens: int, model: str = MODEL) -> Any:
    """The raw response, so its headers can be read; raises the SDK's errors."""
    return await client.chat.completions.with_raw_response.create(
        model=model, messages=MESSAGES, max_tokens=max_tokens
    )


def _seconds(duration: str) -> float:
    """A Go duration as OpenAI sends it (``"1m0s"``, ``"850ms"``) in seconds."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration)
    assert "".join(n + u for n, u in parts) == duration, duration
    return sum(float(n) * units[u] for n, u in parts)


def test_go_durations_read_like_openais() -> None:
    assert [go_duration(s) for s in (0, 0.12, 1, 1.5, 360, 252.172, 3600)] == [
        "0s",
        "120ms",
        "1s",
        "1.5s",
        "6m0s",
        "4m12.172s",
        "1h0m0s",
    ]
    assert go_duration(0.0001) == "1ms"  # rounded up: waiting that long is enough


def test_quota_config_is_checked() -> None:
    for bad in ({"rpm": 0}, {"tpm": 1.5}, {"tpm": True}, {"default_max_tokens": 0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            Quotas(**bad)
    with pytest.raises(ValueError, match="models"):
        Quotas(models={"gpt-4o": {"rpm": 1}})  # type: ignore[dict-item]
    assert parse_model_limits("gpt-4o:rpm=5,tpm=300") == ("gpt-4o", QuotaLimits(5, 300))
    assert parse_model_limits("models/x:y:tpm=9") == ("models/x:y", QuotaLimits(None, 9))
    for spec in ("gpt-4o", "gpt-4o:rpm=x", "gpt-4o:rps=5", ":tpm=5"):
        with pytest.raises(ValueError, match="MODEL:rpm=N,tpm=N"):
            parse_model_limits(spec)
    quotas = Quotas(tpm=10, models={"gpt-4o": QuotaLimits(rpm=3)})
    assert quotas.limits_for("gpt-4o") == QuotaLimits(3, 10)
    assert Quotas.from_dict(quotas.to_dict()) == quotas


async def test_openai_headers_on_every_answer(
    sim: Simulator, openai_client: openai.AsyncOpenAI, frozen: list[float]
) -> None:
    first = await _chat(openai_client, max_tokens=100)
    cost = PROMPT + 100
    assert first.parse().usage.prompt_tokens == PROMPT
    headers = first.headers
    assert headers["x-ratelimit-limit-requests"] == "100"
    assert headers["x-ratelimit-remaining-requests"] == "99"
    assert headers["x-ratelimit-limit-tokens"] == "1200"
    assert headers["x-ratelimit-remaining-tokens"] == str(1200 - cost)
    # Full again once what was taken has refilled, at 20 tokens per second.
    assert _seconds(headers["x-ratelimit-reset-tokens"]) == pytest.approx(cost / 20, abs=0.002)
    assert _seconds(headers["x-ratelimit-reset-requests"]) == pytest.approx(0.6, abs=0.002)
    assert "retry-after" not in headers
    # A stream and the Responses API draw on the same key's bucket for this model.
    stream = await openai_client.chat.completions.with_raw_response.create(
        model=MODEL, messages=MESSAGES, max_tokens=100, stream=True
    )
    async for _ in stream.parse():
        pass
    assert stream.headers["x-ratelimit-remaining-tokens"] == str(1200 - 2 * cost)
    frozen[0] += 1.5  # refills 30 tokens and 2.5 requests
    made = await openai_client.responses.with_raw_response.create(
        model=MODEL, input="Tell me about the sea", max_output_tokens=100
    )
    assert made.headers["x-ratelimit-remaining-requests"] == "99"  # 100 - 3 + 2.5, floored
    assert made.headers["x-ratelimit-remaining-tokens"] == str(1200 - 3 * cost + 30)
    assert [r.quota_tokens for r in sim.requests] == [cost] * 3
    await sim.wait_until(lambda: sim.usage_for(API_KEY, MODEL).tokens_used == 3 * (PROMPT + 16))
    usage = sim.usage_for(API_KEY, MODEL)
    assert (usage.requests, usage.tokens_reserved, usage.rate_limited) == (3, 3 * cost, 0)


async def test_anthropic_headers_on_success(
    sim: Simulator, claude: anthropic.AsyncAnthropic, frozen: list[float]
) -> None:
    raw = await claude.messages.with_raw_response.create(
        model=CLAUDE, max_tokens=200, messages=MESSAGES
    )
    cost = PROMPT + 200
    headers = raw.headers
    assert headers["anthropic-ratelimit-requests-limit"] == "100"
    assert headers["anthropic-ratelimit-requests-remaining"] == "99"
    assert headers["anthropic-ratelimit-tokens-limit"] == "1200"
    assert headers["anthropic-ratelimit-tokens-remaining"] == str(1200 - cost)
    reset = datetime.fromisoformat(headers["anthropic-ratelimit-tokens-reset"]).timestamp()
    assert time.time() <= reset <= time.time() + cost / 20 + 1  # RFC 3339, whole seconds
    datetime.fromisoformat(headers["anthropic-ratelimit-requests-reset"])
    assert "x-ratelimit-limit-tokens" not in headers and "retry-after" not in headers
    assert sim.usage_for(API_KEY, CLAUDE).tokens_used == PROMPT + 16


async def test_burst_over_tpm_gets_429_until_it_fits(
    sim: Simulator, openai_client: openai.AsyncOpenAI
) -> None:
    await _chat(openai_client, max_tokens=1200 - PROMPT)  # takes the whole bucket
    with pytest.raises(openai.RateLimitError) as info:
        await _chat(openai_client, max_tokens=30)
    headers = info.value.response.headers
    wait_ms = int(headers["retry-after-ms"])
    assert 0 < wait_ms <= (PROMPT + 30) * 50  # 20 tokens per second: 50 ms each
    assert headers["retry-after"] == str(-(-wait_ms // 1000))  # whole seconds, rounded up
    assert headers["x-ratelimit-limit-tokens"] == "1200"
    assert int(headers["x-ratelimit-remaining-tokens"]) < PROMPT + 30
    assert info.value.body["type"] == "tokens"  # type: ignore[index]
    assert info.value.body["code"] == "rate_limit_exceeded"  # type: ignore[index]
    assert "tokens per min (TPM): Limit 1200" in info.value.message
    verdict = classify(info.value)
    assert verdict.error_type == RATE_LIMITED and verdict.retry_after == wait_ms / 1000
    await asyncio.sleep(wait_ms / 1000)
    await _chat(openai_client, max_tokens=30)  # refilled just enough
    assert [(r.fault, r.status, r.quota_tokens) for r in sim.requests] == [
        (None, 200, 1200),
        ("rate_limit", 429, 0),
        (None, 200, PROMPT + 30),
    ]
    usage = sim.usage_for(API_KEY, MODEL)
    assert (usage.requests, usage.rate_limited, usage.quota_refusals) == (2, 1, 1)
    assert usage.rate_limited_by_api == {"openai": 1}
    assert usage.tokens_reserved == 1200 + PROMPT + 30 and sim.rate_limited == 1


async def test_rpm_refusals_in_each_apis_shape(
    sim: Simulator,
    openai_client: openai.AsyncOpenAI,
    claude: anthropic.AsyncAnthropic,
    gemini: genai.client.AsyncClient,
    frozen: list[float],
) -> None:
    sim.quotas = Quotas(rpm=2)  # one request back every 30 s
    for _ in range(2):
        await _chat(openai_client, max_tokens=10)
    with pytest.raises(openai.RateLimitError) as chat_info:
        await _chat(openai_client, max_tokens=10)
    headers = chat_info.value.response.headers
    assert (headers["retry-after"], headers["retry-after-ms"]) == ("30", "30000")
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert "x-ratelimit-limit-tokens" not in headers  # no TPM limit here
    assert chat_info.value.body["type"] == "requests"  # type: ignore[index]

    for _ in range(2):
        await claude.messages.create(model=CLAUDE, max_tokens=10, messages=MESSAGES)
    with pytest.raises(anthropic.RateLimitError) as claude_info:
        await claude.messages.create(model=CLAUDE, max_tokens=10, messages=MESSAGES)
    headers = claude_info.value.response.headers
    assert headers["retry-after"] == "30" and "retry-after-ms" not in headers
    assert headers["anthropic-ratelimit-requests-remaining"] == "0"
    assert claude_info.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
    assert classify(claude_info.value).retry_after == 30

    for _ in range(2):
        await gemini.models.generate_content(model=GEMINI, contents="hello")
    with pytest.raises(errors.ClientError) as gemini_info:
        await gemini.models.generate_content(model=GEMINI, contents="hello")
    error = gemini_info.value
    assert error.code == 429 and error.status == "RESOURCE_EXHAUSTED"
    details = {d["@type"].rpartition(".")[2]: d for d in error.details["error"]["details"]}
    violation = details["QuotaFailure"]["violations"][0]
    assert violation["quotaId"] == "GenerateRequestsPerMinutePerProjectPerModel"
    assert violation["quotaValue"] == "2" and violation["quotaDimensions"]["model"] == GEMINI
    assert details["RetryInfo"]["retryDelay"] == "30s"
    assert classify(error).retry_after == 30

    assert sim.rate_limited == 3
    by_api = {u.model: u.rate_limited_by_api for u in sim.quota_usage}
    assert by_api == {MODEL: {"openai": 1}, CLAUDE: {"anthropic": 1}, GEMINI: {"gemini": 1}}


async def test_gemini_tpm_refusal_names_the_token_quota(
    sim: Simulator, gemini: genai.client.AsyncClient, frozen: list[float]
) -> None:
    config = types.GenerateContentConfig(max_output_tokens=1000)
    await gemini.models.generate_content(model=GEMINI, contents="hello", config=config)
    with pytest.raises(errors.ClientError) as info:
        await gemini.models.generate_content(model=GEMINI, contents="hello", config=config)
    details = {d["@type"].rpartition(".")[2]: d for d in info.value.details["error"]["details"]}
    violation = details["QuotaFailure"]["violations"][0]
    assert violation["quotaId"] == "GenerateContentInputTokensPerModelPerMinute"
    assert violation["quotaValue"] == "1200"
    assert details["RetryInfo"]["retryDelay"] == "40.1s"  # 802 tokens short, 20 a second
    assert "Please retry in" in (info.value.message or "")
    assert sim.requests[0].quota_tokens == 1 + 1000


async def test_keys_and_models_have_separate_buckets(
    sim: Simulator, openai_client: openai.AsyncOpenAI, frozen: list[float]
) -> None:
    sim.quotas = Quotas(tpm=1200, models={"gpt-4o": QuotaLimits(tpm=50_000)})
    await _chat(openai_client, max_tokens=1200 - PROMPT)
    with pytest.raises(openai.RateLimitError):
        await _chat(openai_client, max_tokens=10)
    # Another model on the same key, with its own (overridden) limit.
    bigger = await _chat(openai_client, max_tokens=10, model="gpt-4o")
    assert bigger.headers["x-ratelimit-limit-tokens"] == "50000"
    assert "x-ratelimit-limit-requests" not in bigger.headers
    # The same model on another key.
    async with openai.AsyncOpenAI(
        base_url=sim.base_url, api_key=OTHER_KEY, max_retries=0, http_client=openai_http_client()
    ) as c:
        other = await _chat(c, max_tokens=10)
    assert other.headers["x-ratelimit-remaining-tokens"] == str(1200 - PROMPT - 10)
    usage = {(u.api_key, u.model): (u.requests, u.rate_limited) for u in sim.quota_usage}
    assert usage == {
        (API_KEY, MODEL): (1, 1),
        (API_KEY, "gpt-4o"): (1, 0),
        (OTHER_KEY, MODEL): (1, 0),
    }


async def test_refund_unused_gives_back_what_the_answer_did_not_use(
    sim: Simulator, openai_client: openai.AsyncOpenAI, frozen: list[float]
) -> None:
    sim.quotas = Quotas(tpm=1200, refund_unused=True)
    await _chat(openai_client, max_tokens=1200 - PROMPT)  # answers 16 tokens of 1200 - PROMPT
    usage = sim.usage_for(API_KEY, MODEL)
    assert usage.tokens_used == PROMPT + 16
    assert usage.tokens_refunded == 1200 - PROMPT - 16
    after = await _chat(openai_client, max_tokens=100)  # fits at once thanks to the refund
    remaining = after.headers["x-ratelimit-remaining-tokens"]
    assert remaining == str(1200 - (PROMPT + 16) - (PROMPT + 100))
    # A background response is settled when it is generated, not when its create returns.
    made = await openai_client.responses.create(
        model=MODEL, input="Tell me about the sea", max_output_tokens=100, background=True
    )
    await sim.wait_until(lambda: sim.responses[made.id].status == "completed")
    assert usage.tokens_refunded == (1200 - PROMPT - 16) + 2 * (100 - 16)


async def test_requests_larger_than_the_bucket_never_fit(
    sim: Simulator, openai_client: openai.AsyncOpenAI, claude: anthropic.AsyncAnthropic
) -> None:
    # No max_tokens: charged the default 4096, more than the whole bucket.
    with pytest.raises(openai.RateLimitError) as info:
        await openai_client.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert (
        "Request too large" in info.value.message
        and f"Requested {PROMPT + 4096}" in info.value.message
    )
    assert "retry-after" not in info.value.response.headers
    with pytest.raises(anthropic.RateLimitError) as claude_info:
        await claude.messages.create(model=CLAUDE, max_tokens=2000, messages=MESSAGES)
    assert "retry-after" not in claude_info.value.response.headers
    assert classify(claude_info.value).error_type == RATE_LIMITED  # not a spent quota
    assert sim.usage_for(API_KEY, MODEL).quota_refusals == 1


async def test_scripted_faults_pass_quotas_and_charge_only_what_generates(
    sim: Simulator, openai_client: openai.AsyncOpenAI, frozen: list[float]
) -> None:
    await _chat(openai_client, max_tokens=1200 - PROMPT)
    sim.script(Fault.ok(), Fault.status(500))
    over = await _chat(openai_client, max_tokens=100)  # scripted: let through, into debt
    assert int(over.headers["x-ratelimit-remaining-tokens"]) == 0
    with pytest.raises(openai.InternalServerError) as info:
        await _chat(openai_client, max_tokens=100)  # an error reply takes nothing
    assert info.value.response.headers["x-ratelimit-limit-tokens"] == "1200"
    assert [r.quota_tokens for r in sim.requests] == [1200, PROMPT + 100, 0]
    with pytest.raises(openai.RateLimitError) as limited:
        await _chat(openai_client, max_tokens=10)
    # The debt is repaid first: the wait covers it and the request, 50 ms a token.
    wait_ms = (PROMPT + 100 + PROMPT + 10) * 50
    assert limited.value.response.headers["retry-after-ms"] == str(wait_ms)


async def test_rpm_limit_keeps_its_window_beside_quotas(
    sim: Simulator, openai_client: openai.AsyncOpenAI, frozen: list[float]
) -> None:
    sim.rpm_limit = 1  # the simulator-wide rolling window, whoever asks
    await _chat(openai_client, max_tokens=10)
    with pytest.raises(openai.RateLimitError) as info:
        await _chat(openai_client, max_tokens=10)
    headers = info.value.response.headers
    assert headers["retry-after"] in ("59", "60") and "Limit 1" in info.value.message
    assert headers["x-ratelimit-remaining-requests"] == "99"  # the quota was not charged
    usage = sim.usage_for(API_KEY, MODEL)
    assert (usage.requests, usage.rate_limited, usage.quota_refusals) == (1, 1, 0)
    sim.reset()
    assert sim.quota_usage == [] and sim.rate_limited == 0


async def test_admin_api_sets_quotas_and_reports_usage(
    sim: Simulator, openai_client: openai.AsyncOpenAI, frozen: list[float]
) -> None:
    async with aiohttp.ClientSession(base_url=sim.url) as http:
        body = {"tpm": 600, "models": {"gpt-4o": {"rpm": 5}}, "default_max_tokens": 99}
        async with http.post("/_simulator/quotas", json=body) as resp:
            assert resp.status == 200
            assert (await resp.json())["quotas"] == {
                "rpm": None,
                "tpm": 600,
                "models": {"gpt-4o": {"rpm": 5, "tpm": None}},
                "refund_unused": False,
                "default_max_tokens": 99,
            }
        assert sim.quotas == Quotas(
            tpm=600, models={"gpt-4o": QuotaLimits(rpm=5)}, default_max_tokens=99
        )
        for bad in ({"tpm": 0}, {"tpx": 5}, {"models": {"gpt-4o": {"rpm": 5, "x": 1}}}, [1]):
            async with http.post("/_simulator/quotas", json=bad) as resp:
                assert resp.status == 400, bad
                assert (await resp.json())["error"]["message"].startswith("quotas:")
        await _chat(openai_client, max_tokens=600 - PROMPT)
        with pytest.raises(openai.RateLimitError):
            await _chat(openai_client, max_tokens=10)
        async with http.get("/_simulator/quotas") as resp:
            report = await resp.json()
        assert report["rate_limited"] == 1
        [usage] = report["usage"]
        assert usage["api_key"] == API_KEY and usage["rate_limited_by_api"] == {"openai": 1}
        null = {"data": "null", "headers": {"Content-Type": "application/json"}}
        async with http.post("/_simulator/quotas", **null) as resp:
            assert (await resp.json())["quotas"] is None
    assert sim.quotas is None
    plain = await _chat(openai_client, max_tokens=10)
    assert "x-ratelimit-limit-tokens" not in plain.headers
