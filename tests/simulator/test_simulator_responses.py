"""OpenAI's Responses API on the simulator, driven by the real openai SDK over real HTTP.

Plain and streamed creates, background mode surviving a dropped stream,
re-attaching with ``retrieve(id, stream=True, starting_after=N)``, cancel,
expiry, scripted and chaotic faults, and what a provider would bill.
"""

from __future__ import annotations

import asyncio
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
# created, in_progress, item added, part added | deltas | text done, part done, item done, end
OPENING, CLOSING = 4, 4


async def _events(stream: Any) -> list[ResponseStreamEvent]:
    return [event async for event in stream]


def _text(events: list[ResponseStreamEvent]) -> str:
    return "".join(e.delta for e in events if e.type == "response.output_text.delta")


async def _create(client: openai.AsyncOpenAI, **kwargs: Any) -> Any:
    return await client.responses.create(
        model=MODEL, instructions=INSTRUCTIONS, input=INPUT, **kwargs
    )


async def _read_until(stream: Any, n_deltas: int) -> tuple[str, list[ResponseStreamEvent]]:
    """Read ``n_deltas`` text deltas, then close the stream (the client walks away)."""
    seen: list[ResponseStreamEvent] = []
    response_id = ""
    async for event in stream:
        seen.append(event)
        if event.type == "response.created":
            response_id = event.response.id
        if len([e for e in seen if e.type == "response.output_text.delta"]) == n_deltas:
            break
    await stream.close()
    return response_id, seen


# --- plain and streamed ---------------------------------------------------------


@pytest.mark.asyncio
async def test_plain_create_matches_chat(sim: Simulator, client: openai.AsyncOpenAI) -> None:
    raw = await client.responses.with_raw_response.create(
        model=MODEL, instructions=INSTRUCTIONS, input=INPUT
    )
    response = raw.parse()
    assert raw.headers["x-request-id"] == "req_sim_0"
    assert response.status == "completed" and response.object == "response"
    assert response.output_text == FULL_TEXT
    assert response.output[0].type == "message" and response.output[0].status == "completed"
    assert response.usage is not None
    assert (response.usage.input_tokens, response.usage.output_tokens) == (8, 16)
    assert response.usage.total_tokens == 24
    assert response.background is False and response.incomplete_details is None

    # The chat endpoint answers the same prompt with the same text.
    chat = await client.chat.completions.create(model=MODEL, messages=CHAT_MESSAGES)  # type: ignore[arg-type]
    assert chat.choices[0].message.content == FULL_TEXT

    rec = sim.requests[0]
    assert (rec.api, rec.kind, rec.response_id) == ("responses", "create", response.id)
    assert rec.tokens_sent == 16 and rec.finished and rec.prompt_tokens == 8
    billing = sim.responses[response.id]
    assert (billing.generated_tokens, billing.input_tokens) == (16, 8)
    assert billing.status == "completed" and not billing.background

    # Input as a list of messages (content parts too) is the same prompt.
    listed = await client.responses.create(
        model=MODEL,
        instructions=INSTRUCTIONS,
        input=[{"role": "user", "content": [{"type": "input_text", "text": INPUT}]}],
    )
    assert listed.output_text.startswith("[simulated]")
    assert (await client.responses.retrieve(response.id)).output_text == FULL_TEXT


@pytest.mark.asyncio
async def test_max_output_tokens_makes_it_incomplete(client: openai.AsyncOpenAI) -> None:
    response = await _create(client, max_output_tokens=5)
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"
    assert FULL_TEXT.startswith(response.output_text) and len(response.output_text.split()) == 5
    events = await _events(await _create(client, stream=True, max_output_tokens=5))
    assert events[-1].type == "response.incomplete"
    assert _text(events) == response.output_text


@pytest.mark.asyncio
async def test_stream_events_and_sequence_numbers(
    sim: Simulator, client: openai.AsyncOpenAI
) -> None:
    events = await _events(await _create(client, stream=True))
    assert [e.sequence_number for e in events] == list(range(len(events)))
    types = [e.type for e in events]
    assert types[:OPENING] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert types[OPENING:-CLOSING] == ["response.output_text.delta"] * 16
    assert types[-CLOSING:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    delta = events[OPENING]
    assert delta.type == "response.output_text.delta"
    assert (delta.output_index, delta.content_index, delta.logprobs) == (0, 0, [])
    assert delta.item_id == events[2].item.id  # type: ignore[union-attr]
    assert _text(events) == FULL_TEXT
    done = events[-1]
    assert done.type == "response.completed"
    assert done.response.output_text == FULL_TEXT
    assert done.response.usage is not None and done.response.usage.output_tokens == 16
    assert sim.requests[0].stream and sim.requests[0].tokens_sent == 16


@pytest.mark.asyncio
async def test_bad_requests(sim: Simulator, client: openai.AsyncOpenAI) -> None:
    sim.script(Fault.status(500))
    with pytest.raises(openai.BadRequestError, match="store"):
        await _create(client, background=True, store=False)
    with pytest.raises(openai.BadRequestError, match="input"):
        await client.responses.create(model=MODEL)  # type: ignore[call-overload]
    assert len(sim.pending_faults) == 1  # 400s consume no fault
    with pytest.raises(openai.NotFoundError):
        await client.responses.retrieve("resp_unknown")
    with pytest.raises(openai.InternalServerError):
        await _create(client)  # takes the 500
    assert sim.requests[-1].status == 500 and sim.responses == {}


# --- background, re-attach, cancel ------------------------------------------------


@pytest.mark.asyncio
async def test_background_survives_disconnect_and_reattach_yields_the_rest(
    sim: Simulator, client: openai.AsyncOpenAI
) -> None:
    sim.tokens_per_second = 200
    response_id, seen = await _read_until(await _create(client, stream=True, background=True), 3)
    assert seen[0].type == "response.created"
    assert seen[0].response.status == "queued" and seen[0].response.background is True
    last = seen[-1].sequence_number

    # Nobody is connected, yet the response is generated to its end.
    await sim.wait_until(lambda: sim.responses[response_id].status == "completed")
    assert sim.responses[response_id].generated_tokens == 16
    assert sim.requests[0].tokens_sent == 3

    rest = await _events(
        await client.responses.retrieve(response_id, stream=True, starting_after=last)
    )
    assert [e.sequence_number for e in rest] == list(range(last + 1, last + 1 + len(rest)))
    assert _text(seen) + _text(rest) == FULL_TEXT
    assert rest[-1].type == "response.completed"
    rec = sim.requests[-1]
    assert (rec.kind, rec.response_id, rec.tokens_sent) == ("retrieve_stream", response_id, 13)
    assert sim.responses[response_id].reattaches == 1

    # A re-attach from the start replays everything, and GET gives the Response.
    replay = await _events(await client.responses.retrieve(response_id, stream=True))
    assert [e.sequence_number for e in replay] == list(range(len(replay)))
    assert _text(replay) == FULL_TEXT
    final = await client.responses.retrieve(response_id)
    assert final.status == "completed" and final.output_text == FULL_TEXT
    assert sim.requests[-1].kind == "retrieve"


@pytest.mark.asyncio
async def test_reattach_while_generating_tails_live_events(
    sim: Simulator, client: openai.AsyncOpenAI
) -> None:
    sim.tokens_per_second = 100
    created = await _create(client, background=True)
    assert created.status == "queued"
    stream = await client.responses.retrieve(created.id, stream=True, starting_after=1)
    events = await _events(stream)
    assert events[0].sequence_number == 2
    assert _text(events) == FULL_TEXT and events[-1].type == "response.completed"
    assert sim.requests[-1].token_sent_at[-1] - sim.requests[-1].token_sent_at[0] > 0.1


@pytest.mark.asyncio
async def test_cancel_stops_generation_and_ends_tailing_streams(
    sim: Simulator, client: openai.AsyncOpenAI
) -> None:
    sim.tokens_per_second = 50
    created = await _create(client, background=True)
    stream = await client.responses.retrieve(created.id, stream=True)
    seen: list[ResponseStreamEvent] = []
    async for event in stream:
        seen.append(event)
        if event.type == "response.output_text.delta":
            cancelled = await client.responses.cancel(created.id)
            assert cancelled.status == "cancelled"
            break_after = event.sequence_number
            break
    rest = await _events(stream)
    assert rest[-1].type == "response.failed"  # the SDK models no response.cancelled
    assert rest[-1].response.status == "cancelled"
    assert all(e.sequence_number > break_after for e in rest)
    billing = sim.responses[created.id]
    assert billing.status == "cancelled" and billing.generated_tokens < 16
    generated = billing.generated_tokens
    await asyncio.sleep(0.1)  # five tokens' time at 50 tokens/s
    assert sim.responses[created.id].generated_tokens == generated  # it really stopped
    assert [r.kind for r in sim.requests] == ["create", "retrieve_stream", "cancel"]

    # Cancelling again returns it; a finished or foreground response cannot be cancelled.
    assert (await client.responses.cancel(created.id)).status == "cancelled"
    done = await _create(client, background=True)
    await sim.wait_until(lambda: sim.responses[done.id].status == "completed")
    with pytest.raises(openai.BadRequestError, match="completed"):
        await client.responses.cancel(done.id)
    foreground = await _create(client)
    with pytest.raises(openai.BadRequestError, match="synchronous"):
        await client.responses.cancel(foreground.id)
    with pytest.raises(openai.NotFoundError):
        await client.responses.cancel("resp_unknown")


@pytest.mark.asyncio
async def test_only_background_responses_can_be_reattached(
    sim: Simulator, client: openai.AsyncOpenAI
) -> None:
    foreground = await _create(client)
    with pytest.raises(openai.BadRequestError, match="background"):
        await _events(await client.responses.retrieve(foreground.id, stream=True))
    unstored = await _create(client, store=False)
    with pytest.raises(openai.NotFoundError):
        await client.responses.retrieve(unstored.id)
    assert sim.responses[unstored.id].generated_tokens == 16  # billed all the same
