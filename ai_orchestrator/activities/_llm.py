"""The activity that calls the provider: one streamed completion per attempt.

The openai client is injected with ``max_retries=0``: Temporal's retry policy is
the only retry layer, so each attempt is visible in history and Retry-After is
honoured through ``next_retry_delay``. The activity heartbeats on its own
schedule (not per chunk) so that a cancel reaches it and a dead worker is
noticed within the heartbeat timeout even while the provider is silent. Its
heartbeat details carry what the next attempt must know (see ``_attempts``).

This module takes an attempt as far as its opened stream: the provider for the
task's route, what earlier attempts left (``_attempts``), a run taken back from
a dead worker (``_recovery``), the answer re-attached to or started
(``_continuation``). From there ``_relay`` streams it and bills it however it
ends; how often it heartbeats and checkpoints is in ``_pacing``, and how it
fails, in ``_failures``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from openai import AsyncOpenAI
from temporalio import activity
from temporalio.client import WorkflowHandle
from temporalio.exceptions import ApplicationError

from ..budgets import Budgets
from ..config import DEFAULT_MODEL
from ..core import Platform
from ..errors import CONFIGURATION_ERROR
from ..limits import DEFAULT_MAX_TOKENS, Lease, Limiter
from ..live import LivePublisher, LiveSink
from ..messages import (
    CHUNKS_SIGNAL,
    MAX_OUTPUT_BYTES,
    STOP_ACTIVITY,
    STREAM_ACTIVITY,
    AttemptState,
    ChunkBatch,
    CompletionOutput,
    CompletionRequest,
    StopAnswers,
    StoppedAnswers,
)
from ..metrics import TaskMetrics
from ..pricing import PricingTable, UnknownModelError
from ..providers import Provider, ProviderStream, route
from ..providers._base import build_messages
from ..providers.openai import OpenAIProvider
from . import _attempts, _continuation, _failures, _named, _quota, _recovery, _stop
from ._budget import Budget
from ._pacing import LastBeat, Pacing
from ._publisher import ChunkPublisher
from ._relay import Relay

logger = logging.getLogger(__name__)


def _free_reattach(state: AttemptState) -> bool:
    """Re-attaching to a background response costs no quota; a chat continuation
    is a new request the provider counts."""
    return bool(state.continuation) and not str(state.continuation).startswith("chat:")


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
        budgets: the named budgets tasks may spend from (see ``_named``).
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
        limiter: Limiter | None = None,
        default_max_tokens: int = DEFAULT_MAX_TOKENS,
        budgets: Budgets | None = None,
    ) -> None:
        self._providers: dict[Platform, Provider] = dict(providers or {})
        if openai_client is not None:
            self._providers.setdefault(Platform.CHATGPT, OpenAIProvider(openai_client))
        self._default_model = default_model
        self._pricing = pricing or PricingTable()
        self._pacing = Pacing(
            flush_interval=flush_interval,
            checkpoint_interval=checkpoint_interval,
            signals_per_second=signals_per_second,
            checkpoints_per_second=checkpoints_per_second,
            heartbeat_interval=heartbeat_interval,
            heartbeats_per_second=heartbeats_per_second,
            heartbeat_throttle=heartbeat_throttle,
            live=live is not None,
        )
        self._secrets = tuple(s for s in secrets if s)
        self._max_output_bytes = max_output_bytes
        self._metrics: TaskMetrics | None = None
        self._live = live
        #: Reserves each call's place in its provider's quota (None: each call only
        #: reacts to its own 429).
        self._limiter = limiter
        self._default_max_tokens = default_max_tokens
        #: The named budgets tasks may spend from (None: a task naming one fails).
        self._budgets = budgets

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
            raise _failures.restated(exc, *(exc.details[:1] or (None,)), called) from None

    async def _stream_completion(
        self, request: CompletionRequest, platform: Platform, model: str
    ) -> CompletionOutput:
        info = activity.info()
        provider = self._provider_for(platform, model)
        prompt_chars = sum(len(m["content"]) for m in build_messages(request.task))
        prior = _attempts.inherited(info.heartbeat_details)
        state = self._begin(request, platform, model, prior, prompt_chars)
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
            await _recovery.refuse_if_cancelled(handle, state, provider)
        beat = LastBeat(self._pacing.throttle_for(info.heartbeat_timeout))
        hold: _named.Hold | None = None  # the call's share of the task's named budget
        try:
            price = self._pricing.lookup(model)
            budget = Budget.of(request, state, price, prompt_chars, model)
            if budget is not None and budget.refuses_start():
                self._meter().budget_refusals.add(1, {"model": model})
                raise budget.exceeded(0, before_call=True)
            hold = await _named.reserve(
                self._budgets,
                request,
                state,
                beat,
                price=price,
                prompt_chars=prompt_chars,
                model=model,
                default_max_tokens=self._default_max_tokens,
                meter=self._meter,
            )
            budget = _named.tighter(budget, hold)
            lease = None
            if not _free_reattach(state):
                lease = await self._reserve(
                    provider, request, platform, model, state, beat, prompt_chars
                )
        except ApplicationError as exc:
            await _named.settle(hold, state)
            # Refused before calling: the bills of earlier attempts still count.
            raise _failures.restated(exc, state.ledger) from None
        except asyncio.CancelledError:
            await _named.settle(hold, state)
            details = activity.cancellation_details()
            if details is not None and details.cancel_requested:  # cancelled while waiting
                raise _failures.cancelled_before_start(state.ledger) from None
            raise  # a worker shutting down: the next attempt waits its turn again
        except BaseException:
            await _named.settle(hold, state)  # nothing was called: the share goes back
            raise
        try:
            return await self._call(
                provider, request, platform, model, state, handle, beat, prompt_chars, budget, lease
            )
        finally:
            await _named.settle(hold, state)  # what the attempt's bill says it cost

    async def _reserve(
        self,
        provider: Provider,
        request: CompletionRequest,
        platform: Platform,
        model: str,
        state: AttemptState,
        beat: LastBeat,
        prompt_chars: int,
    ) -> Lease | None:
        """This call's place in its provider's quota (None: no limiter)."""
        if self._limiter is None:
            return None
        return await _quota.reserve(
            self._limiter,
            _quota.key_for(provider, platform, model),
            request,
            state,
            beat,
            prompt_chars=prompt_chars,
            model=model,
            default_max_tokens=self._default_max_tokens,
            meter=self._meter,
        )

    async def _call(
        self,
        provider: Provider,
        request: CompletionRequest,
        platform: Platform,
        model: str,
        state: AttemptState,
        handle: WorkflowHandle[Any, Any],
        beat: LastBeat,
        prompt_chars: int,
        budget: Budget | None,
        lease: Lease | None,
    ) -> CompletionOutput:
        """The call itself, from opening its stream to its bill."""
        stream = await self._open_stream(provider, request, model, state, handle, beat, budget)
        if budget is not None and not stream.opened:
            budget = budget.made_anew()  # a re-attach that failed: the new call's prompt
            if budget.refuses_start():
                self._meter().budget_refusals.add(1, {"model": model})
                raise _failures.restated(budget.exceeded(0, before_call=True), state.ledger)
        if lease is None and not stream.opened:
            # The re-attach failed and this is a new call: the provider counts it.
            try:
                lease = await self._reserve(
                    provider, request, platform, model, state, beat, prompt_chars
                )
            except ApplicationError as exc:
                raise _failures.restated(exc, state.ledger) from None
        if self._limiter is not None and lease is not None:
            stream.on_open = functools.partial(_quota.opened, self._limiter, lease, stream)
        publisher = self._publisher_for(request, state, handle)
        relay = Relay(
            request=request,
            platform=platform,
            model=model,
            state=state,
            prompt_chars=prompt_chars,
            stream=stream,
            publisher=publisher,
            beat=beat,
            live=self._open_live(state, publisher),
            pacing=self._pacing,
            pricing=self._pricing,
            meter=self._meter,
            secrets=self._secrets,
            max_output_bytes=self._max_output_bytes,
            budget=budget,
        )
        if self._limiter is None or lease is None:
            return await relay.run()
        error: BaseException | None = None
        try:
            return await relay.run()
        except BaseException as exc:
            error = exc
            raise
        finally:
            await _quota.settle(self._limiter, lease, stream, prompt_chars, error, self._meter)

    # -- the steps before the first chunk --------------------------------------------

    def _provider_for(self, platform: Platform, model: str) -> Provider:
        """The client for the task's route; a route this worker cannot serve fails
        at once and for good, before anything is billed."""
        provider = self._providers.get(platform)
        if provider is None:
            raise _failures.not_configured(platform, model)
        try:
            self._pricing.check(model)
        except UnknownModelError as exc:
            raise ApplicationError(str(exc), type=CONFIGURATION_ERROR, non_retryable=True) from None
        return provider

    def _begin(
        self,
        request: CompletionRequest,
        platform: Platform,
        model: str,
        prior: AttemptState | None,
        prompt_chars: int,
    ) -> AttemptState:
        """This attempt's state; earlier attempts lost with their worker are billed now."""
        state, lost = _attempts.begin(
            activity.info().attempt,
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
        return state

    async def _open_stream(
        self,
        provider: Provider,
        request: CompletionRequest,
        model: str,
        state: AttemptState,
        handle: WorkflowHandle[Any, Any],
        beat: LastBeat,
        budget: Budget | None = None,
    ) -> ProviderStream:
        """A retry continues its predecessor's text where the provider kept it, or
        its work (a Claude Code session), or starts over. An agent CLI that bills by
        itself is told what is left of the task's budget."""
        if state.continuation:
            stream = await _continuation.reattach(
                provider,
                request,
                model,
                state,
                handle,
                beat,
                lambda exc: _failures.to_application_error(
                    exc, request, state, secrets=self._secrets, meter=self._meter, continuable=True
                ),
            )
            if stream is not None:
                return stream
        task = request.task
        if budget is not None:
            constraints = task.effective_constraints.model_copy(
                update={"max_cost_usd": budget.remaining}
            )
            task = task.model_copy(update={"constraints": constraints})
        if state.resume_token:
            return provider.stream(task, model, resume=state.resume_token)  # type: ignore[call-arg]
        return provider.stream(task, model)

    def _publisher_for(
        self, request: CompletionRequest, state: AttemptState, handle: WorkflowHandle[Any, Any]
    ) -> ChunkPublisher:
        """This attempt's durable checkpoints: chunk signals to its run."""
        info = activity.info()

        async def send(batch: ChunkBatch) -> None:
            await handle.signal(CHUNKS_SIGNAL, batch)

        return ChunkPublisher(
            send,
            attempt=info.attempt,
            run_id=info.workflow_run_id,
            generation=state.generation,
            interval=self._pacing.interval_for(request),
            urgent=self._pacing.interval_for(request, floor=False),
            offset=state.continued_at,
            max_signals=max(0, _attempts.MAX_RUN_SIGNALS - state.signals),
            max_chars=max(0, _attempts.MAX_RUN_SIGNALLED_CHARS - state.signalled_chars),
            # A signal held up for a heartbeat interval: heartbeats were held up too.
            slow_after=info.heartbeat_timeout.total_seconds() / 3
            if info.heartbeat_timeout
            else None,
        )

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
