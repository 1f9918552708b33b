"""PrefixGuard: a plain-text stream ends normally only with exactly the final text."""

from __future__ import annotations

import pytest

from ai_orchestrator.streaming import PrefixGuard, StreamRestartedError


def test_same_text_again_continues_seamlessly_and_finishes() -> None:
    guard = PrefixGuard()
    assert guard.feed("one two") == "one two"
    guard.restart(2)
    assert guard.feed("one") == ""  # withheld: already given
    assert guard.feed(" two three") == " three"
    guard.finish("one two three")


def test_a_retry_that_ends_shorter_is_caught_at_the_end() -> None:
    """Promise: stream_result yields exactly the final output or raises (shorter retry)."""
    guard = PrefixGuard()
    guard.feed("one two three")
    guard.restart(2)
    assert guard.feed("one two") == ""  # a prefix: nothing contradicts it yet ...
    with pytest.raises(StreamRestartedError) as info:
        guard.finish("one two")  # ... but the answer is shorter than what was given
    assert info.value.delivered == "one two three" and info.value.final == "one two"
    assert info.value.attempt == 2 and "is not the 13 characters" in str(info.value)


def test_different_text_raises_at_once_and_cancelled_partial_is_checked() -> None:
    guard = PrefixGuard()
    guard.feed("one two")
    guard.restart(2)
    with pytest.raises(StreamRestartedError) as info:
        guard.feed("one six")
    assert info.value.final is None
    partial = PrefixGuard()
    partial.feed("half an answer")
    with pytest.raises(StreamRestartedError):
        partial.finish("")  # e.g. a cancelled task whose partial output is empty
