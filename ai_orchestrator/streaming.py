"""Streaming helpers: accumulate chunks, and keep restarted attempts apart.

:class:`PrefixGuard` is the rule behind every plain-text stream we hand out:
what a consumer has been given is always a prefix of the final answer. When an
attempt is abandoned and the provider starts over, the new attempt's text is
withheld until it passes what was already given; if it says something else,
the consumer gets :class:`StreamRestartedError` instead of mixed text.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timezone


def _now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class StreamingResult:
    """Accumulates streaming chunks into a final result."""

    chunks: list[str] = field(default_factory=list)
    total_tokens: int = 0
    started_at: datetime = field(default_factory=_now)
    completed_at: datetime | None = None

    def add_chunk(self, chunk: str) -> None:
        self.chunks.append(chunk)

    def get_content(self) -> str:
        return "".join(self.chunks)

    def complete(self, tokens: int = 0) -> None:
        self.completed_at = _now()
        self.total_tokens = tokens

    @property
    def duration_seconds(self) -> float:
        end = self.completed_at or _now()
        return (end - self.started_at).total_seconds()


async def collect_stream(stream: AsyncIterator[str], timeout: float = 300) -> StreamingResult:
    """Collect all chunks of ``stream``.

    Raises:
        asyncio.TimeoutError: the stream did not finish within ``timeout``.
        asyncio.CancelledError: re-raised after marking the partial result complete.
    """
    result = StreamingResult()

    async def consume() -> None:
        async for chunk in stream:
            result.add_chunk(chunk)

    try:
        await asyncio.wait_for(consume(), timeout)
    except asyncio.CancelledError:
        result.complete()
        raise
    result.complete()
    return result


class StreamRestartedError(Exception):
    """The task started over and its new text contradicts what was already streamed.

    Attributes:
        delivered: the text the consumer had received before the restart.
        attempt: the attempt that replaced it.
        final: the task's final text, when the error is raised at its end (the new
            attempt ended shorter than, or different from, what was streamed).
    """

    def __init__(self, delivered: str, attempt: int, final: str | None = None) -> None:
        how = "differs from" if final is None else "is not"
        super().__init__(
            f"the task restarted (attempt {attempt}) and its new output {how} the "
            f"{len(delivered)} characters already streamed; use stream_events() to follow "
            "restarts, or get_result() for the final text"
        )
        self.delivered = delivered
        self.attempt = attempt
        self.final = final


class PrefixGuard:
    """Turns per-attempt text into one consistent stream (see module docstring)."""

    def __init__(self) -> None:
        self.delivered = ""
        self._current = ""
        self._attempt = 0

    def restart(self, attempt: int) -> None:
        self._attempt = attempt
        self._current = ""

    def feed(self, text: str) -> str:
        """Add text of the current attempt; returns what may be given out now."""
        self._current += text
        known = len(self.delivered)
        if not self._current.startswith(self.delivered[: len(self._current)]):
            raise StreamRestartedError(self.delivered, self._attempt)
        if len(self._current) <= known:
            return ""
        fresh = self._current[known:]
        self.delivered = self._current
        return fresh

    def finish(self, final: str) -> None:
        """Check, at the end, that what was given out is exactly ``final``.

        ``feed`` withholds a new attempt's text until it passes what was given,
        so an attempt that ends *shorter* (a prefix of the old text) never
        contradicts it, yet the consumer holds text the answer does not have.

        Raises:
            StreamRestartedError: the delivered text is not the final text.
        """
        if self.delivered != final:
            raise StreamRestartedError(self.delivered, self._attempt, final=final)
