"""One provider batch, from sending to the last answer handed out.

Sending is one activity that asks every member task first (an update a task in
another batch, or closed, refuses), then finds-or-creates the provider's batch
under this workflow's id, so a worker dying anywhere in it never sends a batch
twice. The batch is then waited on with durable timers (no worker held), polled
more slowly as it ages, and continued as new long before history limits. Once
the provider says it ended, one activity reads the results as a stream and
signals each member its own answer: answers go to each task's history, never
through this one, whatever the batch's size.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from ..delivery import (
        BATCH_QUERY,
        CANCEL_ACTIVITY,
        FAN_OUT_ACTIVITY,
        LEAVE_SIGNAL,
        POLL_ACTIVITY,
        PROVIDER_BATCH_WORKFLOW,
        SUBMIT_ACTIVITY,
        BatchPoll,
        BatchState,
        FanOut,
        FanOutSummary,
        ProviderBatchInput,
        SubmitOutcome,
    )

#: History events after which a waiting batch continues as new.
MAX_EVENTS = 8000
#: How long each batch activity may go without a heartbeat (they beat every third of
#: it while they wait on the provider or on tasks): a SIGKILLed worker's share is taken
#: over this soon, not when its start-to-close timeout ends (a minute for a poll).
BEAT_TIMEOUT = timedelta(seconds=15)
#: Runs that take ``BEAT_TIMEOUT`` (2026-12). Replay does not compare timeouts, so the
#: patch is what keeps the runs in flight on the timeouts they started with (30 s for
#: sending and handing out, none for polls and cancels).
BEATS = "ai-orchestrator-2026-12-batch-beats"
_OLD_BEAT_TIMEOUT = timedelta(seconds=30)
_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=1))


def _history_full() -> bool:
    info = workflow.info()
    return info.is_continue_as_new_suggested() or info.get_current_history_length() > MAX_EVENTS


@workflow.defn(name=PROVIDER_BATCH_WORKFLOW)
class ProviderBatchWorkflow:
    @workflow.init
    def __init__(self, input: ProviderBatchInput) -> None:
        self._left = set(input.left)
        self._beats = False  # run() asks the patch first thing
        self._state = BatchState(
            provider_batch_id=input.provider_batch_id,
            status="sending" if input.provider_batch_id is None else "in_progress",
            total=len(input.included if input.included is not None else input.members),
        )

    @workflow.signal(name=LEAVE_SIGNAL)
    def leave(self, index: int) -> None:
        """A member was cancelled: its answer, if it comes, is discarded."""
        self._left.add(index)

    @workflow.query(name=BATCH_QUERY)
    def state(self) -> BatchState:
        return self._state

    @workflow.run
    async def run(self, input: ProviderBatchInput) -> FanOutSummary:
        self._beats = workflow.patched(BEATS)
        included = input.included
        batch_id = input.provider_batch_id
        if batch_id is None:
            try:
                sent: SubmitOutcome = await workflow.execute_activity(
                    SUBMIT_ACTIVITY,
                    input.model_copy(
                        update={
                            "left": sorted(self._left),
                            "since": workflow.info().start_time.timestamp(),
                        }
                    ),
                    result_type=SubmitOutcome,
                    start_to_close_timeout=timedelta(minutes=30),
                    heartbeat_timeout=self._beat_timeout(_OLD_BEAT_TIMEOUT),
                    # A lookup may wait for a look-alike batch to end (up to a day).
                    schedule_to_close_timeout=timedelta(hours=25),
                    retry_policy=_RETRY,
                    summary=f"send {len(input.members)} tasks as one provider batch",
                )
            except ActivityError as err:
                # The provider refused the batch itself: every member hears why, and
                # goes to real time while its deadline allows.
                reason = str(err.cause or err)
                everyone = list(range(len(input.members)))
                return await self._fan_out(input, "", everyone, error=reason)
            self._left |= set(sent.left)
            included = sent.included
            batch_id = sent.provider_batch_id
            if batch_id is None:  # nobody left to send
                self._state = BatchState(status="ended", outcome="cancelled")
                return FanOutSummary(discarded=len(self._left))
            self._state = BatchState(
                provider_batch_id=batch_id, status="validating", total=len(included)
            )
        assert included is not None
        interval = input.poll_seconds
        cancelled = False
        while True:
            if not cancelled and set(included) <= self._left:
                # Every task of the batch was cancelled: so is the batch, at the provider.
                await workflow.execute_activity(
                    CANCEL_ACTIVITY,
                    BatchPoll(provider_batch_id=batch_id, platform=input.platform),
                    start_to_close_timeout=timedelta(minutes=1),
                    heartbeat_timeout=self._beat_timeout(None),
                    retry_policy=_RETRY,
                    schedule_to_close_timeout=timedelta(hours=1),
                    summary="cancel the provider batch",
                )
                cancelled = True
            try:
                self._state = await workflow.execute_activity(
                    POLL_ACTIVITY,
                    BatchPoll(provider_batch_id=batch_id, platform=input.platform),
                    result_type=BatchState,
                    start_to_close_timeout=timedelta(minutes=1),
                    heartbeat_timeout=self._beat_timeout(None),
                    # An outage is waited out this long; a refusal ends it at once.
                    schedule_to_close_timeout=timedelta(hours=6),
                    retry_policy=_RETRY,
                    summary="provider batch state",
                )
            except ActivityError as err:
                # The provider cannot tell us about the batch any more (it forgot it,
                # the key was revoked): its tasks go to real time while they can.
                reason = f"the provider's batch {batch_id} cannot be followed: {err.cause or err}"
                return await self._fan_out(input, batch_id, included, error=reason)
            if self._state.ended:
                break
            await workflow.sleep(timedelta(seconds=interval), summary="wait for the provider")
            interval = min(interval * 1.5, input.poll_max_seconds)
            if _history_full():
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(
                    input.model_copy(
                        update={
                            "provider_batch_id": batch_id,
                            "included": included,
                            "left": sorted(self._left),
                            "poll_seconds": interval,
                        }
                    )
                )
        failed = self._state.outcome in ("failed", "expired", "cancelled")
        error = None
        if failed and not self._state.succeeded:
            error = self._state.error or f"the provider's batch {batch_id} {self._state.outcome}"
        return await self._fan_out(input, batch_id, included, error=error)

    def _beat_timeout(self, before: timedelta | None) -> timedelta | None:
        """The activity's heartbeat timeout: ``before`` for runs started before ``BEATS``."""
        return BEAT_TIMEOUT if self._beats else before

    async def _fan_out(
        self, input: ProviderBatchInput, batch_id: str, included: list[int], *, error: str | None
    ) -> FanOutSummary:
        return await workflow.execute_activity(
            FAN_OUT_ACTIVITY,
            FanOut(
                batch_workflow_id=workflow.info().workflow_id,
                provider_batch_id=batch_id,
                platform=input.platform,
                model=input.model,
                members=input.members,
                included=included,
                left=sorted(self._left),
                error=error,
            ),
            result_type=FanOutSummary,
            start_to_close_timeout=timedelta(hours=1),
            heartbeat_timeout=self._beat_timeout(_OLD_BEAT_TIMEOUT),
            retry_policy=_RETRY,
            summary="hand each task its answer",
        )
