"""Which provider failures are worth another attempt, and how long to wait.

One pure function, :func:`classify`, decides for every call path: Temporal's
retry policy acts on its verdict in the durable layer and tenacity's predicates
in the in-process layer, so the two can never disagree. The rules follow the
openai SDK's own ``_should_retry``: 408/409/429/5xx and connection faults retry,
other 4xx do not, ``x-should-retry`` overrides, and Retry-After
(``retry-after-ms`` first, then ``retry-after`` in seconds or as a date) is
honoured. Three cases the SDK gets wrong for us are handled here too: a 429
whose body says the quota is exhausted will not heal by waiting, a stream that
ends without a finish reason is reported by the SDK as success, and an error
event inside a 200 stream (``data: {"error": {...}}``) surfaces as a bare
``APIError`` with no status, so it is judged by its ``code``/``type`` instead.

Error type names are constants so the raiser, the workflow and the tests agree.
"""

from __future__ import annotations

import email.utils
import importlib
import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import openai

# ApplicationError.type values, shared by raisers, handlers and tests.
RATE_LIMITED = "RateLimited"
QUOTA_EXHAUSTED = "QuotaExhausted"
PROVIDER_UNAVAILABLE = "ProviderUnavailable"
PROVIDER_REJECTED = "ProviderRejected"
CONNECTION_FAILED = "ConnectionFailed"
INCOMPLETE_STREAM = "IncompleteStream"
DEADLINE_EXCEEDED = "RateLimitedBeyondDeadline"
CONFIGURATION_ERROR = "ConfigurationError"
TASK_FAILED = "TaskFailed"
OUTPUT_TOO_LARGE = "OutputTooLarge"
WORKER_SHUTDOWN = "WorkerShutdown"
PROVIDER_FAULTS_EXHAUSTED = "ProviderFaultsExhausted"
#: The task's platform has no client on this worker (no credentials set).
PROVIDER_NOT_CONFIGURED = "ProviderNotConfigured"
CANCELLED_BEFORE_START = "CancelledBeforeStart"
#: The provider stopped the answer with ``finish_reason="content_filter"``;
#: the same prompt will be filtered again, so it is never retried.
CONTENT_FILTERED = "ContentFiltered"

_RETRYABLE_STATUSES = frozenset({408, 409, 429})


def _transport_errors() -> tuple[type[BaseException], ...]:
    # openai >= 3 and anthropic are built on httpx2, older releases on httpx; a read
    # error can escape the SDK's wrapping while a stream is being iterated.
    found: list[type[BaseException]] = []
    for name in ("httpx2", "httpx"):
        try:
            found.append(importlib.import_module(name).TransportError)
        except (ImportError, AttributeError):
            continue
    # google-genai's async client streams over aiohttp.
    try:
        found.append(importlib.import_module("aiohttp").ClientError)
    except (ImportError, AttributeError):
        pass
    return tuple(found)


_TRANSPORT_ERRORS = _transport_errors()
_QUOTA_CODES = frozenset({"insufficient_quota", "billing_hard_limit_reached"})
# Codes and types seen in in-stream error events (OpenAI, Azure, and
# OpenAI-compatible servers that relay Anthropic-style types).
_STREAM_RATE_LIMIT = frozenset({"rate_limit_exceeded", "requests", "tokens", "rate_limit_error"})
_STREAM_UNAVAILABLE = frozenset(
    {"server_error", "overloaded_error", "api_error", "service_unavailable", "internal_error"}
)
_STREAM_REJECTED = frozenset(
    {
        "invalid_request_error",
        "context_length_exceeded",
        "invalid_prompt",
        "invalid_api_key",
        "authentication_error",
        "permission_error",
        "permission_denied",
        "not_found_error",
        "model_not_found",
        "content_policy_violation",
        "string_above_max_length",
        "unsupported_value",
        "unsupported_parameter",
        "invalid_value",
    }
)
# Codes of a failed Responses API response (``response.failed``'s ``error.code``)
# that the sets above do not already cover.
_RESPONSES_UNAVAILABLE = frozenset({"vector_store_timeout"})
_RESPONSES_FILTERED = frozenset(
    {"bio_policy", "misalignment_policy_violation", "image_content_policy_violation"}
)
_RESPONSES_REJECTED = frozenset(
    {
        "data_residency_mismatch",
        "invalid_image",
        "invalid_image_format",
        "invalid_base64_image",
        "invalid_image_url",
        "image_too_large",
        "image_too_small",
        "image_parse_error",
        "invalid_image_mode",
        "image_file_too_large",
        "unsupported_image_media_type",
        "empty_image_file",
        "failed_to_download_image",
        "image_file_not_found",
    }
)
#: Shorter echoes are too likely to occur by chance in unrelated text.
_MIN_ECHO_CHARS = 16
#: Providers often truncate what they quote; this prefix is removed too.
_ECHO_PREFIX_CHARS = 64


class IncompleteStreamError(Exception):
    """The provider's stream ended (or broke) before saying it was finished.

    The openai SDK yields no error when a stream stops without a finish reason,
    so a truncated answer would otherwise be taken for a complete one.
    """


class ContinuationLost(Exception):
    """A stream could not be re-attached where an earlier attempt left it.

    The response expired, was never stored, or the provider will not stream it
    again. Raised before any text is yielded: the attempt starts a new answer
    instead, and readers see a restart, never two answers' text mixed.
    """


@dataclass(frozen=True)
class Verdict:
    """What to do about one failure."""

    retryable: bool
    error_type: str
    message: str
    retry_after: float | None = None
    status_code: int | None = None
    request_id: str | None = None


def parse_retry_after(
    headers: Mapping[str, str] | None, *, now: float | None = None
) -> float | None:
    """Seconds to wait as the server asked, or None when it did not say."""
    if not headers:
        return None
    lowered = {k.lower(): v for k, v in headers.items()}
    for name, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        raw = lowered.get(name)
        if raw is None:
            continue
        try:
            value = float(raw)
        except ValueError:
            continue
        if value != value or value < 0:  # NaN or negative: ignore, as the SDK does
            continue
        return value / divisor
    raw = lowered.get("retry-after")
    if raw:
        parsed = email.utils.parsedate_tz(raw)
        if parsed is not None:
            delay = email.utils.mktime_tz(parsed) - (time.time() if now is None else now)
            return max(0.0, float(delay))
    return None


def _error_body(body: Any) -> dict[str, Any]:
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict):
            return inner
    return {}


def _quota_exhausted(body: Any) -> bool:
    err = _error_body(body)
    return err.get("code") in _QUOTA_CODES or err.get("type") in _QUOTA_CODES


def _status_message(status: int, request_id: str | None, body: Any, fallback: str) -> str:
    detail = _error_body(body).get("message") or fallback
    rid = f", request id {request_id}" if request_id else ""
    return f"provider returned HTTP {status}{rid}: {detail}"


def _stream_error_verdict(exc: openai.APIError) -> Verdict:
    """Judge an error event the provider sent inside an HTTP 200 stream (or a
    Responses API ``response.failed``/``error`` event, raised as an ``APIError``
    whose body is the event's error object).

    There is no status code to go by, so the event's ``code`` decides and,
    when the code is missing or unknown, its ``type``: a stream cut by an
    overloaded server heals on retry, a context-length error never does.
    """
    body = _error_body(exc.body)
    type_, code = body.get("type"), body.get("code")
    detail = body.get("message") or exc.message
    message = (
        f"provider sent an error event inside the stream (type={type_!r}, code={code!r}): {detail}"
    )
    for key in (code, type_):
        if not isinstance(key, str):
            continue
        if key in _QUOTA_CODES:
            return Verdict(False, QUOTA_EXHAUSTED, message)
        if key in _STREAM_RATE_LIMIT:
            return Verdict(True, RATE_LIMITED, message)
        if key in _STREAM_UNAVAILABLE or key in _RESPONSES_UNAVAILABLE:
            return Verdict(True, PROVIDER_UNAVAILABLE, message)
        if key in _RESPONSES_FILTERED:
            # The same prompt would be refused again.
            return Verdict(False, CONTENT_FILTERED, message)
        if key in _STREAM_REJECTED or key in _RESPONSES_REJECTED:
            return Verdict(False, PROVIDER_REJECTED, message)
    return Verdict(True, INCOMPLETE_STREAM, message)


def connection_verdict(exc: BaseException, *, timed_out: bool) -> Verdict:
    """A vendor SDK's connection or timeout error: retry, naming the underlying cause."""
    if timed_out:
        return Verdict(True, CONNECTION_FAILED, f"provider timed out: {exc}")
    cause = exc.__cause__ or exc.__context__
    detail = f" ({type(cause).__name__}: {cause})" if cause else ""
    return Verdict(True, CONNECTION_FAILED, f"connection to provider failed: {exc}{detail}")


def classify(exc: BaseException) -> Verdict:
    """Decide whether ``exc`` from a provider call deserves another attempt."""
    from .vendor_errors import classify_anthropic, classify_claude_code, classify_gemini

    for vendor in (classify_claude_code, classify_anthropic, classify_gemini):
        verdict = vendor(exc)
        if verdict is not None:
            return verdict
    if isinstance(exc, IncompleteStreamError):
        return Verdict(True, INCOMPLETE_STREAM, str(exc))
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        headers = dict(exc.response.headers) if exc.response is not None else {}
        rid = exc.request_id
        message = _status_message(status, rid, exc.body, exc.message)
        retry_after = parse_retry_after(headers)
        should = {k.lower(): v for k, v in headers.items()}.get("x-should-retry")
        if status == 429 and _quota_exhausted(exc.body):
            return Verdict(False, QUOTA_EXHAUSTED, message, None, status, rid)
        if should == "false":
            return Verdict(False, PROVIDER_REJECTED, message, None, status, rid)
        if status == 429:
            return Verdict(True, RATE_LIMITED, message, retry_after, status, rid)
        if status in _RETRYABLE_STATUSES or status >= 500 or should == "true":
            return Verdict(True, PROVIDER_UNAVAILABLE, message, retry_after, status, rid)
        return Verdict(False, PROVIDER_REJECTED, message, None, status, rid)
    if isinstance(exc, openai.APIConnectionError):
        return connection_verdict(exc, timed_out=isinstance(exc, openai.APITimeoutError))
    if isinstance(exc, openai.APIResponseValidationError):
        return Verdict(True, INCOMPLETE_STREAM, f"provider sent an invalid response: {exc}")
    if isinstance(exc, json.JSONDecodeError):
        # The SDK does not wrap a malformed SSE event: it is a damaged stream.
        return Verdict(True, INCOMPLETE_STREAM, f"provider sent malformed stream data: {exc}")
    if isinstance(exc, (ConnectionError, TimeoutError, *_TRANSPORT_ERRORS)):
        return Verdict(True, CONNECTION_FAILED, f"{type(exc).__name__}: {exc}")
    if isinstance(exc, openai.APIError):
        if _error_body(exc.body):
            # The SDK raises a bare APIError whose body is the event's "error" object.
            return _stream_error_verdict(exc)
        # Anything else bare from the SDK is a damaged stream; a later attempt may succeed.
        return Verdict(True, INCOMPLETE_STREAM, f"provider stream error: {exc}")
    return Verdict(False, CONFIGURATION_ERROR, f"{type(exc).__name__}: {exc}")


_KEY_PATTERN = re.compile(r"\b(sk-[A-Za-z0-9_\-*]{3,})")


def redact(text: str, *secrets: str | None) -> str:
    """Remove secrets (and anything shaped like an OpenAI key) from ``text``.

    Error messages end up in workflow history and logs; providers echo masked
    keys in 401 bodies, and a configured key must never appear at all.
    """
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "[redacted]")
    return _KEY_PATTERN.sub("sk-[redacted]", text)


def _render(value: Any) -> str:
    # Same rendering as chat.build_messages (which imports this module, hence the copy).
    return value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)


def redaction_echoes(prompt: str, context: Mapping[str, Any]) -> tuple[str, ...]:
    """The strings an error message must not echo, longest first, for :func:`redact`.

    Providers quote inputs in error bodies (e.g. "invalid prompt: ..."), and
    error messages are stored in workflow history and logs. ``context`` is as
    private as the prompt, so each rendered value counts too. Each one and its
    first 64 characters are listed (providers truncate what they quote); values
    under 16 characters are left out, as they would match unrelated text.
    Longest first, so a prefix is never replaced before the whole it starts.
    """
    echoes: set[str] = set()
    for text in (prompt, *(_render(value) for value in context.values())):
        if len(text) >= _MIN_ECHO_CHARS:
            echoes.add(text)
            echoes.add(text[:_ECHO_PREFIX_CHARS])
    return tuple(sorted(echoes, key=lambda s: (-len(s), s)))
