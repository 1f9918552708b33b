"""JSON shapes of OpenAI's Responses API, as the openai SDK parses them.

Kept apart from the handlers so the wire format (``openai.types.responses``)
can be checked in one place: the ``Response`` object, its one assistant
message, and the streaming events, each with the ``sequence_number`` a
re-attach (``retrieve(id, stream=True, starting_after=N)``) resumes from.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from ._errors import (
    error_body,
    rate_limit_error,
    rate_limit_headers,
    status_error,
    stream_error_body,
    stream_error_status,
)
from ._faults import Fault
from ._params import InvalidRequest
from ._payloads import MALFORMED_JSON

#: What a ``malformed`` fault writes in place of a delta: its data is not JSON.
MALFORMED_EVENT = b"event: response.output_text.delta\ndata: " + MALFORMED_JSON + b"\n\n"
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


@dataclass(frozen=True)
class ResponsesParams:
    model: str
    messages: list[dict[str, Any]]
    instructions: Any
    stream: bool
    background: bool
    store: bool
    max_output_tokens: int | None
    temperature: float | None


def _flag(body: dict[str, Any], key: str, default: bool) -> bool:
    value = body.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise InvalidRequest(f"Invalid '{key}': expected a boolean.", key)
    return value


def parse_params(body: Any) -> ResponsesParams:
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("Missing required parameter: 'model'.", "model")
    if "input" not in body:
        raise InvalidRequest("Missing required parameter: 'input'.", "input")
    messages = chat_messages(body.get("instructions"), body["input"])
    background = _flag(body, "background", False)
    store = _flag(body, "store", True)
    if background and not store:
        raise InvalidRequest("Background mode requires 'store' to be true.", "store")
    max_output = body.get("max_output_tokens")
    if max_output is not None and (
        isinstance(max_output, bool) or not isinstance(max_output, int) or max_output < 1
    ):
        raise InvalidRequest(
            "Invalid 'max_output_tokens': expected an integer >= 1.", "max_output_tokens"
        )
    temperature = body.get("temperature")
    if temperature is not None:
        if isinstance(temperature, bool) or not isinstance(temperature, int | float):
            raise InvalidRequest("Invalid 'temperature': expected a number.", "temperature")
        temperature = float(temperature)
    return ResponsesParams(
        model=model,
        messages=messages,
        instructions=body.get("instructions"),
        stream=_flag(body, "stream", False),
        background=background,
        store=store,
        max_output_tokens=max_output,
        temperature=temperature,
    )


def not_found(response_id: str, headers: dict[str, str]) -> web.Response:
    body = error_body(f"Response with id '{response_id}' not found.", "invalid_request_error")
    return web.json_response(body, status=404, headers=headers)


def bad_request(message: str, headers: dict[str, str], param: str | None = None) -> web.Response:
    body = error_body(message, "invalid_request_error", None, param)
    return web.json_response(body, status=400, headers=headers)


def error_event(fault: Fault, sequence_number: int) -> dict[str, Any]:
    """A ``stream_error`` fault as the ``error`` event OpenAI sends inside a 200 stream.

    Not stored with the response: it is this connection's failure, and its
    ``sequence_number`` is the one the next stored event would have had.
    """
    assert fault.error_type is not None
    inner = stream_error_body(fault.error_type, fault.code, fault.message)["error"]
    return {
        "type": "error",
        "code": inner["code"] or inner["type"],
        "message": inner["message"],
        "param": None,
        "sequence_number": sequence_number,
    }


def refusal(
    fault: Fault | None,
    by_limiter: bool,
    model: str,
    rpm_limit: int | None,
    authorization: str | None,
    stream: bool,
) -> tuple[int, dict[str, Any], dict[str, str]] | None:
    """Status, body and headers of a fault refused before any response exists."""
    if fault is None:
        return None
    if fault.name == "rate_limit":
        limit = rpm_limit if by_limiter and rpm_limit is not None else 3
        return (
            429,
            rate_limit_error(fault.quota_exhausted, model, limit),
            rate_limit_headers(fault.retry_after, fault.retry_after_ms),
        )
    if fault.name == "status":
        assert fault.status_code is not None
        body = status_error(fault.status_code, fault.message, authorization)
        return fault.status_code, body, {}
    if fault.name == "overloaded":
        return 503, status_error(503, fault.message, None), {}
    if fault.name == "stream_error" and not stream:
        # Without a stream the same failure arrives as an error status.
        assert fault.error_type is not None
        body = stream_error_body(fault.error_type, fault.code, fault.message)
        return stream_error_status(fault.error_type, fault.code), body, {}
    return None
