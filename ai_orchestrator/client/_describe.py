"""What a running task is doing beyond its status: waiting for its provider's
capacity, or for the provider batch that holds it.

A worker's quota limiter may hold an attempt before it calls the provider, for
as long as the provider's quota has no room for the call (see
``activities/_quota``). Without a word, such a task looks stuck. The attempt
says so in its heartbeat details, which ``describe`` returns from the server
without waking a worker: telling a waiting task from a stuck or generating one
costs the one call ``get_status`` makes, plus decoding one small payload.

Not a search attribute: those are written by the workflow, and the wait happens
inside an activity attempt, which the workflow does not see until it ends.
Telling the workflow would take a signal per wait (history events and a
workflow task each, for every waiting task) and a ``workflow.patched`` change
to upsert the attribute; the heartbeat is sent while waiting anyway (a cancel
arrives with its answer). What that costs: a visibility query (``list -q``)
cannot find the waiting tasks; ``describe_task`` says it of each task.

A task with batch delivery waits without any activity running, so nothing in
its description says where it is. Two queries do (they write nothing to any
history): the task's ``BATCH_QUERY`` names the provider-batch workflow holding
it, and that workflow's ``BATCH_QUERY`` says the provider's batch id, state and
counts. They are asked only of a running task whose input asks for a batch and
that has no provider call running (one read of its history's first page), and a
worker too old to answer them, or none at all, leaves the batch unsaid rather
than failing the description.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from temporalio.api.enums.v1 import PendingActivityState
from temporalio.client import Client, WorkflowExecutionDescription
from temporalio.converter import DataConverter

from ..core import TaskStatus
from ..delivery import (
    BATCH_QUERY,
    BatchJoined,
    BatchState,
    takes_batch,
)
from ..messages import STREAM_ACTIVITY, AttemptState
from ._identity import run_input

#: How long a batch query waits for a worker: without one, the description
#: comes back without the batch rather than hanging.
BATCH_QUERY_TIMEOUT = timedelta(seconds=5)


@dataclass(frozen=True)
class CapacityWait:
    """The task's attempt waits for room on its provider's quota before calling it.

    Waiting uses up no attempt and is not a fault: the worker's limiter lets
    calls through in priority order as the quota refills.
    """

    model: str
    #: Seconds the worker's limiter expects the wait to last from now; None when
    #: it cannot say (other calls are ahead in line, or its estimate has passed).
    seconds: float | None = None

    def __str__(self) -> str:
        about = f" (about {self.seconds:.0f} s)" if self.seconds is not None else ""
        return f"waiting for capacity on {self.model or 'its model'}{about}"


@dataclass(frozen=True)
class ProviderBatchInfo:
    """The provider batch a batch-delivery task waits in, as its workflow last saw it.

    ``status``: ``gathering`` (the task waits for its batch to be sent; no
    workflow holds it yet), ``sending``, then the provider's state normalised:
    ``validating``, ``in_progress``, ``finalizing``, ``ended`` (``outcome`` then
    says how: completed, failed, expired, cancelled); ``unknown`` when the
    batch's workflow could not be asked (no worker answered). ``total``, ``succeeded``
    and ``errored`` count the batch's items, all tasks of the batch together.
    """

    status: str
    #: The ``AiProviderBatch`` workflow holding the task (visible in the Web UI).
    batch_workflow_id: str | None = None
    #: The provider's own id of the batch, once it was created there.
    provider_batch_id: str | None = None
    outcome: str | None = None
    total: int = 0
    succeeded: int = 0
    errored: int = 0

    @property
    def done(self) -> int:
        """Items the provider has answered, well or not."""
        return self.succeeded + self.errored

    def __str__(self) -> str:
        if self.batch_workflow_id is None:
            return "waiting to be sent in a provider batch"
        if self.provider_batch_id is None:
            if self.status == "sending":
                return f"being sent in a provider batch ({self.batch_workflow_id})"
            return f"held by provider batch workflow {self.batch_workflow_id} ({self.status})"
        state = f"{self.status}: {self.outcome}" if self.outcome else self.status
        return (
            f"in provider batch {self.provider_batch_id} "
            f"({state}, {self.done} of {self.total} done)"
        )


@dataclass(frozen=True)
class TaskDescription:
    """A task's status, and while it runs, what it waits for (``TaskClient.describe_task``)."""

    task_id: str
    status: TaskStatus
    #: Set while the running attempt waits for its provider's quota.
    waiting_for_capacity: CapacityWait | None = None
    #: Set while the task waits for a provider batch (``delivery="batch"`` or ``"auto"``).
    provider_batch: ProviderBatchInfo | None = None


def waiting_from(state: AttemptState, attempt: int, age: float) -> CapacityWait | None:
    """The wait a heartbeat reports, if it is the running attempt's own.

    ``attempt``: the attempt running now (a retry starts with its predecessor's
    last heartbeat, which says nothing of it); ``age``: seconds since the server
    recorded the heartbeat, taken off the limiter's estimate.
    """
    if state.attempt != attempt or state.waiting_for_capacity is None:
        return None
    left = state.waiting_for_capacity - max(age, 0.0)
    return CapacityWait(model=state.model, seconds=round(left, 1) if left >= 0.5 else None)


async def capacity_wait(
    desc: WorkflowExecutionDescription, converter: DataConverter
) -> CapacityWait | None:
    """The wait the run's provider call reports in its heartbeat, if it waits."""
    for pending in desc.raw_description.pending_activities:
        if (
            pending.activity_type.name != STREAM_ACTIVITY
            or pending.state == PendingActivityState.PENDING_ACTIVITY_STATE_SCHEDULED
            or not pending.heartbeat_details.payloads
        ):
            continue
        state: AttemptState | None = None
        with contextlib.suppress(Exception):  # a heartbeat this client cannot read
            (state,) = await converter.decode(
                list(pending.heartbeat_details.payloads), [AttemptState]
            )
        if state is None:
            continue
        age = 0.0
        if pending.HasField("last_heartbeat_time"):
            age = time.time() - pending.last_heartbeat_time.ToMicroseconds() / 1e6
        wait = waiting_from(state, pending.attempt, age)
        if wait is not None:
            return wait
    return None


async def _batch_query(client: Client, workflow_id: str, result_type: type) -> tuple[bool, Any]:
    """(answered, answer) of the workflow's ``BATCH_QUERY``.

    Never raises: a worker without the handler (older than batch delivery),
    no worker within :data:`BATCH_QUERY_TIMEOUT`, or an answer this client
    cannot read all leave the batch unsaid; they must not fail a description.
    """
    handle = client.get_workflow_handle(workflow_id)
    try:
        answer = await handle.query(
            BATCH_QUERY, result_type=result_type, rpc_timeout=BATCH_QUERY_TIMEOUT
        )
    except Exception:
        return False, None
    return True, answer


async def batch_of(client: Client, task_id: str) -> BatchJoined | None:
    """The provider-batch workflow holding the task, if it says one does."""
    answered, joined = await _batch_query(client, task_id, BatchJoined)
    return joined if answered and isinstance(joined, BatchJoined) else None


async def provider_batch_state(client: Client, batch_workflow_id: str) -> ProviderBatchInfo | None:
    """What the provider-batch workflow last heard of its batch; None if it cannot say."""
    answered, state = await _batch_query(client, batch_workflow_id, BatchState)
    if not answered or not isinstance(state, BatchState):
        return None
    return ProviderBatchInfo(
        status=state.status,
        batch_workflow_id=batch_workflow_id,
        provider_batch_id=state.provider_batch_id,
        outcome=state.outcome,
        total=state.total,
        succeeded=state.succeeded,
        errored=state.errored,
    )


def _calling_provider(desc: WorkflowExecutionDescription) -> bool:
    return any(
        pending.activity_type.name == STREAM_ACTIVITY
        for pending in desc.raw_description.pending_activities
    )


async def provider_batch(
    client: Client, desc: WorkflowExecutionDescription
) -> ProviderBatchInfo | None:
    """The provider batch the described (running) task waits for, if it waits for one.

    None for a task calling its provider in real time (as every batch task does
    once its batch could not answer it), a task whose input does not ask for a
    batch or cannot be read here, and a worker that cannot answer the query.
    """
    if _calling_provider(desc):
        return None
    handle = client.get_workflow_handle(desc.id)
    task_input = await run_input(handle, client.data_converter)
    if task_input is None or not takes_batch(task_input.task):
        return None
    answered, joined = await _batch_query(client, desc.id, BatchJoined)
    if not answered:
        return None
    if not isinstance(joined, BatchJoined):
        return ProviderBatchInfo(status="gathering")
    found = await provider_batch_state(client, joined.batch_workflow_id)
    return found or ProviderBatchInfo(status="unknown", batch_workflow_id=joined.batch_workflow_id)


__all__ = [
    "BATCH_QUERY_TIMEOUT",
    "CapacityWait",
    "ProviderBatchInfo",
    "TaskDescription",
    "batch_of",
    "capacity_wait",
    "provider_batch",
    "provider_batch_state",
    "waiting_from",
]
