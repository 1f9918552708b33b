"""The activity that calls the provider: one streamed completion per attempt.

The openai client is injected with ``max_retries=0``: Temporal's retry policy is
the only retry layer, so each attempt is visible in history and Retry-After is
honoured through ``next_retry_delay``. The activity heartbeats on its own
schedule (not per chunk) so that a cancel reaches it and a dead worker is
noticed within the heartbeat timeout even while the provider is silent. Its
heartbeat details carry what the next attempt must know (see ``_attempts``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Mapping, Sequence
from datetime import timedelta

from openai import AsyncOpenAI
from temporalio import activity
from temporalio.api.enums.v1 import PendingActivityState
from temporalio.exceptions import ApplicationError

from ..config import DEFAULT_MODEL
from ..core import Platform
from ..errors import (
    CANCELLED_BEFORE_START,
    CONFIGURATION_ERROR,
    CONTENT_FILTERED,
    DEADLINE_EXCEEDED,
    OUTPUT_TOO_LARGE,
    PROVIDER_FAULTS_EXHAUSTED,
    PROVIDER_NOT_CONFIGURED,
    RATE_LIMITED,
    WORKER_SHUTDOWN,
    ContinuationLost,
    classify,
    redact,
    redaction_echoes,
)
from ..live import (
    END_CANCELLED,
    END_COMPLETED,
    END_FAILED,
    END_HANDED_OVER,
    LivePublisher,
    LiveSink,
)
from ..messages import (
    CHUNKS_SIGNAL,
    MAX_OUTPUT_BYTES,
    PROGRESS_QUERY,
    STOP_ACTIVITY,
    STREAM_ACTIVITY,
    AttemptBill,
    AttemptState,
    ChunkBatch,
    CompletionOutput,
    CompletionRequest,
    Progress,
    ProgressQuery,
    RetrySettings,
    StopAnswers,
    StoppedAnswers,
)
from ..metrics import TaskMetrics
from ..pricing import PricingTable, UnknownModelError
from ..providers import FINISH_FILTERED, FINISH_LENGTH, Provider, ProviderStream, route
from ..providers._base import build_messages
from ..providers.openai import OpenAIProvider
from . import _attempts, _recovery, _stop
from ._publisher import ChunkPublisher

logger = logging.getLogger(__name__)

#: What to set when a task is routed to a platform this worker has no client for.
_SETUP_HINTS = {
    Platform.CHATGPT: "set OPENAI_API_KEY or OPENAI_BASE_URL",
    Platform.CLAUDE: "set ANTHROPIC_API_KEY (or ANTHROPIC_BASE_URL) and install the "
    "'anthropic' extra",
    Platform.GEMINI: "set GEMINI_API_KEY or GOOGLE_API_KEY (or GOOGLE_GEMINI_BASE_URL) and "
    "install the 'gemini' extra",
    Platform.CLAUDE_CODE: "install the claude CLI (npm install -g @anthropic-ai/claude-code) "
    "or point AI_ORCHESTRATOR_CLAUDE_BIN at it, and set ANTHROPIC_API_KEY",
}

#: How long a cancelled attempt may spend delivering its last text.
_FINAL_FLUSH_TIMEOUT = 2.0
#: How long an attempt waits for the provider to confirm a stop (it goes on after).
_STOP_TIMEOUT = 10.0
#: How long an attempt that found its task cancelled waits for Temporal to say so.
_CANCEL_DELIVERY_TIMEOUT = 10.0
#: Checkpoints widen as a run gets older, so that even a week-long task sends a
#: bounded number of signals: one per this fraction of the run's age at most.
_RUN_AGE_DIVISOR = 200.0


def json_size(text: str) -> int:
    """Bytes ``text`` takes inside a JSON payload, escapes included.

    A tab, a newline or a quote takes two bytes there and a control character
    six, so an answer's raw size can be a fraction of what Temporal stores.
    """
    return len(json.dumps(text, ensure_ascii=False).encode()) - 2


async def _stop_quietly(stopping: Awaitable[None]) -> None:
    """Wait a while for a stop to be confirmed (it goes on after); never raises."""
    try:
        await asyncio.wait_for(asyncio.shield(stopping), _STOP_TIMEOUT)
    except (Exception, asyncio.CancelledError) as exc:
        logger.warning("could not tell the provider to stop generating: %s", exc)


def _unseen(stream: ProviderStream, every: float) -> int:
    """Chunks a stream is expected to add before the next heartbeat, were its worker
    to die unseen meanwhile: half the interval at its pace (none once it ended)."""
    if stream.finish_reason is not None:
        return 0
    return round(stream.pace() * every / 2)


class _LastBeat:
    """When this attempt last heartbeated, so its final heartbeat is not lost.

    The SDK holds a heartbeat back for the throttle interval after the previous
    one, and drops a held one when the attempt ends. The heartbeat an attempt
    sends before failing carries what the next attempt must inherit (its bill,
    the provider-fault count), so the attempt waits out the window first.
    """

    def __init__(self, throttle: float) -> None:
        self.throttle = throttle
        self.at: float | None = None

    def send(self, details: object) -> None:
        activity.heartbeat(details)
        self.at = time.monotonic()

    async def last_word(self, details: object) -> None:
        held = self.at is not None and time.monotonic() - self.at < self.throttle
        wait = self.throttle - (time.monotonic() - self.at) if held and self.at else 0.0
        activity.heartbeat(details)
        if held:
            await asyncio.sleep(wait + 0.1)  # the SDK sends it when the window closes


class LLMActivities:
    """Provider calls, with their dependencies injected by the worker.

    Args:
        openai_client: built with ``max_retries=0`` (checked); serves OpenAI-compatible
            tasks unless ``providers`` names another client for them.
        providers: the vendor clients this worker serves, by platform; a task routed
            to a platform not here fails at once, clearly.
        default_model: used when a task names none.
        pricing: turns usage into cost; a strict table rejects unknown models.
        flush_interval: seconds between chunk signals (and before the first) when
            the worker is not busy and there is no live channel (readers then
            follow the workflow's checkpoints, so they must be frequent).
        live: the live channel text is published on as it is produced; with it,
            chunk signals are only durable checkpoints, ``checkpoint_interval`` apart.
        checkpoint_interval: seconds between checkpoints when ``live`` is set.
        checkpoints_per_second: the worker's budget of checkpoints when ``live`` is
            set. Each is a signal, a workflow task and ~4 history writes; with
            readers on the live channel they only need to keep partial output and
            resume points, so many streams share a small budget (measured: at 300
            streams, 50 signals/s left the file-backed dev server too busy to
            start new workflows).
        signals_per_second: the worker's budget of chunk signals, shared by all
            its streams: each signal costs a workflow task, so with many
            concurrent streams each one signals less often (bigger batches)
            instead of the worker falling behind on workflow tasks.
        heartbeat_interval: the gap between heartbeats; it shrinks to a third of a
            task's heartbeat timeout when that is shorter.
        heartbeats_per_second: the worker's heartbeat budget, shared by its
            attempts: with more streams each heartbeats less often, within a third
            of its heartbeat timeout (a long timeout lets a busy worker save most).
        heartbeat_throttle: the worker's heartbeat throttle interval (the SDK
            holds a heartbeat back that long after the previous one).
        secrets: strings that must never appear in an error message.
        max_output_bytes: the answer's size once JSON-encoded, as Temporal stores it.
    """

    def __init__(
        self,
        openai_client: AsyncOpenAI | None = None,
        *,
        providers: Mapping[Platform, Provider] | None = None,
        default_model: str = DEFAULT_MODEL,
        pricing: PricingTable | None = None,
        flush_interval: float = 0.12,
        heartbeat_interval: float = 1.0,
        heartbeat_throttle: float = 1.0,
        signals_per_second: float = 50.0,
        secrets: Sequence[str] = (),
        max_output_bytes: int = MAX_OUTPUT_BYTES,
        live: LivePublisher | None = None,
        checkpoint_interval: float = 1.0,
        checkpoints_per_second: float = 10.0,
        heartbeats_per_second: float = 100.0,
    ) -> None:
        self._providers: dict[Platform, Provider] = dict(providers or {})
        if openai_client is not None:
            self._providers.setdefault(Platform.CHATGPT, OpenAIProvider(openai_client))
        self._default_model = default_model
        self._pricing = pricing or PricingTable()
        self._flush_interval = flush_interval
        self._signals_per_second = signals_per_second
        self._streaming = 0
        self._heartbeat_interval = heartbeat_interval
        self._heartbeat_throttle = heartbeat_throttle
        self._secrets = tuple(s for s in secrets if s)
        self._max_output_bytes = max_output_bytes
        self._metrics: TaskMetrics | None = None
        self._live = live
        self._checkpoint_interval = checkpoint_interval
        self._checkpoints_per_second = checkpoints_per_second
        self._heartbeats_per_second = heartbeats_per_second

    def _meter(self) -> TaskMetrics:
        if self._metrics is None:
            self._metrics = TaskMetrics(activity.metric_meter())
        return self._metrics

    @activity.defn(name=STOP_ACTIVITY)
    async def stop_answers(self, request: StopAnswers) -> StoppedAnswers:
        """Cancel answers the task gave up on while no attempt ran (see ``_stop``)."""
        return await _stop.stop_answers(self._providers, self._pricing, request)

    @activity.defn(name=STREAM_ACTIVITY)
    async def stream_completion(self, request: CompletionRequest) -> CompletionOutput:
        platform, model = route(request.task, self._default_model)
        try:
            return await self._stream_completion(request, platform, model)
        except ApplicationError as exc:
            # The model and platform actually called, for the task's route.
            called = {"model": model, "platform": platform.value}
            raise ApplicationError(
                exc.message,
                *(exc.details[:1] or (None,)),
                called,
                type=exc.type,
                non_retryable=exc.non_retryable,
                next_retry_delay=exc.next_retry_delay,
            ) from None

    async def _stream_completion(
        self, request: CompletionRequest, platform: Platform, model: str
    ) -> CompletionOutput:
        info = activity.info()
        provider = self._providers.get(platform)
        if provider is None:
            raise ApplicationError(
                f"{platform.value} is not configured on this worker (model {model!r}): "
                f"{_SETUP_HINTS.get(platform, 'this platform is not supported yet')}",
                type=PROVIDER_NOT_CONFIGURED,
                non_retryable=True,
            )
        try:
            self._pricing.check(model)
        except UnknownModelError as exc:
            raise ApplicationError(str(exc), type=CONFIGURATION_ERROR, non_retryable=True) from None
        prompt_chars = sum(len(m["content"]) for m in build_messages(request.task))
        prior = _attempts.inherited(info.heartbeat_details)
        state, lost = _attempts.begin(
            info.attempt,
            prior,
            prompt_chars,
            request.generation_base,
            model=model,
            price=self._pricing.lookup(model),
        )
        for bill in lost:
            bill.platform = platform.value
            self._meter().completion(
                bill.model, bill.prompt_tokens, bill.completion_tokens, bill.cost, platform.value
            )
        handle = activity.client().get_workflow_handle(
            info.workflow_id, run_id=info.workflow_run_id
        )
        if info.attempt > 1 and (prior is None or not prior.closed):
            # The attempt before died with its worker, and the run's next workflow
            # task would wait on that worker's sticky queue until it times out.
            await _recovery.unstick(activity.client(), info.workflow_id, info.workflow_run_id)
        if info.attempt > 1:
            # Temporal retries an attempt that timed out even when the task was
            # cancelled meanwhile (its dead worker never heard the cancel): look
            # before paying the provider for an answer nobody wants.
            await self._refuse_if_cancelled(handle, state, provider)

        async def send(batch: ChunkBatch) -> None:
            await handle.signal(CHUNKS_SIGNAL, batch)

        beat = _LastBeat(self._throttle_for(info.heartbeat_timeout))
        # A retry continues its predecessor's text where the provider kept it ...
        stream: ProviderStream | None = None
        if state.continuation:
            stream = await self._reattach(provider, request, model, state, handle, beat)
        if stream is None:
            # ... or its work (a Claude Code session), or starts over.
            resume = state.resume_token
            stream = (
                provider.stream(request.task, model, resume=resume)  # type: ignore[call-arg]
                if resume
                else provider.stream(request.task, model)
            )
        publisher = ChunkPublisher(
            send,
            attempt=info.attempt,
            run_id=info.workflow_run_id,
            generation=state.generation,
            interval=self._interval_for(request),
            urgent=self._interval_for(request, floor=False),
            offset=state.continued_at,
            max_signals=max(0, _attempts.MAX_RUN_SIGNALS - state.signals),
            max_chars=max(0, _attempts.MAX_RUN_SIGNALLED_CHARS - state.signalled_chars),
            # A signal held up for a heartbeat interval: heartbeats were held up too.
            slow_after=info.heartbeat_timeout.total_seconds() / 3
            if info.heartbeat_timeout
            else None,
        )
        live = self._open_live(state, publisher)
        on_read = getattr(live, "on_read", None)  # sinks written before it may lack it
        if on_read is not None:
            on_read(publisher.checkpoint_now)  # what readers see, the record keeps
        handle_sent = False

        def handle_known() -> None:
            nonlocal handle_sent
            handle_sent = True
            beat.send(self._details(state, stream, publisher))

        stream.on_handle = handle_known
        heartbeats = asyncio.create_task(
            self._heartbeat(state, stream, publisher, info.heartbeat_timeout, beat)
        )
        started = time.monotonic()
        self._streaming += 1
        first_chunk: float | None = None
        size = state.continued_at  # a continuation's earlier text counts towards the cap

        def close(outcome: str, error_type: str | None = None) -> AttemptBill | None:
            state.chars, state.chunks = stream.chars, stream.chunks
            bill = _attempts.close(
                state,
                outcome=outcome,
                pricing=self._pricing,
                usage=stream.usage,
                opened=stream.opened,
                prompt_chars=prompt_chars,
                error_type=error_type,
                vendor_cost=stream.cost_usd,
                response_id=stream.response_id,
                unaccounted=stream.unaccounted,
                platform=platform.value,
            )
            if bill is not None:
                self._meter().completion(
                    bill.model,
                    bill.prompt_tokens,
                    bill.completion_tokens,
                    bill.cost,
                    platform.value,
                )
            return bill

        try:
            async with stream:
                async for delta in stream:
                    if first_chunk is None:
                        first_chunk = time.monotonic() - started
                        if (live is not None or stream.response_id is not None) and not (
                            handle_sent
                        ):
                            # At once, not a heartbeat interval later: readers learn where
                            # to look, and a worker that dies now leaves the answer's id
                            # for the next attempt to re-attach to. (Not before the first
                            # text: a refused request must not hold back the heartbeat
                            # its failure sends.)
                            beat.send(self._details(state, stream, publisher))
                    size += json_size(delta)
                    if size > self._max_output_bytes:
                        raise self._too_large()
                    if live is not None:
                        live.add(delta)
                    publisher.add(delta)
            if stream.finish_reason == FINISH_FILTERED:
                raise ApplicationError(
                    f"the provider refused or filtered the answer after {stream.chars} "
                    f"characters (content filter: finish reason {stream.vendor_finish_reason}); "
                    "the partial output is kept. The same prompt would be filtered again, so "
                    "it is not retried.",
                    type=CONTENT_FILTERED,
                    non_retryable=True,
                )
            offset, tail = await publisher.finish()
            if live is not None:
                live.close(END_COMPLETED)
        except asyncio.CancelledError:
            # The stream is closed already (the provider stops generating); keep
            # what was produced so the cancelled task reports its partial output.
            details = activity.cancellation_details()
            handover = (
                details is not None and details.worker_shutdown and not details.cancel_requested
            )
            if live is not None:
                live.close(END_HANDED_OVER if handover else END_CANCELLED)
            # A background answer goes on unless told to stop: stop it for the user's
            # cancel, not when the server gave up on this attempt (timed out during an
            # outage): the next attempt re-attaches to it. One whose id never reached
            # us is stopped whatever the reason: no later attempt could re-attach.
            if details is None or details.cancel_requested or stream.unaccounted:
                await self._stop_provider(stream)
            close("handed_over" if handover else "cancelled")
            await publisher.flush(_FINAL_FLUSH_TIMEOUT, ledger=state.ledger)
            if handover:
                # Not the user's cancel: hand the attempt to another worker now
                # rather than after the heartbeat timeout.
                await beat.last_word(self._details(state, stream, publisher))
                raise ApplicationError(
                    "the worker shut down mid-stream; another worker takes over",
                    type=WORKER_SHUTDOWN,
                ) from None
            raise
        except ApplicationError as exc:
            if live is not None:
                live.close(END_FAILED)
            if exc.non_retryable:
                await self._stop_provider(stream)
            close("failed", exc.type)
            await publisher.flush(_FINAL_FLUSH_TIMEOUT, ledger=state.ledger)
            raise ApplicationError(
                exc.message,
                state.ledger,
                type=exc.type,
                non_retryable=exc.non_retryable,
                next_retry_delay=exc.next_retry_delay,
            ) from None
        except Exception as exc:
            if live is not None:
                live.close(END_FAILED)
            continuable = stream.opened and (
                stream.continuation(publisher.delivered - publisher.start) is not None
            )
            error = self._to_application_error(exc, request, state, continuable=continuable)
            if error.non_retryable or stream.unaccounted:
                await self._stop_provider(stream)
            billed = close("failed", error.type)
            # The bill travels with the last checkpoint: a task cancelled while it
            # waits for its next attempt still reports what this one cost.
            await publisher.flush(_FINAL_FLUSH_TIMEOUT, ledger=state.ledger if billed else None)
            if not error.non_retryable:
                await beat.last_word(self._details(state, stream, publisher))
            raise error from None
        finally:
            if live is not None:
                live.close(END_FAILED)  # no-op once closed: an unexpected end is a failure
            self._streaming -= 1
            heartbeats.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeats

        usage = stream.final_usage()
        close("completed")
        if publisher.troubled:
            # Temporal was unreachable for a heartbeat interval or more while this
            # attempt streamed: it may have timed the attempt out, and then refuses this
            # result; only a signal tells the task what the answer it paid for cost.
            await publisher.send_bill(state.ledger, _FINAL_FLUSH_TIMEOUT)
        cost = stream.cost_usd
        if cost is None:
            cost = self._pricing.cost(stream.model, usage.prompt_tokens, usage.completion_tokens)
        if cost is None:
            cost = self._pricing.cost(model, usage.prompt_tokens, usage.completion_tokens)
        if first_chunk is not None:
            self._meter().first_chunk.record(first_chunk, {"model": stream.model})
        return CompletionOutput(
            attempt=info.attempt,
            offset=offset,
            tail=tail,
            finish_reason=stream.finish_reason or "stop",
            model=stream.model,
            usage=usage,
            cost=cost or 0.0,
            cost_known=cost is not None,
            chunks=stream.chunks,
            signals=publisher.signals,
            first_chunk_seconds=first_chunk,
            generation=state.generation,
            ledger=state.ledger,
            platform=platform.value,
            vendor_finish_reason=stream.vendor_finish_reason,
            truncated=stream.finish_reason == FINISH_LENGTH,
            files_created=stream.files_created,
            resume_token=stream.resume_token,
        )

    # -- cancellation before the provider is called ----------------------------------

    async def _refuse_if_cancelled(
        self, handle: object, state: AttemptState, provider: Provider
    ) -> None:
        info = activity.info()
        try:
            desc = await handle.describe()  # type: ignore[attr-defined]
        except Exception as exc:  # the check must not turn an outage into a failure
            logger.warning("could not check for a cancel before calling the provider: %s", exc)
            return
        # The workflow's own flag: Temporal drops the activity's cancel request
        # when it retries an attempt that timed out, but not the workflow's.
        requested = desc.raw_description.workflow_extended_info.cancel_requested or any(
            p.activity_id == info.activity_id
            and p.state == PendingActivityState.PENDING_ACTIVITY_STATE_CANCEL_REQUESTED
            for p in desc.raw_description.pending_activities
        )
        if not requested:
            return
        # An answer an earlier attempt left generating in the background is stopped.
        if state.continuation:
            await self._stop_continuation(provider, state.continuation)
        if state.ledger.attempts:  # what earlier attempts cost reaches the cancelled task
            with contextlib.suppress(Exception):
                await handle.signal(  # type: ignore[attr-defined]
                    CHUNKS_SIGNAL,
                    ChunkBatch(
                        attempt=info.attempt,
                        offset=0,
                        text="",
                        run_id=info.workflow_run_id,
                        generation=state.generation,
                        ledger=state.ledger,
                        bill_only=True,
                    ),
                )
        # Let Temporal deliver the cancel (the heartbeat's answer carries it), so
        # the attempt ends as cancelled, not failed; no prompt is sent.
        activity.heartbeat(state)
        await asyncio.sleep(_CANCEL_DELIVERY_TIMEOUT)
        raise ApplicationError(
            "the task was cancelled before this attempt called the provider",
            state.ledger,
            type=CANCELLED_BEFORE_START,
            non_retryable=True,
        )

    # -- continuing an earlier attempt's text ------------------------------------------

    async def _reattach(
        self,
        provider: Provider,
        request: CompletionRequest,
        model: str,
        state: AttemptState,
        handle: object,
        beat: _LastBeat,
    ) -> ProviderStream | None:
        """The rest of the answer an earlier attempt streamed, or None to start over.

        Starting over takes a new generation, so readers see a restart: the text
        of two answers is never joined. A passing failure (an outage, a rate
        limit) fails this attempt and keeps the continuation for the next one.
        """
        token = state.continuation
        assert token is not None
        info = activity.info()
        try:
            extra: dict[str, str] = {}
            if token.startswith("chat:"):  # a chat continuation sends the text so far
                try:
                    extra["prefix"] = await self._checkpoint_text(handle, state)
                except ContinuationLost:
                    raise
                except Exception as exc:
                    raise ContinuationLost(f"cannot read the text to continue: {exc}") from exc
            stream = provider.stream(request.task, model, continue_from=token, **extra)  # type: ignore[call-arg]
        except ContinuationLost as exc:
            stream, lost = None, exc
        else:
            try:
                await stream.__aenter__()
                return stream
            except ContinuationLost as exc:
                lost = exc
                await stream.close()
            except asyncio.CancelledError:
                await stream.close()
                details = activity.cancellation_details()
                if details is None or details.cancel_requested:
                    await self._stop_continuation(provider, token)
                raise
            except Exception as exc:
                await stream.close()
                error = self._to_application_error(exc, request, state, continuable=True)
                if error.non_retryable:  # no attempt will re-attach: stop paying for it
                    await self._stop_continuation(provider, token)
                else:
                    state.closed = True  # nothing to bill: it never streamed
                    await beat.last_word(state)
                raise error from None
        logger.info("cannot continue the earlier answer, starting over: %s", lost)
        state.continuation, state.continued_at, state.response_id = None, 0, None
        state.generation = request.generation_base + info.attempt
        return None

    async def _checkpoint_text(self, handle: object, state: AttemptState) -> str:
        """The durable text a chat continuation resumes after (from the workflow)."""
        progress = await handle.query(  # type: ignore[attr-defined]
            PROGRESS_QUERY, ProgressQuery(offset=0), result_type=Progress
        )
        if progress.attempt != state.generation or progress.length < state.continued_at:
            raise ContinuationLost("the workflow's checkpoint does not hold the text to continue")
        return str(progress.text[: state.continued_at])

    @staticmethod
    async def _stop_continuation(provider: Provider, token: str) -> None:
        """Stop the answer an earlier attempt left generating; never raises."""
        cancel_continuation = getattr(provider, "cancel_continuation", None)
        if cancel_continuation is not None:
            await _stop_quietly(cancel_continuation(token))

    @staticmethod
    async def _stop_provider(stream: ProviderStream) -> None:
        """Tell the provider to stop an answer nobody will read; never raises."""
        await _stop_quietly(stream.cancel())

    # -- the live channel ----------------------------------------------------------------

    def _open_live(self, state: AttemptState, publisher: ChunkPublisher) -> LiveSink | None:
        """Publish this attempt's text live; readers find it in the heartbeat details."""
        if self._live is None or not self._live.address:
            return None
        info = activity.info()
        try:
            sink = self._live.open(
                info.workflow_id, info.workflow_run_id, state.generation, publisher.delivered
            )
        except Exception as exc:  # readers fall back to the workflow's checkpoints
            logger.warning("live channel unavailable for this attempt: %s", exc)
            return None
        state.live = self._live.address
        return sink

    # -- pacing ------------------------------------------------------------------------

    def _interval_for(self, request: CompletionRequest, *, floor: bool = True) -> object:
        """Seconds until the next chunk signal, asked anew before each one; without
        ``floor``, only what the worker's signal budget and the run's age ask for."""
        constraints = request.task.effective_constraints
        run_started = (
            request.deadline_epoch - (constraints.timeout_seconds or 0.0)
            if request.deadline_epoch is not None
            else time.time()
        )

        def interval() -> float:
            budget = self._signals_per_second
            if self._live is not None:
                budget = min(budget, self._checkpoints_per_second)
            busy = self._streaming / budget
            age = max(0.0, time.time() - run_started) / _RUN_AGE_DIVISOR
            least = self._checkpoint_interval if self._live is not None else self._flush_interval
            return max(least if floor else 0.0, busy, age)

        return interval

    def _heartbeat_every(self, timeout: timedelta | None) -> float:
        """Seconds to the next heartbeat: often (a cancel arrives with one), less so
        when many attempts share the worker's budget (each heartbeat is a write on
        the server: 300 streams at one a second kept a dev server 80% busy), and
        always a third of the heartbeat timeout at most (a dead worker is noticed)."""
        busy = max(self._heartbeat_interval, self._streaming / self._heartbeats_per_second)
        if timeout is None:
            return busy
        return min(busy, timeout.total_seconds() / 3)

    @staticmethod
    def _details(
        state: AttemptState, stream: ProviderStream, publisher: ChunkPublisher
    ) -> AttemptState:
        # Progress only, never text: heartbeat details are stored by the server.
        # A continuation is taken where the workflow's checkpoint ends, so the
        # next attempt's text joins the durable text exactly.
        acked = publisher.delivered
        own = stream.continuation(acked - publisher.start)
        # (A stream names its answer before it is opened: the create reads that far.)
        continuation = own if stream.opened or own is not None else state.continuation
        return state.model_copy(
            update={
                "chars": stream.chars,
                "chunks": stream.chunks,
                "resume_token": stream.resume_token or state.resume_token,
                "signals": state.signals + publisher.signals,
                "signalled_chars": state.signalled_chars + acked - publisher.start,
                "continuation": continuation,
                "continued_at": acked if continuation else 0,
                "response_id": stream.response_id or state.response_id,
            }
        )

    def _throttle_for(self, timeout: timedelta | None) -> float:
        """How long the SDK holds back a heartbeat after the previous one."""
        if timeout is None:
            return self._heartbeat_throttle
        return min(self._heartbeat_throttle, 0.8 * timeout.total_seconds())

    async def _heartbeat(
        self,
        state: AttemptState,
        stream: ProviderStream,
        publisher: ChunkPublisher,
        timeout: timedelta | None,
        beat: _LastBeat,
    ) -> None:
        # The first waits an interval: a short answer needs no heartbeat at all.
        while True:
            every = self._heartbeat_every(timeout)
            await asyncio.sleep(every)
            details = self._details(state, stream, publisher)
            beat.send(details.model_copy(update={"unseen_chunks": _unseen(stream, every)}))

    # -- errors ------------------------------------------------------------------------

    def _too_large(self) -> ApplicationError:
        return ApplicationError(
            f"the answer exceeded {self._max_output_bytes:,} bytes once encoded, more than a "
            "Temporal payload can safely carry; the stream was stopped. Set max_tokens to "
            "bound it.",
            type=OUTPUT_TOO_LARGE,
            non_retryable=True,
        )

    def _to_application_error(
        self,
        exc: BaseException,
        request: CompletionRequest,
        state: AttemptState,
        *,
        continuable: bool = False,
    ) -> ApplicationError:
        """``continuable``: the next attempt re-attaches to the answer instead of paying
        for it again, so a broken stream is not a fault that uses up the task's bound."""
        verdict = classify(exc)
        if verdict.retryable and verdict.error_type == RATE_LIMITED:
            self._meter().rate_limited.add(1, {"model": state.model})
        # Providers echo keys (masked) and sometimes the prompt or context in error
        # bodies; errors are stored in history, so none of them may stay in the message.
        task = request.task
        echoes = redaction_echoes(task.prompt, task.context)
        message = redact(verdict.message, *self._secrets, *echoes)
        deadline = request.deadline_epoch
        if verdict.retryable and verdict.retry_after is not None and deadline is not None:
            remaining = deadline - time.time()
            if verdict.retry_after > remaining:
                return ApplicationError(
                    f"rate limited beyond the task's deadline: the provider asked to wait "
                    f"{verdict.retry_after:.1f}s but only {max(0.0, remaining):.1f}s remain; "
                    f"{message}",
                    state.ledger,
                    type=DEADLINE_EXCEEDED,
                    non_retryable=True,
                )
        retryable = verdict.retryable
        if retryable and verdict.error_type in _attempts.PROVIDER_FAULTS and not continuable:
            state.provider_faults += 1
            bound = request.retry.max_attempts if request.retry is not None else None
            if bound is not None and state.provider_faults >= bound:
                return ApplicationError(
                    f"gave up after {state.provider_faults} provider faults "
                    f"(RetrySettings.max_attempts={bound}); the last: {message}",
                    state.ledger,
                    type=PROVIDER_FAULTS_EXHAUSTED,
                    non_retryable=True,
                )
        if not retryable:
            logger.warning("non-retryable provider error: %s", message)
        delay = verdict.retry_after
        if retryable and not delay:
            # Temporal's own backoff has no jitter: tasks that failed together would
            # come back together, at the same interval, every time.
            delay = _attempts.backoff(activity.info().attempt, request.retry or RetrySettings())
            if deadline is not None:
                delay = min(delay, max(0.0, (deadline - time.time()) / 2))
        return ApplicationError(
            message,
            state.ledger,
            type=verdict.error_type,
            non_retryable=not retryable,
            next_retry_delay=timedelta(seconds=delay) if retryable and delay else None,
        )
