"""The Responses API provider over real HTTP: the openai SDK against the simulator.

A stream broken mid-answer is re-attached with ``continue_from`` and yields exactly
the rest; an expired response is a :class:`ContinuationLost`; cancel reaches the
provider. No Temporal at this level.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from itertools import accumulate
from typing import Any

import httpx2
import openai
import pytest

from ai_orchestrator.core import Task, TaskConstraints
from ai_orchestrator.errors import CONNECTION_FAILED, ContinuationLost, classify
from ai_orchestrator.providers import FINISH_LENGTH, FINISH_STOP, ProviderStream
from ai_orchestrator.providers._tls import openai_http_client
from ai_orchestrator.providers.openai import OpenAIProvider
from ai_orchestrator.providers.openai_responses import ResponsesStream
from ai_orchestrator.simulator import Fault, Simulator

MODEL = "gpt-4o-mini"
TOKENS = 24


@pytest.fixture
def sim_options() -> dict[str, Any]:
    return {"tokens_per_second": 400.0, "default_tokens": TOKENS}


@pytest.fixture
async def openai_client(sim: Simulator) -> AsyncIterator[openai.AsyncOpenAI]:
    openai_client = openai.AsyncOpenAI(
        api_key="simulator", base_url=sim.base_url, max_retries=0, http_client=openai_http_client()
    )
    yield openai_client
    await openai_client.close()


@pytest.fixture
def provider(openai_client: openai.AsyncOpenAI) -> OpenAIProvider:
    return OpenAIProvider(openai_client, api="responses")


def task(prompt: str = "Tell me about durable execution", **constraints: object) -> Task:
    return Task(prompt=prompt, constraints=TaskConstraints(**constraints))  # type: ignore[arg-type]


async def read(stream: ProviderStream, deltas: list[str]) -> None:
    """Open and iterate ``stream``, keeping every delta in ``deltas`` even if it breaks."""
    async with stream:
        async for text in stream:
            deltas.append(text)


async def read_until_cut(stream: ProviderStream, deltas: list[str]) -> None:
    """Like :func:`read`, for a stream the simulator cuts mid-body: it must fail as a
    dropped connection (the SDK's connection error over httpx's incomplete read),
    which the worker classifies as a retryable connection failure."""
    with pytest.raises(openai.APIConnectionError, match=r"^Connection error\.$") as cut:
        await read(stream, deltas)
    assert type(cut.value) is openai.APIConnectionError, repr(cut.value)  # not a timeout
    cause = cut.value.__cause__
    assert isinstance(cause, httpx2.RemoteProtocolError), repr(cause)
    assert "incomplete chunked read" in str(cause), cause
    verdict = classify(cut.value)
    assert verdict.retryable and verdict.error_type == CONNECTION_FAILED, verdict


async def stored_text(openai_client: openai.AsyncOpenAI, response_id: str) -> str:
    response = await openai_client.responses.retrieve(response_id)
    assert response.status == "completed"
    return response.output_text


async def test_full_stream_with_usage_from_completed(
    sim: Simulator, openai_client: openai.AsyncOpenAI, provider: OpenAIProvider
) -> None:
    stream = provider.stream(task(temperature=0.2), MODEL)
    assert isinstance(stream, ResponsesStream)
    deltas: list[str] = []
    await read(stream, deltas)

    assert stream.finish_reason == FINISH_STOP and stream.vendor_finish_reason == "completed"
    rid = stream.response_id
    assert rid is not None and rid in sim.responses
    text = "".join(deltas)
    assert text == await stored_text(openai_client, rid)
    assert (stream.chars, stream.chunks) == (len(text), len(deltas))
    billed = sim.responses[rid]
    assert billed.background and billed.store and billed.stream
    usage = stream.final_usage()
    assert not usage.estimated
    assert usage.prompt_tokens == billed.input_tokens > 0
    assert usage.completion_tokens == billed.generated_tokens == TOKENS
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    request = sim.requests[0]
    assert request.temperature == 0.2 and request.model == MODEL


async def test_context_becomes_instructions_and_max_tokens_a_length_stop(
    sim: Simulator, provider: OpenAIProvider
) -> None:
    stream = provider.stream(
        Task(
            prompt="Go", context={"repo": "orchestrator"}, constraints=TaskConstraints(max_tokens=5)
        ),
        MODEL,
    )
    deltas: list[str] = []
    await read(stream, deltas)
    assert stream.finish_reason == FINISH_LENGTH
    assert stream.vendor_finish_reason == "max_output_tokens"
    assert sim.requests[0].max_tokens == 5
    assert any("repo: orchestrator" in str(m.get("content")) for m in sim.requests[0].messages)


@pytest.mark.parametrize("acked_deltas", [None, 2])
async def test_broken_stream_continues_with_exactly_the_rest(
    sim: Simulator,
    openai_client: openai.AsyncOpenAI,
    provider: OpenAIProvider,
    acked_deltas: int | None,
) -> None:
    """The connection drops mid-answer; the retry re-attaches after what the
    workflow holds (all it received, or fewer) and the halves join exactly."""
    sim.script(Fault.drop_stream(after_events=12))
    first = provider.stream(task(), MODEL)
    before: list[str] = []
    await read_until_cut(first, before)
    assert 0 < len(before) < TOKENS and first.finish_reason is None

    boundaries = list(accumulate(len(d) for d in before))
    acked = boundaries[-1] if acked_deltas is None else boundaries[acked_deltas - 1]
    token = first.continuation(acked)
    assert token is not None and token.startswith(f"responses:{first.response_id}:")
    assert "Tell me" not in token  # ids and counters only
    assert first.continuation(acked + 1 if acked + 1 not in boundaries else 10**6) is None

    second = provider.stream(task(), MODEL, continue_from=token)
    after: list[str] = []
    await read(second, after)

    full = await stored_text(openai_client, first.response_id or "")
    assert "".join(before)[:acked] + "".join(after) == full
    assert second.chars == len(full) - acked  # counts only what it yielded
    assert second.finish_reason == FINISH_STOP
    assert second.response_id == first.response_id
    billed = sim.responses[first.response_id or ""]
    assert billed.reattaches == 1 and billed.generated_tokens == TOKENS  # generated once
    assert second.final_usage().completion_tokens == TOKENS
    # The continued stream offers tokens in the response's own character count.
    assert second.continuation(0) == token


async def test_continuation_of_a_continuation(
    sim: Simulator, openai_client: openai.AsyncOpenAI, provider: OpenAIProvider
) -> None:
    sim.script(Fault.drop_stream(after_events=8), Fault.reattach_drop(after_events=5))
    texts: list[str] = []
    cuts = 2  # the create's stream and the first re-attach
    stream = provider.stream(task(), MODEL)
    for _ in range(3):
        deltas: list[str] = []
        if cuts:
            await read_until_cut(stream, deltas)
            cuts -= 1
        else:
            await read(stream, deltas)
        texts.extend(deltas)
        if stream.finish_reason is not None:
            break
        token = stream.continuation(stream.chars)
        assert token is not None
        stream = provider.stream(task(), MODEL, continue_from=token)
    rid = stream.response_id or ""
    assert stream.finish_reason == FINISH_STOP
    assert "".join(texts) == await stored_text(openai_client, rid)
    assert sim.responses[rid].reattaches == 2


async def test_reattach_to_a_queued_response_before_any_text(
    sim: Simulator, openai_client: openai.AsyncOpenAI, provider: OpenAIProvider
) -> None:
    sim.script(Fault.drop_stream(after_events=1))  # only response.created (queued) arrives
    first = provider.stream(task(), MODEL)
    await read_until_cut(first, [])
    assert first.chars == 0 and first.status == "queued"
    token = first.continuation(0)
    assert token is not None

    second = provider.stream(task(), MODEL, continue_from=token)
    after: list[str] = []
    await read(second, after)
    assert "".join(after) == await stored_text(openai_client, first.response_id or "")


async def test_expired_response_is_a_lost_continuation(
    sim: Simulator, provider: OpenAIProvider
) -> None:
    sim.script(Fault.drop_stream(after_events=10), Fault.expire())
    first = provider.stream(task(), MODEL)
    await read_until_cut(first, [])
    token = first.continuation(first.chars)
    assert token is not None

    second = provider.stream(task(), MODEL, continue_from=token)
    yielded: list[str] = []
    with pytest.raises(ContinuationLost):
        await read(second, yielded)
    assert yielded == [] and second.chars == 0 and not second.opened
    # Expired for good: a later attempt is told the same.
    sim.expire_response(first.response_id or "")
    with pytest.raises(ContinuationLost):
        await read(provider.stream(task(), MODEL, continue_from=token), [])


async def test_a_response_not_made_in_background_cannot_be_continued(
    openai_client: openai.AsyncOpenAI, provider: OpenAIProvider
) -> None:
    made = await openai_client.responses.create(model=MODEL, input="hi", store=True)
    unknown = provider.stream(task(), MODEL, continue_from="responses:resp_nope:3:10")
    with pytest.raises(ContinuationLost):
        await read(unknown, [])
    foreground = provider.stream(task(), MODEL, continue_from=f"responses:{made.id}:3:10")
    with pytest.raises(ContinuationLost, match="400"):
        await read(foreground, [])


async def test_cancel_reaches_the_provider(sim: Simulator, provider: OpenAIProvider) -> None:
    sim.tokens_per_second = 20.0
    stream = provider.stream(task(), MODEL)
    async with stream:
        async for _ in stream:
            if stream.chunks == 2:
                break
        await stream.cancel()
    rid = stream.response_id or ""
    cancels = [r for r in sim.requests if r.kind == "cancel"]
    assert [r.response_id for r in cancels] == [rid]
    assert sim.responses[rid].status == "cancelled"
    assert sim.responses[rid].generated_tokens < TOKENS
    await stream.cancel()  # finished now: no second request, no error
    assert len([r for r in sim.requests if r.kind == "cancel"]) == 1


async def test_cancel_is_best_effort(sim: Simulator, provider: OpenAIProvider) -> None:
    done = provider.stream(task(), MODEL)
    await read(done, [])
    await done.cancel()  # completed: nothing to cancel
    assert not [r for r in sim.requests if r.kind == "cancel"]

    sim.tokens_per_second = 20.0
    stream = provider.stream(task(), MODEL)
    async with stream:
        async for _ in stream:
            break
    sim.expire_response(stream.response_id or "")
    await stream.cancel()  # the provider answers 404: logged, never raised
    assert [r.status for r in sim.requests if r.kind == "cancel"] == [404]


async def test_an_error_event_is_classified(sim: Simulator, provider: OpenAIProvider) -> None:
    sim.script(Fault.stream_error(after_tokens=3, error_type="server_error"))
    stream = provider.stream(task(), MODEL)
    with pytest.raises(openai.APIError) as caught:
        await read(stream, [])
    verdict = classify(caught.value)
    assert verdict.retryable
    assert stream.continuation(stream.chars) is None  # a retry starts over


# --- chat continuation (opt-in): what goes over the wire ---------------------------


@pytest.mark.parametrize("mode", ["continue_final_message", "prefix"])
async def test_chat_continuation_sends_the_partial_answer(
    sim: Simulator, openai_client: openai.AsyncOpenAI, mode: str
) -> None:
    provider = OpenAIProvider(openai_client, api="chat")
    chat_task = task(chat_resume=mode)
    sim.script(Fault.disconnect(after_tokens=5))
    first = provider.stream(chat_task, MODEL)
    before: list[str] = []
    await read_until_cut(first, before)
    token = first.continuation(first.chars)
    assert token == f"chat:{first.chars}" and first.chars > 0
    prefix = "".join(before)

    second = provider.stream(chat_task, MODEL, continue_from=token, prefix=prefix)
    rest: list[str] = []
    await read(second, rest)
    sent = sim.requests[-1].messages
    assert sent[-1]["role"] == "assistant" and sent[-1]["content"] == prefix
    assert sent[-1].get("prefix") is (True if mode == "prefix" else None)
    assert second.continuation(0) == token  # counted from the start of the answer
    assert second.chars == len("".join(rest))  # only the continuation was yielded

    plain = OpenAIProvider(openai_client, api="chat").stream(task(), MODEL)
    whole: list[str] = []
    await read(plain, whole)
    assert prefix + "".join(rest) == "".join(whole)  # the simulator continues exactly
    assert plain.continuation(plain.chars) is None  # not opted in


async def test_a_server_refusing_chat_continuation_is_a_lost_continuation(
    sim: Simulator, openai_client: openai.AsyncOpenAI
) -> None:
    sim.script(Fault.status(400, "continue_final_message is not supported"))
    stream = OpenAIProvider(openai_client).stream(
        task(chat_resume="continue_final_message"), MODEL, continue_from="chat:4", prefix="abcd"
    )
    with pytest.raises(ContinuationLost, match="400"):
        await read(stream, [])
