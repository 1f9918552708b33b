"""Resuming a chat answer: vLLM's ``continue_final_message``, DeepSeek's ``prefix``.

A client whose stream dropped sends what it received as a final assistant
message; the simulator continues the same deterministic answer from there,
sending (and billing) only the rest. Real openai SDK, real HTTP.
"""

from __future__ import annotations

from typing import Any

import openai
import pytest

from ai_orchestrator.simulator import Fault, Simulator

MODEL = "gpt-4o-mini"
MESSAGES: list[dict[str, Any]] = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Say something nice about rivers"},
]
VLLM = {"continue_final_message": True, "add_generation_prompt": False}


async def _full(openai_client: openai.AsyncOpenAI) -> str:
    answer = await openai_client.chat.completions.create(model=MODEL, messages=MESSAGES)  # type: ignore[arg-type]
    content = answer.choices[0].message.content
    assert content is not None
    return content


async def _stream(
    openai_client: openai.AsyncOpenAI, messages: list[dict[str, Any]], **extra: Any
) -> tuple[str, str | None]:
    stream = await openai_client.chat.completions.create(
        model=MODEL,
        messages=messages,  # type: ignore[arg-type]
        stream=True,
        extra_body=extra or None,
    )
    parts: list[str] = []
    finish = None
    async for chunk in stream:
        if chunk.choices:
            parts.append(chunk.choices[0].delta.content or "")
            finish = chunk.choices[0].finish_reason or finish
    return "".join(parts), finish


@pytest.mark.asyncio
async def test_vllm_continue_after_a_dropped_stream(
    sim: Simulator, openai_client: openai.AsyncOpenAI
) -> None:
    full = await _full(openai_client)
    sim.script(Fault.disconnect(after_tokens=5))
    received: list[str] = []
    with pytest.raises(openai.APIConnectionError):
        stream = await openai_client.chat.completions.create(
            model=MODEL,
            messages=MESSAGES,  # type: ignore[arg-type]
            stream=True,
        )
        async for chunk in stream:
            if chunk.choices:
                received.append(chunk.choices[0].delta.content or "")
    partial = "".join(received)
    assert full.startswith(partial) and len(sim.requests[-1].token_sent_at) == 5

    given = [*MESSAGES, {"role": "assistant", "content": partial}]
    rest, finish = await _stream(openai_client, given, **VLLM)
    assert partial + rest == full and finish == "stop"
    rec = sim.requests[-1]
    assert rec.continuation and rec.prefix_tokens == 5 and rec.tokens_sent == 11
    assert not sim.requests[0].continuation
    # Billing: the full answer, the 5 tokens before the drop, and the 11 after.
    assert sim.generated_tokens == 16 + 5 + 11


@pytest.mark.asyncio
async def test_deepseek_prefix_non_streamed(
    sim: Simulator, openai_client: openai.AsyncOpenAI
) -> None:
    full = await _full(openai_client)
    words = full.split(" ")
    partial = " ".join(words[:3])
    given = [*MESSAGES, {"role": "assistant", "content": partial, "prefix": True}]
    answer = await openai_client.chat.completions.create(model=MODEL, messages=given)  # type: ignore[arg-type]
    assert partial + (answer.choices[0].message.content or "") == full
    assert answer.usage is not None and answer.usage.completion_tokens == 13
    assert sim.requests[-1].continuation and sim.requests[-1].prefix_tokens == 3


@pytest.mark.asyncio
async def test_continue_mid_token_and_max_tokens(
    sim: Simulator, openai_client: openai.AsyncOpenAI
) -> None:
    full = await _full(openai_client)
    partial = full[: len("[simulated]") + 3]  # ends inside the second token
    given = [*MESSAGES, {"role": "assistant", "content": partial}]
    rest, finish = await _stream(openai_client, given, **VLLM)
    assert partial + rest == full and finish == "stop"
    assert sim.requests[-1].prefix_tokens == 1 and sim.requests[-1].tokens_sent == 15

    capped = await openai_client.chat.completions.create(
        model=MODEL,
        messages=given,  # type: ignore[arg-type]
        max_tokens=4,
        extra_body=VLLM,
    )
    assert capped.choices[0].finish_reason == "length"
    assert full.startswith(partial + (capped.choices[0].message.content or ""))
    assert capped.usage is not None and capped.usage.completion_tokens == 4

    # The whole answer given back: nothing left to say.
    done, finish = await _stream(
        openai_client, [*MESSAGES, {"role": "assistant", "content": full}], **VLLM
    )
    assert done == "" and finish == "stop" and sim.requests[-1].tokens_sent == 0


@pytest.mark.asyncio
async def test_not_a_prefix_gets_fresh_text(
    sim: Simulator, openai_client: openai.AsyncOpenAI
) -> None:
    full = await _full(openai_client)
    given = [*MESSAGES, {"role": "assistant", "content": "Rivers are"}]
    rest, finish = await _stream(openai_client, given, **VLLM)
    assert rest.startswith("[simulated]") and rest != full and finish == "stop"
    assert sim.requests[-1].continuation and sim.requests[-1].prefix_tokens == 0
    assert sim.requests[-1].tokens_sent == 16


@pytest.mark.asyncio
async def test_ordinary_and_invalid_requests(
    sim: Simulator, openai_client: openai.AsyncOpenAI
) -> None:
    full = await _full(openai_client)
    # A final assistant message without either flag is an ordinary request.
    given = [*MESSAGES, {"role": "assistant", "content": full[:20]}]
    text, _ = await _stream(openai_client, given)
    assert not sim.requests[-1].continuation and not full.startswith(full[:20] + text)

    with pytest.raises(openai.BadRequestError, match="add_generation_prompt"):
        await _stream(openai_client, given, continue_final_message=True, add_generation_prompt=True)
    with pytest.raises(openai.BadRequestError, match="assistant"):
        await _stream(openai_client, MESSAGES, **VLLM)
