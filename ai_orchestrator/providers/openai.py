"""OpenAI's Chat Completions API (or any server that speaks it: Ollama, vLLM, gateways),
or OpenAI's Responses API in background mode.

The chat stream is :class:`ai_orchestrator.providers.openai_chat.ChatStream`, shared with the
in-process adapter so both layers build the same request and judge the same
streams complete; the Responses stream is
:class:`~ai_orchestrator.providers.openai_responses.ResponsesStream`. The
worker's ``AI_ORCHESTRATOR_OPENAI_API`` (``chat`` by default) picks one, a
task's ``constraints.openai_api`` overrides it, and a continuation token picks
the API that issued it.
"""

from __future__ import annotations

from openai import AsyncOpenAI

from ..config import OPENAI_APIS, openai_api
from ..core import Platform, Task
from ..messages import Usage
from ._base import ProviderStream
from .openai_chat import ChatStream, request_params
from .openai_responses import (
    Continuation,
    ResponsesStream,
    cancel_response,
    is_token,
    response_usage,
)
from .openai_responses import request_params as responses_params


class OpenAIProvider:
    """Args:
    client: an ``AsyncOpenAI`` with ``max_retries=0`` (checked).
    api: ``"chat"`` or ``"responses"`` for tasks that do not choose; by default
        the worker's ``AI_ORCHESTRATOR_OPENAI_API`` (read now, so a bad value
        fails the worker at start with a :class:`ConfigError`).
    """

    platform = Platform.CHATGPT

    def __init__(self, client: AsyncOpenAI, *, api: str | None = None) -> None:
        if client.max_retries != 0:
            raise ValueError(
                "the openai client must have max_retries=0: Temporal is the only retry layer"
            )
        if api is not None and api not in OPENAI_APIS:
            raise ValueError(f"api must be one of {', '.join(OPENAI_APIS)}, got {api!r}")
        self._client = client
        self.api = api or openai_api()

    def api_for(self, task: Task) -> str:
        """The API that answers ``task``: its own choice, else the worker's."""
        return task.effective_constraints.openai_api or self.api

    def stream(
        self,
        task: Task,
        model: str,
        *,
        continue_from: str | None = None,
        prefix: str | None = None,
    ) -> ProviderStream:
        """A new answer, or (``continue_from``) the rest of an earlier attempt's.

        Args:
            continue_from: a token from an earlier stream's ``continuation()``; its
                API answers, whatever the setting is now. ``open()`` raises
                ``ContinuationLost`` when the answer cannot be continued.
            prefix: the text the earlier attempt streamed, for a chat
                continuation (``chat:<chars>`` tokens; ``constraints.chat_resume``).
        """
        if continue_from is not None and is_token(continue_from):
            return ResponsesStream(
                self._client, responses_params(task, model), continue_from=continue_from
            )
        resume_mode = task.effective_constraints.chat_resume
        if continue_from is not None:
            return ChatStream(
                self._client,
                request_params(task, model),
                resume_mode=resume_mode,
                continue_from=continue_from,
                prefix=prefix,
            )
        if self.api_for(task) == "responses":
            return ResponsesStream(self._client, responses_params(task, model))
        return ChatStream(self._client, request_params(task, model), resume_mode=resume_mode)

    async def aclose(self) -> None:
        await self._client.close()

    async def cancel_continuation(self, token: str) -> None:
        """Cancel the response an earlier attempt left generating (the task was
        cancelled while no attempt was attached to it); best effort."""
        if is_token(token):
            await self.stop_answer(Continuation.parse(token).response_id)

    async def stop_answer(self, response_id: str) -> Usage | None:
        """Cancel a background response; the provider's usage for it once stopped
        (or finished), None if it could not say."""
        return response_usage(await cancel_response(self._client, response_id))
