"""A worker's live streams in memory, and the readers following them.

Each run has at most one stream here (its newest generation); readers are
woken when text arrives and send everything new at once, so a slow reader or
a busy worker gets fewer, bigger frames instead of falling behind. Adding
text is a list append and a wake-up: the activity never waits for a reader.
"""

from __future__ import annotations

import asyncio
import bisect
import time
from collections.abc import AsyncIterator, Callable

from ._frames import END_SUPERSEDED, LiveFrame

#: How long a finished stream stays readable: readers that were a moment
#: behind, or reconnecting, still get its end instead of a 404.
LINGER_SECONDS = 30.0

Key = tuple[str, str]


class HubStream:
    """One attempt's text (from ``start``) and its end, for any number of readers."""

    def __init__(self, run_id: str, generation: int, start: int, prefix: str) -> None:
        self.run_id = run_id
        self.generation = generation
        #: Readers get text from here on; ``prefix`` (if known) is the text before ``start``.
        self.start = start - len(prefix)
        self._parts: list[str] = [prefix] if prefix else []
        self._ends: list[int] = [start] if prefix else []
        self.length = start
        self.end: str | None = None
        self.ended_at: float | None = None
        self._changed = asyncio.Event()
        #: Called once, when a reader is first served text (see ``LiveSink.on_read``).
        self.on_read: Callable[[], None] | None = None

    def add(self, text: str) -> None:
        if self.end is not None or not text:
            return
        self._parts.append(text)
        self.length += len(text)
        self._ends.append(self.length)
        self._wake()

    def close(self, end: str) -> None:
        if self.end is None:
            self.end = end
            self.ended_at = time.monotonic()
            self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def text_from(self, offset: int) -> str:
        """Text from ``offset`` (at or after ``start``) to the end so far."""
        index = bisect.bisect_right(self._ends, offset)
        if index >= len(self._parts):
            return ""
        part_start = self._ends[index] - len(self._parts[index])
        return "".join(self._parts[index:])[offset - part_start :]

    async def frames(self, generation: int, offset: int) -> AsyncIterator[LiveFrame]:
        """Frames from ``offset`` (for a reader of ``generation``) until the end."""
        if generation != self.generation or offset < self.start:
            offset = self.start
        offset = min(offset, self.length)
        while True:
            changed = self._changed
            if self.length > offset:
                text = self.text_from(offset)
                if self.on_read is not None:
                    read, self.on_read = self.on_read, None
                    read()
                yield LiveFrame(
                    run_id=self.run_id,
                    generation=self.generation,
                    offset=offset,
                    text=text,
                    start=self.start,
                )
                offset += len(text)
                continue
            if self.end is not None:
                yield LiveFrame(
                    run_id=self.run_id,
                    generation=self.generation,
                    offset=offset,
                    start=self.start,
                    end=self.end,
                )
                return
            await changed.wait()


class LiveHub:
    """Every stream this worker is producing, by run."""

    def __init__(self, linger: float = LINGER_SECONDS) -> None:
        self._streams: dict[Key, HubStream] = {}
        self._linger = linger

    def open(
        self, workflow_id: str, run_id: str, generation: int, start: int = 0, prefix: str = ""
    ) -> HubStream:
        self._sweep()
        key = (workflow_id, run_id)
        old = self._streams.get(key)
        if old is not None and old.generation > generation:
            return HubStream(run_id, generation, start, prefix)  # stale attempt: nobody reads it
        if old is not None and old.end is None:
            old.close(END_SUPERSEDED)
        stream = HubStream(run_id, generation, start, prefix)
        self._streams[key] = stream
        return stream

    def get(self, workflow_id: str, run_id: str) -> HubStream | None:
        return self._streams.get((workflow_id, run_id))

    def __len__(self) -> int:
        return len(self._streams)

    def _sweep(self) -> None:
        now = time.monotonic()
        for key, stream in list(self._streams.items()):
            if stream.ended_at is not None and now - stream.ended_at > self._linger:
                del self._streams[key]
