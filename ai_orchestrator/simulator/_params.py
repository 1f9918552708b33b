"""Validation of chat-completion request bodies.

Only what the simulator uses is checked, but with OpenAI's error shape, so
client bugs (no model, no messages) surface as a real 400 rather than as a
simulated answer that hides them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class InvalidRequest(Exception):
    """Becomes a 400 ``invalid_request_error`` naming the offending param."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


@dataclass(frozen=True)
class ChatParams:
    model: str
    messages: list[dict[str, Any]]
    stream: bool
    include_usage: bool
    max_tokens: int | None
    temperature: float | None


def _optional_int(body: dict[str, Any], key: str) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidRequest(f"Invalid '{key}': expected an integer >= 1.", key)
    return value


def parse_chat_params(body: Any) -> ChatParams:
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("you must provide a model parameter", "model")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest(
            "Invalid 'messages': expected a non-empty array of messages.", "messages"
        )
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise InvalidRequest(f"Invalid 'messages[{i}]': expected an object.", f"messages[{i}]")
    stream = body.get("stream") or False
    if not isinstance(stream, bool):
        raise InvalidRequest("Invalid 'stream': expected a boolean.", "stream")
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        raise InvalidRequest("Invalid 'stream_options': expected an object.", "stream_options")
    include_usage = stream and options.get("include_usage") is True
    max_tokens = _optional_int(body, "max_completion_tokens")
    if max_tokens is None:
        max_tokens = _optional_int(body, "max_tokens")
    temperature = body.get("temperature")
    if temperature is not None:
        if isinstance(temperature, bool) or not isinstance(temperature, int | float):
            raise InvalidRequest("Invalid 'temperature': expected a number.", "temperature")
        temperature = float(temperature)
    return ChatParams(
        model=model,
        messages=messages,
        stream=stream,
        include_usage=include_usage,
        max_tokens=max_tokens,
        temperature=temperature,
    )
