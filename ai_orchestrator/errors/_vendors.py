"""How :func:`ai_orchestrator.errors.classify` reads the Anthropic and Gemini SDKs' errors.

Kept apart so that the optional SDKs are imported only where they are
installed, and so each vendor's quirks sit in one short function:

* Anthropic sends its error type in the body (``rate_limit_error``,
  ``overloaded_error`` on HTTP 529, ...), also for an ``error`` event inside an
  HTTP 200 stream, so the type decides before the status. A 429 without
  ``retry-after`` that speaks of credit or a spend limit will not heal by waiting.
* Gemini answers in Google's shape (``RESOURCE_EXHAUSTED``, ``UNAVAILABLE``)
  and says how long to wait in a ``RetryInfo`` detail rather than a header.
"""

from __future__ import annotations

import re
import sys
from typing import Any

from ._types import (
    INCOMPLETE_STREAM,
    PROVIDER_REJECTED,
    PROVIDER_UNAVAILABLE,
    QUOTA_EXHAUSTED,
    RATE_LIMITED,
    Verdict,
    connection_verdict,
    parse_retry_after,
)

_ANTHROPIC_UNAVAILABLE = frozenset({"overloaded_error", "api_error", "timeout_error"})
_ANTHROPIC_QUOTA = re.compile(r"credit balance|spend limit|spending limit|billing", re.I)
_RETRY_DELAY = re.compile(r"^\s*(\d+(?:\.\d+)?)s\s*$")


def _message(status: int, request_id: str | None, detail: str) -> str:
    rid = f", request id {request_id}" if request_id else ""
    return f"provider returned HTTP {status}{rid}: {detail}"


def classify_anthropic(exc: BaseException) -> Verdict | None:
    # Only an SDK that is loaded can have raised: never pay its import on a failure.
    anthropic = sys.modules.get("anthropic")
    if anthropic is None:
        return None
    if isinstance(exc, anthropic.APIStatusError):
        body = exc.body if isinstance(exc.body, dict) else {}
        error = body.get("error") if isinstance(body.get("error"), dict) else body
        kind = str(error.get("type") or "")
        status = exc.status_code
        headers = {k.lower(): v for k, v in exc.response.headers.items()}
        rid = headers.get("request-id") or headers.get("x-request-id")
        detail = str(error.get("message") or exc.message)
        in_stream = status < 400
        message = (
            f"provider sent an error event inside the stream (type={kind}): {detail}"
            if in_stream
            else _message(status, rid, f"{kind}: {detail}" if kind else detail)
        )
        retry_after = parse_retry_after(headers)
        if kind == "rate_limit_error" or status == 429:
            if retry_after is None and _ANTHROPIC_QUOTA.search(detail):
                return Verdict(False, QUOTA_EXHAUSTED, message, None, status, rid)
            return Verdict(True, RATE_LIMITED, message, retry_after, status, rid)
        if kind == "billing_error":
            return Verdict(False, QUOTA_EXHAUSTED, message, None, status, rid)
        if kind in _ANTHROPIC_UNAVAILABLE or status >= 500 or status in (408, 409):
            return Verdict(True, PROVIDER_UNAVAILABLE, message, retry_after, status, rid)
        if headers.get("x-should-retry") == "true" or (in_stream and not kind):
            return Verdict(True, PROVIDER_UNAVAILABLE, message, retry_after, status, rid)
        return Verdict(False, PROVIDER_REJECTED, message, None, status, rid)
    if isinstance(exc, anthropic.APIConnectionError):
        return connection_verdict(exc, timed_out=isinstance(exc, anthropic.APITimeoutError))
    if isinstance(exc, anthropic.APIError):
        return Verdict(True, INCOMPLETE_STREAM, f"provider stream error: {exc}")
    return None


def classify_claude_code(exc: BaseException) -> Verdict | None:
    """The Claude Code CLI already judged its own failure (see providers.claude_code)."""
    module = sys.modules.get("ai_orchestrator.providers.claude_code")
    if module is None or not isinstance(exc, module.ClaudeCodeError):
        return None
    return Verdict(bool(exc.retryable), exc.error_type, str(exc), status_code=exc.status)


def _retry_delay(details: Any) -> float | None:
    """Seconds from a google.rpc.RetryInfo detail (``"retryDelay": "12s"``), if any."""
    error = details.get("error") if isinstance(details, dict) else None
    for item in (error or {}).get("details") or ():
        if isinstance(item, dict) and "retryDelay" in item:
            match = _RETRY_DELAY.match(str(item["retryDelay"]))
            if match:
                return float(match.group(1))
    return None


def classify_gemini(exc: BaseException) -> Verdict | None:
    genai_errors = sys.modules.get("google.genai.errors")
    if genai_errors is None:
        return None
    if isinstance(exc, genai_errors.UnknownApiResponseError):
        return Verdict(True, INCOMPLETE_STREAM, f"provider sent malformed stream data: {exc}")
    if not isinstance(exc, genai_errors.APIError):
        return None
    status = int(exc.code or 0)
    response = getattr(exc, "response", None)
    headers = {k.lower(): v for k, v in dict(getattr(response, "headers", {}) or {}).items()}
    detail = f"{exc.status}: {exc.message}" if exc.status else str(exc.message)
    message = _message(status, None, detail)
    retry_after = parse_retry_after(headers) or _retry_delay(exc.details)
    if status == 429:
        return Verdict(True, RATE_LIMITED, message, retry_after, status)
    if status >= 500 or status in (408, 409):
        return Verdict(True, PROVIDER_UNAVAILABLE, message, retry_after, status)
    if status == 0:
        return Verdict(True, INCOMPLETE_STREAM, f"provider stream error: {detail}")
    return Verdict(False, PROVIDER_REJECTED, message, None, status)
