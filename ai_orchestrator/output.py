"""The one rule for assembling streamed output, used by the workflow and the client.

Chunks arrive as batches tagged with the attempt that produced them. A batch
from a newer attempt means the provider call started over, so the text of the
older attempt is dropped rather than mixed in; batches from an older attempt
arrive late and are ignored; overlapping batches are deduplicated by offset.
The workflow runs this on live signals, the client runs it over recorded
history (to recover the partial output of a cancelled run), so both agree.
"""

from __future__ import annotations

from .messages import ChunkBatch


class OutputBuffer:
    def __init__(self) -> None:
        self.attempt = 0
        self.chunks = 0
        self.restarts = 0
        self._parts: list[str] = []
        self._length = 0
        self._joined: str | None = ""

    @property
    def length(self) -> int:
        return self._length

    @property
    def text(self) -> str:
        if self._joined is None:
            self._joined = "".join(self._parts)
            self._parts = [self._joined]
        return self._joined

    def apply(self, batch: ChunkBatch) -> bool:
        """Fold one batch in; returns False if it was stale or left a gap."""
        if batch.attempt < self.attempt:
            return False
        if batch.attempt > self.attempt:
            if self._length or self.attempt:
                self.restarts += 1
            self.attempt = batch.attempt
            self._parts, self._length, self._joined, self.chunks = [], 0, "", 0
        if batch.offset > self._length:
            return False
        fresh = batch.text[self._length - batch.offset :]
        if fresh:
            self._parts.append(fresh)
            self._length += len(fresh)
            self._joined = None
        self.chunks += batch.chunks
        return True
