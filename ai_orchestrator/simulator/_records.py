"""What the simulator saw and did, per generation request (any API).

Records are mutated live while a response streams so a test can watch a
request in flight (tokens sent, disconnects) instead of only after the fact.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass
class RecordedRequest:
    """One generation request, in arrival order, whichever API it came through.

    ``api`` says which: ``"openai"`` (``POST /v1/chat/completions``),
    ``"anthropic"`` (``POST /v1/messages``) or ``"gemini"``
    (``:generateContent`` / ``:streamGenerateContent``). Token counting and
    model listing are not recorded. ``messages`` is the request's own list
    (OpenAI/Anthropic ``messages``, Gemini ``contents``) and ``system`` the
    separate system prompt of the Anthropic and Gemini APIs (string or
    blocks, as sent). ``authorization`` is the raw ``Authorization`` header;
    ``api_key`` is the bare key from whichever header or query parameter the
    API uses (Bearer token, ``x-api-key``, ``x-goog-api-key``, ``key=``).
    Both are kept verbatim for tests; error messages that echo a key mask it.

    ``finished`` means the server ended the response the way it meant to
    (for a normal stream: finish chunk, usage if asked, ``[DONE]``; for the
    ``no_finish``/``malformed`` faults: their scripted ending). It stays False
    when the stream was aborted, the client went away, or the server stopped.
    Error replies (scripted or 400s) count as finished once built.
    ``disconnected`` is True only when the *client* closed the connection.
    ``status`` is the HTTP status sent, or 0 when a non-streaming
    ``disconnect`` fault dropped the connection before any status line.
    Non-streaming replies stamp every token with the time the body was built.
    ``fault`` names the fault applied, scripted or drawn by chaos mode (the
    rpm limiter's refusals are ``"rate_limit"``). ``prompt_tokens`` is what the
    usage would report for the prompt, set once generation starts (0 for
    requests refused with an error status, which providers do not bill), so
    a test can sum what a provider would charge.
    """

    index: int
    received_at: float
    received_wall: float
    request_id: str
    api: str = "openai"
    authorization: str | None = None
    api_key: str | None = None
    model: str = ""
    stream: bool = False
    include_usage: bool = False
    messages: list[dict[str, Any]] = field(default_factory=list)
    system: Any = None
    max_tokens: int | None = None
    temperature: float | None = None
    fault: str | None = None
    status: int = 200
    prompt_tokens: int = 0
    tokens_sent: int = 0
    token_sent_at: list[float] = field(default_factory=list)
    finished: bool = False
    disconnected: bool = False
    ended_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
