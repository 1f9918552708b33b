"""Every option of the provider activity, decided in one place.

The workflow imports this through the sandbox pass-through; it is pure.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio.common import RetryPolicy
from temporalio.workflow import ActivityCancellationType

from .errors import (
    CONFIGURATION_ERROR,
    DEADLINE_EXCEEDED,
    PROVIDER_REJECTED,
    QUOTA_EXHAUSTED,
)
from .messages import RetrySettings

DEFAULT_TIMEOUT_SECONDS = 300.0

#: Failures no retry can fix; the activity also marks them non-retryable, this
#: list guards against an older worker that does not.
NON_RETRYABLE_ERROR_TYPES = (
    QUOTA_EXHAUSTED,
    PROVIDER_REJECTED,
    CONFIGURATION_ERROR,
    DEADLINE_EXCEEDED,
)


def retry_policy(settings: RetrySettings) -> RetryPolicy:
    return RetryPolicy(
        initial_interval=timedelta(seconds=settings.initial_interval_seconds),
        backoff_coefficient=settings.backoff_coefficient,
        maximum_interval=timedelta(seconds=settings.max_interval_seconds),
        maximum_attempts=settings.max_attempts,
        non_retryable_error_types=list(NON_RETRYABLE_ERROR_TYPES),
    )


def stream_activity_options(settings: RetrySettings, timeout: timedelta) -> dict[str, Any]:
    """Keyword arguments for ``workflow.execute_activity`` of the provider call.

    The whole task, all attempts and backoff included, must fit in ``timeout``
    (schedule-to-close). Cancellation waits for the activity to confirm, so the
    text it delivers while closing the stream is in the partial output.
    """
    return {
        "schedule_to_close_timeout": timeout,
        "start_to_close_timeout": timeout,
        "heartbeat_timeout": timedelta(seconds=settings.heartbeat_timeout_seconds),
        "retry_policy": retry_policy(settings),
        "cancellation_type": ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
    }
