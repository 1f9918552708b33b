"""The provider activity's options: its retries, timeouts and cancellation."""

from __future__ import annotations

from datetime import timedelta

from temporalio.workflow import ActivityCancellationType

from ai_orchestrator.errors import (
    CONNECTION_FAILED,
    CONTENT_FILTERED,
    PROVIDER_FAULTS_EXHAUSTED,
    PROVIDER_REJECTED,
    PROVIDER_UNAVAILABLE,
    QUOTA_EXHAUSTED,
    RATE_LIMITED,
)
from ai_orchestrator.messages import RetrySettings
from ai_orchestrator.workflows._options import retry_policy, stream_activity_options

SETTINGS = RetrySettings(
    max_attempts=5,
    initial_interval_seconds=2.0,
    backoff_coefficient=3.0,
    max_interval_seconds=60.0,
    heartbeat_timeout_seconds=7.0,
)


def test_the_retry_policy_follows_the_settings_and_never_retries_what_cannot_succeed() -> None:
    policy = retry_policy(SETTINGS)
    assert policy.initial_interval == timedelta(seconds=2)
    assert policy.backoff_coefficient == 3.0
    assert policy.maximum_interval == timedelta(seconds=60)
    assert policy.maximum_attempts == 5  # a run started before the activity counted faults
    refused = set(policy.non_retryable_error_types or ())
    assert {
        QUOTA_EXHAUSTED,
        PROVIDER_REJECTED,
        CONTENT_FILTERED,
        PROVIDER_FAULTS_EXHAUSTED,
    } <= refused
    assert not refused & {PROVIDER_UNAVAILABLE, CONNECTION_FAILED, RATE_LIMITED}


def test_with_the_activity_counting_faults_only_the_time_budget_bounds_retries() -> None:
    """Lost workers, hand-overs and rate-limit waits must not use a task up."""
    policy = retry_policy(SETTINGS, activity_counts_faults=True)
    assert policy.maximum_attempts == 0  # unlimited
    assert policy.initial_interval == timedelta(seconds=2)


def test_the_whole_task_fits_its_timeout_and_a_cancel_waits_for_the_activity() -> None:
    """Cancellation waits for the activity, so the text it sends while closing is kept."""
    budget = timedelta(minutes=5)
    options = stream_activity_options(SETTINGS, budget, activity_counts_faults=True)
    assert options == {
        "schedule_to_close_timeout": budget,
        "start_to_close_timeout": budget,
        "heartbeat_timeout": timedelta(seconds=7),
        "retry_policy": retry_policy(SETTINGS, activity_counts_faults=True),
        "cancellation_type": ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
    }
    older = stream_activity_options(SETTINGS, budget)
    assert older["retry_policy"].maximum_attempts == 5
