"""Every option of the provider activity, decided in one place.

The workflow imports this through the sandbox pass-through; it is pure.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio.common import RetryPolicy
from temporalio.workflow import ActivityCancellationType

from ..errors import (
    CONFIGURATION_ERROR,
    CONTENT_FILTERED,
    DEADLINE_EXCEEDED,
    OUTPUT_TOO_LARGE,
    PROVIDER_FAULTS_EXHAUSTED,
    PROVIDER_NOT_CONFIGURED,
    PROVIDER_REJECTED,
    QUOTA_EXHAUSTED,
)
from ..messages import RetrySettings

DEFAULT_TIMEOUT_SECONDS = 300.0

#: Failures no retry can fix; the activity also marks them non-retryable, this
#: list guards against an older worker that does not.
NON_RETRYABLE_ERROR_TYPES = (
    QUOTA_EXHAUSTED,
    PROVIDER_REJECTED,
    CONFIGURATION_ERROR,
    DEADLINE_EXCEEDED,
    CONTENT_FILTERED,
    OUTPUT_TOO_LARGE,
    PROVIDER_FAULTS_EXHAUSTED,
    PROVIDER_NOT_CONFIGURED,
)

#: Failures after which a task with ``fallback_models`` continues on the next
#: model: the provider, not the request, is the problem. A rejected request
#: (400, 401 ...), a filtered answer or a too-large one would fail anywhere.
FALLBACK_ERROR_TYPES = frozenset(
    {QUOTA_EXHAUSTED, PROVIDER_FAULTS_EXHAUSTED, PROVIDER_NOT_CONFIGURED, DEADLINE_EXCEEDED}
)


def retry_policy(settings: RetrySettings, *, activity_counts_faults: bool = False) -> RetryPolicy:
    """Temporal's retry policy for the provider activity.

    With ``activity_counts_faults`` Temporal retries without an attempt limit
    (the schedule-to-close timeout, i.e. the task's time budget, still bounds
    everything) and the activity itself fails for good once
    ``settings.max_attempts`` *provider faults* have happened: a dead or
    stopping worker, a Temporal outage or a rate-limit wait then never uses up
    a task. Without it (runs started before that change), every attempt counts.
    """
    return RetryPolicy(
        initial_interval=timedelta(seconds=settings.initial_interval_seconds),
        backoff_coefficient=settings.backoff_coefficient,
        maximum_interval=timedelta(seconds=settings.max_interval_seconds),
        maximum_attempts=0 if activity_counts_faults else settings.max_attempts,
        non_retryable_error_types=list(NON_RETRYABLE_ERROR_TYPES),
    )


def stream_activity_options(
    settings: RetrySettings, timeout: timedelta, *, activity_counts_faults: bool = False
) -> dict[str, Any]:
    """Keyword arguments for ``workflow.execute_activity`` of the provider call.

    The whole task, all attempts and backoff included, must fit in ``timeout``
    (schedule-to-close). Cancellation waits for the activity to confirm, so the
    text it delivers while closing the stream is in the partial output.
    """
    return {
        "schedule_to_close_timeout": timeout,
        "start_to_close_timeout": timeout,
        "heartbeat_timeout": timedelta(seconds=settings.heartbeat_timeout_seconds),
        "retry_policy": retry_policy(settings, activity_counts_faults=activity_counts_faults),
        "cancellation_type": ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
    }
