"""The activity that calls the provider: one streamed completion per attempt.

The openai client is injected with ``max_retries=0``: Temporal's retry policy is
the only retry layer, so each attempt is visible in history and Retry-After is
honoured through ``next_retry_delay``. The activity heartbeats on its own
schedule (not per chunk) so that a cancel reaches it and a dead worker is
noticed within the heartbeat timeout even while the provider is silent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from datetime import timedelta

from openai import AsyncOpenAI
from temporalio import activity
from temporalio.exceptions import ApplicationError

from ..chat import DEFAULT_MODEL, ChatStream, request_params, resolve_model
from ..errors import (
    CONFIGURATION_ERROR,
    DEADLINE_EXCEEDED,
    OUTPUT_TOO_LARGE,
    RATE_LIMITED,
    WORKER_SHUTDOWN,
    classify,
    redact,
)
from ..messages import (
    CHUNKS_SIGNAL,
    MAX_OUTPUT_BYTES,
    STREAM_ACTIVITY,
    ChunkBatch,
    CompletionOutput,
    CompletionRequest,
)
from ..metrics import TaskMetrics
from ..pricing import PricingTable, UnknownModelError
from ._publisher import ChunkPublisher

logger = logging.getLogger(__name__)

#: How long a cancelled attempt may spend delivering its last text.
_FINAL_FLUSH_TIMEOUT = 2.0


class LLMActivities:
    """Provider calls, with their dependencies injected by the worker.

    Args:
        openai_client: built with ``max_retries=0`` (checked).
        default_model: used when a task names none.
        pricing: turns usage into cost; a strict table rejects unknown models.
        flush_interval: seconds between chunk signals (and before the first) when
            the worker is not busy.
        signals_per_second: the worker's budget of chunk signals, shared by all
            its streams: each signal costs a workflow task, so with many
            concurrent streams each one signals less often (bigger batches)
            instead of the worker falling behind on workflow tasks.
        heartbeat_interval: seconds between heartbeats; the worker's throttle
            decides how often they reach the server.
        secrets: strings that must never appear in an error message.
    """

    def __init__(
        self,
        openai_client: AsyncOpenAI,
        *,
        default_model: str = DEFAULT_MODEL,
        pricing: PricingTable | None = None,
        flush_interval: float = 0.12,
        heartbeat_interval: float = 1.0,
        signals_per_second: float = 50.0,
        secrets: Sequence[str] = (),
        max_output_bytes: int = MAX_OUTPUT_BYTES,
    ) -> None:
        if openai_client.max_retries != 0:
            raise ValueError(
                "the openai client must have max_retries=0: Temporal is the only retry layer"
            )
        self._client = openai_client
        self._default_model = default_model
        self._pricing = pricing or PricingTable()
        self._flush_interval = flush_interval
        self._signals_per_second = signals_per_second
        self._streaming = 0
        self._heartbeat_interval = heartbeat_interval
        self._secrets = tuple(s for s in secrets if s)
        self._max_output_bytes = max_output_bytes
        self._metrics: TaskMetrics | None = None

    def _meter(self) -> TaskMetrics:
        if self._metrics is None:
            self._metrics = TaskMetrics(activity.metric_meter())
        return self._metrics

    @activity.defn(name=STREAM_ACTIVITY)
    async def stream_completion(self, request: CompletionRequest) -> CompletionOutput:
        info = activity.info()
        params = request_params(request.task, self._default_model)
        try:
            self._pricing.check(params["model"])
        except UnknownModelError as exc:
            raise ApplicationError(str(exc), type=CONFIGURATION_ERROR, non_retryable=True) from None

        handle = activity.client().get_workflow_handle(
            info.workflow_id, run_id=info.workflow_run_id
        )

        async def send(batch: ChunkBatch) -> None:
            await handle.signal(CHUNKS_SIGNAL, batch)

        publisher = ChunkPublisher(send, attempt=info.attempt, interval=self._signal_interval)
        stream = ChatStream(self._client, params)
        heartbeats = asyncio.create_task(self._heartbeat(info.attempt, stream))
        started = time.monotonic()
        self._streaming += 1
        first_chunk: float | None = None
        size = 0
        try:
            async with stream:
                async for delta in stream:
                    if first_chunk is None:
                        first_chunk = time.monotonic() - started
                    size += len(delta.encode())
                    if size > self._max_output_bytes:
                        raise self._too_large()
                    publisher.add(delta)
            offset, tail = await publisher.finish()
        except asyncio.CancelledError:
            # The stream is closed already (the provider stops generating); keep
            # what was produced so the cancelled task reports its partial output.
            await publisher.flush(_FINAL_FLUSH_TIMEOUT)
            details = activity.cancellation_details()
            if details is not None and details.worker_shutdown and not details.cancel_requested:
                # Not the user's cancel: hand the attempt to another worker now
                # rather than after the heartbeat timeout.
                raise ApplicationError(
                    "the worker shut down mid-stream; another worker takes over",
                    type=WORKER_SHUTDOWN,
                ) from None
            raise
        except ApplicationError:
            await publisher.flush(_FINAL_FLUSH_TIMEOUT)
            raise
        except Exception as exc:
            await publisher.finish()
            raise self._to_application_error(exc, request) from None
        finally:
            self._streaming -= 1
            heartbeats.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeats

        usage = stream.final_usage()
        cost = self._pricing.cost(stream.model, usage.prompt_tokens, usage.completion_tokens)
        if cost is None:
            cost = self._pricing.cost(params["model"], usage.prompt_tokens, usage.completion_tokens)
        metrics = self._meter()
        metrics.completion(stream.model, usage.prompt_tokens, usage.completion_tokens, cost or 0.0)
        if first_chunk is not None:
            metrics.first_chunk.record(first_chunk, {"model": stream.model})
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
        )

    def _signal_interval(self) -> float:
        return max(self._flush_interval, self._streaming / self._signals_per_second)

    async def _heartbeat(self, attempt: int, stream: ChatStream) -> None:
        # Progress only, never text: heartbeat details are stored by the server.
        # The first waits an interval: a short answer needs no heartbeat at all.
        while True:
            await asyncio.sleep(self._heartbeat_interval)
            activity.heartbeat({"attempt": attempt, "chars": stream.chars})

    def _too_large(self) -> ApplicationError:
        return ApplicationError(
            f"the answer exceeded {self._max_output_bytes:,} bytes, more than a Temporal payload "
            "can safely carry; the stream was stopped. Set max_tokens to bound it.",
            type=OUTPUT_TOO_LARGE,
            non_retryable=True,
        )

    def _to_application_error(
        self, exc: BaseException, request: CompletionRequest
    ) -> ApplicationError:
        verdict = classify(exc)
        if verdict.retryable and verdict.error_type == RATE_LIMITED:
            model = resolve_model(request.task, self._default_model)
            self._meter().rate_limited.add(1, {"model": model})
        # Providers echo keys (masked) and sometimes the prompt in error bodies;
        # errors are stored in history, so neither may stay in the message.
        prompt = request.task.prompt
        echoes = (prompt, prompt[:64]) if len(prompt) >= 16 else ()
        message = redact(verdict.message, *self._secrets, *echoes)
        deadline = request.deadline_epoch
        if verdict.retryable and verdict.retry_after is not None and deadline is not None:
            remaining = deadline - time.time()
            if verdict.retry_after > remaining:
                return ApplicationError(
                    f"rate limited beyond the task's deadline: the provider asked to wait "
                    f"{verdict.retry_after:.1f}s but only {max(0.0, remaining):.1f}s remain; "
                    f"{message}",
                    type=DEADLINE_EXCEEDED,
                    non_retryable=True,
                )
        if not verdict.retryable:
            logger.warning("non-retryable provider error: %s", message)
        return ApplicationError(
            message,
            type=verdict.error_type,
            non_retryable=not verdict.retryable,
            next_retry_delay=(
                timedelta(seconds=verdict.retry_after) if verdict.retry_after else None
            ),
        )
