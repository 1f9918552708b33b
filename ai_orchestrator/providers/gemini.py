"""Google's Gemini API, streamed through the ``google-genai`` SDK.

The client reads the SDK's own environment (``GEMINI_API_KEY`` or
``GOOGLE_API_KEY``, ``GOOGLE_GEMINI_BASE_URL``, ``GOOGLE_GENAI_API_VERSION``),
with the SDK's retries explicitly at one attempt: Temporal retries. A stream is
complete only once a candidate carries a finish reason; SAFETY, RECITATION and
the other blocking reasons are a clear failure, never a short answer.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from ..core import Platform, Task
from ..messages import Usage
from ._base import FINISH_FILTERED, FINISH_LENGTH, FINISH_STOP, ProviderStream, build_messages
from ._tls import genai_http_options

try:
    from google import genai
    from google.genai import types
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "Gemini models need the google-genai SDK: pip install 'temporal-ai-orchestrator[gemini]'"
    ) from exc

_FINISH = {
    "STOP": FINISH_STOP,
    "MAX_TOKENS": FINISH_LENGTH,
    "SAFETY": FINISH_FILTERED,
    "RECITATION": FINISH_FILTERED,
    "BLOCKLIST": FINISH_FILTERED,
    "PROHIBITED_CONTENT": FINISH_FILTERED,
    "SPII": FINISH_FILTERED,
    "LANGUAGE": FINISH_FILTERED,
    "MODEL_ARMOR": FINISH_FILTERED,
}


def request_config(task: Task) -> tuple[list[dict[str, Any]], types.GenerateContentConfig]:
    """Contents and config: context and files as the system instruction."""

    messages = build_messages(task)
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
    contents = [
        {"role": "user", "parts": [{"text": m["content"]}]} for m in messages if m["role"] == "user"
    ]
    constraints = task.effective_constraints
    config = types.GenerateContentConfig(
        system_instruction=system or None,
        max_output_tokens=constraints.max_tokens,
        temperature=constraints.temperature,
    )
    return contents, config


class GeminiStream(ProviderStream):
    platform = Platform.GEMINI

    def __init__(self, client: genai.Client, task: Task, model: str) -> None:
        super().__init__(model)
        self._client = client
        self._contents, self._config = request_config(task)

    async def open(self) -> None:
        self._stream = await self._client.aio.models.generate_content_stream(
            model=self.model, contents=self._contents, config=self._config
        )

    async def deltas(self) -> AsyncIterator[str]:
        if self._stream is None:
            raise RuntimeError("GeminiStream must be opened with 'async with'")
        async for chunk in self._stream:
            if chunk.model_version:
                self.model = chunk.model_version
            meta = chunk.usage_metadata
            if meta is not None and meta.prompt_token_count is not None:
                prompt = meta.prompt_token_count or 0
                output = (meta.candidates_token_count or 0) + (meta.thoughts_token_count or 0)
                self.usage = Usage(
                    prompt_tokens=prompt, completion_tokens=output, total_tokens=prompt + output
                )
            if not chunk.candidates:
                continue
            candidate = chunk.candidates[0]
            for part in (candidate.content.parts if candidate.content else None) or ():
                if part.text and not part.thought:
                    yield part.text
            if candidate.finish_reason:
                reason = getattr(candidate.finish_reason, "value", candidate.finish_reason)
                self.vendor_finish_reason = str(reason)
                self.finish_reason = _FINISH.get(self.vendor_finish_reason, FINISH_STOP)


class GeminiProvider:
    """Args:
    client: a ``genai.Client``; by default one built from the SDK's own
        environment with its retries at a single attempt.
    """

    platform = Platform.GEMINI

    def __init__(self, client: genai.Client | None = None, *, timeout: float = 60.0) -> None:
        self._client = client or genai.Client(
            http_options=genai_http_options(
                retry_options=types.HttpRetryOptions(attempts=1),
                timeout=int(timeout * 1000),
            )
        )

    @property
    def client(self) -> genai.Client:
        """The SDK client (the batch API uses the same one, and its key)."""
        return self._client

    def stream(self, task: Task, model: str) -> GeminiStream:
        return GeminiStream(self._client, task, model)

    def limit_scope(self) -> tuple[str, str | None]:
        """The address and key Google counts quotas by (the quota limiter's key).

        The SDK exposes neither publicly; without them every Gemini account in a
        process would share one limit.
        """
        api = getattr(self._client, "_api_client", None)
        options = getattr(api, "_http_options", None)
        key = getattr(api, "api_key", None)
        return str(getattr(options, "base_url", "") or ""), key if isinstance(key, str) else None

    async def aclose(self) -> None:
        await self._client.aio.aclose()
