"""OpenAI's Chat Completions API, or any server that speaks it (Ollama, vLLM, gateways).

The stream itself is :class:`ai_orchestrator.chat.ChatStream`, shared with the
in-process adapter so both layers build the same request and judge the same
streams complete.
"""

from __future__ import annotations

from openai import AsyncOpenAI

from ..chat import ChatStream, request_params
from ..core import Platform, Task


class OpenAIProvider:
    """Args:
    client: an ``AsyncOpenAI`` with ``max_retries=0`` (checked).
    """

    platform = Platform.CHATGPT

    def __init__(self, client: AsyncOpenAI) -> None:
        if client.max_retries != 0:
            raise ValueError(
                "the openai client must have max_retries=0: Temporal is the only retry layer"
            )
        self._client = client

    def stream(self, task: Task, model: str) -> ChatStream:
        return ChatStream(self._client, request_params(task, model))

    async def aclose(self) -> None:
        await self._client.close()
