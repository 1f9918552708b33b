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
"""

from __future__ import annotations

import importlib
import json
from typing import Any

import openai

from ._types import (
    CONFIGURATION_ERROR,
    CONNECTION_FAILED,
    CONTENT_FILTERED,
    INCOMPLETE_STREAM,
    PROVIDER_REJECTED,
    PROVIDER_UNAVAILABLE,
    QUOTA_EXHAUSTED,
    RATE_LIMITED,
    IncompleteStreamError,
    Verdict,
    connection_verdict,
    parse_retry_after,
)
from ._vendors import classify_anthropic, classify_claude_code, classify_gemini

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


def classify(exc: BaseException) -> Verdict:
    """Decide whether ``exc`` from a provider call deserves another attempt."""
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
