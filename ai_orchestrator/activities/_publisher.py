"""Batches streamed text into few signals, with never more than one in flight.

Temporal caps a run at 10,000 signals and every signal adds history events and
a workflow task, so one signal per token is out of the question. Text that
arrives while a signal is in flight, or within ``interval`` of the last one,
waits and goes out in the next batch. The first batch waits a full interval,
so an answer that completes within it sends no signal at all: its text travels
in the activity result, and a short task costs what a bare activity costs.

A signal that fails for a passing reason (the server restarting, a timeout) is
retried with backoff: the text is only lost to live readers for a moment, never
for the rest of the attempt. Only a run that no longer exists stops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from temporalio.service import RPCError, RPCStatusCode

from ..messages import ChunkBatch, Ledger

logger = logging.getLogger(__name__)

SendBatch = Callable[[ChunkBatch], Awaitable[None]]
#: Seconds between signals: fixed, or asked anew before each (it may grow with load).
Interval = float | Callable[[], float]

_RETRY_FIRST = 0.5
_RETRY_MAX = 5.0


def _gone(exc: BaseException) -> bool:
    """The run is closed or unknown: no later signal can land either."""
    return isinstance(exc, RPCError) and exc.status == RPCStatusCode.NOT_FOUND


class ChunkPublisher:
    """Args:
    send: delivers one batch (a signal to the run).
    attempt: the activity attempt publishing.
    run_id: the run the text belongs to (see :class:`ChunkBatch`).
    generation: the stream the text belongs to; a newer one supersedes it.
    interval: seconds between signals.
    max_signals: signals this attempt may still send (the run's budget).
    max_chars: characters this attempt may still signal (the run's budget).
    offset: where this attempt's text starts in its stream (a continuation
        starts where the workflow's checkpoint ended).
    """

    def __init__(
        self,
        send: SendBatch,
        *,
        attempt: int,
        interval: Interval,
        run_id: str | None = None,
        generation: int | None = None,
        max_signals: int | None = None,
        max_chars: int | None = None,
        offset: int = 0,
        urgent: Interval = 0.0,
        slow_after: float | None = None,
    ) -> None:
        self._send = send
        self._attempt = attempt
        self._run_id = run_id
        self._generation = generation
        self._interval = interval if callable(interval) else (lambda: interval)
        self._urgent = urgent if callable(urgent) else (lambda: urgent)
        self._slow_after = slow_after
        self._max_signals = max_signals
        self._max_chars = max_chars
        self._pending: list[str] = []
        self._pending_chunks = 0
        self._acked = offset
        #: Where this attempt's text starts (``delivered`` counts from the stream's start).
        self.start = offset
        self._next_send_at: float | None = None
        self._task: asyncio.Task[None] | None = None
        self._sending = False
        self._closing = False
        self._broken = False
        self._failures = 0
        self.signals = 0
        self._hurry = asyncio.Event()
        #: A signal failed, or took longer than ``slow_after`` (the client waits out a
        #: server outage, and so do heartbeats): Temporal may have timed the attempt
        #: out meanwhile, so its end may not reach the server; its bill travels apart.
        self.troubled = False

    def checkpoint_now(self) -> None:
        """Send what is pending at once if nothing was checkpointed yet, then go on
        at the usual pace.

        Called when a reader first sees this attempt's text live, before the
        workflow has it: a worker dying in its first interval must not take what
        they saw with it. Without readers, a short answer still sends no signal.
        """
        if self.signals or self._closing or self._broken:
            return
        # At once, or as soon as the worker's signal budget allows (many streams).
        soon = asyncio.get_running_loop().time() + self._urgent()
        if self._next_send_at is None or soon < self._next_send_at:
            self._next_send_at = soon
        self._hurry.set()

    @property
    def delivered(self) -> int:
        """Characters the workflow has certainly received."""
        return self._acked

    def _exhausted(self) -> bool:
        """Past the run's budget, text travels in the result only."""
        return (self._max_signals is not None and self.signals >= self._max_signals) or (
            self._max_chars is not None and self._acked - self.start >= self._max_chars
        )

    def add(self, text: str) -> None:
        self._pending.append(text)
        self._pending_chunks += 1
        loop = asyncio.get_running_loop()
        if self._next_send_at is None:
            self._next_send_at = loop.time() + self._interval()
        if (
            not self._broken
            and not self._closing
            and not self._exhausted()
            and (self._task is None or self._task.done())
        ):
            self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending and not self._closing and not self._broken and not self._exhausted():
            assert self._next_send_at is not None
            delay = self._next_send_at - loop.time()
            if delay > 0:
                self._hurry.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._hurry.wait(), delay)
                if self._closing:
                    return
                continue  # the time to send may have moved (see checkpoint_now)
            sent = await self._send_pending()
            if sent:
                self._next_send_at = loop.time() + self._interval()
            else:
                backoff = min(_RETRY_MAX, _RETRY_FIRST * 2 ** (self._failures - 1))
                self._next_send_at = loop.time() + backoff

    def _batch(self, text: str, chunks: int, ledger: Ledger | None) -> ChunkBatch:
        return ChunkBatch(
            attempt=self._attempt,
            offset=self._acked,
            text=text,
            chunks=chunks,
            run_id=self._run_id,
            generation=self._generation,
            ledger=ledger,
            bill_only=not text and ledger is not None,
        )

    async def _send_pending(self, ledger: Ledger | None = None) -> bool:
        text, chunks = "".join(self._pending), self._pending_chunks
        self._pending, self._pending_chunks = [], 0
        self._sending = True
        began = asyncio.get_running_loop().time()
        try:
            await self._send(self._batch(text, chunks, ledger))
        except asyncio.CancelledError:
            # Unknown whether it landed; resending from the same offset is safe
            # because the workflow deduplicates by offset.
            self._pending.insert(0, text)
            self._pending_chunks += chunks
            raise
        except Exception as exc:  # the result still carries the text; retry unless gone
            self._pending.insert(0, text)
            self._pending_chunks += chunks
            self._failures += 1
            self.troubled = True
            if _gone(exc):
                logger.warning("the run is gone; chunk text stays in the result: %s", exc)
                self._broken = True
            else:
                logger.warning("chunk signal failed (try %d), retrying: %s", self._failures, exc)
            return False
        finally:
            self._sending = False
            took = asyncio.get_running_loop().time() - began
            if self._slow_after is not None and took > self._slow_after:
                self.troubled = True
        self._failures = 0
        self._acked += len(text)
        self.signals += 1
        return True

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

    async def send_bill(self, ledger: Ledger, timeout: float) -> None:
        """Send ``ledger`` alone (no text: what is pending stays for the result)."""
        try:
            await asyncio.wait_for(self._send(self._batch("", 0, ledger)), timeout)
        except (Exception, asyncio.CancelledError) as exc:
            logger.warning("the bill's signal did not complete: %s", exc)

    async def flush(self, timeout: float, ledger: Ledger | None = None) -> None:
        """Deliver everything now, best effort: on cancel, to keep the partial output.

        ``ledger`` travels with the last batch (sent even without text), so a task
        that ends here still reports what the provider billed.
        """
        await self._stop()
        if (self._pending or (ledger is not None and ledger.attempts)) and not self._broken:
            try:
                await asyncio.wait_for(self._send_pending(ledger), timeout)
            except (asyncio.TimeoutError, asyncio.CancelledError):
                logger.warning("final chunk signal did not complete within %.1fs", timeout)
