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


async def watch_stuck(
    handle: WorkflowHandle[Any, Any],
    converter: DataConverter,
    interval: float = CHECK_INTERVAL,
    grace: float = CHECK_INTERVAL,
) -> str:
    """Returns (with the reason) once the run is jammed; runs until cancelled otherwise.

    A jam always opens with a recorded workflow task failure, so the run's
    history is followed by long-poll (a parked request, no cost while nothing
    happens) and the run is described every ``interval`` only while the last
    recorded outcome is a failure: a thousand callers waiting on healthy runs
    cost the server nothing, where a describe each every two seconds was a
    busy dev server's largest load. Following starts after ``grace``: a jam
    needs two failed workflow tasks, and a short task is over by then, so it
    costs no history request at all (following from its start cost five or six
    per task, more than the task itself). A jammed run is reported within
    ``grace`` seconds. Errors (a server restart) are left to the caller's own
    wait, which sees them too; the history is then followed again from its start.
    """
    failing = False  # the last outcome read so far is a failure
    news = asyncio.Event()

    async def follow() -> None:
        nonlocal failing
        await asyncio.sleep(grace)
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
    "STUCK_ATTEMPT",
    "jam_error",
    "stuck_attempt",
    "stuck_error",
    "watch_stuck",
]
