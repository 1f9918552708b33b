"""Assembling streamed text: batches by attempt and offset, and the prefix rule."""

from __future__ import annotations

import pytest

from ai_orchestrator.messages import AttemptBill, ChunkBatch, Ledger
from ai_orchestrator.output import OutputBuffer
from ai_orchestrator.streaming import PrefixGuard, StreamRestartedError


def batch(attempt: int, offset: int, text: str) -> ChunkBatch:
    return ChunkBatch(attempt=attempt, offset=offset, text=text, chunks=1)


def test_batches_append_in_order() -> None:
    buf = OutputBuffer()
    assert buf.apply(batch(1, 0, "Hello"))
    assert buf.apply(batch(1, 5, ", world"))
    assert buf.text == "Hello, world" and buf.length == 12 and buf.restarts == 0


def test_overlapping_batch_is_deduplicated() -> None:
    buf = OutputBuffer()
    buf.apply(batch(1, 0, "abc"))
    buf.apply(batch(1, 0, "abcdef"))  # resent after an unknown signal outcome
    assert buf.text == "abcdef"


def test_gap_is_refused() -> None:
    buf = OutputBuffer()
    buf.apply(batch(1, 0, "abc"))
    assert not buf.apply(batch(1, 10, "xyz"))
    assert buf.text == "abc"


def test_newer_attempt_replaces_older_text() -> None:
    buf = OutputBuffer()
    buf.apply(batch(1, 0, "first try"))
    buf.apply(batch(2, 0, "second"))
    assert buf.text == "second" and buf.attempt == 2 and buf.restarts == 1


def test_late_batch_from_old_attempt_is_ignored() -> None:
    buf = OutputBuffer()
    buf.apply(batch(2, 0, "new"))
    assert not buf.apply(batch(1, 0, "old text"))
    assert buf.text == "new"


def test_prefix_guard_continues_identical_regeneration() -> None:
    guard = PrefixGuard()
    assert guard.feed("The quick ") == "The quick "
    guard.restart(2)
    assert guard.feed("The qu") == ""  # already given
    assert guard.feed("ick brown") == "brown"
    assert guard.delivered == "The quick brown"


def test_prefix_guard_raises_on_divergent_regeneration() -> None:
    guard = PrefixGuard()
    guard.feed("The quick")
    guard.restart(2)
    with pytest.raises(StreamRestartedError) as info:
        guard.feed("A slow")
    assert info.value.delivered == "The quick" and info.value.attempt == 2


def test_a_bill_without_text_keeps_the_text_readers_have() -> None:
    """An attempt that was billed but streamed nothing (refused after a cancel, broken
    before its first token) reports its bill; it must not start a new, empty stream."""
    buffer = OutputBuffer(run_id="r")
    buffer.apply(ChunkBatch(attempt=1, offset=0, text="kept text", run_id="r", generation=1))
    bill = Ledger(attempts=[AttemptBill(attempt=2, completion_tokens=0, prompt_tokens=9)])
    assert buffer.apply(
        ChunkBatch(
            attempt=2, offset=0, text="", run_id="r", generation=2, ledger=bill, bill_only=True
        )
    )
    assert (buffer.text, buffer.attempt, buffer.restarts) == ("kept text", 1, 0)
    assert buffer.ledger == bill
    # An older worker's text-less batch of a newer stream still restarts, as recorded.
    buffer.apply(ChunkBatch(attempt=3, offset=0, text="", run_id="r", generation=3, ledger=bill))
    assert (buffer.text, buffer.restarts) == ("", 1)


def test_an_attempts_own_bill_is_kept_even_from_a_stale_or_superseded_batch() -> None:
    """A zombie attempt's last word arrives after a newer attempt took over."""
    buffer = OutputBuffer(run_id="r")
    buffer.apply(ChunkBatch(attempt=2, offset=0, text="new", run_id="r", generation=2))
    own = AttemptBill(attempt=1, generation=1, completion_tokens=60, outcome="completed")
    assert not buffer.apply(  # stale text is ignored ...
        ChunkBatch(
            attempt=1, offset=0, text="old", run_id="r", generation=1, ledger=Ledger(attempts=[own])
        )
    )
    newer = Ledger(
        attempts=[AttemptBill(attempt=1, generation=1, completion_tokens=29, outcome="lost")]
    )
    buffer.apply(ChunkBatch(attempt=2, offset=3, text="er", run_id="r", generation=2, ledger=newer))
    assert buffer.ledger == newer and buffer.text == "newer"
    assert buffer.own_bills.attempts == [own]  # ... its bill is not
