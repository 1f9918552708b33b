"""How a quota decision reaches each API's client: its headers, and the body of its 429.

Clients that pace themselves read these, so each API gets its vendor's own
spelling (from the vendors' rate-limit docs):

* OpenAI sends ``x-ratelimit-{limit,remaining,reset}-{requests,tokens}`` on
  every answer, the resets as Go-style durations until the bucket is full
  again (``"1s"``, ``"6m0s"``, ``"120ms"``); a 429 adds ``retry-after``
  (whole seconds) and ``retry-after-ms``, which the openai SDK reads first.
* Anthropic sends ``anthropic-ratelimit-{requests,tokens}-{limit,remaining,reset}``,
  the resets as RFC 3339 times when the bucket is full again; a 429 adds
  ``retry-after`` in whole seconds. Its separate input/output token limits
  are not simulated (one TPM bucket), so neither are their headers.
* Gemini sends no rate-limit headers; its 429 is ``RESOURCE_EXHAUSTED`` with
  a ``QuotaFailure`` naming the quota and a ``RetryInfo`` ``retryDelay``.

A request that can never fit (larger than the bucket) gets a 429 with no
retry hint, as "Request too large" does at OpenAI.
"""

from __future__ import annotations

import math
import time
from datetime import datetime, timezone
from typing import Any

from . import _anthropic_shapes as anthropic_shapes
from . import _gemini_shapes as gemini_shapes
from ._errors import error_body, format_retry_after
from ._quotas import Admission, BucketView

_OPENAI_UNITS = {"requests": "requests per min (RPM)", "tokens": "tokens per min (TPM)"}
_GEMINI_QUOTAS = {
    "requests": (
        "generativelanguage.googleapis.com/generate_content_requests",
        "GenerateRequestsPerMinutePerProjectPerModel",
    ),
    "tokens": (
        "generativelanguage.googleapis.com/generate_content_input_token_count",
        "GenerateContentInputTokensPerModelPerMinute",
    ),
}


def go_duration(seconds: float) -> str:
    """Seconds as OpenAI (Go) prints a duration: ``"120ms"``, ``"1s"``, ``"6m0s"``.

    Rounded up to the millisecond, so waiting that long is always enough.
    """
    ms = math.ceil(max(0.0, seconds) * 1000 - 1e-6)
    if ms == 0:
        return "0s"
    if ms < 1000:
        return f"{ms}ms"
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs = str(rest // 1000) if rest % 1000 == 0 else f"{rest / 1000:.3f}".rstrip("0")
    text = f"{hours}h" if hours else ""
    if hours or minutes:
        text += f"{minutes}m"
    return f"{text}{secs}s"


def _rfc3339_after(seconds: float) -> str:
    """The UTC time ``seconds`` from now, whole seconds rounded up (as Anthropic sends it)."""
    at = datetime.fromtimestamp(math.ceil(time.time() + seconds), timezone.utc)
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def _views(admission: Admission | None) -> list[tuple[str, BucketView]]:
    if admission is None:
        return []
    pairs = (("requests", admission.requests), ("tokens", admission.tokens_view))
    return [(name, view) for name, view in pairs if view is not None]


def retry_after_ms(admission: Admission) -> int | None:
    """Milliseconds until a refused request fits, rounded up; None if it never will."""
    if admission.retry_after is None:
        return None
    return max(1, math.ceil(admission.retry_after * 1000))


def openai_headers(admission: Admission | None) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name, view in _views(admission):
        headers[f"x-ratelimit-limit-{name}"] = str(view.limit)
        headers[f"x-ratelimit-remaining-{name}"] = str(view.remaining)
        headers[f"x-ratelimit-reset-{name}"] = go_duration(view.reset_seconds)
    return headers


def anthropic_headers(admission: Admission | None) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name, view in _views(admission):
        headers[f"anthropic-ratelimit-{name}-limit"] = str(view.limit)
        headers[f"anthropic-ratelimit-{name}-remaining"] = str(view.remaining)
        headers[f"anthropic-ratelimit-{name}-reset"] = _rfc3339_after(view.reset_seconds)
    return headers


def _refusal_view(admission: Admission) -> tuple[str, BucketView]:
    name = admission.refused_by or "tokens"
    view = admission.requests if name == "requests" else admission.tokens_view
    assert view is not None, "a refusal names a limit that applies"
    return name, view


def _requested(admission: Admission, name: str) -> int:
    return 1 if name == "requests" else admission.tokens


def openai_error(admission: Admission, model: str) -> dict[str, Any]:
    """OpenAI's wording; ``type`` names the limit (``requests``/``tokens``)."""
    name, view = _refusal_view(admission)
    model = model or "the model"
    unit = _OPENAI_UNITS[name]
    ms = retry_after_ms(admission)
    if ms is None:
        message = (
            f"Request too large for {model} (simulated) on {unit}: Limit {view.limit}, "
            f"Requested {_requested(admission, name)}. The input or output tokens must be "
            "reduced in order to run successfully."
        )
    else:
        message = (
            f"Rate limit reached for {model} (simulated) on {unit}: Limit {view.limit}, "
            f"Used {view.limit - view.remaining}, Requested {_requested(admission, name)}. "
            f"Please try again in {go_duration(ms / 1000)}."
        )
    return error_body(message, name, "rate_limit_exceeded")


def openai_retry_headers(admission: Admission) -> dict[str, str]:
    ms = retry_after_ms(admission)
    if ms is None:
        return {}
    return {"retry-after": str(math.ceil(ms / 1000)), "retry-after-ms": str(ms)}


def anthropic_error(admission: Admission, model: str) -> dict[str, Any]:
    name, view = _refusal_view(admission)
    unit = "requests" if name == "requests" else "tokens"
    model = model or "the model"
    if admission.retry_after is None:
        message = (
            f"This request ({admission.tokens} tokens) is larger than the rate limit "
            f"(simulated) of {view.limit:,} {unit} per minute for {model}; reduce the "
            "prompt length or the maximum tokens requested."
        )
    else:
        message = (
            f"This request would exceed the rate limit (simulated) of {view.limit:,} {unit} "
            f"per minute for {model}. Please try again later."
        )
    return anthropic_shapes.error_body("rate_limit_error", message)


def anthropic_retry_headers(admission: Admission) -> dict[str, str]:
    ms = retry_after_ms(admission)
    return {} if ms is None else {"retry-after": str(math.ceil(ms / 1000))}


def gemini_error(admission: Admission, model: str) -> dict[str, Any]:
    name, view = _refusal_view(admission)
    metric, quota_id = _GEMINI_QUOTAS[name]
    model = model or "simulator"
    violation = {
        "quotaMetric": metric,
        "quotaId": quota_id,
        "quotaDimensions": {"model": model, "location": "global"},
        "quotaValue": str(view.limit),
    }
    details: list[dict[str, Any]] = [
        {"@type": gemini_shapes.QUOTA_FAILURE_TYPE, "violations": [violation]}
    ]
    message = (
        f"Resource has been exhausted (simulated). * Quota exceeded for metric: {metric}, "
        f"limit: {view.limit}, model: {model}"
    )
    ms = retry_after_ms(admission)
    if ms is not None:
        delay = f"{format_retry_after(ms / 1000)}s"
        details.append({"@type": gemini_shapes.RETRY_INFO_TYPE, "retryDelay": delay})
        message += f". Please retry in {delay}."
    return gemini_shapes.error_body(429, message, details)
