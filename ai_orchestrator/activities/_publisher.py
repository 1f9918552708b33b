"""Batches streamed text into few signals, with never more than one in flight.

Temporal caps a run at 10,000 signals and every signal adds history events and
a workflow task, so one signal per token is out of the question. Text that
arrives while a signal is in flight, or within ``interval`` of the last one,
waits and goes out in the next batch. The first batch waits a full interval,
so an answer that completes within it sends no signal at all: its text travels
in the activity result, and a short task costs what a bare activity costs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from ..messages import ChunkBatch

logger = logging.getLogger(__name__)

SendBatch = Callable[[ChunkBatch], Awaitable[None]]
#: Seconds between signals: fixed, or asked anew before each (it may grow with load).
Interval = float | Callable[[], float]


class ChunkPublisher:
    def __init__(self, send: SendBatch, *, attempt: int, interval: Interval) -> None:
        self._send = send
        self._attempt = attempt
        self._interval = interval if callable(interval) else (lambda: interval)
        self._pending: list[str] = []
        self._pending_chunks = 0
        self._acked = 0
        self._next_send_at: float | None = None
        self._task: asyncio.Task[None] | None = None
        self._sending = False
        self._closing = False
        self._broken = False
        self.signals = 0

    @property
    def delivered(self) -> int:
        """Characters the workflow has certainly received."""
        return self._acked

    def add(self, text: str) -> None:
        self._pending.append(text)
        self._pending_chunks += 1
        loop = asyncio.get_running_loop()
        if self._next_send_at is None:
            self._next_send_at = loop.time() + self._interval()
        if not self._broken and not self._closing and (self._task is None or self._task.done()):
            self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending and not self._closing and not self._broken:
            assert self._next_send_at is not None
            delay = self._next_send_at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
                if self._closing:
                    return
            await self._send_pending()
            self._next_send_at = loop.time() + self._interval()

    async def _send_pending(self) -> None:
        text, chunks = "".join(self._pending), self._pending_chunks
        self._pending, self._pending_chunks = [], 0
        self._sending = True
        try:
            await self._send(
                ChunkBatch(attempt=self._attempt, offset=self._acked, text=text, chunks=chunks)
            )
        except asyncio.CancelledError:
            # Unknown whether it landed; resending from the same offset is safe
            # because the workflow deduplicates by offset.
            self._pending.insert(0, text)
            self._pending_chunks += chunks
            raise
        except Exception as exc:  # the workflow may be gone; the result still carries the text
            logger.warning("chunk signal failed, keeping text for the result: %s", exc)
            self._pending.insert(0, text)
            self._pending_chunks += chunks
            self._broken = True
            return
        finally:
            self._sending = False
        self._acked += len(text)
        self.signals += 1

    async def _stop(self) -> None:
        self._closing = True
        task = self._task
        if task is None or task.done():
            return
        if not self._sending:
            task.cancel()
        # asyncio.wait does not raise for the task's own cancellation, only ours.
        await asyncio.wait({task})

    async def finish(self) -> tuple[int, str]:
        """Stop batching; returns (offset, text) not yet delivered, for the result."""
        await self._stop()
        return self._acked, "".join(self._pending)

    async def flush(self, timeout: float) -> None:
        """Deliver everything now, best effort: used on cancel to keep the partial output."""
        await self._stop()
        if self._pending and not self._broken:
            try:
                await asyncio.wait_for(self._send_pending(), timeout)
            except (asyncio.TimeoutError, asyncio.CancelledError):
                logger.warning("final chunk signal did not complete within %.1fs", timeout)
