"""OpenAI's Responses API on the simulator, driven by the real openai SDK over real HTTP.

Plain and streamed creates, background mode surviving a dropped stream,
re-attaching with ``retrieve(id, stream=True, starting_after=N)``, cancel,
expiry, scripted and chaotic faults, and what a provider would bill.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import openai
import pytest
from openai.types.responses import ResponseStreamEvent

from ai_orchestrator.simulator import Fault, Simulator
from ai_orchestrator.simulator._text import simulated_tokens

MODEL = "gpt-4o-mini"
INSTRUCTIONS = "You are terse."
INPUT = "Say something nice about rivers"
CHAT_MESSAGES = [
    {"role": "system", "content": INSTRUCTIONS},
    {"role": "user", "content": INPUT},
]
FULL_TEXT = "".join(simulated_tokens(CHAT_MESSAGES, MODEL, 16))  # the conftest sim's 16 tokens
DELTA = "response.output_text.delta"
OPENING = "created in_progress output_item.added content_part.added".split()
CLOSING = "output_text.done content_part.done output_item.done completed".split()


async def _events(stream: Any) -> list[ResponseStreamEvent]:
    return [event async for event in stream]


def _text(events: list[ResponseStreamEvent]) -> str:
    return "".join(e.delta for e in events if e.type == DELTA)


async def _create(openai_client: openai.AsyncOpenAI, **kwargs: Any) -> Any:
    return await openai_client.responses.create(
        model=MODEL, instructions=INSTRUCTIONS, input=INPUT, **kwargs
    )


async def _read_until(stream: Any, n_deltas: int) -> tuple[str, list[ResponseStreamEvent]]:
    """Read ``n_deltas`` text deltas, then close the stream (the client walks away)."""
    seen: list[ResponseStreamEvent] = []
    async for event in stream:
        seen.append(event)
        if len([e for e in seen if e.type == DELTA]) == n_deltas:
            break
    await stream.close()
    return seen[0].response.id, seen  # type: ignore[union-attr]


# --- plain and streamed ---------------------------------------------------------


@pytest.mark.asyncio
async def test_plain_create_matches_chat(sim: Simulator, openai_client: openai.AsyncOpenAI) -> None:
    raw = await openai_client.responses.with_raw_response.create(
        model=MODEL, instructions=INSTRUCTIONS, input=INPUT
    )
    response = raw.parse()
    assert raw.headers["x-request-id"] == "req_sim_0"
    assert response.status == "completed" and response.object == "response"
    assert response.output_text == FULL_TEXT
    assert response.output[0].type == "message" and response.output[0].status == "completed"
    u = response.usage
    assert u is not None and (u.input_tokens, u.output_tokens, u.total_tokens) == (8, 16, 24)
    assert response.background is False and response.incomplete_details is None

    # The chat endpoint answers the same prompt with the same text.
    chat = await openai_client.chat.completions.create(model=MODEL, messages=CHAT_MESSAGES)  # type: ignore[arg-type]
    assert chat.choices[0].message.content == FULL_TEXT

    rec = sim.requests[0]
    assert (rec.api, rec.kind, rec.response_id) == ("responses", "create", response.id)
    assert rec.tokens_sent == 16 and rec.finished and rec.prompt_tokens == 8
    billing = sim.responses[response.id]
    assert (billing.generated_tokens, billing.input_tokens) == (16, 8)
    assert billing.status == "completed" and not billing.background

    # Input as a list of messages (content parts too) is the same prompt.
    listed = await openai_client.responses.create(
        model=MODEL,
        instructions=INSTRUCTIONS,
        input=[{"role": "user", "content": [{"type": "input_text", "text": INPUT}]}],
    )
    assert listed.output_text.startswith("[simulated]")
    assert (await openai_client.responses.retrieve(response.id)).output_text == FULL_TEXT


@pytest.mark.asyncio
async def test_max_output_tokens_makes_it_incomplete(openai_client: openai.AsyncOpenAI) -> None:
    response = await _create(openai_client, max_output_tokens=5)
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"
    assert FULL_TEXT.startswith(response.output_text) and len(response.output_text.split()) == 5
    events = await _events(await _create(openai_client, stream=True, max_output_tokens=5))
    assert events[-1].type == "response.incomplete"
    assert _text(events) == response.output_text


@pytest.mark.asyncio
async def test_stream_events_and_sequence_numbers(
    sim: Simulator, openai_client: openai.AsyncOpenAI
) -> None:
    events = await _events(await _create(openai_client, stream=True))
    assert [e.sequence_number for e in events] == list(range(len(events)))
    expected = [f"response.{t}" for t in OPENING] + [DELTA] * 16
    assert [e.type for e in events] == expected + [f"response.{t}" for t in CLOSING]
    delta = events[4]
    assert delta.type == DELTA and delta.item_id == events[2].item.id  # type: ignore[union-attr]
    assert (delta.output_index, delta.content_index, delta.logprobs) == (0, 0, [])
    done = events[-1].response  # type: ignore[union-attr]
    assert done.output_text == FULL_TEXT and done.usage and done.usage.output_tokens == 16
    assert sim.requests[0].stream and sim.requests[0].tokens_sent == 16


@pytest.mark.asyncio
async def test_bad_requests(sim: Simulator, openai_client: openai.AsyncOpenAI) -> None:
    sim.script(Fault.status(500))
    with pytest.raises(openai.BadRequestError, match="store"):
        await _create(openai_client, background=True, store=False)
    with pytest.raises(openai.BadRequestError, match="input"):
        await openai_client.responses.create(model=MODEL)  # type: ignore[call-overload]
    assert len(sim.pending_faults) == 1  # 400s consume no fault
    with pytest.raises(openai.NotFoundError):
        await openai_client.responses.retrieve("resp_unknown")
    with pytest.raises(openai.InternalServerError):
        await _create(openai_client)  # takes the 500
    assert sim.requests[-1].status == 500 and sim.responses == {}

    # Only background responses can be re-attached; unstored ones cannot be read.
    foreground = await _create(openai_client)
    with pytest.raises(openai.BadRequestError, match="background"):
        await _events(await openai_client.responses.retrieve(foreground.id, stream=True))
    unstored = await _create(openai_client, store=False)
    with pytest.raises(openai.NotFoundError):
        await openai_client.responses.retrieve(unstored.id)
    assert sim.responses[unstored.id].generated_tokens == 16  # billed all the same


# --- background, re-attach, cancel ------------------------------------------------


@pytest.mark.asyncio
async def test_background_survives_disconnect_and_reattach_yields_the_rest(
    sim: Simulator, openai_client: openai.AsyncOpenAI
) -> None:
    sim.tokens_per_second = 200
    response_id, seen = await _read_until(
        await _create(openai_client, stream=True, background=True), 3
    )
    assert seen[0].type == "response.created"
    assert seen[0].response.status == "queued" and seen[0].response.background is True
    last = seen[-1].sequence_number

    # Nobody is connected, yet the response is generated to its end.
    await sim.wait_until(lambda: sim.responses[response_id].status == "completed")
    assert sim.responses[response_id].generated_tokens == 16
    assert sim.requests[0].tokens_sent == 3

    rest = await _events(
        await openai_client.responses.retrieve(response_id, stream=True, starting_after=last)
    )
    assert [e.sequence_number for e in rest] == list(range(last + 1, last + 1 + len(rest)))
    assert _text(seen) + _text(rest) == FULL_TEXT
    assert rest[-1].type == "response.completed"
    rec = sim.requests[-1]
    assert (rec.kind, rec.response_id, rec.tokens_sent) == ("retrieve_stream", response_id, 13)
    assert sim.responses[response_id].reattaches == 1

    # A re-attach from the start replays everything, and GET gives the Response.
    replay = await _events(await openai_client.responses.retrieve(response_id, stream=True))
    assert [e.sequence_number for e in replay] == list(range(len(replay)))
    assert _text(replay) == FULL_TEXT
    final = await openai_client.responses.retrieve(response_id)
    assert final.status == "completed" and final.output_text == FULL_TEXT
    assert sim.requests[-1].kind == "retrieve"


@pytest.mark.asyncio
async def test_cancel_stops_generation_and_ends_tailing_streams(
    sim: Simulator, openai_client: openai.AsyncOpenAI
) -> None:
    sim.tokens_per_second = 50
    created = await _create(openai_client, background=True)
    assert created.status == "queued"
    # Re-attached while it generates: stored events after #1, then live ones.
    stream = await openai_client.responses.retrieve(created.id, stream=True, starting_after=1)
    first = await stream.__anext__()
    assert first.sequence_number == 2
    async for event in stream:
        if event.type == DELTA:
            assert (await openai_client.responses.cancel(created.id)).status == "cancelled"
            break_after = event.sequence_number
            break
    rest = await _events(stream)
    assert rest[-1].type == "response.failed"  # the SDK models no response.cancelled
    assert rest[-1].response.status == "cancelled"
    assert all(e.sequence_number > break_after for e in rest)
    billing = sim.responses[created.id]
    generated = billing.generated_tokens
    await asyncio.sleep(0.1)  # five tokens' time at 50 tokens/s
    assert billing.status == "cancelled" and billing.generated_tokens == generated < 16
    assert [r.kind for r in sim.requests] == ["create", "retrieve_stream", "cancel"]

    # Cancelling again returns it; a finished or foreground response cannot be cancelled.
    assert (await openai_client.responses.cancel(created.id)).status == "cancelled"
    done = await _create(openai_client, background=True)
    await sim.wait_until(lambda: sim.responses[done.id].status == "completed")
    with pytest.raises(openai.BadRequestError, match="completed"):
        await openai_client.responses.cancel(done.id)
    foreground = await _create(openai_client)
    with pytest.raises(openai.BadRequestError, match="synchronous"):
        await openai_client.responses.cancel(foreground.id)
    with pytest.raises(openai.NotFoundError):
        await openai_client.responses.cancel("resp_unknown")


# --- expiry -----------------------------------------------------------------------


@pytest.mark.asyncio
async def test_finished_responses_expire_after_the_ttl(
    sim: Simulator, openai_client: openai.AsyncOpenAI
) -> None:
    sim.response_ttl = 0.2
    done = await _create(openai_client, background=True)
    await sim.wait_until(lambda: sim.responses[done.id].status == "completed")
    assert (await openai_client.responses.retrieve(done.id)).status == "completed"
    sim.tokens_per_second = 10
    running = await _create(openai_client, background=True)
    await asyncio.sleep(0.25)
    with pytest.raises(openai.NotFoundError, match="not found"):
        await openai_client.responses.retrieve(done.id)
    with pytest.raises(openai.NotFoundError):
        await _events(await openai_client.responses.retrieve(done.id, stream=True))
    assert sim.responses[done.id].expired
    # An unfinished response does not expire, however long it runs.
    assert (await openai_client.responses.retrieve(running.id)).status == "in_progress"


@pytest.mark.asyncio
async def test_expire_now_and_expire_fault(
    sim: Simulator, openai_client: openai.AsyncOpenAI
) -> None:
    first = await _create(openai_client, background=True)
    sim.expire_response(first.id)
    with pytest.raises(openai.NotFoundError):
        await openai_client.responses.retrieve(first.id)

    second = await _create(openai_client, background=True)
    sim.script(Fault.expire())
    assert (await openai_client.responses.retrieve(second.id)).id == second.id  # GET leaves it
    with pytest.raises(openai.NotFoundError):
        await _events(await openai_client.responses.retrieve(second.id, stream=True))
    assert sim.pending_faults == [] and sim.requests[-1].fault == "expire"
    with pytest.raises(openai.NotFoundError):
        await openai_client.responses.retrieve(second.id)  # expired for good


# --- scripted faults and chaos ------------------------------------------------------


@pytest.mark.asyncio
async def test_drop_stream_breaks_the_create_but_not_the_generation(
    sim: Simulator, openai_client: openai.AsyncOpenAI
) -> None:
    sim.tokens_per_second = 200
    sim.script(Fault.drop_stream(after_events=6), Fault.reattach_drop(after_events=3))
    seen: list[ResponseStreamEvent] = []
    with pytest.raises(openai.APIConnectionError):
        async for event in await _create(openai_client, stream=True, background=True):
            seen.append(event)
    assert len(seen) == 6 and seen[-1].type == "response.output_text.delta"
    assert not any(e.type == "response.completed" for e in seen)
    response_id = seen[0].response.id  # type: ignore[union-attr]

    # The next re-attach drops too (after 3 events); the one after reads to the end.
    again: list[ResponseStreamEvent] = []
    with pytest.raises(openai.APIConnectionError):
        stream = await openai_client.responses.retrieve(response_id, stream=True, starting_after=5)
        async for event in stream:
            again.append(event)
    assert [e.sequence_number for e in again] == [6, 7, 8]
    rest = await _events(
        await openai_client.responses.retrieve(response_id, stream=True, starting_after=8)
    )
    assert _text(seen) + _text(again) + _text(rest) == FULL_TEXT
    assert rest[-1].type == "response.completed"

    # Billed once, however often it was read.
    billing = sim.responses[response_id]
    assert billing.generated_tokens == 16 and billing.reattaches == 2
    assert sim.generated_tokens == 16
    assert [r.fault for r in sim.requests] == ["drop_stream", "reattach_drop", None]


@pytest.mark.asyncio
async def test_foreground_stream_stops_generating_when_dropped(
    sim: Simulator, openai_client: openai.AsyncOpenAI
) -> None:
    sim.tokens_per_second = 200
    sim.script(Fault.disconnect(after_tokens=3))
    with pytest.raises(openai.APIConnectionError):
        await _events(await _create(openai_client, stream=True))
    [billing] = sim.responses.values()
    await asyncio.sleep(0.05)
    assert billing.status == "cancelled" and billing.generated_tokens < 8


@pytest.mark.asyncio
async def test_create_refused_like_chat(sim: Simulator, openai_client: openai.AsyncOpenAI) -> None:
    sim.script(Fault.rate_limit(retry_after=2), Fault.status(500), Fault.overloaded())
    with pytest.raises(openai.RateLimitError) as info:
        await _create(openai_client, background=True)
    assert info.value.response.headers["retry-after"] == "2"
    for status in (500, 503):
        with pytest.raises(openai.InternalServerError) as failed:
            await _create(openai_client, stream=True, background=True)
        assert failed.value.status_code == status
    assert sim.responses == {}
    assert [r.fault for r in sim.requests] == ["rate_limit", "status", "overloaded"]


@pytest.mark.asyncio
async def test_responses_faults_wait_for_a_responses_request(
    sim: Simulator, openai_client: openai.AsyncOpenAI
) -> None:
    sim.script(Fault.reattach_drop(after_events=2), Fault.status(503))
    chat = await openai_client.chat.completions.create(model=MODEL, messages=CHAT_MESSAGES)  # type: ignore[arg-type]
    assert chat.choices[0].message.content == FULL_TEXT  # chat left the head alone
    created = await _create(openai_client, background=True)  # so did the create
    assert [f.name for f in sim.pending_faults] == ["reattach_drop", "status"]
    with pytest.raises(openai.APIConnectionError):
        await _events(await openai_client.responses.retrieve(created.id, stream=True))
    assert sim.requests[-1].fault == "reattach_drop" and sim.requests[-1].tokens_sent == 0
    with pytest.raises(openai.InternalServerError):
        await _create(openai_client)

    for fault in (Fault.drop_stream(7), Fault.reattach_drop(2), Fault.expire(times=2)):
        assert Fault.from_dict(fault.to_dict()) == fault  # the admin API's JSON form
    sim.script(Fault.drop_stream(after_events=2))
    await openai_client.chat.completions.create(model=MODEL, messages=CHAT_MESSAGES)  # type: ignore[arg-type]
    with pytest.raises(openai.APIConnectionError):
        await _create(openai_client)  # a plain create is dropped before its reply
    assert sim.requests[-1].fault == "drop_stream" and sim.requests[-1].status == 0


async def _resume_to_the_end(openai_client: openai.AsyncOpenAI) -> tuple[str, str]:
    """What a resilient client does: create in the background, re-attach until it ends."""
    stream = None
    while stream is None:  # chaos may refuse the create
        with contextlib.suppress(openai.APIStatusError):
            stream = await _create(openai_client, stream=True, background=True)
    events: list[ResponseStreamEvent] = []
    while True:
        try:
            async for event in stream:
                events.append(event)
        except (openai.APIConnectionError, ValueError):
            pass  # dropped or malformed: re-attach
        if events and events[-1].type == "response.completed":
            break
        assert events, "chaos dropped the stream before it named the response"
        stream = await openai_client.responses.retrieve(
            events[0].response.id,  # type: ignore[union-attr]
            stream=True,
            starting_after=events[-1].sequence_number,
        )
    numbers = [e.sequence_number for e in events]
    assert numbers == list(range(len(numbers)))  # no gaps, no duplicates
    return events[0].response.id, _text(events)  # type: ignore[union-attr]


@pytest.mark.asyncio
async def test_chaos_drops_streams_but_not_background_generation(
    sim: Simulator, openai_client: openai.AsyncOpenAI
) -> None:
    sim.fault_rate, sim.chaos_seed = 0.5, 7
    for _ in range(8):
        response_id, text = await _resume_to_the_end(openai_client)
        assert text == FULL_TEXT and sim.responses[response_id].generated_tokens == 16
    faults = {r.fault for r in sim.requests if r.fault}
    kinds = {r.kind for r in sim.requests if r.fault}
    assert {"reattach_drop", "disconnect", "status"} <= faults
    assert {"create", "retrieve_stream"} <= kinds
    assert sim.generated_tokens == 16 * 8


# --- billing ------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_billing_counts_each_generated_token_once_across_apis(
    sim: Simulator, openai_client: openai.AsyncOpenAI
) -> None:
    sim.tokens_per_second = 200
    sim.script(Fault.disconnect(after_tokens=4))  # chat stops generating with its stream
    with pytest.raises(openai.APIConnectionError):
        chat = await openai_client.chat.completions.create(
            model=MODEL, messages=CHAT_MESSAGES, stream=True
        )  # type: ignore[arg-type]
        await _events(chat)
    assert sim.generated_tokens == 4

    response_id, _ = await _read_until(
        await _create(openai_client, stream=True, background=True), 2
    )
    await sim.wait_until(lambda: sim.generated_tokens == 4 + 16)  # generated unread
    for _ in range(2):
        await _events(
            await openai_client.responses.retrieve(response_id, stream=True, starting_after=3)
        )
    b = sim.responses[response_id]
    assert (b.request_index, b.background, b.status, b.reattaches) == (1, True, "completed", 2)
    assert (b.input_tokens, b.generated_tokens) == (8, 16)
    assert sim.generated_tokens == 20  # re-reading is not re-generating
    assert [r.tokens_sent for r in sim.requests] == [4, 2, 16, 16]
