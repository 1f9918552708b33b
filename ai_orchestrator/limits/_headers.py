"""Where a provider says an account stands, read from the headers of any answer.

OpenAI sends ``x-ratelimit-{limit,remaining,reset}-{requests,tokens}`` (resets as
Go durations: ``6m0s``, ``1s``, ``120ms``); Anthropic sends
``anthropic-ratelimit-{requests,tokens}-{limit,remaining,reset}`` (resets as RFC
3339 times). Gemini sends none: its limits must be configured.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

_GO_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


@dataclass(frozen=True)
class Observed:
    """One answer's view of a limit key; None where the provider did not say."""

    limit_requests: int | None = None
    remaining_requests: int | None = None
    reset_requests: float | None = None
    limit_tokens: int | None = None
    remaining_tokens: int | None = None
    reset_tokens: float | None = None

    @property
    def empty(self) -> bool:
        return self.limit_tokens is None and self.limit_requests is None


def go_duration(text: str) -> float | None:
    """``"6m0s"`` -> 360.0, ``"120ms"`` -> 0.12; None if it is not one."""
    text = text.strip()
    parts = _GO_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)


def _int(value: str | None) -> int | None:
    try:
        return int(float(value)) if value is not None else None
    except (ValueError, OverflowError):  # garbage, or "inf"
        return None


def _until(value: str | None, now: float) -> float | None:
    if value is None:
        return None
    seconds = go_duration(value)
    if seconds is not None:
        return seconds
    try:
        return max(0.0, datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() - now)
    except ValueError:
        return None


def observe(headers: Mapping[str, str], now: float) -> Observed:
    """The limits ``headers`` report (``now``: epoch seconds, for absolute resets)."""
    lowered = {k.lower(): v for k, v in headers.items()}
    for prefix, form in (
        ("x-ratelimit-", "{what}-{kind}"),
        ("anthropic-ratelimit-", "{kind}-{what}"),
    ):

        def get(what: str, kind: str, prefix: str = prefix, form: str = form) -> str | None:
            return lowered.get(prefix + form.format(what=what, kind=kind))

        seen = Observed(
            limit_requests=_int(get("limit", "requests")),
            remaining_requests=_int(get("remaining", "requests")),
            reset_requests=_until(get("reset", "requests"), now),
            limit_tokens=_int(get("limit", "tokens")),
            remaining_tokens=_int(get("remaining", "tokens")),
            reset_tokens=_until(get("reset", "tokens"), now),
        )
        if not seen.empty:
            return seen
    return Observed()
