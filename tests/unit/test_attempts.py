"""What an attempt inherits and what it bills: the pure rules behind the retry budget."""

from __future__ import annotations

import time

import pytest

from ai_orchestrator.activities import _attempts
from ai_orchestrator.core import TaskConstraints
from ai_orchestrator.messages import AttemptBill, AttemptState, Ledger, RetrySettings, Usage
from ai_orchestrator.pricing import PricingTable


def test_a_dead_attempt_is_billed_as_lost_from_its_last_heartbeat() -> None:
    pricing = PricingTable()
    price = pricing.lookup("gpt-4o")
    assert price is not None
    first, _ = _attempts.begin(1, None, prompt_chars=400, model="gpt-4o", price=price)
    prior = first.model_copy(update={"chars": 120, "chunks": 30})
    state, newly_lost = _attempts.begin(2, prior, prompt_chars=400, model="gpt-4o", price=price)
    [lost] = state.ledger.attempts
    assert newly_lost == [lost]
    assert (lost.attempt, lost.outcome, lost.estimated) == (1, "lost", True)
    assert lost.completion_tokens == 30 and lost.prompt_tokens == 100
    # Priced from the table like any estimated attempt, not $0.
    assert lost.cost == pytest.approx(pricing.cost("gpt-4o", 100, 30)) and lost.cost > 0
    assert state.generation == 2 and not state.closed


def test_the_workflow_prices_a_lost_attempt_from_its_state_alone() -> None:
    """The workflow has no price table: the attempt's state carries its price."""
    price = PricingTable().lookup("gpt-4o-mini")
    assert price is not None
    state, _ = _attempts.begin(1, None, prompt_chars=40, model="gpt-4o-mini", price=price)
    state = state.model_copy(update={"chunks": 428, "chars": 1700})
    [lost] = state.settled(10).attempts
    assert lost.cost == pytest.approx(price.cost(10, 428)) and lost.cost > 0
    # Runs recorded before the change keep their older account.
    [old] = state.settled(10, whole=False).attempts
    assert old.cost == 0.0


def test_a_lost_attempt_is_billed_what_it_likely_streamed_after_its_last_heartbeat() -> None:
    """A worker dies anywhere between two heartbeats: the text it streamed after the
    last one is unknown, half an interval of it is expected, and the bill says so."""
    price = PricingTable().lookup("gpt-4o")
    assert price is not None
    state, _ = _attempts.begin(1, None, prompt_chars=40, model="gpt-4o", price=price)
    beat = state.model_copy(update={"chunks": 9, "chars": 40, "unseen_chunks": 5})
    [lost] = beat.settled(10).attempts
    assert (lost.completion_tokens, lost.estimated) == (14, True)
    assert lost.cost == pytest.approx(price.cost(10, 14))
    # The next attempt closes it the same way.
    _, [closed] = _attempts.begin(2, beat, prompt_chars=40, model="gpt-4o", price=price)
    assert closed.completion_tokens == 14
    # Runs recorded before the change keep their older account; nothing streamed,
    # nothing expected.
    [old] = beat.settled(10, whole=False).attempts
    assert old.completion_tokens == 9
    quiet = state.model_copy(update={"unseen_chunks": 5, "response_id": "resp_1"})
    [created] = quiet.settled(10).attempts
    assert created.completion_tokens == 0


def test_the_expected_unseen_text_follows_the_stream_pace() -> None:
    from ai_orchestrator.activities._pacing import unseen
    from ai_orchestrator.providers._base import ProviderStream

    class _Stream(ProviderStream):
        async def open(self) -> None:  # pragma: no cover - never opened here
            raise NotImplementedError

    stream = _Stream("m")
    assert stream.pace() == 0.0 and unseen(stream, 1.0) == 0  # nothing streamed yet
    stream.first_chunk_at, stream.chunks = 100.0, 21
    assert stream.pace(now=102.0) == pytest.approx(10.0)
    stream.first_chunk_at = time.monotonic() - 2.0
    assert unseen(stream, 1.0) == 5  # ten a second, half of a one-second interval
    stream.finish_reason = "stop"
    assert unseen(stream, 1.0) == 0  # an answer that ended streams nothing more


def test_an_answer_created_before_any_text_is_billed_its_prompt() -> None:
    state = AttemptState(attempt=1, generation=1, model="gpt-4o", response_id="resp_1")
    [lost] = state.settled(25).attempts
    assert (lost.prompt_tokens, lost.completion_tokens, lost.response_id) == (25, 0, "resp_1")
    assert state.settled(25, whole=False).attempts == []  # as recorded before


def test_attempts_that_left_no_heartbeat_are_flagged_not_dropped() -> None:
    state, lost = _attempts.begin(3, None, prompt_chars=40, model="gpt-4o")
    assert [(b.attempt, b.outcome, b.cost_unknown) for b in lost] == [
        (1, "lost", True),
        (2, "lost", True),
    ]
    assert state.ledger.attempts == lost and state.ledger.cost_unknown


def test_backoff_grows_is_capped_and_jittered() -> None:
    settings = RetrySettings(
        initial_interval_seconds=1, backoff_coefficient=2, max_interval_seconds=20
    )
    assert _attempts.backoff(1, settings, rng=lambda: 0.0) == 1.0
    assert _attempts.backoff(1, settings, rng=lambda: 1.0) == 2.0
    assert _attempts.backoff(3, settings, rng=lambda: 0.0) == 4.0
    assert _attempts.backoff(30, settings, rng=lambda: 1.0) == 20.0  # never past the cap
    # Under Temporal's 1 s floor the spread is kept, not rounded away.
    fast = RetrySettings(initial_interval_seconds=0.2, max_interval_seconds=2.0)
    assert _attempts.backoff(1, fast, rng=lambda: 0.0) == 1.0
    assert _attempts.backoff(1, fast, rng=lambda: 0.9) == pytest.approx(1.9)
    # Tasks that failed together come back apart.
    assert len({round(_attempts.backoff(5, settings), 6) for _ in range(20)}) > 10


def test_open_answers_are_those_with_no_final_count() -> None:
    from ai_orchestrator.messages import AttemptBill, Ledger

    ledger = Ledger(
        attempts=[
            AttemptBill(attempt=1, response_id="a", estimated=True, outcome="failed"),
            AttemptBill(attempt=2, response_id="b", estimated=True, outcome="failed"),
            AttemptBill(attempt=3, response_id="b", estimated=False, outcome="cancelled"),
            AttemptBill(attempt=4, response_id="c", estimated=True, outcome="completed"),
            AttemptBill(attempt=5, estimated=True, outcome="failed"),
        ]
    )
    assert ledger.open_responses() == ["a"]
    real = AttemptBill(attempt=1, response_id="a", prompt_tokens=5, completion_tokens=90)
    assert ledger.settle_response(real).attempts[-1] == real
    assert [a.response_id for a in ledger.settle_response(real).attempts].count("a") == 1


def test_a_closed_attempt_is_not_billed_twice_and_faults_carry_over() -> None:
    state = AttemptState(attempt=1, generation=1, chunks=7, model="gpt-4o-mini")
    bill = _attempts.close(
        state, outcome="failed", pricing=PricingTable(), usage=None, opened=True, prompt_chars=40
    )
    assert bill is not None and bill.estimated and bill.completion_tokens == 7
    state.provider_faults = 1
    following, lost = _attempts.begin(2, state, prompt_chars=40)
    assert lost == []
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


def test_an_attempts_own_late_bill_replaces_the_estimate_of_it() -> None:
    """An attempt timed out during a Temporal outage ran on and signalled its own bill."""
    from ai_orchestrator.messages import AttemptBill, Ledger

    final = Ledger(
        attempts=[
            AttemptBill(
                attempt=1, generation=1, completion_tokens=29, estimated=True, outcome="lost"
            ),
            AttemptBill(attempt=2, generation=2, completion_tokens=60, outcome="completed"),
        ]
    )
    own = AttemptBill(attempt=1, generation=1, completion_tokens=60, outcome="completed", cost=1.0)
    merged = final.with_late_bills(Ledger(attempts=[own]))
    assert merged is not None and merged.attempts == [own, final.attempts[1]]
    # Nothing new, nothing changed: the run takes no new path.
    assert final.with_late_bills(final) is None and final.with_late_bills(None) is None
    part = own.model_copy(update={"response_id": "resp_1"})
    assert final.with_late_bills(Ledger(attempts=[part])) is None  # settled by the provider


def test_the_next_attempt_inherits_the_run_budgets_and_the_continuation() -> None:
    """What spans attempts travels in the last heartbeat: the fault count, the run's
    signal budget, what lets a retry continue the same text, and where it continues."""
    beat = AttemptState(
        attempt=1,
        generation=1,
        chunks=5,
        chars=20,
        provider_faults=1,
        signals=3,
        signalled_chars=40,
        resume_token="session-1",
        continuation="resp_1",
        continued_at=40,
    )
    prior = _attempts.inherited([beat.model_dump(mode="json")])
    assert prior == beat
    state, _ = _attempts.begin(2, prior, prompt_chars=40, model="gpt-4o")
    carried = (state.provider_faults, state.signals, state.signalled_chars, state.resume_token)
    assert carried == (1, 3, 40, "session-1")
    assert (state.continuation, state.continued_at, state.generation) == ("resp_1", 40, 1)
    assert state.model == "gpt-4o"
    # Without a continuation the retry starts a new stream, at its start.
    fresh, _ = _attempts.begin(2, beat.model_copy(update={"continuation": None}), prompt_chars=40)
    assert (fresh.continuation, fresh.continued_at, fresh.generation, fresh.model) == (
        None,
        0,
        2,
        "",
    )
    # Attempts that left no heartbeat are named after the streams they would have started.
    _, silent = _attempts.begin(3, None, prompt_chars=40, generation_base=10, model="m")
    assert [(b.generation, b.model, b.estimated) for b in silent] == [
        (11, "m", True),
        (12, "m", True),
    ]


def test_backoff_grows_exponentially() -> None:
    settings = RetrySettings(
        initial_interval_seconds=1, backoff_coefficient=2, max_interval_seconds=60
    )
    assert _attempts.backoff(4, settings, rng=lambda: 0.0) == 8.0
    assert [_attempts.estimate_tokens(n) for n in (0, 1, 4, 5)] == [0, 1, 1, 2]


def test_parts_of_one_answer_are_billed_once() -> None:
    """Attempts re-attached to one provider answer each bill what they streamed; the
    prompt is billed once, and the provider's own usage replaces every estimate."""
    pricing = PricingTable()
    other = AttemptBill(attempt=1, generation=1, completion_tokens=8, cost=0.5, outcome="failed")
    ledger = Ledger(attempts=[other])

    def part(
        attempt: int, chunks: int, usage: Usage | None = None, model: str = "gpt-4o"
    ) -> AttemptBill:
        state = AttemptState(
            attempt=attempt, generation=2, chunks=chunks, model=model, ledger=ledger
        )
        bill = _attempts.close(
            state,
            outcome="failed",
            pricing=pricing,
            usage=usage,
            opened=True,
            prompt_chars=400,
            response_id="resp_1",
        )
        assert bill is not None and state.ledger.attempts[-1] == bill
        ledger.attempts = state.ledger.attempts
        return bill

    first = part(2, 10)
    assert (first.prompt_tokens, first.completion_tokens) == (100, 10)
    second = part(3, 20)
    assert (second.prompt_tokens, second.completion_tokens) == (0, 20)  # prompt billed once
    assert second.cost == pytest.approx(pricing.cost("gpt-4o", 0, 20))
    real = part(4, 5, Usage(prompt_tokens=90, completion_tokens=40))
    assert ledger.attempts == [other, real]  # the estimates of its parts are replaced
    late = part(5, 7)  # a part closing after the real bill: it adds nothing
    assert (late.prompt_tokens, late.completion_tokens, late.cost) == (0, 0, 0.0)
    assert ledger.attempts == [other, real, late]
    # The parts of an unpriced model's answer cost nothing known, not some default.
    ledger.attempts = []
    assert part(6, 3, model="local-llama").cost == part(7, 4, model="local-llama").cost == 0.0


def test_a_bill_says_what_the_attempt_was_and_what_the_vendor_charged() -> None:
    pricing = PricingTable()
    state = AttemptState(attempt=2, generation=3, chunks=4, model="gpt-4o")
    bill = _attempts.close(
        state,
        outcome="failed",
        pricing=pricing,
        usage=None,
        opened=True,
        prompt_chars=40,
        error_type="ProviderUnavailable",
        vendor_cost=0.25,
        platform="chatgpt",
    )
    assert bill == AttemptBill(
        attempt=2,
        generation=3,
        model="gpt-4o",
        prompt_tokens=10,
        completion_tokens=4,
        estimated=True,
        cost=0.25,  # the vendor's own figure wins over the price table
        outcome="failed",
        error_type="ProviderUnavailable",
        platform="chatgpt",
    )
    # A model with no price costs nothing known, not some default.
    unpriced = AttemptState(attempt=1, generation=1, chunks=4, model="local-llama")
    assert _attempts.close(
        unpriced, outcome="completed", pricing=pricing, usage=None, opened=True, prompt_chars=4
    ) == AttemptBill(
        attempt=1,
        generation=1,
        model="local-llama",
        prompt_tokens=1,
        completion_tokens=4,
        estimated=True,
        outcome="completed",
    )
    # A request the provider may have taken, with no stream: counted, flagged, unpriced.
    taken = AttemptState(attempt=3, generation=3, chunks=4, model="gpt-4o")
    flagged = _attempts.close(
        taken,
        outcome="failed",
        pricing=pricing,
        usage=None,
        opened=False,
        prompt_chars=40,
        unaccounted=True,
    )
    assert flagged is not None and flagged.cost_unknown and flagged.estimated
    assert (flagged.prompt_tokens, flagged.completion_tokens, flagged.cost) == (0, 0, 0.0)
    assert not bill.cost_unknown


def test_heartbeat_details_carry_progress_where_the_checkpoint_ends() -> None:
    """What a dead attempt leaves: its counts, the answer's id, and a continuation taken
    where the workflow's durable text ends, so the next attempt joins it exactly."""
    from types import SimpleNamespace

    asked: list[int] = []

    def continuation(chars: int) -> str:
        asked.append(chars)
        return f"resp_1@{chars}"

    stream = SimpleNamespace(
        continuation=continuation,
        opened=True,
        chars=120,
        chunks=30,
        resume_token=None,
        response_id="resp_1",
    )
    publisher = SimpleNamespace(delivered=100, start=40, signals=3)
    state = AttemptState(
        attempt=2, generation=2, signals=5, signalled_chars=40, resume_token="session-a"
    )
    details = _attempts.heartbeat_details(state, stream, publisher)  # type: ignore[arg-type]
    assert asked == [60]  # this attempt's part of the checkpointed text
    assert (details.chars, details.chunks) == (120, 30)
    assert (details.signals, details.signalled_chars) == (8, 100)
    assert (details.continuation, details.continued_at) == ("resp_1@60", 100)
    assert (details.response_id, details.resume_token) == ("resp_1", "session-a")
    assert state.chars == 0  # the attempt's own state is left as it was
    # Not opened yet and nothing of its own: the inherited continuation stays, at 0
    # characters of this attempt's text.
    stream.opened, stream.continuation = False, lambda _chars: None
    kept = _attempts.heartbeat_details(
        state.model_copy(update={"continuation": "resp_0@10"}),
        stream,
        publisher,  # type: ignore[arg-type]
    )
    assert (kept.continuation, kept.continued_at) == ("resp_0@10", 100)
    stream.response_id = None
    assert _attempts.heartbeat_details(state, stream, publisher).response_id is None  # type: ignore[arg-type]
