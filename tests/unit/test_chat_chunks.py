"""Chat chunks are read as the JSON the server sent (no typed objects): a usage block
counts only when it counts both sides, so a broken one leaves the bill estimated
rather than reporting a free answer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from ai_orchestrator.messages import Usage
from ai_orchestrator.providers.openai_chat import ChatStream, _usage


@pytest.mark.parametrize(
    "block",
    [None, {}, {"prompt_tokens": None, "completion_tokens": 5}, {"completion_tokens": 5}, "x"],
)
def test_a_usage_block_without_both_counts_is_no_bill(block: object) -> None:
    assert _usage(block) is None


def test_a_missing_total_is_the_sum() -> None:
    assert _usage({"prompt_tokens": 3, "completion_tokens": 4}) == Usage(
        prompt_tokens=3, completion_tokens=4, total_tokens=7
    )


async def _chunks(*chunks: Any) -> AsyncIterator[Any]:
    for chunk in chunks:
        yield chunk


async def test_text_finish_model_and_usage_come_from_the_first_choice_only() -> None:
    stream = ChatStream(None, {"model": "asked"})  # type: ignore[arg-type]
    stream._stream = _chunks(
        {"model": "served", "choices": [{"index": 0, "delta": {"content": "Hel"}}]},
        {"choices": [{"index": 1, "delta": {"content": "other"}}, {"delta": {"content": "lo"}}]},
        {"choices": [{"index": 0, "delta": {"content": None}, "finish_reason": "stop"}]},
        ["not a chunk"],
        {"choices": [], "usage": {"prompt_tokens": 2, "completion_tokens": 2, "total_tokens": 4}},
    )
    assert [text async for text in stream.deltas()] == ["Hel", "lo"]
    assert (stream.model, stream.finish_reason) == ("served", "stop")
    assert stream.usage == Usage(prompt_tokens=2, completion_tokens=2, total_tokens=4)
