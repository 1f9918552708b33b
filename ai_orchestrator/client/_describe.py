"""What a running task is doing beyond its status: waiting for its provider's capacity.

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
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass

from temporalio.api.enums.v1 import PendingActivityState
from temporalio.client import WorkflowExecutionDescription
from temporalio.converter import DataConverter

from ..core import TaskStatus
from ..messages import STREAM_ACTIVITY, AttemptState


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
class TaskDescription:
    """A task's status, and while it runs, what it waits for (``TaskClient.describe_task``)."""

    task_id: str
    status: TaskStatus
    #: Set while the running attempt waits for its provider's quota.
    waiting_for_capacity: CapacityWait | None = None


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


__all__ = ["CapacityWait", "TaskDescription", "capacity_wait", "waiting_from"]
