"""The names of failures and the verdict on one: what the workflow needs, and no more.

Error type names are constants so the raiser, the workflow and the tests agree.
Nothing here imports a vendor SDK: the workflow imports these names inside its
sandbox, and the classifier that needs the SDKs lives in ``_classify``.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping
from dataclasses import dataclass

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
#: The task's ``max_cost_usd`` was reached (or would be by the next call).
BUDGET_EXCEEDED = "BudgetExceeded"
#: The task's named budget (``TaskConstraints.budget``, shared with other tasks) is
#: spent for the day, or ran out during the call. Another type than the task's own
#: cap: the remedy differs (wait for the next UTC day, or raise the shared budget).
NAMED_BUDGET_EXCEEDED = "NamedBudgetExceeded"


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


def connection_verdict(exc: BaseException, *, timed_out: bool) -> Verdict:
    """A vendor SDK's connection or timeout error: retry, naming the underlying cause."""
    if timed_out:
        return Verdict(True, CONNECTION_FAILED, f"provider timed out: {exc}")
    cause = exc.__cause__ or exc.__context__
    detail = f" ({type(cause).__name__}: {cause})" if cause else ""
    return Verdict(True, CONNECTION_FAILED, f"connection to provider failed: {exc}{detail}")
