"""Scripted failures, modelled on the ways real providers actually break.

A fault is plain data so the same script can be queued from Python or, as
JSON, through the admin HTTP API from another process.

One script serves every API the simulator speaks (OpenAI chat completions,
Anthropic Messages, Gemini generateContent): faults are consumed in arrival
order by whichever API's generation request comes next, and each API renders
the fault in its own provider's shape (see each classmethod). A test that
mixes APIs should therefore script one request at a time, or send its
requests in a known order.

The Responses API adds faults that only it can take (see
:data:`RESPONSES_ONLY_FAULTS`): ``drop_stream`` for a ``POST /v1/responses``
and ``reattach_drop``/``expire`` for the next re-attach
(``GET /v1/responses/{id}?stream=true``). A request takes the head of the
FIFO only if it can use it; otherwise it gets no fault and the head waits,
so the order of a script is never changed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

STREAM_FAULTS: frozenset[str] = frozenset(
    {
        "disconnect",
        "no_finish",
        "stall",
        "malformed",
        "stream_error",
        "content_filter",
        "recitation",
    }
)
ERROR_FAULTS: frozenset[str] = frozenset({"rate_limit", "status", "overloaded"})
#: Taken only by ``POST /v1/responses`` (other APIs leave them at the head).
CREATE_ONLY_FAULTS: frozenset[str] = frozenset({"drop_stream", "slow_start", "slow_events"})
#: Taken only by a Responses re-attach, ``GET /v1/responses/{id}?stream=true``.
REATTACH_FAULTS: frozenset[str] = frozenset({"reattach_drop", "expire", "reattach_refused"})
RESPONSES_ONLY_FAULTS: frozenset[str] = CREATE_ONLY_FAULTS | REATTACH_FAULTS
#: Faults that end an answer early with a provider-chosen stop reason.
CUT_FAULTS: frozenset[str] = frozenset({"content_filter", "recitation"})

# Which optional fields carry meaning for each fault; to_dict/from_dict use
# this so the JSON form only shows (and only accepts) what matters.
_FIELDS: dict[str, tuple[str, ...]] = {
    "ok": (),
    "rate_limit": ("retry_after", "retry_after_ms", "quota_exhausted"),
    "status": ("status_code", "message"),
    "disconnect": ("after_tokens",),
    "no_finish": ("after_tokens",),
    "stall": ("after_tokens", "seconds"),
    "malformed": ("after_tokens",),
    "stream_error": ("after_tokens", "error_type", "code", "message"),
    "content_filter": ("after_tokens",),
    "recitation": ("after_tokens",),
    "overloaded": ("message",),
    "drop_stream": ("after_events",),
    "slow_start": ("seconds",),
    "slow_events": ("seconds",),
    "reattach_drop": ("after_events",),
    "expire": (),
    "reattach_refused": ("status_code", "retry_after"),
}


@dataclass(frozen=True)
class Fault:
    """One scripted behaviour, applied to the next ``times`` generation requests (any API).

    Build it with the classmethods; the raw constructor exists for
    :meth:`from_dict` and validates whatever it is given.
    """

    name: str
    times: int = 1
    retry_after: float | None = None
    retry_after_ms: int | None = None
    quota_exhausted: bool = False
    status_code: int | None = None
    message: str | None = None
    after_tokens: int = 0
    seconds: float = 0.0
    error_type: str | None = None
    code: str | None = None
    after_events: int = 0

    def __post_init__(self) -> None:
        if self.name not in _FIELDS:
            known = ", ".join(sorted(_FIELDS))
            raise ValueError(f"unknown fault {self.name!r}; expected one of {known}")
        if not isinstance(self.times, int) or self.times < 1:
            raise ValueError(f"times must be an int >= 1, got {self.times!r}")
        if self.retry_after is not None and self.retry_after < 0:
            raise ValueError("retry_after must be >= 0")
        if self.retry_after_ms is not None and self.retry_after_ms < 0:
            raise ValueError("retry_after_ms must be >= 0")
        if self.name in ("status", "reattach_refused"):
            code = self.status_code
            if not isinstance(code, int) or not 400 <= code <= 599:
                raise ValueError(f"status fault needs a 4xx/5xx code, got {code!r}")
        if not isinstance(self.after_tokens, int) or self.after_tokens < 0:
            raise ValueError("after_tokens must be an int >= 0")
        if not isinstance(self.after_events, int) or self.after_events < 0:
            raise ValueError("after_events must be an int >= 0")
        if self.seconds < 0:
            raise ValueError("seconds must be >= 0")
        if self.name == "stream_error" and (
            not isinstance(self.error_type, str) or not self.error_type
        ):
            raise ValueError(f"stream_error needs a non-empty error_type, got {self.error_type!r}")
        for field in ("code", "message"):
            value = getattr(self, field)
            if value is not None and not isinstance(value, str):
                raise ValueError(f"{field} must be a string or null, got {value!r}")

    @classmethod
    def ok(cls, times: int = 1) -> Fault:
        """Lets a script say "then succeed" explicitly."""
        return cls("ok", times=times)

    @classmethod
    def rate_limit(
        cls,
        retry_after: float | None = 1.0,
        retry_after_ms: int | None = None,
        quota_exhausted: bool = False,
        times: int = 1,
    ) -> Fault:
        """HTTP 429; a quota error carries no retry hints, just like OpenAI's.

        Anthropic: ``rate_limit_error`` with ``retry-after``; with
        ``quota_exhausted`` the spend-limit error (``details.error_code``
        ``"enforced_spend_limit_reached"``, which the anthropic SDK raises as
        ``EnforcedSpendLimitReachedError``, a ``RateLimitError``). Gemini:
        ``RESOURCE_EXHAUSTED`` with a ``google.rpc.RetryInfo`` detail
        (``retryDelay``) instead of a header, none when the quota is exhausted.
        """
        if quota_exhausted:
            retry_after = None
            retry_after_ms = None
        return cls(
            "rate_limit",
            times=times,
            retry_after=retry_after,
            retry_after_ms=retry_after_ms,
            quota_exhausted=quota_exhausted,
        )

    @classmethod
    def status(cls, code: int, message: str | None = None, times: int = 1) -> Fault:
        """Any 4xx/5xx; ``message=None`` picks a provider-like default."""
        return cls("status", times=times, status_code=code, message=message)

    @classmethod
    def overloaded(cls, message: str | None = None, times: int = 1) -> Fault:
        """The provider is over capacity: refused before any answer.

        Anthropic: HTTP 529 ``overloaded_error`` (the SDK's ``OverloadedError``,
        an ``InternalServerError``). Gemini: 503 ``UNAVAILABLE`` "The model is
        overloaded". OpenAI: 503 "The engine is currently overloaded".
        """
        return cls("overloaded", times=times, message=message)

    @classmethod
    def disconnect(cls, after_tokens: int = 3, times: int = 1) -> Fault:
        """Abort the TCP connection mid-stream, as a crashing proxy would."""
        return cls("disconnect", times=times, after_tokens=after_tokens)

    @classmethod
    def no_finish(cls, after_tokens: int = 3, times: int = 1) -> Fault:
        """End cleanly with [DONE] but never say why: no finish_reason, no usage."""
        return cls("no_finish", times=times, after_tokens=after_tokens)

    @classmethod
    def stall(cls, after_tokens: int = 3, seconds: float = 30.0, times: int = 1) -> Fault:
        """Go silent mid-stream, then carry on; exercises idle timeouts.
        ``Simulator.cut_stalls()`` ends a stalled Chat Completions, Messages or
        Gemini stream at once as a dropped connection (not a non-streamed answer's
        stall, nor a Responses API one)."""
        return cls("stall", times=times, after_tokens=after_tokens, seconds=seconds)

    @classmethod
    def malformed(cls, after_tokens: int = 3, times: int = 1) -> Fault:
        """Emit an SSE event whose data is not JSON, then end the response."""
        return cls("malformed", times=times, after_tokens=after_tokens)

    @classmethod
    def stream_error(
        cls,
        after_tokens: int = 3,
        error_type: str = "server_error",
        code: str | None = None,
        message: str | None = None,
        times: int = 1,
    ) -> Fault:
        """After ``after_tokens`` tokens of a 200 stream, send an error event and end.

        That is how OpenAI reports a failure once streaming has begun: the
        status is already sent, so the event ``data: {"error": {...}}`` is all a
        client gets. The openai SDK raises a bare ``APIError`` whose ``.body``
        is the inner ``error`` object. ``message=None`` picks a provider-like
        default for ``error_type``.

        Anthropic: an ``event: error`` with ``{"type": "error", "error":
        {"type", "message"}}``; ``error_type`` may be Anthropic's
        (``overloaded_error``, ``api_error``...) or OpenAI's, mapped
        (``server_error`` -> ``api_error``). The anthropic SDK raises a bare
        ``APIStatusError`` with ``status_code == 200``. Gemini: a
        ``data: {"error": {"code", "message", "status"}}`` chunk; ``error_type``
        may be a Google status (``UNAVAILABLE``...) or either vendor's type, and
        google-genai raises ``ServerError``/``ClientError`` by its code.
        ``code`` is used by OpenAI only. Without a stream, every API answers the
        matching HTTP status instead.
        """
        return cls(
            "stream_error",
            times=times,
            after_tokens=after_tokens,
            error_type=error_type,
            code=code,
            message=message,
        )

    @classmethod
    def content_filter(cls, after_tokens: int = 3, times: int = 1) -> Fault:
        """Stop after ``after_tokens`` tokens with ``finish_reason="content_filter"``.

        As Azure and OpenAI do when their filter trips mid-answer: a proper
        ending (usage chunk included when asked), but the answer is cut.
        Anthropic ends with ``stop_reason="refusal"``, Gemini with
        ``finishReason="SAFETY"`` (see :meth:`refusal`).
        """
        return cls("content_filter", times=times, after_tokens=after_tokens)

    @classmethod
    def refusal(cls, after_tokens: int = 3, times: int = 1) -> Fault:
        """Anthropic's name for :meth:`content_filter`, which it is.

        Anthropic ends with ``stop_reason="refusal"`` (plus ``stop_details``),
        Gemini with ``finishReason="SAFETY"``, OpenAI with ``content_filter``.
        """
        return cls.content_filter(after_tokens=after_tokens, times=times)

    @classmethod
    def recitation(cls, after_tokens: int = 3, times: int = 1) -> Fault:
        """Gemini's ``finishReason="RECITATION"`` after ``after_tokens`` tokens.

        The answer is cut because it quoted training data too closely. Other
        APIs have no such reason and end as :meth:`content_filter` does.
        """
        return cls("recitation", times=times, after_tokens=after_tokens)

    @classmethod
    def drop_stream(cls, after_events: int = 5, times: int = 1) -> Fault:
        """Responses only: the next ``POST /v1/responses`` connection drops after ``after_events``.

        ``after_events`` counts every SSE event written (``response.created``
        is the first), and the TCP connection is then aborted with no terminal
        event, as a proxy or load balancer cutting a long stream does. A
        background response keeps generating server-side and can be re-attached;
        a foreground one stops, as its generation is tied to the connection.
        A non-streamed create is dropped before its reply. Other APIs leave
        this fault at the head of the FIFO.
        """
        return cls("drop_stream", times=times, after_events=after_events)

    @classmethod
    def slow_start(cls, seconds: float = 3.0, times: int = 1) -> Fault:
        """Responses only: the next ``POST /v1/responses`` is created (and generates in
        the background at once), but its reply's first byte comes ``seconds`` later,
        as from a provider under load. A client that leaves meanwhile never learns
        the response's id from that connection."""
        return cls("slow_start", times=times, seconds=seconds)

    @classmethod
    def slow_events(cls, seconds: float = 3.0, times: int = 1) -> Fault:
        """Responses only: the next streamed ``POST /v1/responses`` answers its headers at
        once, then sends its first event (``response.created``, which names it)
        ``seconds`` later, as a gateway that flushes headers early does."""
        return cls("slow_events", times=times, seconds=seconds)

    @classmethod
    def reattach_drop(cls, after_events: int = 5, times: int = 1) -> Fault:
        """Responses only: the next re-attach stream drops after ``after_events`` events.

        Taken by ``GET /v1/responses/{id}?stream=true`` only (``retrieve(id,
        stream=True)``); generation is not affected.
        """
        return cls("reattach_drop", times=times, after_events=after_events)

    @classmethod
    def reattach_refused(
        cls, status_code: int = 401, retry_after: float | None = None, times: int = 1
    ) -> Fault:
        """Responses only: the next re-attach is refused with ``status_code`` (a key
        revoked meanwhile, a 429 with ``retry_after``); the response goes on
        generating server-side, as it does at OpenAI."""
        return cls(
            "reattach_refused", times=times, status_code=status_code, retry_after=retry_after
        )

    @classmethod
    def expire(cls, times: int = 1) -> Fault:
        """Responses only: the next re-attach finds its response expired (404).

        The response is expired for good at that moment, as if its retention
        had run out, so every later retrieve or re-attach is a 404 too; a
        background generation still running goes on server-side (and is
        billed) but can no longer be read. Taken by
        ``GET /v1/responses/{id}?stream=true`` only.
        """
        return cls("expire", times=times)

    @property
    def is_stream_fault(self) -> bool:
        return self.name in STREAM_FAULTS

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name, "times": self.times}
        for field in _FIELDS[self.name]:
            data[field] = getattr(self, field)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Fault:
        """Strict: unknown keys are an error so typos in scripts fail loudly."""
        if not isinstance(data, Mapping):
            raise ValueError(f"a fault must be a JSON object, got {data!r}")
        name = data.get("name")
        if not isinstance(name, str) or name not in _FIELDS:
            known = ", ".join(sorted(_FIELDS))
            raise ValueError(f"fault 'name' must be one of {known}, got {name!r}")
        allowed = {"name", "times", *_FIELDS[name]}
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise ValueError(f"unknown keys for fault {name!r}: {', '.join(unknown)}")
        kwargs = {k: v for k, v in data.items() if k != "name"}
        try:
            if name == "status":
                if "status_code" not in kwargs:
                    raise ValueError("status fault needs 'status_code'")
                kwargs["code"] = kwargs.pop("status_code")
            fault: Fault = getattr(cls, name)(**kwargs)
        except TypeError as exc:
            raise ValueError(f"bad fault {dict(data)!r}: {exc}") from exc
        return fault
