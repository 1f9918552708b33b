"""Anthropic Messages API shapes: request checks, responses, SSE events, errors.

Modelled on what the ``anthropic`` SDK sends and parses (and on what the
Claude Code CLI sends), so the real SDK drives the simulator unchanged: every
SSE event carries an ``event:`` name (the SDK skips unnamed ones), errors are
``{"type": "error", "error": {"type", "message"}}`` and the SDK picks its
exception class from the status plus ``error.details.error_code``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from ._errors import mask_api_key

#: Types the real API uses in ``error.type``.
ERROR_TYPES: frozenset[str] = frozenset(
    {
        "invalid_request_error",
        "authentication_error",
        "billing_error",
        "permission_error",
        "not_found_error",
        "request_too_large",
        "rate_limit_error",
        "timeout_error",
        "api_error",
        "overloaded_error",
    }
)

# status -> (error type, default message), as the real API words them.
_STATUS_ERRORS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "Simulated bad request."),
    401: ("authentication_error", "invalid x-api-key"),
    402: ("billing_error", "Simulated billing error."),
    403: (
        "permission_error",
        "Your API key does not have permission to use the specified resource.",
    ),
    404: ("not_found_error", "Not found"),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "Rate limit reached (simulated)."),
    500: ("api_error", "Internal server error"),
    503: ("api_error", "Service unavailable"),
    504: ("timeout_error", "Request timed out"),
    529: ("overloaded_error", "Overloaded"),
}

# error type (Anthropic's or OpenAI's, as Fault.stream_error takes) -> Anthropic's
_TYPE_ALIASES: dict[str, str] = {
    "server_error": "api_error",
    "requests": "rate_limit_error",
    "tokens": "rate_limit_error",
    "rate_limit_exceeded": "rate_limit_error",
    "insufficient_quota": "rate_limit_error",
    "service_unavailable": "overloaded_error",
    "context_length_exceeded": "invalid_request_error",
    "invalid_prompt": "invalid_request_error",
}

# Anthropic error type -> the status a non-streamed request gets for it.
_TYPE_STATUS: dict[str, int] = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}

SPEND_LIMIT_CODE = "enforced_spend_limit_reached"
SPEND_LIMIT_MESSAGE = (
    "You have reached your specified API usage limits (simulated): your credit balance "
    "or spend limit is exhausted. You will regain access at the start of the next "
    "billing period, or raise the limit in Plans & Billing."
)
REFUSAL_EXPLANATION = "Simulated refusal: the simulator's content filter ended this answer."

#: Headers whose presence marks a request as coming from an Anthropic client.
ANTHROPIC_MARKERS: tuple[str, ...] = ("anthropic-version", "x-api-key", "anthropic-beta")


class AnthropicInvalid(Exception):
    """Becomes a 400 ``invalid_request_error`` with the API's ``path: problem`` text."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def error_body(type_: str, message: str, request_id: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"type": "error", "error": {"type": type_, "message": message}}
    if request_id is not None:
        body["request_id"] = request_id
    return body


def status_error(status: int, message: str | None, api_key: str | None) -> dict[str, Any]:
    """Body for a scripted ``Fault.status``; never echoes the whole key."""
    type_, default = _STATUS_ERRORS.get(
        status, ("api_error" if status >= 500 else "invalid_request_error", "")
    )
    if message is None:
        message = default or f"Simulated HTTP {status} error."
        if status == 401 and api_key:
            message = f"invalid x-api-key ({mask_api_key(api_key)})"
    return error_body(type_, message)


def rate_limit_error(quota_exhausted: bool, model: str, limit: int) -> dict[str, Any]:
    if quota_exhausted:
        body = error_body("rate_limit_error", SPEND_LIMIT_MESSAGE)
        body["error"]["details"] = {"error_code": SPEND_LIMIT_CODE}
        return body
    message = (
        f"This request would exceed the rate limit for your organization (simulated) of "
        f"{limit} requests per minute for {model or 'the model'}. Please try again later."
    )
    return error_body("rate_limit_error", message)


def rate_limit_headers(limit: int, retry_after: float | None) -> dict[str, str]:
    """The ``anthropic-ratelimit-requests-*`` headers the real API sends with a 429."""
    reset = datetime.now(timezone.utc) + timedelta(seconds=retry_after or 0)
    return {
        "anthropic-ratelimit-requests-limit": str(limit),
        "anthropic-ratelimit-requests-remaining": "0",
        "anthropic-ratelimit-requests-reset": reset.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def stream_error_type(error_type: str) -> str:
    """``Fault.stream_error``'s type in Anthropic's vocabulary (OpenAI names map)."""
    if error_type in ERROR_TYPES:
        return error_type
    return _TYPE_ALIASES.get(error_type, error_type)


def stream_error_status(error_type: str) -> int:
    return _TYPE_STATUS.get(stream_error_type(error_type), 500)


def stream_error_body(error_type: str, message: str | None) -> dict[str, Any]:
    type_ = stream_error_type(error_type)
    if message is None:
        status = _TYPE_STATUS.get(type_, 500)
        message = _STATUS_ERRORS.get(status, ("", f"Simulated {type_}."))[1]
    return error_body(type_, message)


@dataclass(frozen=True)
class MessagesParams:
    model: str
    messages: list[dict[str, Any]]
    system: Any
    max_tokens: int
    stream: bool
    temperature: float | None
    tools: list[dict[str, Any]]


def _check_content(content: Any, where: str) -> None:
    if isinstance(content, str):
        return
    if not isinstance(content, list):
        raise AnthropicInvalid(f"{where}: Input should be a valid string or list of blocks")
    for i, block in enumerate(content):
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            raise AnthropicInvalid(f"{where}.{i}: Input should be an object with a 'type'")


def _check_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    messages = body.get("messages")
    if messages is None:
        raise AnthropicInvalid("messages: Field required")
    if not isinstance(messages, list):
        raise AnthropicInvalid("messages: Input should be a valid list")
    if not messages:
        raise AnthropicInvalid("messages: at least one message is required")
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise AnthropicInvalid(f"messages.{i}: Input should be a valid dictionary")
        # "system" mid-conversation is what Claude Code sends (a beta of the real API).
        if message.get("role") not in ("user", "assistant", "system"):
            raise AnthropicInvalid(
                f"messages.{i}.role: Input should be 'user', 'assistant' or 'system'"
            )
        if "content" not in message:
            raise AnthropicInvalid(f"messages.{i}.content: Field required")
        _check_content(message["content"], f"messages.{i}.content")
    return messages


def _check_system(body: dict[str, Any]) -> Any:
    system = body.get("system")
    if system is None or isinstance(system, str):
        return system
    if not isinstance(system, list):
        raise AnthropicInvalid("system: Input should be a valid string or list of text blocks")
    for i, block in enumerate(system):
        if not isinstance(block, dict) or block.get("type") != "text":
            raise AnthropicInvalid(f"system.{i}.type: Input should be 'text'")
        if not isinstance(block.get("text"), str):
            raise AnthropicInvalid(f"system.{i}.text: Input should be a valid string")
    return system


def _check_model(body: Any) -> str:
    if not isinstance(body, dict):
        raise AnthropicInvalid("The request body must be a JSON object.")
    model = body.get("model")
    if model is None:
        raise AnthropicInvalid("model: Field required")
    if not isinstance(model, str) or not model:
        raise AnthropicInvalid("model: Input should be a valid, non-empty string")
    return model


def parse_messages_params(body: Any) -> MessagesParams:
    """What the real API rejects with a 400; unknown optional fields are accepted.

    Claude Code and the SDK send many optional fields (``tools``,
    ``thinking``, ``metadata``, ``tool_choice``, ``cache_control`` on system
    blocks...); the simulator ignores what it does not use, as a newer API
    version would, and never fails a request because of them.
    """
    model = _check_model(body)
    max_tokens = body.get("max_tokens")
    if max_tokens is None:
        raise AnthropicInvalid("max_tokens: Field required")
    # 0 is valid: it only warms the prompt cache, and the answer is empty.
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 0:
        raise AnthropicInvalid("max_tokens: Input should be an integer greater than or equal to 0")
    messages = _check_messages(body)
    system = _check_system(body)
    stream = body.get("stream") or False
    if not isinstance(stream, bool):
        raise AnthropicInvalid("stream: Input should be a valid boolean")
    temperature = body.get("temperature")
    if temperature is not None:
        if isinstance(temperature, bool) or not isinstance(temperature, int | float):
            raise AnthropicInvalid("temperature: Input should be a valid number")
        if not 0 <= temperature <= 1:
            raise AnthropicInvalid("temperature: Input should be less than or equal to 1")
        temperature = float(temperature)
    tools = body.get("tools") or []
    if not isinstance(tools, list):
        raise AnthropicInvalid("tools: Input should be a valid list")
    return MessagesParams(
        model=model,
        messages=messages,
        system=system,
        max_tokens=max_tokens,
        stream=stream,
        temperature=temperature,
        tools=[t for t in tools if isinstance(t, dict)],
    )


def parse_count_tokens(body: Any) -> tuple[str, list[dict[str, Any]], Any]:
    """``count_tokens`` takes what ``create`` does, minus ``max_tokens``."""
    model = _check_model(body)
    return model, _check_messages(body), _check_system(body)


def seed_messages(system: Any, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What seeds the text and counts as prompt: the system prompt is part of it."""
    if system is None:
        return messages
    return [{"role": "system", "content": system}, *messages]


def message_id(index: int) -> str:
    return f"msg_sim_{index}"


def usage(input_tokens: int, output_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "service_tier": "standard",
    }


def stop_details(stop_reason: str | None) -> dict[str, Any] | None:
    if stop_reason != "refusal":
        return None
    return {"type": "refusal", "category": None, "explanation": REFUSAL_EXPLANATION}


def message(
    index: int,
    model: str,
    content: list[dict[str, Any]],
    stop_reason: str | None,
    usage_: dict[str, Any],
) -> dict[str, Any]:
    return {
        "id": message_id(index),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "stop_details": stop_details(stop_reason),
        "usage": usage_,
    }


def sse(event: str, payload: dict[str, Any]) -> bytes:
    data = json.dumps(payload, separators=(",", ":"))
    return f"event: {event}\ndata: {data}\n\n".encode()


def text_delta(token: str) -> bytes:
    return sse(
        "content_block_delta",
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": token}},
    )


#: A named event whose data is cut mid-string: the SDK's JSON parse must fail.
MALFORMED_EVENT = b'event: content_block_delta\ndata: {"this is not json\n\n'
MALFORMED_JSON = b'{"type": "message", "this is not json'


def message_delta(stop_reason: str | None, output_tokens: int) -> bytes:
    return sse(
        "message_delta",
        {
            "type": "message_delta",
            "delta": {
                "stop_reason": stop_reason,
                "stop_sequence": None,
                "stop_details": stop_details(stop_reason),
            },
            "usage": {"output_tokens": output_tokens},
        },
    )
