"""What an attempt inherits and what it bills: the pure rules behind the retry budget."""

from __future__ import annotations

import pytest

from ai_orchestrator.activities import _attempts
from ai_orchestrator.core import TaskConstraints
from ai_orchestrator.messages import AttemptState, RetrySettings, Usage
from ai_orchestrator.pricing import PricingTable


def test_a_dead_attempt_is_billed_as_lost_from_its_last_heartbeat() -> None:
    prior = AttemptState(attempt=1, generation=1, chars=120, chunks=30, model="gpt-4o")
    state = _attempts.begin(2, prior, prompt_chars=400)
    [lost] = state.ledger.attempts
    assert (lost.attempt, lost.outcome, lost.estimated) == (1, "lost", True)
    assert lost.completion_tokens == 30 and lost.prompt_tokens == 100
    assert state.generation == 2 and not state.closed


def test_a_closed_attempt_is_not_billed_twice_and_faults_carry_over() -> None:
    state = AttemptState(attempt=1, generation=1, chunks=7, model="gpt-4o-mini")
    bill = _attempts.close(
        state, outcome="failed", pricing=PricingTable(), usage=None, opened=True, prompt_chars=40
    )
    assert bill is not None and bill.estimated and bill.completion_tokens == 7
    state.provider_faults = 1
    following = _attempts.begin(2, state, prompt_chars=40)
    assert len(following.ledger.attempts) == 1 and following.provider_faults == 1
    assert (
        _attempts.close(
            state,
            outcome="failed",
            pricing=PricingTable(),
            usage=None,
            opened=True,
            prompt_chars=40,
        )
        is None
    )


def test_a_refused_request_costs_nothing_and_real_usage_wins() -> None:
    pricing = PricingTable()
    refused = AttemptState(attempt=1, generation=1, model="gpt-4o")
    assert (
        _attempts.close(
            refused, outcome="failed", pricing=pricing, usage=None, opened=False, prompt_chars=40
        )
        is None
        and not refused.ledger.attempts
    )
    done = AttemptState(attempt=2, generation=2, chunks=3, model="gpt-4o")
    usage = Usage(prompt_tokens=11, completion_tokens=9, total_tokens=20)
    bill = _attempts.close(
        done, outcome="completed", pricing=pricing, usage=usage, opened=True, prompt_chars=40
    )
    assert bill is not None and not bill.estimated
    assert (bill.prompt_tokens, bill.completion_tokens) == (11, 9)
    assert bill.cost == pytest.approx(pricing.cost("gpt-4o", 11, 9))


def test_an_older_workers_heartbeat_is_ignored() -> None:
    assert _attempts.inherited([{"attempt": 1, "chars": 10}]) is None
    assert _attempts.inherited([]) is None


def test_retry_settings_temporal_would_reject_fail_at_construction() -> None:
    with pytest.raises(ValueError, match="max_interval_seconds"):
        RetrySettings(initial_interval_seconds=60)
    with pytest.raises(ValueError, match="heartbeat_timeout_seconds"):
        RetrySettings(heartbeat_timeout_seconds=0.8)
    with pytest.raises(ValueError, match="at most"):
        TaskConstraints(timeout_seconds=30 * 24 * 3600)
    assert RetrySettings().max_attempts >= 8  # provider faults get their own, generous bound


def test_settings_already_in_history_still_decode() -> None:
    """A run started by an older client with such settings must not jam on decode."""
    from ai_orchestrator.core import LENIENT_CONTEXT

    old = RetrySettings.model_validate(
        {"initial_interval_seconds": 60, "heartbeat_timeout_seconds": 0.8}, context=LENIENT_CONTEXT
    )
    assert old.initial_interval_seconds == 60
    TaskConstraints.model_validate({"timeout_seconds": 1e9}, context=LENIENT_CONTEXT)
