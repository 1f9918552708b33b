"""The worker: runs task workflows and provider activities for one task queue.

``python worker.py`` or ``ai-orchestrator worker`` reads its settings from the
environment (see :mod:`ai_orchestrator.config`) and stops cleanly on SIGINT or
SIGTERM: no new work is taken, in-flight activities get the grace period
(``AI_ORCHESTRATOR_GRACEFUL_SHUTDOWN_SECONDS``, default 10) to finish, then hand
their attempt over to another worker at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

from openai import AsyncOpenAI, Timeout
from temporalio.client import Client
from temporalio.worker import PollerBehaviorSimpleMaximum, Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from .activities import BatchActivities, LLMActivities
from .budgets import budgets_from_env
from .client import connect_client
from .config import (
    ProviderSettings,
    WorkerTuning,
    task_queue,
)
from .core import Platform
from .delivery import settings_from_env as batch_settings
from .limits import default_max_tokens, limiter_from_env
from .live import LivePublisher
from .live._config import checkpoint_interval, publisher_from_env
from .messages import MAX_OUTPUT_BYTES
from .pricing import PricingTable
from .providers import BatchProvider, Provider
from .providers._config import from_env as vendor_providers
from .providers._config import secrets as vendor_secrets
from .providers._tls import openai_http_client
from .workflows import BatchCollectorWorkflow, ProviderBatchWorkflow, TaskWorkflow

logger = logging.getLogger(__name__)

#: Heartbeats reach the server at most this often. Cancellation travels back on
#: the heartbeat response, so this bounds cancel latency.
HEARTBEAT_THROTTLE = timedelta(seconds=1)


#: Workflows run in Temporal's sandbox with our whole package passed through: the
#: sandbox re-importing the workflow module for every run cost a short task about a
#: quarter of its throughput (17.2 -> 22.6 tasks/s measured side by side in one
#: process, 150 tasks, 20 at once). What the sandbox's restrictions used to catch in
#: that module is held instead by ``tests/unit/test_workflow_determinism.py`` (no
#: clock, randomness, I/O or threads in ``workflows/``, no mutable module state) and
#: by replaying every recorded history under the strict runner below as well.
WORKFLOW_RUNNER = SandboxedWorkflowRunner(
    restrictions=SandboxRestrictions.default.with_passthrough_modules("ai_orchestrator")
)
#: The sandbox re-importing and restricting the workflow module itself (tests).
STRICT_WORKFLOW_RUNNER = SandboxedWorkflowRunner(restrictions=SandboxRestrictions.default)


def openai_client(settings: ProviderSettings) -> AsyncOpenAI:
    """The provider client for activities: no SDK retries (Temporal retries)."""
    return AsyncOpenAI(
        # An OpenAI-compatible server without auth (Ollama) still needs a non-empty key.
        api_key=settings.api_key or "not-needed",
        base_url=settings.base_url,
        max_retries=0,
        timeout=Timeout(settings.read_timeout, connect=10.0),
        http_client=openai_http_client(),
    )


#: "Read it from the environment" (None is a value: turned off).
_FROM_ENV: Any = object()


def build_worker(
    client: Client,
    *,
    task_queue: str,
    provider: ProviderSettings,
    pricing: PricingTable | None = None,
    tuning: WorkerTuning | None = None,
    max_concurrent_activities: int = 1000,
    max_cached_workflows: int = 1000,
    extra_secrets: Sequence[str] = (),
    max_output_bytes: int = MAX_OUTPUT_BYTES,
    llm: AsyncOpenAI | None = None,
    providers: Mapping[Platform, Provider] | None = None,
    live: LivePublisher | None = None,
    checkpoint_interval: float = 1.0,
    limiter: Any = _FROM_ENV,  # a LocalLimiter, or None to react to 429s only
    budgets: Any = _FROM_ENV,  # named budgets (Budgets), or None: tasks naming one fail
    batches: Mapping[Platform, BatchProvider] | None = None,
) -> Worker:
    """A worker for task workflows and provider calls on ``task_queue``.

    The client's data converter is used as is: encryption, if any, is set on
    the client (see :func:`connect_client`). Prefer :func:`running`, which also
    closes the provider client when the worker stops.
    """
    tuning = tuning or WorkerTuning()
    if limiter is _FROM_ENV:  # reserves each call's place in its provider's quota
        limiter = limiter_from_env()
    if budgets is _FROM_ENV:  # AI_ORCHESTRATOR_BUDGETS, kept where it says
        budgets = budgets_from_env()
    if llm is None and provider.configured:
        llm = openai_client(provider)
    activities = LLMActivities(
        llm,
        providers=providers,
        default_model=provider.default_model,
        pricing=pricing,
        flush_interval=provider.flush_interval,
        signals_per_second=tuning.max_signals_per_second,
        heartbeat_throttle=HEARTBEAT_THROTTLE.total_seconds(),
        secrets=[s for s in (provider.api_key, *vendor_secrets(), *extra_secrets) if s],
        max_output_bytes=max_output_bytes,
        live=live,
        checkpoint_interval=checkpoint_interval,
        limiter=limiter,
        default_max_tokens=default_max_tokens(),
        budgets=budgets,
    )
    # Batch delivery: without a batch client for a task's platform, its join
    # fails and the task is answered in real time.
    sending = BatchActivities(
        batches or {},
        pricing=pricing or PricingTable(),
        default_model=provider.default_model,
        settings=batch_settings(),
    )
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[TaskWorkflow, BatchCollectorWorkflow, ProviderBatchWorkflow],
        workflow_runner=WORKFLOW_RUNNER,
        activities=[
            activities.stream_completion,
            activities.stop_answers,
            sending.join,
            sending.submit,
            sending.poll,
            sending.cancel,
            sending.fan_out,
        ],
        max_concurrent_activities=max_concurrent_activities,
        max_heartbeat_throttle_interval=HEARTBEAT_THROTTLE,
        default_heartbeat_throttle_interval=HEARTBEAT_THROTTLE,
        graceful_shutdown_timeout=timedelta(seconds=tuning.graceful_shutdown_seconds),
        max_task_queue_activities_per_second=tuning.max_requests_per_second,
        max_cached_workflows=max_cached_workflows,
        workflow_task_poller_behavior=PollerBehaviorSimpleMaximum(tuning.workflow_pollers),
    )


@asynccontextmanager
async def running(
    client: Client, *, task_queue: str, provider: ProviderSettings, **options: Any
) -> AsyncIterator[Worker]:
    """Build and run a worker; on exit stop it, then close its provider clients.

    Without ``providers=`` in ``options``, the worker also serves every other
    vendor configured in the environment (see :mod:`.providers`); without
    ``live=``, it publishes text on the live channel the environment names
    (see :mod:`.live`; ``live=None`` turns it off).
    """
    async with contextlib.AsyncExitStack() as stack:
        live = options.pop("live", _FROM_ENV)
        if live is _FROM_ENV:
            live = publisher_from_env(client.data_converter)
            options.setdefault("checkpoint_interval", checkpoint_interval())
        if live is not None:
            await live.start()
            stack.push_async_callback(live.stop)
        options["live"] = live
        budgets = options.pop("budgets", _FROM_ENV)
        if budgets is _FROM_ENV:
            budgets = budgets_from_env()
        if budgets is not None:
            stack.push_async_callback(budgets.aclose)
        options["budgets"] = budgets
        limiter = options.pop("limiter", _FROM_ENV)
        if limiter is _FROM_ENV:
            limiter = limiter_from_env()
        if hasattr(limiter, "aclose"):  # the shared limiter's Redis connections
            stack.push_async_callback(limiter.aclose)
        options["limiter"] = limiter
        llm = None
        if provider.configured:
            llm = await stack.enter_async_context(openai_client(provider))
        providers = options.pop("providers", None)
        if providers is None:
            providers = vendor_providers(read_timeout=provider.read_timeout)
        for extra in providers.values():
            stack.push_async_callback(extra.aclose)
        if "batches" not in options:
            options["batches"] = batch_clients(llm, providers)
        worker = build_worker(
            client,
            task_queue=task_queue,
            provider=provider,
            llm=llm,
            providers=providers,
            **options,
        )
        async with worker:
            served = ", ".join(p.value for p in {*providers, *([Platform.CHATGPT] if llm else [])})
            logger.info("worker listening on task queue %r (providers: %s)", task_queue, served)
            yield worker


def batch_clients(
    llm: AsyncOpenAI | None, providers: Mapping[Platform, Provider]
) -> dict[Platform, BatchProvider]:
    """Batch APIs over the same vendor clients (and keys) as the real-time calls."""
    found: dict[Platform, BatchProvider] = {}
    if llm is not None:
        from .providers import OpenAIBatches

        found[Platform.CHATGPT] = OpenAIBatches(llm)
    claude = providers.get(Platform.CLAUDE)
    if claude is not None and getattr(claude, "client", None) is not None:
        from .providers import AnthropicBatches

        found[Platform.CLAUDE] = AnthropicBatches(claude.client)  # type: ignore[attr-defined]
    gemini = getattr(providers.get(Platform.GEMINI), "client", None)
    if gemini is not None and not gemini.vertexai:  # inlined batches are the Gemini API's
        from .providers import GeminiBatches

        found[Platform.GEMINI] = GeminiBatches(gemini)
    return found


async def until_signalled() -> None:
    """Return on SIGINT or SIGTERM (the caller then shuts down gracefully)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


async def serve(*, queue: str | None = None, metrics_address: str | None = None) -> None:
    """The production worker: a real provider is required, never the simulator."""
    provider = ProviderSettings.from_env().require()
    client = await connect_client(metrics_address=metrics_address)
    async with running(
        client, task_queue=queue or task_queue(), provider=provider, tuning=WorkerTuning.from_env()
    ):
        await until_signalled()
        logger.info("shutting down: finishing in-flight work")
