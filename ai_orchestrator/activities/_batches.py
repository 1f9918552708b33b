"""Batch delivery's activities: join a collector, send a provider batch, follow it,
hand out its answers.

Each is safe to run twice, because Temporal will (a worker dies, a reply is
lost). Joining is a signal-with-start that the collector deduplicates. Sending
asks every member first with an update the task refuses if it already belongs
to another batch, then finds-or-creates the provider's batch under the batch
workflow's id. Handing out resumes from the result position its last heartbeat
recorded, and a task ignores a second answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import timedelta
from typing import Any

from temporalio import activity
from temporalio.client import (
    Client,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from ..core import Platform, Task, TaskConstraints
from ..delivery import (
    ANSWER_SIGNAL,
    CANCEL_ACTIVITY,
    COLLECTOR_WORKFLOW,
    FAN_OUT_ACTIVITY,
    JOIN_ACTIVITY,
    JOIN_SIGNAL,
    JOINED_UPDATE,
    POLL_ACTIVITY,
    SUBMIT_ACTIVITY,
    BatchAnswer,
    BatchJoined,
    BatchJoinRequest,
    BatchPoll,
    BatchState,
    CollectorInput,
    FanOut,
    FanOutSummary,
    ProviderBatchInput,
    SubmitOutcome,
)
from ..errors import (
    PROVIDER_NOT_CONFIGURED,
    PROVIDER_REJECTED,
    PROVIDER_UNAVAILABLE,
    classify,
    redact,
)
from ..messages import AttemptBill, CompletionOutput, Ledger, TaskInput, Usage
from ..pricing import PricingTable
from ..providers import BatchItem, BatchLookupPending, BatchProvider, ItemResult
from ..providers._route import route

logger = logging.getLogger(__name__)

#: Answers signalled at once: one at a time, 1,000 answers took 46 s to hand out.
_SIGNALS_AT_ONCE = 32


def batch_tag(batch_workflow_id: str) -> str:
    """The label a provider batch is found by again (≤ 64 characters, as vendors allow)."""
    return "aio-" + hashlib.sha256(batch_workflow_id.encode()).hexdigest()[:32]


def item_custom_id(tag: str, index: int) -> str:
    """Member ``index``'s id in the provider batch: differing from one batch of ours
    to the next, so a stranger's results are never taken for ours (Anthropic
    allows ``[a-zA-Z0-9_-]{1,64}``)."""
    return f"{hashlib.sha256(tag.encode()).hexdigest()[:12]}-{index}"


def index_of(tag: str, custom: str) -> int | None:
    """The member a result's custom_id names; None for an id that is not ours."""
    prefix = item_custom_id(tag, 0)[:-1]
    rest = custom[len(prefix) :] if custom.startswith(prefix) else ""
    return int(rest) if rest.isdigit() else None


class BatchActivities:
    """Provider batch calls, with the vendors' batch clients injected by the worker.

    Args:
        providers: the batch clients this worker can send through, by platform.
        settings: the collector's window, size and polling (``CollectorInput``'s
            fields other than the key), fixed by the first task of each key.
    """

    def __init__(
        self,
        providers: Mapping[Platform, BatchProvider],
        *,
        pricing: PricingTable,
        default_model: str,
        settings: Mapping[str, Any] | None = None,
    ) -> None:
        self._providers = dict(providers)
        self._pricing = pricing
        self._default_model = default_model
        self._settings = dict(settings or {})

    def _provider(self, platform: str) -> BatchProvider:
        provider = self._providers.get(Platform(platform))
        if provider is None:
            raise ApplicationError(
                f"this worker sends no provider batches for {platform}",
                type=PROVIDER_NOT_CONFIGURED,
                non_retryable=True,
            )
        return provider

    # -- joining -------------------------------------------------------------------

    @activity.defn(name=JOIN_ACTIVITY)
    async def join(self, request: BatchJoinRequest) -> str:
        """Into the collector of this task queue, platform and model; its id."""
        routing = Task(
            prompt="(routing)",
            platform_hint=Platform(request.platform_hint) if request.platform_hint else None,
            constraints=TaskConstraints(model=request.model),
        )
        platform, model = route(routing, self._default_model)
        self._provider(platform.value)  # a platform without batches goes real time
        queue = activity.info().task_queue
        collector = f"ai-orchestrator-batch:{queue}:{platform.value}:{model}"
        await activity.client().start_workflow(
            COLLECTOR_WORKFLOW,
            CollectorInput(
                task_queue=queue, platform=platform.value, model=model, **self._settings
            ),
            id=collector,
            task_queue=queue,
            start_signal=JOIN_SIGNAL,
            start_signal_args=[request.member],
            static_summary=f"gathers batch tasks for {model}",
        )
        return collector

    # -- sending -------------------------------------------------------------------

    @activity.defn(name=SUBMIT_ACTIVITY)
    async def submit(self, batch: ProviderBatchInput) -> SubmitOutcome:
        provider = self._provider(batch.platform)
        client = activity.client()
        me = activity.info().workflow_id
        tag = batch_tag(me)
        left = set(batch.left)
        items: list[BatchItem] = []
        included: list[int] = []
        # A member's answer to its join can wait on that member's workflow task
        # (seconds, after a worker died): beat by the clock, not by the member. Each
        # beat says how far the asking got (the Web UI shows it).
        asked = [0]
        async with _beating(lambda: (asked[0],)):
            for index, member in enumerate(batch.members):
                asked[0] = index
                if index in left:
                    continue
                handle = client.get_workflow_handle(member.workflow_id, run_id=member.run_id)
                joined = BatchJoined(batch_workflow_id=me, index=index)
                task = await _joined(handle, joined, client)
                if task is None:  # closed, or in another batch: not sent
                    left.add(index)
                    continue
                items.append(
                    BatchItem(custom_id=item_custom_id(tag, index), task=task, model=batch.model)
                )
                included.append(index)
        if not items:
            return SubmitOutcome(provider_batch_id=None, included=[], left=sorted(left))
        # Found again, not created again, if an earlier attempt got this far (only a
        # retry says since when: a look-alike batch running then may be ours).
        # A refusal (a revoked key, a bad item) fails at once: the workflow then
        # sends every member to real time.
        since = batch.since if activity.info().attempt > 1 else None
        async with _vendor_errors():
            try:
                async with _beating():  # an upload of many items takes a while
                    provider_batch_id = await provider.submit(items, tag, since=since)
            except BatchLookupPending as exc:
                # A batch like ours is still running and cannot be told from ours yet:
                # look again later rather than risk paying for a second one.
                raise ApplicationError(
                    f"cannot yet tell whether an earlier attempt sent this batch: {exc}",
                    type=PROVIDER_UNAVAILABLE,
                    next_retry_delay=timedelta(seconds=max(1.0, exc.retry_after or 60.0)),
                ) from None
        return SubmitOutcome(
            provider_batch_id=provider_batch_id, included=included, left=sorted(left)
        )

    # -- following -----------------------------------------------------------------

    @activity.defn(name=POLL_ACTIVITY)
    async def poll(self, poll: BatchPoll) -> BatchState:
        async with _vendor_errors(), _beating():  # a slow answer is not a dead worker
            seen = await self._provider(poll.platform).state(poll.provider_batch_id)
        return BatchState(
            provider_batch_id=seen.id,
            status=seen.status,
            outcome=seen.outcome,
            total=seen.total,
            succeeded=seen.succeeded,
            errored=seen.errored,
            vendor_status=seen.vendor_status,
            error=seen.error,
        )

    @activity.defn(name=CANCEL_ACTIVITY)
    async def cancel(self, poll: BatchPoll) -> None:
        async with _vendor_errors(), _beating():
            await self._provider(poll.platform).cancel(poll.provider_batch_id)

    # -- handing out ---------------------------------------------------------------

    @activity.defn(name=FAN_OUT_ACTIVITY)
    async def fan_out(self, fan: FanOut) -> FanOutSummary:
        """Each member its answer; answers of members who left are counted, not sent."""
        client = activity.client()
        details = activity.info().heartbeat_details
        position, answered, summary = 0, set(), FanOutSummary()
        if details:  # an earlier attempt's progress: go on from there
            position, done, summary = details[0], details[1], FanOutSummary(**details[2])
            answered = set(done)
        included, left = set(fan.included), set(fan.left)
        tag = batch_tag(fan.batch_workflow_id)

        def progress() -> tuple[Any, ...]:
            return position, sorted(answered), summary.model_dump()

        async def hand_out(chunk: list[ItemResult]) -> None:
            """One chunk's answers, signalled together; counted (position, answered,
            summary) only once every signal went: a heartbeat taken meanwhile, or a
            worker dying, resumes at the chunk's start (a task ignores a second answer)."""
            nonlocal position, summary
            counts = summary.model_copy()
            sends: list[tuple[int, BatchAnswer]] = []
            for result in chunk:
                index = index_of(tag, result.custom_id)
                if index is None or index >= len(fan.members) or index in answered:
                    continue
                answer = self._answer(fan, result, counts)
                if index in left or index not in included:
                    counts.discarded += 1
                else:
                    sends.append((index, answer))
            told = await asyncio.gather(*(_tell(client, fan.members[i], a) for i, a in sends))
            for (_, answer), went in zip(sends, told, strict=True):
                if not went:
                    counts.discarded += 1  # closed meanwhile: cancelled, or timed out
                elif answer.output is not None:
                    counts.answered += 1
                else:
                    counts.errored += 1
            for result in chunk:
                index = index_of(tag, result.custom_id)
                if index is not None and index < len(fan.members):
                    answered.add(index)
            summary = counts
            position += len(chunk)
            activity.heartbeat(*progress())

        if fan.error is None:
            provider = self._provider(fan.platform)
            async with _beating(progress):
                chunk: list[ItemResult] = []
                async for result in provider.results(fan.provider_batch_id, skip=position):
                    chunk.append(result)
                    if len(chunk) >= _SIGNALS_AT_ONCE:
                        await hand_out(chunk)
                        chunk = []
                if chunk:
                    await hand_out(chunk)
        missing = sorted(included - answered - left)
        reason = fan.error or "the provider's batch ended without answering this task"
        async with _beating(progress):
            for index in missing:
                answer = BatchAnswer(
                    batch_workflow_id=fan.batch_workflow_id,
                    provider_batch_id=fan.provider_batch_id,
                    error=reason,
                    error_type=PROVIDER_REJECTED,
                    retryable=True,
                )
                if await _tell(client, fan.members[index], answer):
                    summary.errored += 1
                answered.add(index)  # a retry resumes after it, not counting it again
        return summary

    def _answer(self, fan: FanOut, result: ItemResult, summary: FanOutSummary) -> BatchAnswer:
        """The member's answer, priced at the batch price (errors cost nothing)."""
        base = {
            "batch_workflow_id": fan.batch_workflow_id,
            "provider_batch_id": fan.provider_batch_id,
        }
        if result.kind != "succeeded":
            return BatchAnswer(
                **base,
                error=result.error or f"the provider's batch says {result.kind}",
                error_type=PROVIDER_REJECTED,
                retryable=result.retryable,
            )
        usage = result.usage or Usage(estimated=True)
        price = self._pricing.lookup(fan.model)
        cost = price.batch_cost(usage.prompt_tokens, usage.completion_tokens) if price else 0.0
        summary.cost += cost
        summary.tokens += usage.total_tokens
        bill = AttemptBill(
            attempt=1,
            generation=1,
            model=fan.model,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            estimated=usage.estimated,
            cost=cost,
            outcome="completed",
            platform=fan.platform,
            delivery="batch",
        )
        return BatchAnswer(
            **base,
            output=CompletionOutput(
                attempt=1,
                offset=0,
                tail=result.text,
                finish_reason=result.finish_reason or "stop",
                model=fan.model,
                usage=usage,
                cost=cost,
                cost_known=price is not None,
                chunks=1,
                generation=1,
                ledger=Ledger(attempts=[bill]),
                platform=fan.platform,
                vendor_finish_reason=result.vendor_finish_reason,
            ),
        )


@contextlib.asynccontextmanager
async def _vendor_errors() -> AsyncIterator[None]:
    """A vendor's refusal (a batch it no longer knows, a revoked key) fails at once
    and clearly; a passing fault (an outage, a rate limit) is retried by Temporal."""
    try:
        yield
    except ApplicationError:
        raise
    except Exception as exc:
        verdict = classify(exc)
        raise ApplicationError(
            redact(verdict.message),
            type=verdict.error_type,
            non_retryable=not verdict.retryable,
            next_retry_delay=(
                timedelta(seconds=verdict.retry_after) if verdict.retry_after else None
            ),
        ) from None


@contextlib.asynccontextmanager
async def _beating(
    details: Callable[[], tuple[Any, ...]] = tuple, every: float | None = None
) -> AsyncIterator[None]:
    """Heartbeats (with ``details()``) while long calls run (to the provider, or to
    tasks that must answer), so a dead worker is noticed within the heartbeat timeout
    (the workflow's ``BEAT_TIMEOUT``) and a live one is not taken for dead: a beat
    every third of it (5 s by default). The SDK sends one every 0.8 of it at most,
    from its own timer, so a beat is always waiting when that timer fires."""
    timeout = activity.info().heartbeat_timeout
    interval = every if every is not None else timeout.total_seconds() / 3 if timeout else 5.0

    async def beat() -> None:
        while True:
            await asyncio.sleep(interval)
            activity.heartbeat(*details())

    beating = asyncio.create_task(beat())
    try:
        yield
    finally:
        beating.cancel()


async def _joined(
    handle: WorkflowHandle[Any, Any], joined: BatchJoined, client: Client
) -> Task | None:
    """The member's task if it agrees to be sent in this batch; None if it will not
    (closed, cancelled, or already in another batch)."""
    try:
        agreed = await handle.execute_update(JOINED_UPDATE, joined, result_type=bool)
    except WorkflowUpdateFailedError:
        return None
    except RPCError as exc:
        if exc.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.FAILED_PRECONDITION):
            return None
        raise
    if not agreed:
        return None
    async for event in handle.fetch_history_events():
        started = event.workflow_execution_started_event_attributes
        (input,) = await client.data_converter.decode(list(started.input.payloads), [TaskInput])
        return input.task
    return None


async def _tell(client: Client, member: Any, answer: BatchAnswer) -> bool:
    """Signal a member its answer; False if it has closed meanwhile."""
    handle = client.get_workflow_handle(member.workflow_id, run_id=member.run_id)
    try:
        await handle.signal(ANSWER_SIGNAL, answer)
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return False
        raise
    return True
