"""One streamed chat completion, shared by the in-process adapter and the activity.

Both layers must turn a :class:`Task` into the same request and must judge the
same streams complete, so that logic lives here once. A stream counts as
complete only when the provider sent a finish reason: the openai SDK ends a cut
stream quietly, and we must not take half an answer for a whole one.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from openai import AsyncOpenAI

from .core import Platform, Task
from .messages import Usage
from .providers._base import ProviderStream

DEFAULT_MODEL = "gpt-4o-mini"


def _render(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)


def build_messages(task: Task) -> list[dict[str, str]]:
    """The task's context (and file list) as a system message, then the prompt."""
    messages: list[dict[str, str]] = []
    parts: list[str] = []
    if task.context:
        parts.append(
            "Context:\n" + "\n".join(f"{k}: {_render(v)}" for k, v in task.context.items())
        )
    if task.files:
        parts.append("Files:\n" + "\n".join(f"- {path}" for path in task.files))
    if parts:
        messages.append({"role": "system", "content": "\n\n".join(parts)})
    messages.append({"role": "user", "content": task.prompt})
    return messages


def resolve_model(task: Task, default_model: str = DEFAULT_MODEL) -> str:
    constraints = task.constraints
    return constraints.model if constraints and constraints.model else default_model


def request_params(task: Task, default_model: str = DEFAULT_MODEL) -> dict[str, Any]:
    """Keyword arguments for ``chat.completions.create``; unset constraints are omitted."""
    params: dict[str, Any] = {
        "model": resolve_model(task, default_model),
        "messages": build_messages(task),
    }
    constraints = task.constraints
    if constraints and constraints.max_tokens is not None:
        params["max_tokens"] = constraints.max_tokens
    if constraints and constraints.temperature is not None:
        params["temperature"] = constraints.temperature
    return params


class ChatStream(ProviderStream):
    """A streamed chat completion from OpenAI or any OpenAI-compatible server.

    The openai SDK ends a cut stream quietly; only a finish reason makes the
    answer complete (checked by :class:`ProviderStream`).
    """

    platform = Platform.CHATGPT

    def __init__(self, client: AsyncOpenAI, params: dict[str, Any]) -> None:
        super().__init__(params["model"])
        self._client = client
        self._params = params

    async def open(self) -> None:
        self._stream = await self._client.chat.completions.create(
            **self._params, stream=True, stream_options={"include_usage": True}
        )

    async def deltas(self) -> AsyncIterator[str]:
        if self._stream is None:
            raise RuntimeError("ChatStream must be opened with 'async with' before iterating")
        async for chunk in self._stream:
            if chunk.usage is not None:
                self.usage = Usage(
                    prompt_tokens=chunk.usage.prompt_tokens,
                    completion_tokens=chunk.usage.completion_tokens,
                    total_tokens=chunk.usage.total_tokens,
                )
            if chunk.model:
                self.model = chunk.model
            for choice in chunk.choices:
                if choice.index != 0:
                    continue
                text = choice.delta.content if choice.delta else None
                if text:
                    yield text
                if choice.finish_reason:
                    self.finish_reason = self.vendor_finish_reason = choice.finish_reason
