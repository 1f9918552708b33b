"""The OpenAI Chat Completions provider: one streamed completion, shared by the
in-process adapter and the activity.

Both layers must turn a :class:`Task` into the same request and must judge the
same streams complete, so that logic lives here once. A stream counts as
complete only when the provider sent a finish reason: the openai SDK ends a cut
stream quietly, and we must not take half an answer for a whole one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from openai import APIStatusError, AsyncOpenAI, AsyncStream

from ..config import DEFAULT_MODEL
from ..core import Platform, Task
from ..errors import ContinuationLost
from ..messages import Usage
from ._base import ProviderStream, build_messages, resolve_model


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


#: Chat continuation tokens: ``chat:<characters of the answer so far>``.
CHAT_TOKEN_PREFIX = "chat"
CHAT_RESUME_MODES = ("continue_final_message", "prefix")
#: Why a server can refuse a continuation request for good (it does not know the form).
_CONTINUATION_REFUSED = frozenset({400, 404, 422})


def chat_continuation_params(params: dict[str, Any], prefix: str, mode: str) -> dict[str, Any]:
    """``params`` with the answer so far appended as a partial assistant message,
    in the server's form, so the model goes on from the end of ``prefix``.

    * ``continue_final_message`` (vLLM, SGLang): a plain assistant message and
      ``extra_body={"continue_final_message": True, "add_generation_prompt": False}``;
    * ``prefix`` (DeepSeek's beta endpoint): an assistant message with ``"prefix": True``.

    Caveats: the model continues text it may not have written token for token
    (the seam is tokenised afresh, so a word split there can come out
    differently); the server streams only the new text; ``max_tokens`` applies
    to the continuation alone; only servers that support the form may be asked.
    """
    message: dict[str, Any] = {"role": "assistant", "content": prefix}
    continued = {**params, "messages": [*params["messages"], message]}
    if mode == "continue_final_message":
        continued["extra_body"] = {
            **(params.get("extra_body") or {}),
            "continue_final_message": True,
            "add_generation_prompt": False,
        }
    elif mode == "prefix":
        message["prefix"] = True
    else:
        raise ValueError(f"chat_resume must be one of {', '.join(CHAT_RESUME_MODES)}, got {mode!r}")
    return continued


def parse_chat_token(token: str) -> int:
    """The character count in a ``chat:<chars>`` token.

    Raises:
        ContinuationLost: not such a token.
    """
    kind, _, count = token.partition(":")
    if kind == CHAT_TOKEN_PREFIX and count.isdigit():
        return int(count)
    raise ContinuationLost(f"not a chat continuation token: {token[:80]!r}")


def _usage(block: object) -> Usage | None:
    """The usage a chunk reports; None (the bill is then estimated) unless it counts
    both prompt and completion tokens: a block of zeros or nulls is no bill."""
    if not isinstance(block, dict):
        return None
    prompt, completion = block.get("prompt_tokens"), block.get("completion_tokens")
    if not isinstance(prompt, int) or not isinstance(completion, int):
        return None
    total = block.get("total_tokens")
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=total if isinstance(total, int) else prompt + completion,
    )


async def open_chat_stream(client: AsyncOpenAI, params: dict[str, Any]) -> AsyncStream[object]:
    """``chat.completions.create(**params, stream=True)`` with usage, its chunks as the
    JSON the server sent.

    The request, its SSE decoding, status and in-stream errors are the SDK's own
    (``client.post``, the call ``create`` makes); only the typed chunk objects are
    skipped. Building them cost about 250 us of worker CPU a chunk, more than twice
    what reading and parsing the chunk costs (2,000 chunks: 0.67-0.84 s typed
    against 0.25 s), and we read four fields of each. Instrumentation that wraps
    ``chat.completions.create`` (OpenTelemetry's, Langfuse's) does not see these
    calls; the activity's own metrics and the task's bill do.
    """
    body = {**params, "stream": True, "stream_options": {"include_usage": True}}
    body.update(body.pop("extra_body", None) or {})
    return await client.post(
        "/chat/completions",
        body=body,
        cast_to=object,
        stream=True,
        stream_cls=AsyncStream[object],
    )


class ChatStream(ProviderStream):
    """A streamed chat completion from OpenAI or any OpenAI-compatible server.

    The openai SDK ends a cut stream quietly; only a finish reason makes the
    answer complete (checked by :class:`ProviderStream`).

    Args:
        resume_mode: the task's ``chat_resume``; without it :meth:`continuation`
            is None (a broken stream starts over).
        continue_from: a ``chat:<chars>`` token from an earlier attempt's
            :meth:`continuation`, with ``prefix`` the text it had streamed (exactly
            ``chars`` characters): the request carries it as a partial assistant
            message and the stream yields only what follows. ``open()`` raises
            :class:`ContinuationLost` when that cannot be done.
    """

    platform = Platform.CHATGPT

    def __init__(
        self,
        client: AsyncOpenAI,
        params: dict[str, Any],
        *,
        resume_mode: str | None = None,
        continue_from: str | None = None,
        prefix: str | None = None,
    ) -> None:
        super().__init__(params["model"])
        self._client = client
        self._params = params
        self._resume_mode = resume_mode
        self._continue_from = continue_from
        self._prefix = prefix
        #: Characters of the answer before this stream's first (0 unless continued).
        self._base_chars = 0
        #: Character counts this stream reached at the end of a delta.
        self._boundaries: set[int] = {0}
        self._position = 0

    def continuation(self, chars: int) -> str | None:
        """``chat:<characters so far>`` when the task opted in (``chat_resume``) and
        ``chars`` (counted in this stream) is a delta boundary; None otherwise."""
        if self._resume_mode is None or chars not in self._boundaries:
            return None
        total = self._base_chars + chars
        return f"{CHAT_TOKEN_PREFIX}:{total}" if total > 0 else None

    async def open(self) -> None:
        params = self._params
        continuing = self._continue_from is not None
        if self._continue_from is not None:
            chars = parse_chat_token(self._continue_from)
            if self._resume_mode is None:
                raise ContinuationLost("the task does not ask for chat continuation (chat_resume)")
            if self._prefix is None or len(self._prefix) != chars:
                got = "no text" if self._prefix is None else f"{len(self._prefix)} characters"
                raise ContinuationLost(f"a chat continuation after {chars} characters got {got}")
            params = chat_continuation_params(params, self._prefix, self._resume_mode)
            self._base_chars = chars
        try:
            self._stream = await open_chat_stream(self._client, params)
        except APIStatusError as exc:
            if not continuing or exc.status_code not in _CONTINUATION_REFUSED:
                raise
            raise ContinuationLost(
                f"the server refused to continue the answer (HTTP {exc.status_code}: {exc.message})"
            ) from exc

    async def deltas(self) -> AsyncIterator[str]:
        if self._stream is None:
            raise RuntimeError("ChatStream must be opened with 'async with' before iterating")
        async for chunk in self._stream:
            if not isinstance(chunk, dict):
                continue
            usage = _usage(chunk.get("usage"))
            if usage is not None:
                self.usage = usage
            if chunk.get("model"):
                self.model = chunk["model"]
            for choice in chunk.get("choices") or ():
                if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                    continue
                delta = choice.get("delta")
                text = delta.get("content") if isinstance(delta, dict) else None
                if text and isinstance(text, str):
                    self._position += len(text)
                    if self._resume_mode is not None:
                        self._boundaries.add(self._position)
                    yield text
                if choice.get("finish_reason"):
                    self.finish_reason = self.vendor_finish_reason = choice["finish_reason"]
