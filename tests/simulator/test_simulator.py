"""Simulator basics: answers, errors, scripting, admin API (real SDK, real HTTP)."""

from __future__ import annotations

import aiohttp
import openai
import pytest

from ai_orchestrator.simulator import SIMULATOR_BANNER, Fault, Simulator
from ai_orchestrator.simulator._errors import mask_api_key, status_error
from ai_orchestrator.simulator._text import simulated_tokens

API_KEY = "sk-test-simulator-0123456789abcdef"  # same key as the `client` fixture
MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Say something nice about rivers"},
]
PROMPT_WORDS = 8


async def _stream_text(openai_client: openai.AsyncOpenAI, **kwargs: object) -> tuple[str, list]:
    stream = await openai_client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True, **kwargs
    )
    chunks = [c async for c in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    return text, chunks


@pytest.mark.asyncio
async def test_plain_completion_with_usage(
    sim: Simulator, openai_client: openai.AsyncOpenAI
) -> None:
    resp = await openai_client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=MESSAGES, temperature=0.2
    )
    completion = resp.parse()
    assert resp.headers["x-request-id"] == "req_sim_0"
    assert resp.headers["x-ai-orchestrator-simulator"] == "1"
    assert completion.id == "chatcmpl-sim-0"
    assert completion.model == "gpt-4o-mini"
    choice = completion.choices[0]
    assert choice.finish_reason == "stop"
    assert choice.message.role == "assistant"
    assert choice.message.content is not None
    assert choice.message.content.startswith("[simulated] ")
    assert len(choice.message.content.split()) == 16
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == PROMPT_WORDS
    assert completion.usage.completion_tokens == 16
    assert completion.usage.total_tokens == PROMPT_WORDS + 16

    [rec] = sim.requests
    assert rec.index == 0 and rec.request_id == "req_sim_0"
    assert rec.model == "gpt-4o-mini" and rec.stream is False
    assert rec.messages == MESSAGES
    assert rec.temperature == 0.2 and rec.max_tokens is None
    assert rec.authorization == f"Bearer {API_KEY}"
    assert rec.fault is None and rec.status == 200
    assert rec.finished and not rec.disconnected and rec.ended_at is not None


@pytest.mark.asyncio
async def test_stream_matches_non_stream(sim: Simulator, openai_client: openai.AsyncOpenAI) -> None:
    text, chunks = await _stream_text(openai_client, stream_options={"include_usage": True})
    plain = await openai_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert text == plain.choices[0].message.content

    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.id == "chatcmpl-sim-0" for c in chunks)
    content_chunks = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(content_chunks) == 16
    assert content_chunks[0].choices[0].delta.content == "[simulated]"
    assert all(c.choices[0].delta.content.startswith(" ") for c in content_chunks[1:])
    finish = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finish[-1] == "stop" and finish.count("stop") == 1
    usage_chunk = chunks[-1]
    assert usage_chunk.choices == [] and usage_chunk.usage is not None
    assert usage_chunk.usage.completion_tokens == 16
    assert usage_chunk.usage.total_tokens == PROMPT_WORDS + 16

    rec = sim.requests[0]
    assert rec.stream and rec.include_usage and rec.finished
    assert rec.tokens_sent == 16 and len(rec.token_sent_at) == 16
    assert rec.token_sent_at == sorted(rec.token_sent_at)


@pytest.mark.asyncio
async def test_stream_without_include_usage_has_no_usage_chunk(
    openai_client: openai.AsyncOpenAI,
) -> None:
    _, chunks = await _stream_text(openai_client)
    assert all(c.choices for c in chunks)
    assert all(c.usage is None for c in chunks)


@pytest.mark.asyncio
async def test_deterministic_text(openai_client: openai.AsyncOpenAI) -> None:
    async def ask(content: str, model: str = "gpt-4o-mini") -> str:
        r = await openai_client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": content}]
        )
        return r.choices[0].message.content or ""

    first = await ask("hello")
    assert first == await ask("hello")
    assert first != await ask("goodbye")
    assert first != await ask("hello", model="gpt-4o")


def test_simulated_tokens_shape() -> None:
    tokens = simulated_tokens([{"role": "user", "content": "x"}], "m", 30)
    assert tokens[0] == "[simulated]"
    assert all(t.startswith(" ") and t[1:].isalpha() for t in tokens[1:])
    assert simulated_tokens([{"role": "user", "content": "x"}], "m", 10) == tokens[:10]
    assert simulated_tokens([{"role": "user", "content": "x"}], "m", 0) == []


@pytest.mark.asyncio
async def test_max_tokens_gives_length(sim: Simulator, openai_client: openai.AsyncOpenAI) -> None:
    short = await openai_client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, max_tokens=5
    )
    assert short.choices[0].finish_reason == "length"
    assert short.usage is not None and short.usage.completion_tokens == 5
    full = await openai_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert (full.choices[0].message.content or "").startswith(short.choices[0].message.content)

    text, chunks = await _stream_text(openai_client, max_completion_tokens=3)
    assert len(text.split()) == 3
    assert [c.choices[0].finish_reason for c in chunks][-1] == "length"

    roomy = await openai_client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, max_tokens=1000
    )
    assert roomy.choices[0].finish_reason == "stop"
    assert [r.max_tokens for r in sim.requests] == [5, None, 3, 1000]


@pytest.mark.asyncio
async def test_rate_limit_headers(sim: Simulator, openai_client: openai.AsyncOpenAI) -> None:
    sim.script(
        Fault.rate_limit(retry_after=2), Fault.rate_limit(retry_after=0.5, retry_after_ms=500)
    )
    with pytest.raises(openai.RateLimitError) as first:
        await openai_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert first.value.response.headers["retry-after"] == "2"
    assert "retry-after-ms" not in first.value.response.headers
    assert first.value.code == "rate_limit_exceeded"
    assert first.value.body["type"] == "requests"  # type: ignore[index]

    with pytest.raises(openai.RateLimitError) as second:
        await openai_client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True
        )
    assert second.value.response.headers["retry-after"] == "0.5"
    assert second.value.response.headers["retry-after-ms"] == "500"
    assert second.value.response.headers["x-request-id"] == "req_sim_1"

    ok = await openai_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert ok.choices[0].finish_reason == "stop"
    assert [(r.fault, r.status) for r in sim.requests] == [
        ("rate_limit", 429),
        ("rate_limit", 429),
        (None, 200),
    ]


@pytest.mark.asyncio
async def test_quota_exhausted(sim: Simulator, openai_client: openai.AsyncOpenAI) -> None:
    sim.script(Fault.rate_limit(quota_exhausted=True))
    with pytest.raises(openai.RateLimitError) as info:
        await openai_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert info.value.code == "insufficient_quota"
    assert info.value.type == "insufficient_quota"
    assert "exceeded your current quota" in info.value.message
    assert "retry-after" not in info.value.response.headers
    assert "retry-after-ms" not in info.value.response.headers


@pytest.mark.asyncio
async def test_status_errors(sim: Simulator, openai_client: openai.AsyncOpenAI) -> None:
    sim.script(Fault.status(500), Fault.status(400, "bad things"), Fault.status(503))
    with pytest.raises(openai.InternalServerError) as e500:
        await openai_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert e500.value.status_code == 500 and e500.value.type == "server_error"
    with pytest.raises(openai.BadRequestError) as e400:
        await openai_client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True
        )
    assert "bad things" in e400.value.message
    with pytest.raises(openai.InternalServerError) as e503:
        await openai_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert e503.value.status_code == 503
    assert [r.status for r in sim.requests] == [500, 400, 503]


@pytest.mark.asyncio
async def test_401_masks_the_key(sim: Simulator, openai_client: openai.AsyncOpenAI) -> None:
    sim.script(Fault.status(401))
    with pytest.raises(openai.AuthenticationError) as info:
        await openai_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    message = info.value.message
    assert "Incorrect API key provided: sk-" in message
    assert API_KEY not in message
    assert API_KEY[-2:] + "." in message
    assert API_KEY[3:-2] not in message
    assert info.value.code == "invalid_api_key"


def test_mask_api_key_never_reveals_short_keys() -> None:
    assert mask_api_key("sk-abcdefghyz") == "sk-********yz"
    for key in ("a", "abcd", "abcdef", "abcdefghi", "sk-0123456"):
        masked = mask_api_key(key)
        assert len(masked) == len(key) and masked != key
        assert masked.count("*") >= len(key) // 2
    no_key = status_error(401, None, None)["error"]["message"]
    assert no_key.startswith("You didn't provide an API key")


@pytest.mark.asyncio
async def test_times_and_ok(sim: Simulator, openai_client: openai.AsyncOpenAI) -> None:
    sim.script(Fault.status(502, times=2), Fault.ok(), Fault.status(500))
    assert [f.times for f in sim.pending_faults] == [2, 1, 1]
    for _ in range(2):
        with pytest.raises(openai.InternalServerError):
            await openai_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert await openai_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    with pytest.raises(openai.InternalServerError):
        await openai_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert await openai_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert [r.status for r in sim.requests] == [502, 502, 200, 500, 200]
    assert [r.fault for r in sim.requests] == ["status", "status", None, "status", None]

    sim.script(Fault.status(500))
    sim.reset()
    assert sim.requests == [] and sim.pending_faults == []
    await openai_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert sim.requests[0].index == 0 and sim.requests[0].status == 200


@pytest.mark.asyncio
async def test_invalid_requests_are_400(sim: Simulator, openai_client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        await openai_client.chat.completions.create(model="gpt-4o-mini", messages=[])
    assert info.value.param == "messages"
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{sim.base_url}/chat/completions", json={"messages": MESSAGES}
        ) as resp:
            assert resp.status == 400
            assert (await resp.json())["error"]["param"] == "model"
            assert resp.headers["x-request-id"] == "req_sim_1"
        async with http.post(f"{sim.base_url}/chat/completions", data=b"{nope") as resp:
            assert resp.status == 400
            assert (await resp.json())["error"]["type"] == "invalid_request_error"
    assert [r.status for r in sim.requests] == [400, 400, 400]


@pytest.mark.asyncio
async def test_no_auth_needed_and_models(sim: Simulator, openai_client: openai.AsyncOpenAI) -> None:
    models = [m.id async for m in openai_client.models.list()]
    assert {"gpt-4o-mini", "gpt-4o", "simulator"} <= set(models)
    async with aiohttp.ClientSession() as http:
        body = {"model": "simulator", "messages": MESSAGES}
        async with http.post(f"{sim.base_url}/chat/completions", json=body) as resp:
            assert resp.status == 200
            assert (await resp.json())["choices"][0]["finish_reason"] == "stop"
    assert sim.requests[0].model == "simulator"
    assert sim.requests[0].authorization is None


@pytest.mark.asyncio
async def test_every_response_is_marked(sim: Simulator) -> None:
    async with aiohttp.ClientSession() as http:
        for method, path in [
            ("GET", "/v1/models"),
            ("GET", "/v1/nope"),
            ("GET", "/v1/chat/completions"),
            ("GET", "/_simulator/requests"),
        ]:
            async with http.request(method, sim.url + path) as resp:
                assert resp.headers["x-ai-orchestrator-simulator"] == "1"
                assert resp.headers["x-request-id"].startswith("req_sim_")
                if resp.status >= 400:
                    assert "message" in (await resp.json())["error"]


@pytest.mark.asyncio
async def test_admin_api_round_trip(sim: Simulator, openai_client: openai.AsyncOpenAI) -> None:
    async with aiohttp.ClientSession(base_url=sim.url) as http:
        script = [Fault.rate_limit(retry_after=3).to_dict(), Fault.ok().to_dict()]
        async with http.post("/_simulator/script", json=script) as resp:
            assert resp.status == 200
            assert (await resp.json())["queued"] == 2
        async with http.get("/_simulator/script") as resp:
            assert [f["name"] for f in (await resp.json())["script"]] == ["rate_limit", "ok"]

        with pytest.raises(openai.RateLimitError) as info:
            await openai_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        assert info.value.response.headers["retry-after"] == "3"
        await openai_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

        async with http.get("/_simulator/requests") as resp:
            records = await resp.json()
        assert [(r["index"], r["fault"], r["status"]) for r in records] == [
            (0, "rate_limit", 429),
            (1, None, 200),
        ]
        assert records[1]["authorization"] == f"Bearer {API_KEY}"
        assert records[1]["tokens_sent"] == 16

        async with http.post(
            "/_simulator/config", json={"tokens_per_second": 123.5, "default_tokens": 4}
        ) as resp:
            config = await resp.json()
        assert {k: config[k] for k in ("tokens_per_second", "default_tokens")} == {
            "tokens_per_second": 123.5,
            "default_tokens": 4,
        }
        assert sim.tokens_per_second == 123.5 and sim.default_tokens == 4
        async with http.post("/_simulator/config", json={"default_tokens": 0}) as resp:
            assert resp.status == 400
        async with http.post("/_simulator/script", json=[{"name": "explode"}]) as resp:
            assert resp.status == 400
        async with http.post("/_simulator/script", json=[{"name": "ok", "secs": 1}]) as resp:
            assert resp.status == 400

        async with http.post("/_simulator/reset") as resp:
            assert resp.status == 200
        async with http.get("/_simulator/requests") as resp:
            assert await resp.json() == []
    assert sim.requests == []


def test_fault_dict_round_trip() -> None:
    faults = [
        Fault.ok(times=3),
        Fault.rate_limit(),
        Fault.rate_limit(retry_after=None, retry_after_ms=250),
        Fault.rate_limit(quota_exhausted=True),
        Fault.status(401),
        Fault.status(500, "boom", times=2),
        Fault.disconnect(after_tokens=5),
        Fault.no_finish(),
        Fault.stall(after_tokens=1, seconds=0.25),
        Fault.malformed(after_tokens=0),
    ]
    expected = ["ok", "rate_limit", "rate_limit", "rate_limit", "status", "status"]
    expected += ["disconnect", "no_finish", "stall", "malformed"]
    assert [f.name for f in faults] == expected
    for fault in faults:
        assert Fault.from_dict(fault.to_dict()) == fault
    assert Fault.rate_limit().to_dict()["retry_after"] == 1.0
    with pytest.raises(ValueError):
        Fault.from_dict({"name": "status"})
    with pytest.raises(ValueError):
        Fault.status(200)
    with pytest.raises(ValueError):
        Fault.ok(times=0)


def test_banner() -> None:
    assert "SIMULATOR" in SIMULATOR_BANNER and "NOT from a model" in SIMULATOR_BANNER
    assert "\x1b" not in SIMULATOR_BANNER and SIMULATOR_BANNER.count("\n") >= 2
