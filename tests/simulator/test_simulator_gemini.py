"""The simulator's Gemini API, driven by the real google-genai SDK over real HTTP.

Every client here is built with ``HttpRetryOptions(attempts=1)``: without
retry options the async client still retries once, after 1-10 s, when the
connection drops (an implicit aiohttp retry), and Temporal must be the only
retry layer.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import anthropic
import openai
import pytest
import pytest_asyncio
from google import genai
from google.genai import errors, types

from ai_orchestrator.pricing import PricingTable
from ai_orchestrator.providers._tls import anthropic_http_client, genai_http_options
from ai_orchestrator.simulator import Fault, Simulator
from ai_orchestrator.simulator._models import ANTHROPIC_MODEL_IDS, GEMINI_MODEL_IDS
from ai_orchestrator.simulator._text import simulated_tokens

API_KEY = "gm-test-simulator-0123456789"
MODEL = "gemini-2.5-flash"
SYSTEM = "You are terse."
PROMPT = "Say something nice about rivers"
PROMPT_WORDS = 8
SEED = [
    {"role": "system", "content": [{"text": SYSTEM}]},
    {"role": "user", "content": [{"text": PROMPT}]},
]
EXPECTED = "".join(simulated_tokens(SEED, MODEL, 16))
NO_RETRY = types.HttpRetryOptions(attempts=1)


def _options(sim: Simulator, **kwargs: Any) -> types.HttpOptions:
    return genai_http_options(base_url=sim.url, retry_options=NO_RETRY, **kwargs)


@pytest_asyncio.fixture
async def gemini(sim: Simulator) -> AsyncIterator[genai.client.AsyncClient]:
    async with genai.Client(api_key=API_KEY, http_options=_options(sim)).aio as client:
        yield client


def _config(**kwargs: Any) -> types.GenerateContentConfig:
    return types.GenerateContentConfig(system_instruction=SYSTEM, **kwargs)


async def _generate(client: genai.client.AsyncClient, **kwargs: Any) -> Any:
    return await client.models.generate_content(
        model=MODEL, contents=PROMPT, config=_config(**kwargs)
    )


async def _chunks(client: genai.client.AsyncClient, **kwargs: Any) -> list[Any]:
    """Every chunk of a streamed call; raises what the SDK raises."""
    stream = await client.models.generate_content_stream(
        model=MODEL, contents=PROMPT, config=_config(**kwargs)
    )
    return [chunk async for chunk in stream]


def _text(chunks: list[Any]) -> str:
    return "".join(c.text or "" for c in chunks)


@pytest.mark.asyncio
async def test_answer_usage_and_record(sim: Simulator, gemini: genai.client.AsyncClient) -> None:
    response = await _generate(gemini, temperature=0.5)
    assert response.text == EXPECTED and EXPECTED.startswith("[simulated] ")
    candidate = response.candidates[0]
    assert candidate.finish_reason == types.FinishReason.STOP
    usage = response.usage_metadata
    assert usage.prompt_token_count == PROMPT_WORDS and usage.candidates_token_count == 16
    assert usage.total_token_count == PROMPT_WORDS + 16
    assert response.model_version == MODEL and response.response_id == "sim-0"
    headers = {k.lower(): v for k, v in response.sdk_http_response.headers.items()}
    assert headers["x-request-id"] == "req_sim_0"

    [rec] = sim.requests
    assert (rec.api, rec.model, rec.stream, rec.temperature) == ("gemini", MODEL, False, 0.5)
    assert rec.messages == [{"role": "user", "parts": [{"text": PROMPT}]}]
    assert rec.system == {"role": "user", "parts": [{"text": SYSTEM}]}
    assert rec.api_key == API_KEY and rec.authorization is None
    assert (rec.status, rec.prompt_tokens, rec.tokens_sent, rec.finished) == (200, 8, 16, True)


@pytest.mark.asyncio
async def test_stream_matches_and_ends_with_finish_and_usage(
    sim: Simulator, gemini: genai.client.AsyncClient
) -> None:
    chunks = await _chunks(gemini)
    assert len(chunks) == 16 and _text(chunks) == EXPECTED
    finishes = [c.candidates[0].finish_reason for c in chunks]
    assert finishes[:-1] == [None] * 15 and finishes[-1] == types.FinishReason.STOP
    # Usage rides on every chunk, cumulative, as Gemini reports it.
    assert [c.usage_metadata.candidates_token_count for c in chunks] == list(range(1, 17))
    assert chunks[-1].usage_metadata.total_token_count == PROMPT_WORDS + 16
    rec = sim.requests[0]
    assert rec.stream and rec.tokens_sent == 16 and rec.token_sent_at == sorted(rec.token_sent_at)


@pytest.mark.asyncio
async def test_max_output_tokens_gives_max_tokens(gemini: genai.client.AsyncClient) -> None:
    short = await _generate(gemini, max_output_tokens=5)
    assert short.candidates[0].finish_reason == types.FinishReason.MAX_TOKENS
    assert short.usage_metadata.candidates_token_count == 5 and EXPECTED.startswith(short.text)
    chunks = await _chunks(gemini, max_output_tokens=3)
    assert len(_text(chunks).split()) == 3
    assert chunks[-1].candidates[0].finish_reason == types.FinishReason.MAX_TOKENS


@pytest.mark.asyncio
async def test_both_api_versions_and_the_environment(
    sim: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """google-genai defaults to /v1/; GOOGLE_GENAI_API_VERSION or api_version picks v1beta."""
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", sim.url)
    monkeypatch.setenv("GEMINI_API_KEY", "gm-from-env-0123456789")
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    for var in ("GOOGLE_GENAI_USE_VERTEXAI", "GOOGLE_GENAI_USE_ENTERPRISE"):
        monkeypatch.delenv(var, raising=False)
    options = genai_http_options(retry_options=NO_RETRY)  # no base_url: the env decides
    async with genai.Client(http_options=options).aio as env_client:
        assert (await _generate(env_client)).text == EXPECTED
    monkeypatch.setenv("GOOGLE_GENAI_API_VERSION", "v1beta")
    async with genai.Client(http_options=options).aio as beta_client:
        chunks = await _chunks(beta_client)
        assert _text(chunks) == EXPECTED
        models = [m.name async for m in await beta_client.models.list()]
        assert "models/gemini-2.5-flash" in models
    assert [(r.api, r.api_key) for r in sim.requests] == [("gemini", "gm-from-env-0123456789")] * 2


@pytest.mark.asyncio
async def test_count_tokens_and_models_for_all_three_apis(
    sim: Simulator, gemini: genai.client.AsyncClient, openai_client: openai.AsyncOpenAI
) -> None:
    count = await gemini.models.count_tokens(model=MODEL, contents=PROMPT)
    assert count.total_tokens == 5
    models = [m async for m in await gemini.models.list()]
    assert {m.name for m in models} >= {"models/gemini-2.5-pro", "models/gemini-2.5-flash"}
    assert models[0].supported_actions == ["generateContent", "countTokens"]
    flash = await gemini.models.get(model=MODEL)
    assert flash.name == "models/gemini-2.5-flash" and flash.output_token_limit == 65_536
    with pytest.raises(errors.ClientError) as info:
        await gemini.models.get(model="gpt-4o")
    assert info.value.code == 404 and info.value.status == "NOT_FOUND"
    # GET /v1/models is shared: each SDK still gets its own provider's listing.
    assert "gpt-4o-mini" in [m.id async for m in openai_client.models.list()]
    async with anthropic.AsyncAnthropic(
        base_url=sim.url, api_key="k", max_retries=0, http_client=anthropic_http_client()
    ) as claude:
        assert "claude-haiku-4-5" in [m.id async for m in claude.models.list()]
    assert sim.requests == []


def test_every_listed_model_is_priced() -> None:
    table = PricingTable()
    for model in (*ANTHROPIC_MODEL_IDS, *GEMINI_MODEL_IDS):
        if model != "simulator":
            assert table.lookup(model) is not None, model
    assert table.lookup("claude-sonnet-4-5-20250929") == table.lookup("claude-sonnet-4-5")
    assert table.lookup("gemini-2.5-flash-lite-preview-09-2025") == table.lookup(
        "gemini-2.5-flash-lite"
    )
    assert table.lookup("gemini-2.5-flash-lite") != table.lookup("gemini-2.5-flash")


@pytest.mark.asyncio
async def test_invalid_requests_are_google_shaped_400s(sim: Simulator) -> None:
    sim.script(Fault.status(500))
    url = f"/v1beta/models/{MODEL}:generateContent"
    headers = {"x-goog-api-key": API_KEY}
    async with aiohttp.ClientSession(base_url=sim.url, headers=headers) as http:
        for body in [
            {"contents": []},
            {},
            {"contents": [{"role": "user", "parts": []}]},
            {"contents": [{"parts": [{"text": "x"}]}], "generationConfig": {"maxOutputTokens": 0}},
        ]:
            async with http.post(url, json=body) as resp:
                assert resp.status == 400, body
                error = (await resp.json())["error"]
                assert (error["code"], error["status"]) == (400, "INVALID_ARGUMENT")
        async with http.post(url, data=b"{nope") as resp:
            assert resp.status == 400
        async with http.post(f"/v1beta/models/{MODEL}:explode", json={}) as resp:
            assert resp.status == 404 and (await resp.json())["error"]["status"] == "NOT_FOUND"
    assert [r.status for r in sim.requests] == [400] * 5
    assert len(sim.pending_faults) == 1  # rejected requests consume no fault


# --- errors ------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_rate_limits_carry_retry_info_not_a_header(
    sim: Simulator, gemini: genai.client.AsyncClient
) -> None:
    sim.script(Fault.rate_limit(retry_after=2), Fault.rate_limit(quota_exhausted=True))
    with pytest.raises(errors.ClientError) as info:
        await _chunks(gemini)
    exc = info.value
    assert (exc.code, exc.status) == (429, "RESOURCE_EXHAUSTED")
    details = exc.details["error"]["details"]
    retry = [d for d in details if d["@type"].endswith("google.rpc.RetryInfo")]
    assert retry == [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "2s"}]
    assert "retry-after" not in exc.response.headers
    with pytest.raises(errors.ClientError) as info:
        await _generate(gemini)
    assert "exceeded your current quota" in (info.value.message or "")
    assert not any(d["@type"].endswith("RetryInfo") for d in info.value.details["error"]["details"])
    assert [(r.fault, r.status, r.prompt_tokens) for r in sim.requests] == [
        ("rate_limit", 429, 0)
    ] * 2


@pytest.mark.asyncio
async def test_status_and_overloaded(sim: Simulator, gemini: genai.client.AsyncClient) -> None:
    sim.script(
        Fault.overloaded(),
        Fault.status(500),
        Fault.status(504),
        Fault.status(401),
        Fault.status(400, "bad things"),
    )
    with pytest.raises(errors.ServerError) as info:
        await _chunks(gemini)
    assert (info.value.code, info.value.status) == (503, "UNAVAILABLE")
    assert info.value.message == "The model is overloaded. Please try again later."
    with pytest.raises(errors.ServerError) as info:
        await _generate(gemini)
    assert (info.value.code, info.value.status) == (500, "INTERNAL")
    with pytest.raises(errors.ServerError) as info:
        await _generate(gemini)
    assert info.value.status == "DEADLINE_EXCEEDED"
    with pytest.raises(errors.ClientError) as info:
        await _generate(gemini)
    assert info.value.status == "UNAUTHENTICATED" and API_KEY not in (info.value.message or "")
    with pytest.raises(errors.ClientError, match="bad things"):
        await _generate(gemini)
    assert [r.status for r in sim.requests] == [503, 500, 504, 401, 400]


@pytest.mark.asyncio
async def test_error_chunk_inside_a_200_stream(
    sim: Simulator, gemini: genai.client.AsyncClient
) -> None:
    sim.script(
        Fault.stream_error(after_tokens=3, error_type="overloaded_error"),
        Fault.stream_error(after_tokens=0, error_type="RESOURCE_EXHAUSTED", message="slow down"),
        Fault.stream_error(),
    )
    stream = await gemini.models.generate_content_stream(
        model=MODEL, contents=PROMPT, config=_config()
    )
    texts: list[str] = []
    with pytest.raises(errors.ServerError) as info:
        async for chunk in stream:
            texts.append(chunk.text)
    assert (info.value.code, info.value.status, len(texts)) == (503, "UNAVAILABLE", 3)
    with pytest.raises(errors.ClientError) as client_info:
        await _chunks(gemini)
    assert client_info.value.code == 429 and client_info.value.message == "slow down"
    with pytest.raises(errors.ServerError) as info:  # not streamed: the matching status
        await _generate(gemini)
    assert info.value.code == 500 and sim.requests[2].status == 500
    assert (sim.requests[0].status, sim.requests[0].tokens_sent) == (200, 3)


# --- broken and cut streams ------------------------------------------------------------------


@pytest.mark.asyncio
async def test_disconnect(sim: Simulator, gemini: genai.client.AsyncClient) -> None:
    sim.script(Fault.disconnect(after_tokens=3), Fault.disconnect())
    seen: list[str] = []
    # google-genai's async client reads through aiohttp and lets its errors through.
    with pytest.raises(aiohttp.ClientPayloadError):
        async for chunk in await gemini.models.generate_content_stream(model=MODEL, contents="x"):
            seen.append(chunk.text)
    assert len(seen) == 3
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await _generate(gemini)
    # attempts=1: no implicit retry, so exactly two requests reached the server.
    assert [(r.fault, r.tokens_sent, r.finished) for r in sim.requests] == [
        ("disconnect", 3, False),
        ("disconnect", 0, False),
    ]
    assert (await _generate(gemini)).text == EXPECTED


@pytest.mark.asyncio
async def test_no_finish_and_malformed(sim: Simulator, gemini: genai.client.AsyncClient) -> None:
    sim.script(Fault.no_finish(after_tokens=4), Fault.no_finish(), Fault.malformed(after_tokens=2))
    chunks = await _chunks(gemini)
    assert len(chunks) == 4 and all(c.candidates[0].finish_reason is None for c in chunks)
    assert (await _generate(gemini)).candidates[0].finish_reason is None
    seen = 0
    with pytest.raises(errors.UnknownApiResponseError):
        async for _ in await gemini.models.generate_content_stream(model=MODEL, contents=PROMPT):
            seen += 1
    assert seen == 2
    sim.script(Fault.malformed())
    with pytest.raises(json.JSONDecodeError):  # not streamed: the SDK's plain json.loads
        await _generate(gemini)


@pytest.mark.asyncio
async def test_safety_and_recitation_cut_the_answer(
    sim: Simulator, gemini: genai.client.AsyncClient
) -> None:
    sim.script(
        Fault.content_filter(after_tokens=3),
        Fault.recitation(after_tokens=2),
        Fault.refusal(after_tokens=5),
    )
    chunks = await _chunks(gemini)
    assert len(_text(chunks).split()) == 3 and EXPECTED.startswith(_text(chunks))
    last = chunks[-1].candidates[0]
    assert last.finish_reason == types.FinishReason.SAFETY and last.content is None
    assert last.safety_ratings[0].blocked is True
    chunks = await _chunks(gemini)
    assert chunks[-1].candidates[0].finish_reason == types.FinishReason.RECITATION
    assert len(_text(chunks).split()) == 2
    plain = await _generate(gemini)
    assert plain.candidates[0].finish_reason == types.FinishReason.SAFETY
    assert plain.usage_metadata.candidates_token_count == 5
    assert [r.fault for r in sim.requests] == ["content_filter", "recitation", "content_filter"]


@pytest.mark.asyncio
async def test_stall(sim: Simulator, gemini: genai.client.AsyncClient) -> None:
    sim.script(Fault.stall(after_tokens=2, seconds=0.3))
    arrivals: list[float] = []
    async for _ in await gemini.models.generate_content_stream(model=MODEL, contents=PROMPT):
        arrivals.append(time.monotonic())
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    assert len(arrivals) == 16 and gaps[1] >= 0.28 and max(gaps[:1] + gaps[2:]) < 0.2


# --- one script, one limiter, one chaos mode for every API ---------------------------------


@pytest.mark.asyncio
async def test_one_script_and_limiter_serve_all_apis(
    sim: Simulator, gemini: genai.client.AsyncClient, openai_client: openai.AsyncOpenAI
) -> None:
    sim.script(Fault.status(500), Fault.ok(), Fault.overloaded())
    async with anthropic.AsyncAnthropic(
        base_url=sim.url, api_key="k", max_retries=0, http_client=anthropic_http_client()
    ) as claude:
        with pytest.raises(anthropic.InternalServerError):
            await claude.messages.create(
                model="claude-haiku-4-5", max_tokens=10, messages=[{"role": "user", "content": "x"}]
            )
        await _generate(gemini)
        with pytest.raises(openai.InternalServerError) as info:
            await openai_client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}]
            )
        assert info.value.status_code == 503
        sim.rpm_limit = 5  # 3 requests already in the window
        await _generate(gemini)
        await claude.messages.create(
            model="claude-haiku-4-5", max_tokens=10, messages=[{"role": "user", "content": "x"}]
        )
        with pytest.raises(errors.ClientError) as limited:
            await _generate(gemini)
    assert limited.value.code == 429
    assert [(r.api, r.fault, r.status) for r in sim.requests] == [
        ("anthropic", "status", 500),
        ("gemini", None, 200),
        ("openai", "overloaded", 503),
        ("gemini", None, 200),
        ("anthropic", None, 200),
        ("gemini", "rate_limit", 429),
    ]


@pytest.mark.asyncio
async def test_chaos_mode_applies_to_gemini() -> None:
    async with Simulator(
        tokens_per_second=0, default_tokens=8, fault_rate=1.0, chaos_seed=7
    ) as chaotic:
        async with genai.Client(api_key=API_KEY, http_options=_options(chaotic)).aio as client:
            for _ in range(30):
                try:
                    await _chunks(client)
                except (errors.APIError, aiohttp.ClientError, ValueError):
                    pass
        await chaotic.wait_until(lambda: all(r.ended_at is not None for r in chaotic.requests))
    faults = {r.fault for r in chaotic.requests}
    assert faults == {"disconnect", "no_finish", "malformed", "status"}
    assert {r.api for r in chaotic.requests} == {"gemini"}
