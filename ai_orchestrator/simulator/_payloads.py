"""JSON shapes of chat completions, exactly as the openai SDK parses them."""

from __future__ import annotations

import json
from typing import Any

DONE_EVENT = b"data: [DONE]\n\n"
# Cut off mid-string: a JSON parser must reject it.
MALFORMED_JSON = b'{"this is not json'
MALFORMED_EVENT = b"data: " + MALFORMED_JSON + b"\n\n"


def completion_id(index: int) -> str:
    return f"chatcmpl-sim-{index}"


def sse_event(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def chunk(
    index: int,
    created: int,
    model: str,
    delta: dict[str, Any],
    finish_reason: str | None = None,
) -> dict[str, Any]:
    return {
        "id": completion_id(index),
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "delta": delta,
                "finish_reason": finish_reason,
                "logprobs": None,
            }
        ],
    }


def usage_chunk(index: int, created: int, model: str, usage_: dict[str, int]) -> dict[str, Any]:
    return {
        "id": completion_id(index),
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [],
        "usage": usage_,
    }


def completion(
    index: int,
    created: int,
    model: str,
    text: str,
    finish_reason: str | None,
    usage_: dict[str, int],
) -> dict[str, Any]:
    return {
        "id": completion_id(index),
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "finish_reason": finish_reason,
                "logprobs": None,
            }
        ],
        "usage": usage_,
    }
