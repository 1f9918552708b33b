"""The quota limiter's rules: what providers report, what a key has left, who goes first."""

from __future__ import annotations

import asyncio

import pytest

from ai_orchestrator.config import ConfigError
from ai_orchestrator.limits import (
    Bucket,
    LocalLimiter,
    Observed,
    go_duration,
    limit_key,
    limiter_from_env,
    observe,
    parse_limits,
)
from ai_orchestrator.limits._bucket import ARRIVAL_LAG, PROBE_SECONDS


def test_openai_headers() -> None:
    seen = observe(
        {
            "x-ratelimit-limit-tokens": "6000",
            "x-ratelimit-remaining-tokens": "5690",
            "x-ratelimit-reset-tokens": "3.1s",
            "x-ratelimit-limit-requests": "500",
            "x-ratelimit-remaining-requests": "499",
            "x-ratelimit-reset-requests": "120ms",
        },
        now=0.0,
    )
    assert seen == Observed(500, 499, 0.12, 6000, 5690, 3.1)


def test_anthropic_headers_with_absolute_resets() -> None:
    seen = observe(
        {
            "anthropic-ratelimit-tokens-limit": "40000",
            "anthropic-ratelimit-tokens-remaining": "39000",
            "anthropic-ratelimit-tokens-reset": "2026-12-02T10:00:30Z",
        },
        now=1_796_205_600.0,  # 2026-12-02T10:00:00Z
    )
    assert (seen.limit_tokens, seen.remaining_tokens, seen.reset_tokens) == (40000, 39000, 30.0)


def test_no_headers_no_view_and_go_durations() -> None:
    assert observe({"content-type": "text/event-stream"}, now=0).empty
    assert go_duration("6m0s") == 360.0 and go_duration("1h2m3.5s") == 3723.5
    assert go_duration("soon") is None and go_duration("") is None


def test_a_bucket_holds_reservations_and_refills_over_a_minute() -> None:
    bucket = Bucket(updated=0.0)
    bucket.configure(tpm=600, rpm=None, now=0.0)  # 10 tokens a second
    assert bucket.wait(500, now=0.0) == 0
    bucket.reserve("a", 500, now=0.0, lease=60)
    # 100 left, 100 more at 10/s, and the provider's lag behind us (ARRIVAL_LAG)
    assert bucket.wait(200, now=0.0) == pytest.approx(10.0 + ARRIVAL_LAG)
    assert bucket.wait(200, now=10.0 + ARRIVAL_LAG) == 0
    bucket.settle("a", used=50, now=10.0 + ARRIVAL_LAG)  # providers do not refund by default
    assert bucket.tokens == pytest.approx(200 + 10 * ARRIVAL_LAG)


def test_back_to_back_calls_never_stop_the_refill() -> None:
    """Calls reserved every 0.2 s still see the bucket refill at the full rate."""
    bucket = Bucket(updated=0.0)
    bucket.configure(tpm=600_000, rpm=None, now=0.0)  # 10,000 tokens a second
    now = 0.0
    for _ in range(300):  # 60 s of 1000-token calls, 5,000 a second
        assert bucket.wait(1000, now) == 0
        bucket.reserve(f"c{now}", 1000, now, lease=600)
        now += 0.2
    assert bucket.wait(1000, now) == 0 and bucket.tokens > 590_000


def test_the_providers_view_wins_when_it_has_less_and_a_retry_after_holds_the_key() -> None:
    bucket = Bucket(updated=0.0)
    bucket.observe(Observed(limit_tokens=6000, remaining_tokens=1000), now=0.0)
    assert bucket.tpm == 6000 and bucket.tokens == 1000  # another app spent the rest
    bucket.observe(Observed(limit_tokens=6000, remaining_tokens=5000), now=0.0)
    assert bucket.tokens == 1000  # never more than we know is left
    bucket.pause(until=30.0)
    assert bucket.wait(10, now=5.0) == pytest.approx(25.0)


def test_a_dead_workers_lease_expires_and_refunds_are_opt_in() -> None:
    bucket = Bucket(updated=0.0, refund=True)
    bucket.configure(tpm=60, rpm=None, now=0.0)
    bucket.reserve("dead", 50, now=0.0, lease=5)
    bucket.wait(1, now=6.0)
    assert "dead" not in bucket.leases  # its worker never settled
    bucket.reserve("b", 10, now=6.0, lease=60)
    before = bucket.tokens
    bucket.settle("b", used=4, now=6.0)
    assert bucket.tokens == pytest.approx(before + 6)


def test_configured_limits_and_keys() -> None:
    assert parse_limits("gpt-4o:tpm=30000,rpm=500; claude-x:rpm=50") == {
        "gpt-4o": (30000.0, 500.0),
        "claude-x": (None, 50.0),
    }
    for bad in ("gpt-4o", "gpt-4o:tpm=0", "gpt-4o:tokens=5", ":tpm=5"):
        with pytest.raises(ConfigError):
            parse_limits(bad)
    assert limiter_from_env({"AI_ORCHESTRATOR_LIMITER": "off"}) is None
    assert limiter_from_env({}) is not None
    key = limit_key("chatgpt", "https://api.openai.com/v1", "sk-secret", "gpt-4o")
    assert "sk-secret" not in key and key != limit_key("chatgpt", "x", "other", "gpt-4o")


async def test_waiting_calls_go_in_priority_order_and_one_at_a_time() -> None:
    """Only the first in line takes what refills: no thundering herd."""
    limiter = LocalLimiter({"m": (600.0, None)})  # 10 tokens a second
    first = await limiter.acquire("k", 600, model="m")  # empties the bucket
    order: list[str] = []

    async def call(name: str, priority: int) -> None:
        await limiter.acquire("k", 3, model="m", priority=priority)
        order.append(name)

    low = asyncio.ensure_future(call("low", 5))
    await asyncio.sleep(0.05)
    high = asyncio.ensure_future(call("high", 1))
    await asyncio.gather(low, high)
    assert order == ["high", "low"] and first.tokens == 600


async def test_a_cancelled_wait_leaves_the_line() -> None:
    limiter = LocalLimiter({"m": (60.0, None)})
    await limiter.acquire("k", 60, model="m")
    waiting = asyncio.ensure_future(limiter.acquire("k", 30, model="m"))
    await asyncio.sleep(0.05)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert limiter._waiting["k"] == []


def test_an_unknown_key_sends_one_probe_and_learns_from_its_headers() -> None:
    """The first burst on a key nobody has heard from goes one call at a time."""
    bucket = Bucket(updated=0.0)
    assert bucket.wait(300, now=0.0) == 0
    bucket.reserve("probe", 300, now=0.0, lease=60)
    assert bucket.wait(300, now=0.1) == pytest.approx(PROBE_SECONDS - 0.1)
    # The probe's answer starts: 6000 TPM, the probe's 300 already counted.
    bucket.observe(Observed(limit_tokens=6000, remaining_tokens=5700), now=0.2, opened=True)
    assert bucket.wait(300, now=0.2) == 0
    bucket.reserve("b", 300, now=0.2, lease=60)
    assert bucket.tokens == pytest.approx(5400)


def test_a_key_whose_answers_carry_no_limits_goes_unlimited() -> None:
    bucket = Bucket(updated=0.0)
    bucket.reserve("probe", 300, now=0.0, lease=60)
    bucket.observe(Observed(), now=0.5)  # a failed call's missing headers say nothing
    assert bucket.wait(300, now=0.5) > 0
    bucket.observe(Observed(), now=0.6, opened=True)  # an answer without limits does
    assert bucket.headerless and bucket.wait(10**6, now=0.6) == 0


def test_a_probe_that_ends_unheard_hands_the_probe_on() -> None:
    bucket = Bucket(updated=0.0)
    bucket.reserve("probe", 300, now=0.0, lease=60)
    bucket.settle("probe", used=None, now=1.0)  # e.g. refused before its headers
    assert bucket.wait(300, now=1.0) == 0
    bucket.reserve("next", 300, now=1.0, lease=60)
    assert bucket.probe_lease == "next" and bucket.wait(300, now=1.0) > 0
    # A probe that hangs holds the others for PROBE_SECONDS at most.
    assert bucket.wait(300, now=1.0 + PROBE_SECONDS) == 0


def test_each_gemini_account_has_its_own_limit_key() -> None:
    from google import genai

    from ai_orchestrator.activities._quota import key_for
    from ai_orchestrator.core import Platform
    from ai_orchestrator.providers._tls import genai_http_options
    from ai_orchestrator.providers.gemini import GeminiProvider

    def key(api_key: str, url: str = "http://g:1") -> str:
        client = genai.Client(api_key=api_key, http_options=genai_http_options(base_url=url))
        return key_for(GeminiProvider(client), Platform.GEMINI, "gemini-2.5-flash")

    assert key("AIza-one") == key("AIza-one")
    assert key("AIza-one") != key("AIza-two")
    assert key("AIza-one") != key("AIza-one", "http://other:1")
    assert "AIza-one" not in key("AIza-one")  # the key is hashed, never kept


async def test_settling_never_holds_up_the_answer_it_settles() -> None:
    """The attempt returns its paid answer after settling: a limiter that does not
    answer (a stalled Redis) must not keep it past its heartbeat timeout."""
    from types import SimpleNamespace

    from ai_orchestrator.activities import _quota

    answered = asyncio.Event()

    class _Stalled(LocalLimiter):
        async def observe(self, key: str, seen: Observed, *, opened: bool = False) -> None:
            await answered.wait()

    limiter = _Stalled()
    stream = SimpleNamespace(
        usage=None, opened=True, chunks=5, model="m", response_headers=lambda: {}
    )
    meter = SimpleNamespace(quota_tokens=SimpleNamespace(add=lambda *a: None))
    lease = await limiter.acquire("k", 100)
    settling = _quota.settle(limiter, lease, stream, 40, None, lambda: meter)  # type: ignore[arg-type]
    await asyncio.wait_for(settling, 10)  # a hang guard, not a measure
    answered.set()
    for _ in range(100):  # settled in the background once the limiter answers
        await asyncio.sleep(0.01)
        if not limiter.bucket("k").leases:
            break
    assert not limiter.bucket("k").leases
