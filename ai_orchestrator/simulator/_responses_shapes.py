"""JSON shapes of OpenAI's Responses API, as the openai SDK parses them.

Kept apart from the handlers so the wire format (``openai.types.responses``)
can be checked in one place: the ``Response`` object, its one assistant
message, and the streaming events, each with the ``sequence_number`` a
re-attach (``retrieve(id, stream=True, starting_after=N)``) resumes from.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ._params import InvalidRequest

#: Content-part types a Responses message may carry, and the chat type each
#: becomes; text parts are what the deterministic answer is seeded from.
_TEXT_PARTS = {"input_text": "text", "output_text": "text", "text": "text"}


def sse(event: Mapping[str, Any]) -> bytes:
    """One event as OpenAI sends it: ``event:`` names its type, ``data:`` is the JSON."""
    data = json.dumps(event, separators=(",", ":"))
    return f"event: {event['type']}\ndata: {data}\n\n".encode()


def _chat_content(content: Any, where: str) -> Any:
    """A Responses message's content in chat form, so both APIs seed the same answer."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise InvalidRequest(f"Invalid '{where}.content': expected a string or an array.", where)
    parts: list[Any] = []
    for part in content:
        if isinstance(part, Mapping) and part.get("type") in _TEXT_PARTS:
            parts.append({"type": "text", "text": part.get("text", "")})
        else:
            parts.append(part)
    return parts


def chat_messages(instructions: Any, input_: Any) -> list[dict[str, Any]]:
    """``instructions`` + ``input`` as the chat ``messages`` the same prompt would be.

    ``instructions`` is a system message; a string ``input`` one user
    message; a list is taken item by item (``type: "message"`` or bare
    ``{role, content}``). Other item types (tool outputs...) are kept as they
    are, so they still change the answer's seed.
    """
    messages: list[dict[str, Any]] = []
    if instructions is not None:
        if not isinstance(instructions, str):
            raise InvalidRequest("Invalid 'instructions': expected a string.", "instructions")
        messages.append({"role": "system", "content": instructions})
    if isinstance(input_, str):
        messages.append({"role": "user", "content": input_})
    elif isinstance(input_, list) and input_:
        for i, item in enumerate(input_):
            where = f"input[{i}]"
            if not isinstance(item, Mapping):
                raise InvalidRequest(f"Invalid '{where}': expected an object.", where)
            if "role" in item and item.get("type", "message") == "message":
                content = _chat_content(item.get("content", ""), where)
                messages.append({"role": item["role"], "content": content})
            else:
                messages.append(dict(item))
    else:
        raise InvalidRequest(
            "Invalid 'input': expected a string or a non-empty array of input items.", "input"
        )
    return messages


def usage(input_tokens: int, output_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": input_tokens + output_tokens,
    }


def text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def message_item(item_id: str, status: str, text: str | None) -> dict[str, Any]:
    """The assistant message; ``text=None`` is the item as first added (no content yet)."""
    return {
        "id": item_id,
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": [] if text is None else [text_part(text)],
    }


def response_object(
    *,
    response_id: str,
    created_at: int,
    model: str,
    status: str,
    background: bool,
    store: bool,
    instructions: Any,
    max_output_tokens: int | None,
    temperature: float | None,
    output: list[dict[str, Any]],
    usage_: dict[str, Any] | None,
    incomplete_reason: str | None = None,
    completed_at: int | None = None,
    error: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "background": background,
        "completed_at": completed_at,
        "error": error,
        "incomplete_details": (
            {"reason": incomplete_reason} if incomplete_reason is not None else None
        ),
        "instructions": instructions,
        "max_output_tokens": max_output_tokens,
        "max_tool_calls": None,
        "model": model,
        "output": output,
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None},
        "service_tier": "default",
        "store": store,
        "temperature": 1.0 if temperature is None else temperature,
        "text": {"format": {"type": "text"}, "verbosity": "medium"},
        "tool_choice": "auto",
        "tools": [],
        "top_logprobs": 0,
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": usage_,
        "user": None,
        "metadata": {},
    }
