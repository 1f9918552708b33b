"""One attempt's stream, from its first chunk to its bill.

However a stream ends (the answer, the user's cancel, the worker shutting down,
a provider failure, an answer refused as too large or filtered), the same
things must happen, in this order: readers on the live channel learn how it
ended, an answer nobody will read is told to stop, the attempt is billed once,
the text so far reaches the workflow with the bill, and an attempt that will be
retried leaves its last heartbeat for the next one. Every ending sits next to
the loop so that order is kept in one place.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from temporalio import activity
from temporalio.exceptions import ApplicationError

from ..core import Platform
from ..live import END_CANCELLED, END_COMPLETED, END_FAILED, END_HANDED_OVER, LiveSink
from ..messages import AttemptBill, AttemptState, CompletionOutput, CompletionRequest
from ..metrics import TaskMetrics
from ..pricing import PricingTable
from ..providers import FINISH_FILTERED, FINISH_LENGTH, ProviderStream
from . import _attempts, _failures, _stop
from ._budget import Budget
from ._pacing import LastBeat, Pacing
from ._publisher import ChunkPublisher

#: Claude Code's result subtype when its ``--max-budget-usd`` was reached.
AGENT_BUDGET_REACHED = "error_max_budget_usd"
#: How long a cancelled attempt may spend delivering its last text.
_FINAL_FLUSH_TIMEOUT = 2.0


def json_size(text: str) -> int:
    """Bytes ``text`` takes inside a JSON payload, escapes included.

    A tab, a newline or a quote takes two bytes there and a control character
    six, so an answer's raw size can be a fraction of what Temporal stores.
    """
    return len(json.dumps(text, ensure_ascii=False).encode()) - 2


@dataclass
class Relay:
    """An opened attempt: its stream, where the text goes, and the worker's parts
    it bills, paces and reports failures with (see ``LLMActivities``)."""

    request: CompletionRequest
    platform: Platform
    model: str
    state: AttemptState
    prompt_chars: int
    stream: ProviderStream
    publisher: ChunkPublisher
    beat: LastBeat
    live: LiveSink | None
    pacing: Pacing
    pricing: PricingTable
    meter: Callable[[], TaskMetrics]
    secrets: Sequence[str]
    max_output_bytes: int
    #: The task's cost cap, if it set one (``max_cost_usd``).
    budget: Budget | None = None
    #: Seconds from opening the stream to its first text.
    first_chunk: float | None = None
    #: A heartbeat naming the answer went out (readers and the next attempt find it).
    handle_sent: bool = False

    async def run(self) -> CompletionOutput:
        offset, tail = await self._relay()
        return await self._complete(offset, tail)

    def details(self) -> AttemptState:
        return _attempts.heartbeat_details(self.state, self.stream, self.publisher)

    def _announce(self) -> None:
        """Heartbeat at once: the stream just learned its answer's id."""
        self.handle_sent = True
        self.beat.send(self.details())

    async def _relay(self) -> tuple[int, str]:
        """Stream the answer to its readers, heartbeating meanwhile; the final
        checkpoint's offset and the text it did not carry."""
        stream, publisher, live = self.stream, self.publisher, self.live
        on_read = getattr(live, "on_read", None)  # sinks written before it may lack it
        if on_read is not None:
            on_read(publisher.checkpoint_now)  # what readers see, the record keeps
        stream.on_handle = self._announce
        heartbeats = asyncio.create_task(
            self.pacing.heartbeat(
                self.details, stream, activity.info().heartbeat_timeout, self.beat
            )
        )
        self.pacing.streaming += 1
        try:
            await self._read()
            if stream.finish_reason == FINISH_FILTERED:
                raise _failures.content_filtered(stream)
            if self.budget is not None and stream.vendor_finish_reason == AGENT_BUDGET_REACHED:
                raise self.budget.exceeded(stream.chunks)  # the agent CLI held the cap itself
            offset, tail = await publisher.finish()
            if live is not None:
                live.close(END_COMPLETED)
            return offset, tail
        except asyncio.CancelledError:
            await self._on_cancelled()
            raise
        except ApplicationError as exc:
            raise await self._on_refused(exc) from None
        except Exception as exc:
            raise await self._on_failed(exc) from None
        finally:
            if live is not None:
                live.close(END_FAILED)  # no-op once closed: an unexpected end is a failure
            self.pacing.streaming -= 1
            heartbeats.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeats

    async def _read(self) -> None:
        """Pass each delta to the live channel and the checkpoints, within the size cap."""
        stream, live = self.stream, self.live
        started = time.monotonic()
        size = self.state.continued_at  # a continuation's earlier text counts towards the cap
        async with stream:
            async for delta in stream:
                if self.first_chunk is None:
                    self.first_chunk = time.monotonic() - started
                    if (live is not None or stream.response_id is not None) and not (
                        self.handle_sent
                    ):
                        # At once, not a heartbeat interval later: readers learn where
                        # to look, and a worker that dies now leaves the answer's id
                        # for the next attempt to re-attach to. (Not before the first
                        # text: a refused request must not hold back the heartbeat
                        # its failure sends.)
                        self.beat.send(self.details())
                size += json_size(delta)
                if size > self.max_output_bytes:
                    raise _failures.too_large(self.max_output_bytes)
                if live is not None:
                    live.add(delta)
                self.publisher.add(delta)
                if self.budget is not None:
                    self._hold_budget(self.budget)

    def _hold_budget(self, budget: Budget) -> None:
        """Stop when the next chunk would cross the task's cap. A chunk is at least a
        token; a long one (Anthropic, Gemini) counts at about four characters a token,
        as estimated bills do."""
        spent = max(self.stream.chunks, _attempts.estimate_tokens(self.stream.chars))
        if budget.stop_after(spent):
            self.meter().budget_refusals.add(1, {"model": self.model})
            raise budget.exceeded(spent)

    # -- how the stream ends ---------------------------------------------------------

    async def _on_cancelled(self) -> None:
        """Keep what was produced, so the cancelled task reports its partial output
        (the stream is closed already: the provider stops generating). A worker
        shutting down hands the attempt over at once instead (``WORKER_SHUTDOWN``)."""
        stream = self.stream
        details = activity.cancellation_details()
        handover = details is not None and details.worker_shutdown and not details.cancel_requested
        if self.live is not None:
            self.live.close(END_HANDED_OVER if handover else END_CANCELLED)
        # A background answer goes on unless told to stop: stop it for the user's
        # cancel, not when the server gave up on this attempt (timed out during an
        # outage): the next attempt re-attaches to it. One whose id never reached
        # us is stopped whatever the reason: no later attempt could re-attach.
        if details is None or details.cancel_requested or stream.unaccounted:
            await _stop.stop_stream(stream)
        self._close("handed_over" if handover else "cancelled")
        await self.publisher.flush(_FINAL_FLUSH_TIMEOUT, ledger=self.state.ledger)
        if handover:
            # Not the user's cancel: hand the attempt to another worker now
            # rather than after the heartbeat timeout.
            await self.beat.last_word(self.details())
            raise _failures.worker_shutdown() from None

    async def _on_refused(self, exc: ApplicationError) -> ApplicationError:
        """An answer this activity gave up on (too large, filtered): ``exc``, with the bill."""
        if self.live is not None:
            self.live.close(END_FAILED)
        if exc.non_retryable:
            await _stop.stop_stream(self.stream)
        self._close("failed", exc.type)
        await self.publisher.flush(_FINAL_FLUSH_TIMEOUT, ledger=self.state.ledger)
        return _failures.restated(exc, self.state.ledger)

    async def _on_failed(self, exc: Exception) -> ApplicationError:
        """A provider failure, as Temporal's error; a retryable one leaves its last
        heartbeat (bill, fault count, continuation) to the next attempt."""
        stream, publisher, state = self.stream, self.publisher, self.state
        if self.live is not None:
            self.live.close(END_FAILED)
        continuable = stream.opened and (
            stream.continuation(publisher.delivered - publisher.start) is not None
        )
        error = _failures.to_application_error(
            exc,
            self.request,
            state,
            secrets=self.secrets,
            meter=self.meter,
            continuable=continuable,
        )
        if error.non_retryable or stream.unaccounted:
            await _stop.stop_stream(stream)
        billed = self._close("failed", error.type)
        # The bill travels with the last checkpoint: a task cancelled while it
        # waits for its next attempt still reports what this one cost.
        await publisher.flush(_FINAL_FLUSH_TIMEOUT, ledger=state.ledger if billed else None)
        if not error.non_retryable:
            await self.beat.last_word(self.details())
        return error

    def _close(self, outcome: str, error_type: str | None = None) -> AttemptBill | None:
        """Bill the attempt as it ends (once): into its ledger, and the metrics."""
        stream, state, platform = self.stream, self.state, self.platform.value
        state.chars, state.chunks = stream.chars, stream.chunks
        bill = _attempts.close(
            state,
            outcome=outcome,
            pricing=self.pricing,
            usage=stream.usage,
            opened=stream.opened,
            prompt_chars=self.prompt_chars,
            error_type=error_type,
            vendor_cost=stream.cost_usd,
            response_id=stream.response_id,
            unaccounted=stream.unaccounted,
            platform=platform,
        )
        if bill is not None:
            self.meter().completion(
                bill.model, bill.prompt_tokens, bill.completion_tokens, bill.cost, platform
            )
        return bill

    async def _complete(self, offset: int, tail: str) -> CompletionOutput:
        """The finished answer's result, billed and priced."""
        stream, state, publisher = self.stream, self.state, self.publisher
        usage = stream.final_usage()
        self._close("completed")
        if publisher.troubled:
            # Temporal was unreachable for a heartbeat interval or more while this
            # attempt streamed: it may have timed the attempt out, and then refuses this
            # result; only a signal tells the task what the answer it paid for cost.
            await publisher.send_bill(state.ledger, _FINAL_FLUSH_TIMEOUT)
        cost = stream.cost_usd
        if cost is None:
            cost = self.pricing.cost(stream.model, usage.prompt_tokens, usage.completion_tokens)
        if cost is None:
            cost = self.pricing.cost(self.model, usage.prompt_tokens, usage.completion_tokens)
        if self.first_chunk is not None:
            self.meter().first_chunk.record(self.first_chunk, {"model": stream.model})
        return CompletionOutput(
            attempt=activity.info().attempt,
            offset=offset,
            tail=tail,
            finish_reason=stream.finish_reason or "stop",
            model=stream.model,
            usage=usage,
            cost=cost or 0.0,
            cost_known=cost is not None,
            chunks=stream.chunks,
            signals=publisher.signals,
            first_chunk_seconds=self.first_chunk,
            generation=state.generation,
            ledger=state.ledger,
            platform=self.platform.value,
            vendor_finish_reason=stream.vendor_finish_reason,
            truncated=stream.finish_reason == FINISH_LENGTH,
            files_created=stream.files_created,
            resume_token=stream.resume_token,
        )
