"""How a Claude Code session fails: the exceptions and the ``result`` event's classification.

Kept apart from the process and event code so the classifier
(:mod:`ai_orchestrator.errors._vendors`) and the tests name one set of types.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ..errors import (
    CONNECTION_FAILED,
    INCOMPLETE_STREAM,
    PROVIDER_REJECTED,
    PROVIDER_UNAVAILABLE,
    QUOTA_EXHAUSTED,
    RATE_LIMITED,
    IncompleteStreamError,
)

_QUOTA = re.compile(r"credit balance|spend limit|spending limit|billing", re.I)
#: The CLI prefixes transport failures (no HTTP status) with this.
_API_ERROR = re.compile(r"^\s*API Error\b", re.I)


class ClaudeCodeNotFoundError(FileNotFoundError):
    """The ``claude`` CLI is not installed where this worker looks for it."""


class ClaudeCodeError(Exception):
    """The CLI ended the session with an error, or died without a result.

    ``error_type`` is one of :mod:`ai_orchestrator.errors`' names, chosen the
    way :func:`~ai_orchestrator.errors.classify` would for the HTTP status the
    CLI reports; ``retryable`` says whether another attempt (which resumes the
    session) may succeed.
    """

    retryable = False

    def __init__(
        self,
        message: str,
        *,
        error_type: str = PROVIDER_REJECTED,
        status: int | None = None,
        subtype: str | None = None,
        session_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.status = status
        self.subtype = subtype
        self.session_id = session_id


class RetryableClaudeCodeError(ClaudeCodeError, IncompleteStreamError):
    """A transient failure: rate limit, overload, 5xx, lost connection, a crash."""

    retryable = True


def result_error(event: Mapping[str, Any], session_id: str | None) -> ClaudeCodeError:
    """The exception for a ``result`` event that is an error and not a limit."""
    subtype = str(event.get("subtype") or "")
    status = event.get("api_error_status")
    status = status if isinstance(status, int) else None
    errors = event.get("errors")
    detail = str(event.get("result") or "") or (
        "; ".join(str(e) for e in errors) if isinstance(errors, list) else ""
    )
    message = f"the claude CLI ended the session with an error ({subtype}"
    message += f", HTTP {status}): " if status is not None else "): "
    message += detail or "no detail given"
    kwargs: dict[str, Any] = {"status": status, "subtype": subtype, "session_id": session_id}
    if status is not None:
        if status == 429 and _QUOTA.search(detail):
            return ClaudeCodeError(message, error_type=QUOTA_EXHAUSTED, **kwargs)
        if status == 429:
            return RetryableClaudeCodeError(message, error_type=RATE_LIMITED, **kwargs)
        if status in (408, 409) or status >= 500:
            return RetryableClaudeCodeError(message, error_type=PROVIDER_UNAVAILABLE, **kwargs)
        return ClaudeCodeError(message, error_type=PROVIDER_REJECTED, **kwargs)
    if subtype == "error_during_execution" or _API_ERROR.match(detail):
        # A tool or transport failure mid-session: the next attempt resumes it.
        error_type = CONNECTION_FAILED if _API_ERROR.match(detail) else INCOMPLETE_STREAM
        return RetryableClaudeCodeError(message, error_type=error_type, **kwargs)
    # No status and not a transport failure: not logged in, a refused setting, ...
    return ClaudeCodeError(message, error_type=PROVIDER_REJECTED, **kwargs)


def exit_error(returncode: int, started: bool, stderr: str, session_id: str | None) -> None:
    """Raise for a CLI that ended without a ``result`` event (exit 0 raises nothing)."""
    if returncode == 0:
        return
    how = f"was killed by signal {-returncode}" if returncode < 0 else f"exited {returncode}"
    message = f"the claude CLI {how} without a result; stderr: {stderr or '-'}"
    if returncode < 0 or started:
        # It crashed mid-session; the next attempt resumes it.
        raise RetryableClaudeCodeError(message, error_type=INCOMPLETE_STREAM, session_id=session_id)
    # It never started a session: bad flags, a broken install, a refused setting.
    raise ClaudeCodeError(message, error_type=PROVIDER_REJECTED)
