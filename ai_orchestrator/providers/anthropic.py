"""Anthropic's Messages API, streamed through the ``anthropic`` SDK.

The client is built from the SDK's own environment (``ANTHROPIC_API_KEY``,
``ANTHROPIC_BASE_URL``) with ``max_retries=0``: Temporal retries, each attempt
visible in history. Usage arrives in two parts (input tokens with
``message_start``, output tokens with ``message_delta``); a stream is complete
only once ``message_stop`` arrives.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from ..core import Platform, Task
from ..messages import Usage
from ._base import FINISH_FILTERED, FINISH_LENGTH, FINISH_STOP, ProviderStream, build_messages
from ._tls import anthropic_http_client

try:
    from anthropic import AsyncAnthropic
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "Claude models need the anthropic SDK: pip install 'temporal-ai-orchestrator[anthropic]'"
    ) from exc

#: The Messages API requires max_tokens; this is what a task without one gets.
DEFAULT_MAX_TOKENS = 4096

_STOP_REASONS = {
    "end_turn": FINISH_STOP,
    "stop_sequence": FINISH_STOP,
    "max_tokens": FINISH_LENGTH,
    "model_context_window_exceeded": FINISH_LENGTH,
    "refusal": FINISH_FILTERED,
    "tool_use": FINISH_STOP,
    "pause_turn": FINISH_STOP,
}


def request_params(task: Task, model: str) -> dict[str, Any]:
    """Keyword arguments for ``messages.create``: context and files as the system prompt."""

    messages = build_messages(task)
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
    constraints = task.effective_constraints
    params: dict[str, Any] = {
        "model": model,
        "max_tokens": constraints.max_tokens or DEFAULT_MAX_TOKENS,
        "messages": [m for m in messages if m["role"] != "system"],
    }
    if system:
        params["system"] = system
    if constraints.temperature is not None:
        # Anthropic's range is 0-1, and the SDK takes it only as a body field now.
        params["extra_body"] = {"temperature": min(constraints.temperature, 1.0)}
    return params


class AnthropicStream(ProviderStream):
    platform = Platform.CLAUDE

    def __init__(self, client: AsyncAnthropic, params: dict[str, Any]) -> None:
        super().__init__(params["model"])
        self._client = client
        self._params = params
        self._input_tokens = 0
        self.cache_tokens = 0

    async def open(self) -> None:
        self._stream = await self._client.messages.create(**self._params, stream=True)

    async def deltas(self) -> AsyncIterator[str]:
        if self._stream is None:
            raise RuntimeError("AnthropicStream must be opened with 'async with'")
        stop_reason: str | None = None
        async for event in self._stream:
            kind = event.type
            if kind == "message_start":
                message = event.message
                self.model = message.model or self.model
                usage = message.usage
                self._input_tokens = usage.input_tokens or 0
                self.cache_tokens = (usage.cache_creation_input_tokens or 0) + (
                    usage.cache_read_input_tokens or 0
                )
            elif kind == "content_block_delta":
                delta = event.delta
                if delta.type == "text_delta":
                    yield delta.text
            elif kind == "message_delta":
                stop_reason = event.delta.stop_reason or stop_reason
                output = event.usage.output_tokens or 0
                prompt = self._input_tokens + self.cache_tokens
                self.usage = Usage(
                    prompt_tokens=prompt, completion_tokens=output, total_tokens=prompt + output
                )
            elif kind == "message_stop":
                self.vendor_finish_reason = stop_reason or "end_turn"
                self.finish_reason = _STOP_REASONS.get(self.vendor_finish_reason, FINISH_STOP)


class AnthropicProvider:
    """Args:
    client: an ``AsyncAnthropic`` with ``max_retries=0``; by default one built
        from the SDK's own environment variables.
    """

    platform = Platform.CLAUDE

    def __init__(self, client: AsyncAnthropic | None = None, *, timeout: float = 60.0) -> None:
        self._client = client or AsyncAnthropic(
            max_retries=0, timeout=timeout, http_client=anthropic_http_client()
        )
        if self._client.max_retries != 0:
            raise ValueError("the anthropic client must have max_retries=0: Temporal retries")

    @property
    def client(self) -> AsyncAnthropic:
        """The SDK client (the batch API uses the same one, and its key)."""
        return self._client

    def stream(self, task: Task, model: str) -> AnthropicStream:
        return AnthropicStream(self._client, request_params(task, model))

    async def aclose(self) -> None:
        await self._client.close()
