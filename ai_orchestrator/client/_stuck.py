"""Telling a jammed run from a slow one.

Some mistakes make every workflow task of a run fail: input the worker cannot
decode, a command the server rejects, a non-deterministic change. Temporal then
retries the workflow task forever and the run stays "running", so a caller
waiting for its result would wait forever. The run's description says how
many times in a row its workflow task has been tried; from the third attempt
the task is reported as failed, with the failure the history recorded, while
the run itself stays open: fixing the worker resumes it.

Attempts also grow when workflow tasks time out: a worker killed mid-task,
then its sticky queue expiring, makes attempt 3 with no mistake anywhere, and
a worker that comes back finishes the task. So a run counts as jammed only if
its streak began with a recorded *failure* (the server records the first
failure or timeout of a streak, not the retries): a worker did run the task
and said it could not.
"""

from __future__ import annotations

import asyncio
from typing import Any

from temporalio.api.enums.v1 import WorkflowTaskFailedCause
from temporalio.api.history.v1 import HistoryEvent, WorkflowTaskFailedEventAttributes
from temporalio.client import WorkflowExecutionDescription, WorkflowExecutionStatus, WorkflowHandle
from temporalio.converter import DataConverter

#: The workflow task attempt from which a run may be jammed: two failures in a
#: row. One failure can be a worker that died mid-task; two is the code or data.
STUCK_ATTEMPT = 3
#: Seconds between descriptions while a run's workflow task keeps failing.
CHECK_INTERVAL = 2.0


def stuck_attempt(desc: WorkflowExecutionDescription) -> int:
    """The pending workflow task's attempt if the run may be jammed, else 0."""
    if desc.status != WorkflowExecutionStatus.RUNNING:
        return 0
    raw = desc.raw_description
    if not raw.HasField("pending_workflow_task"):
        return 0
    attempt = raw.pending_workflow_task.attempt
    return attempt if attempt >= STUCK_ATTEMPT else 0


def _outcome(
    event: HistoryEvent, failure: WorkflowTaskFailedEventAttributes | None
) -> WorkflowTaskFailedEventAttributes | None:
    """The streak's opening failure after ``event``, given the one before it."""
    if event.HasField("workflow_task_failed_event_attributes"):
        return event.workflow_task_failed_event_attributes
    if event.HasField("workflow_task_completed_event_attributes") or event.HasField(
        "workflow_task_timed_out_event_attributes"
    ):
        return None
    return failure


async def _streak_failure(handle: WorkflowHandle[Any, Any], converter: DataConverter) -> str | None:
    """``CAUSE: message`` if the last recorded workflow task outcome is a failure."""
    failure: WorkflowTaskFailedEventAttributes | None = None
    async for event in handle.fetch_history_events():
        failure = _outcome(event, failure)
    if failure is None:
        return None
    message = failure.failure.message
    try:  # with encryption on, the message is in the encoded attributes
        message = str(await converter.decode_failure(failure.failure)) or message
    except Exception:
        pass
    return f"{WorkflowTaskFailedCause.Name(failure.cause)}: {message}"


async def jam_error(
    handle: WorkflowHandle[Any, Any], converter: DataConverter, attempt: int
) -> str | None:
    """Why the run cannot make progress, given its :func:`stuck_attempt`; else None.

    None also when the streak is timeouts (a worker died): one coming back resumes it.
    """
    if not attempt:
        return None
    failure = await _streak_failure(handle, converter)
    if failure is None:
        return None
    return (
        f"the task cannot make progress: its workflow task failed {attempt - 1} times in a "
        f"row ({failure}); the run is still open - fix the worker/deployment and it "
        "resumes, or cancel/terminate it"
    )


async def stuck_error(handle: WorkflowHandle[Any, Any], converter: DataConverter) -> str | None:
    """Why the run cannot make progress, or None if it is not jammed."""
    return await jam_error(handle, converter, stuck_attempt(await handle.describe()))


#: How long a run is described now and then, before its history is followed.
DESCRIBE_PHASE = 30.0
#: Seconds before a young run is first described. Under load most short tasks
#: outlive two seconds in the queue; a description each cost the client about 2 ms
#: of CPU a task (7.5 against 9.6-9.8 ms with it, 150 tasks 50 in flight), and most
#: are over by five.
FIRST_LOOK = 5.0


def _failed_once(desc: WorkflowExecutionDescription) -> bool:
    """The run's pending workflow task follows a failed (or timed out) one."""
    if desc.status != WorkflowExecutionStatus.RUNNING:
        return False
    raw = desc.raw_description
    return raw.HasField("pending_workflow_task") and raw.pending_workflow_task.attempt >= 2


async def _young(
    handle: WorkflowHandle[Any, Any], grace: float, phase: float, interval: float
) -> None:
    """Returns once the run is past ``phase`` seconds or its workflow task failed.

    Described at ``grace``, then at doubling gaps: a short task busy in a queue
    costs one description, where following its history cost three long-polls
    (one per event batch it still wrote), a fifth of the server requests of a
    short task.
    """
    waited, gap = 0.0, grace
    while True:
        await asyncio.sleep(gap)
        waited += gap
        try:
            if _failed_once(await handle.describe()):
                return
        except Exception:  # a server restart: the caller's own wait sees it too
            pass
        if waited >= phase:
            return
        gap = min(max(gap * 2, interval), phase - waited)


async def watch_stuck(
    handle: WorkflowHandle[Any, Any],
    converter: DataConverter,
    interval: float = CHECK_INTERVAL,
    grace: float = FIRST_LOOK,
    phase: float = DESCRIBE_PHASE,
) -> str:
    """Returns (with the reason) once the run is jammed; runs until cancelled otherwise.

    A jam always opens with a recorded workflow task failure. A young run is
    described after ``grace`` and then at doubling gaps (nothing at all for a
    short task over by then): a jam shows as a pending workflow task on its
    second attempt or later. From the first such sight, or once the run is
    ``phase`` seconds old, its history is followed by long-poll (a parked
    request, no cost while nothing happens) and the run described every
    ``interval`` only while the last recorded outcome is a failure: a thousand
    callers waiting on healthy long runs cost the server nothing, where a
    describe each every two seconds was a busy dev server's largest load. Ages
    here are the watch's own (a caller that joins an old run starts over): a jam
    already there is seen ``grace`` seconds in; one that begins in the first
    ``phase`` seconds at the next description (5, 15, 30 s: at most about as
    late again as the watch's age), and once the history is followed at once.
    Errors (a server restart) are left to the caller's own wait, which sees them
    too; the history is then followed again from its start.
    """
    failing = False  # the last outcome read so far is a failure
    news = asyncio.Event()

    async def follow() -> None:
        nonlocal failing
        await _young(handle, grace, phase, interval)
        while True:
            seen: WorkflowTaskFailedEventAttributes | None = None
            try:
                async for event in handle.fetch_history_events(wait_new_event=True):
                    seen = _outcome(event, seen)
                    failing = seen is not None
                    news.set()
            except Exception:
                pass
            # The run closed (its result answers the caller) or the server went
            # away; follow the newest run again, unhurried.
            await asyncio.sleep(interval)

    follower = asyncio.ensure_future(follow())
    try:
        while True:
            if not failing:
                news.clear()
                await news.wait()
                continue
            try:  # the whole history again: mid-way through a long one, an old
                # failure may look like the last outcome
                reason = await stuck_error(handle, converter)
            except Exception:
                reason = None
            if reason is not None:
                return reason
            await asyncio.sleep(interval)
    finally:
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)


__all__ = [
    "CHECK_INTERVAL",
    "DESCRIBE_PHASE",
    "FIRST_LOOK",
    "STUCK_ATTEMPT",
    "jam_error",
    "stuck_attempt",
    "stuck_error",
    "watch_stuck",
]
