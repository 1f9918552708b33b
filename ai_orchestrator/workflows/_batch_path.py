"""A task's way through a provider batch: join, wait (durably, no worker held),
take the answer, or hand back to real time.

Kept apart from the task workflow, which only asks :func:`wants_batch` and
awaits :meth:`BatchPath.wait`: the real-time path stays as it was, and every
run that takes this one is marked (``BATCHED``) for versioning.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    FailureError,
    is_cancelled_exception,
)

with workflow.unsafe.imports_passed_through():
    from ..core import Task
    from ..delivery import (
        JOIN_ACTIVITY,
        LEAVE_SIGNAL,
        BatchAnswer,
        BatchJoined,
        BatchJoinRequest,
        BatchMember,
        takes_batch,
    )
    from ..errors import DEADLINE_EXCEEDED
    from ..messages import CompletionOutput

#: Marks (and gates) the runs that go through a provider batch.
BATCHED = "ai-orchestrator-2026-12-batched"


def wants_batch(task: Task) -> bool:
    """See :func:`..delivery.takes_batch` (shared with the client's status)."""
    return takes_batch(task)


class BatchPath:
    """What a task knows of its batch; fed by the workflow's update and signal."""

    def __init__(self) -> None:
        self.collector: str | None = None
        self.joined: BatchJoined | None = None
        self.answer: BatchAnswer | None = None
        #: From the join on (a batch may ask before the join's reply is seen) until
        #: the task stops waiting for its batch.
        self.waiting = False

    def check(self, joined: BatchJoined) -> None:
        """Refuse a second batch: a task is sent once, so it is paid for once."""
        if not self.waiting or self.answer is not None:
            raise ApplicationError("this task is not waiting for a batch")
        if self.joined is not None and self.joined.batch_workflow_id != joined.batch_workflow_id:
            raise ApplicationError(f"this task is already in {self.joined.batch_workflow_id}")

    def join(self, joined: BatchJoined) -> bool:
        self.joined = self.joined or joined
        return True

    def answered(self, answer: BatchAnswer) -> None:
        # Only from the batch holding this task: a batch whose send failed tells every
        # member it was given, some of which another batch holds (and will send).
        mine = self.joined is None or self.joined.batch_workflow_id == answer.batch_workflow_id
        if self.answer is None and self.waiting and mine:
            self.answer = answer

    async def wait(self, task: Task, deadline: datetime) -> CompletionOutput | None:
        """The batch's answer; None: go real time (no batch here, or the item
        failed in a way worth asking again). Raises when the task must fail."""
        info = workflow.info()
        constraints = task.effective_constraints
        self.waiting = True
        try:
            self.collector = await workflow.execute_activity(
                JOIN_ACTIVITY,
                BatchJoinRequest(
                    member=BatchMember(workflow_id=info.workflow_id, run_id=info.run_id),
                    model=constraints.model,
                    platform_hint=task.platform_hint.value if task.platform_hint else None,
                ),
                result_type=str,
                start_to_close_timeout=timedelta(seconds=10),
                # A busy worker may take a while to run it: the task has its deadline.
                schedule_to_close_timeout=max(deadline - workflow.now(), timedelta(seconds=10)),
                retry_policy=RetryPolicy(maximum_interval=timedelta(seconds=10)),
                summary="join the next provider batch",
            )
        except ActivityError as err:
            self.waiting = False
            if is_cancelled_exception(err):  # the task was cancelled while joining
                raise asyncio.CancelledError("cancelled while joining a batch") from err
            workflow.logger.warning("no batch for this task, so real time: %s", err.cause or err)
            return None
        left = deadline - workflow.now()
        try:
            await workflow.wait_condition(
                lambda: self.answer is not None, timeout=max(left, timedelta(seconds=1))
            )
        except TimeoutError:
            await self.leave()
            raise ApplicationError(
                "the provider's batch did not answer before the task's deadline "
                f"({constraints.timeout_seconds:.0f} s); give batch tasks a deadline past the "
                "provider's completion window (24 h), or use delivery='auto'",
                type=DEADLINE_EXCEEDED,
                non_retryable=True,
            ) from None
        finally:
            self.waiting = False
        answer = self.answer
        assert answer is not None
        if answer.output is not None:
            return answer.output
        if answer.retryable:
            workflow.logger.warning("the batch did not answer, so real time: %s", answer.error)
            return None
        raise ApplicationError(
            f"the provider's batch refused this task: {answer.error}",
            type=answer.error_type,
            non_retryable=True,
        )

    async def leave(self) -> None:
        """Out of the batch (cancelled, or out of time): left out if not sent yet,
        its answer discarded (and still counted) if it was."""
        info = workflow.info()
        me = BatchMember(workflow_id=info.workflow_id, run_id=info.run_id)
        try:
            if self.joined is not None:
                await workflow.get_external_workflow_handle(self.joined.batch_workflow_id).signal(
                    LEAVE_SIGNAL, self.joined.index
                )
            elif self.collector is not None:
                await workflow.get_external_workflow_handle(self.collector).signal(LEAVE_SIGNAL, me)
        except FailureError:  # the batch is over: nothing to leave
            pass
