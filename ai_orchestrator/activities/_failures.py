"""Every way a provider attempt fails, as the ``ApplicationError`` Temporal acts on.

Temporal decides from the error alone whether to retry and when, and stores its
message in history for good. So a provider failure is classified once
(``errors.classify``), stripped of secrets and echoed prompt text, counted
against the task's bound on provider faults, and given its own retry delay: the
provider's Retry-After when it named one (unless it outlasts the deadline),
otherwise a jittered backoff. The failures the activity decides itself (a
platform not configured, an answer too large or filtered) are built here too,
so each has one message and one error type.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from datetime import timedelta

from temporalio import activity
from temporalio.exceptions import ApplicationError

from ..core import Platform
from ..errors import (
    CANCELLED_BEFORE_START,
    CONTENT_FILTERED,
    DEADLINE_EXCEEDED,
    OUTPUT_TOO_LARGE,
    PROVIDER_FAULTS_EXHAUSTED,
    PROVIDER_NOT_CONFIGURED,
    RATE_LIMITED,
    WORKER_SHUTDOWN,
    classify,
    redact,
    redaction_echoes,
)
from ..messages import AttemptState, CompletionRequest, Ledger, RetrySettings
from ..metrics import TaskMetrics
from ..providers import ProviderStream
from . import _attempts

logger = logging.getLogger(__name__)

#: What to set when a task is routed to a platform this worker has no client for.
SETUP_HINTS = {
    Platform.CHATGPT: "set OPENAI_API_KEY or OPENAI_BASE_URL",
    Platform.CLAUDE: "set ANTHROPIC_API_KEY (or ANTHROPIC_BASE_URL) and install the "
    "'anthropic' extra",
    Platform.GEMINI: "set GEMINI_API_KEY or GOOGLE_API_KEY (or GOOGLE_GEMINI_BASE_URL) and "
    "install the 'gemini' extra",
    Platform.CLAUDE_CODE: "install the claude CLI (npm install -g @anthropic-ai/claude-code) "
    "or point AI_ORCHESTRATOR_CLAUDE_BIN at it, and set ANTHROPIC_API_KEY",
}


def restated(exc: ApplicationError, *details: object) -> ApplicationError:
    """``exc`` with other details (the ledger, the route): an error's are fixed once made."""
    return ApplicationError(
        exc.message,
        *details,
        type=exc.type,
        non_retryable=exc.non_retryable,
        next_retry_delay=exc.next_retry_delay,
    )


def not_configured(platform: Platform, model: str) -> ApplicationError:
    return ApplicationError(
        f"{platform.value} is not configured on this worker (model {model!r}): "
        f"{SETUP_HINTS.get(platform, 'this platform is not supported yet')}",
        type=PROVIDER_NOT_CONFIGURED,
        non_retryable=True,
    )


def too_large(max_output_bytes: int) -> ApplicationError:
    return ApplicationError(
        f"the answer exceeded {max_output_bytes:,} bytes once encoded, more than a "
        "Temporal payload can safely carry; the stream was stopped. Set max_tokens to "
        "bound it.",
        type=OUTPUT_TOO_LARGE,
        non_retryable=True,
    )


def content_filtered(stream: ProviderStream) -> ApplicationError:
    return ApplicationError(
        f"the provider refused or filtered the answer after {stream.chars} "
        f"characters (content filter: finish reason {stream.vendor_finish_reason}); "
        "the partial output is kept. The same prompt would be filtered again, so "
        "it is not retried.",
        type=CONTENT_FILTERED,
        non_retryable=True,
    )


def worker_shutdown() -> ApplicationError:
    return ApplicationError(
        "the worker shut down mid-stream; another worker takes over",
        type=WORKER_SHUTDOWN,
    )


def cancelled_before_start(ledger: Ledger) -> ApplicationError:
    return ApplicationError(
        "the task was cancelled before this attempt called the provider",
        ledger,
        type=CANCELLED_BEFORE_START,
        non_retryable=True,
    )


def to_application_error(
    exc: BaseException,
    request: CompletionRequest,
    state: AttemptState,
    *,
    secrets: Sequence[str],
    meter: Callable[[], TaskMetrics],
    continuable: bool = False,
) -> ApplicationError:
    """``continuable``: the next attempt re-attaches to the answer instead of paying
    for it again, so a broken stream is not a fault that uses up the task's bound."""
    verdict = classify(exc)
    if verdict.retryable and verdict.error_type == RATE_LIMITED:
        meter().rate_limited.add(1, {"model": state.model})
    # Providers echo keys (masked) and sometimes the prompt or context in error
    # bodies; errors are stored in history, so none of them may stay in the message.
    task = request.task
    echoes = redaction_echoes(task.prompt, task.context)
    message = redact(verdict.message, *secrets, *echoes)
    deadline = request.deadline_epoch
    if verdict.retryable and verdict.retry_after is not None and deadline is not None:
        remaining = deadline - time.time()
        if verdict.retry_after > remaining:
            return ApplicationError(
                f"rate limited beyond the task's deadline: the provider asked to wait "
                f"{verdict.retry_after:.1f}s but only {max(0.0, remaining):.1f}s remain; "
                f"{message}",
                state.ledger,
                type=DEADLINE_EXCEEDED,
                non_retryable=True,
            )
    retryable = verdict.retryable
    if retryable and verdict.error_type in _attempts.PROVIDER_FAULTS and not continuable:
        state.provider_faults += 1
        bound = request.retry.max_attempts if request.retry is not None else None
        if bound is not None and state.provider_faults >= bound:
            return ApplicationError(
                f"gave up after {state.provider_faults} provider faults "
                f"(RetrySettings.max_attempts={bound}); the last: {message}",
                state.ledger,
                type=PROVIDER_FAULTS_EXHAUSTED,
                non_retryable=True,
            )
    if not retryable:
        logger.warning("non-retryable provider error: %s", message)
    delay = verdict.retry_after
    if retryable and not delay:
        # Temporal's own backoff has no jitter: tasks that failed together would
        # come back together, at the same interval, every time.
        delay = _attempts.backoff(activity.info().attempt, request.retry or RetrySettings())
        if deadline is not None:
            delay = min(delay, max(0.0, (deadline - time.time()) / 2))
    return ApplicationError(
        message,
        state.ledger,
        type=verdict.error_type,
        non_retryable=not retryable,
        next_retry_delay=timedelta(seconds=delay) if retryable and delay else None,
    )
