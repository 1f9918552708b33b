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
    ``"anthropic"`` (``POST /v1/messages``), ``"gemini"``
    (``:generateContent`` / ``:streamGenerateContent``) or ``"responses"``
    (every ``/v1/responses`` request, generating or not; ``kind`` says which:
    ``"create"``, ``"retrieve"``, ``"retrieve_stream"`` or ``"cancel"``, and
    ``response_id`` names the response). Token counting and model listing are
    not recorded. ``messages`` is the request's own list
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

    ``tokens_sent`` counts the tokens written on *this* connection; for a
    Responses stream that is the ``output_text.delta`` events it carried, which
    a background response generates once however often it is re-attached
    (what it generated is on its :class:`ResponseRecord`). ``continuation`` is
    True for a chat request that asked to continue its final assistant
    message (vLLM's ``continue_final_message``, DeepSeek's ``prefix``);
    ``prefix_tokens`` is how many tokens of the deterministic answer that
    message already held (0 when it was not a prefix of it and fresh text
    followed), and ``tokens_sent`` counts only the continuation.

    ``quota_tokens`` is what the request was charged against its key's
    tokens-per-minute quota when it arrived (prompt plus the most its answer
    may hold; 0 when it was refused or not counted), see ``Quotas``.
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
    kind: str | None = None
    response_id: str | None = None
    continuation: bool = False
    prefix_tokens: int = 0
    quota_tokens: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class ResponseRecord:
    """What a provider would bill for one Responses-API response, kept live.

    ``generated_tokens`` counts the output tokens the server produced, once,
    whether or not anyone was connected to read them (a background response
    goes on generating after its stream drops; a foreground one stops when its
    client leaves). ``input_tokens`` is the prompt as usage reports it.
    ``status`` follows the response (queued, in_progress, completed,
    incomplete, cancelled, failed); ``expired`` is set once it can no longer be
    retrieved. ``reattaches`` counts ``GET /v1/responses/{id}?stream=true``
    requests, ``request_index`` is the creating request's index in
    ``sim.requests``.
    """

    id: str
    model: str
    request_index: int
    background: bool
    store: bool
    stream: bool
    status: str = "queued"
    input_tokens: int = 0
    generated_tokens: int = 0
    max_output_tokens: int | None = None
    reattaches: int = 0
    expired: bool = False
    created_at: float = 0.0
    finished_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
