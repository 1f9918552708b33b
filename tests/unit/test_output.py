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


def test_a_fresh_buffer_holds_nothing() -> None:
    buf = OutputBuffer(run_id="r")
    assert (buf.text, buf.length, buf.attempt, buf.chunks, buf.restarts) == ("", 0, 0, 0, 0)
    assert buf.ledger is None and buf.own_bills.attempts == []


def test_batches_of_another_run_are_ignored() -> None:
    """An operator reset re-applies the old run's signals to the new run: its text and its
    bills must not splice in. Batches of older workers carry no run id and still count."""
    buf = OutputBuffer(run_id="new")
    assert buf.apply(ChunkBatch(attempt=1, offset=0, text="fresh", run_id="new", chunks=1))
    old = Ledger(attempts=[AttemptBill(attempt=2, generation=2, completion_tokens=50)])
    other_run = ChunkBatch(attempt=2, offset=0, text="old", run_id="old", ledger=old, chunks=1)
    assert not buf.apply(other_run)
    assert (buf.text, buf.attempt, buf.restarts, buf.chunks) == ("fresh", 1, 0, 1)
    assert buf.ledger is None and buf.own_bills.attempts == []
    assert buf.apply(ChunkBatch(attempt=1, offset=5, text=" text", chunks=1))  # no run id
    assert buf.text == "fresh text"
    assert OutputBuffer().apply(other_run)  # no run of its own: every batch counts


def test_chunks_and_restarts_count_streams() -> None:
    buf = OutputBuffer()
    assert buf.apply(ChunkBatch(attempt=2, offset=0, text="ab", chunks=2))
    assert buf.apply(ChunkBatch(attempt=2, offset=2, text="cd", chunks=3))
    assert (buf.chunks, buf.restarts) == (5, 0)  # a first stream is no restart
    buf.apply(ChunkBatch(attempt=3, offset=0, text="x", chunks=1))
    assert (buf.text, buf.chunks, buf.restarts) == ("x", 1, 1)  # counted anew
    buf.apply(ChunkBatch(attempt=4, offset=0, text=""))
    buf.apply(ChunkBatch(attempt=5, offset=0, text=""))  # after a stream that sent no text
    assert (buf.text, buf.chunks, buf.restarts) == ("", 0, 3)


def test_a_bill_of_the_current_stream_is_the_account_a_stale_one_only_its_own() -> None:
    buf = OutputBuffer(run_id="r")
    buf.apply(ChunkBatch(attempt=2, offset=0, text="text", run_id="r", generation=2))
    lost = AttemptBill(attempt=1, generation=1, completion_tokens=3, outcome="lost")
    mine = AttemptBill(attempt=2, generation=2, completion_tokens=4, outcome="cancelled")
    part = AttemptBill(attempt=3, generation=2, completion_tokens=5, response_id="resp_1")
    now = Ledger(attempts=[lost, mine, part])
    current = ChunkBatch(
        attempt=2, offset=4, text="", run_id="r", generation=2, ledger=now, bill_only=True
    )
    assert buf.apply(current)
    assert buf.ledger == now and buf.text == "text"
    own = AttemptBill(attempt=1, generation=1, completion_tokens=9, outcome="failed")
    stale = ChunkBatch(
        attempt=1, offset=0, text="", run_id="r", ledger=Ledger(attempts=[own]), bill_only=True
    )
    assert not buf.apply(stale)
    assert buf.ledger == now  # a late attempt's word is not the account ...
    # ... but each attempt's own closing bill is kept; estimates of lost attempts and
    # parts of a provider's answer are not own bills.
    assert buf.own_bills.attempts == [mine, own]
