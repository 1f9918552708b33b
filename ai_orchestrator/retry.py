"""Retry decorators for the in-process call path (tenacity).

The durable path leaves retries to Temporal; these are for code that calls a
provider directly (``AsyncChatGPTAdapter``), with the SDK's own retries off so
there is one retry layer per path. What is retryable, and how long the server
asked us to wait, comes from :func:`ai_orchestrator.errors.classify`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

from tenacity import (
    RetryCallState,
    before_sleep_log,
    retry,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)
from tenacity.wait import wait_base

from .errors import CONNECTION_FAILED, INCOMPLETE_STREAM, PROVIDER_UNAVAILABLE, classify

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

_TRANSIENT_TYPES = frozenset({CONNECTION_FAILED, INCOMPLETE_STREAM, PROVIDER_UNAVAILABLE})


class wait_retry_after(wait_base):
    """Wait as long as the server's Retry-After asks, else fall back to ``fallback``."""

    def __init__(self, fallback: wait_base) -> None:
        self.fallback = fallback

    def __call__(self, retry_state: RetryCallState) -> float:
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None else None
        asked = classify(exc).retry_after if exc is not None else None
        fallback = self.fallback(retry_state)
        return max(asked, fallback) if asked is not None else fallback


def _is_retryable(exc: BaseException) -> bool:
    return classify(exc).retryable


def _is_transient(exc: BaseException) -> bool:
    verdict = classify(exc)
    return verdict.retryable and verdict.error_type in _TRANSIENT_TYPES


def retry_on_rate_limit(
    max_attempts: int = 5,
    initial_wait: float = 1.0,
    max_wait: float = 32.0,
    jitter: float = 3.0,
) -> Callable[[F], F]:
    """Retry rate limits (and every other retryable provider fault) with backoff.

    Waits at least what Retry-After asks; quota exhaustion and other 4xx errors
    are not retried. The last exception is re-raised as itself.
    """
    return retry(
        retry=retry_if_exception(_is_retryable),
        wait=wait_retry_after(
            wait_exponential_jitter(initial=initial_wait, max=max_wait, jitter=jitter)
        ),
        stop=stop_after_attempt(max_attempts),
        before_sleep=before_sleep_log(logger, logging.WARNING),
        reraise=True,
    )


def retry_on_transient(
    max_attempts: int = 3,
    initial_wait: float = 0.5,
    max_wait: float = 10.0,
) -> Callable[[F], F]:
    """Retry connection faults, timeouts, 5xx and cut streams, but not rate limits."""
    return retry(
        retry=retry_if_exception(_is_transient),
        wait=wait_retry_after(
            wait_exponential_jitter(initial=initial_wait, max=max_wait, jitter=1.0)
        ),
        stop=stop_after_attempt(max_attempts),
        before_sleep=before_sleep_log(logger, logging.INFO),
        reraise=True,
    )


__all__ = ["retry_on_rate_limit", "retry_on_transient", "wait_retry_after"]
