"""Telling a jammed run from a slow one.

Some mistakes make every workflow task of a run fail: input the worker cannot
decode, a command the server rejects, a non-deterministic change. Temporal then
retries the workflow task forever and the run stays "running", so a caller
waiting for its result would wait forever. The run's description says how
many times in a row its workflow task has been tried; from the third attempt
(two failures in a row) the task is reported as failed, with the failure the
history recorded, while the run itself stays open: fixing the worker resumes it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from temporalio.api.enums.v1 import WorkflowTaskFailedCause
from temporalio.client import WorkflowExecutionDescription, WorkflowExecutionStatus, WorkflowHandle
from temporalio.converter import DataConverter

#: The workflow task attempt from which a run counts as jammed: two failures in
#: a row. One failure can be a worker that died mid-task; two is the code or data.
STUCK_ATTEMPT = 3
#: Seconds between descriptions while waiting: one cheap RPC per waiting caller.
CHECK_INTERVAL = 2.0


def stuck_attempt(desc: WorkflowExecutionDescription) -> int:
    """The pending workflow task's attempt if the run is jammed, else 0."""
    if desc.status != WorkflowExecutionStatus.RUNNING:
        return 0
    raw = desc.raw_description
    if not raw.HasField("pending_workflow_task"):
        return 0
    attempt = raw.pending_workflow_task.attempt
    return attempt if attempt >= STUCK_ATTEMPT else 0


async def _last_failure(handle: WorkflowHandle[Any, Any], converter: DataConverter) -> str:
    """``CAUSE: message`` of the streak's failure (the server records only the first)."""
    found = "no failure recorded: the workflow task timed out (is a worker crashing?)"
    async for event in handle.fetch_history_events():
        if event.HasField("workflow_task_failed_event_attributes"):
            attrs = event.workflow_task_failed_event_attributes
            message = attrs.failure.message
            try:  # with encryption on, the message is in the encoded attributes
                message = str(await converter.decode_failure(attrs.failure)) or message
            except Exception:
                pass
            found = f"{WorkflowTaskFailedCause.Name(attrs.cause)}: {message}"
    return found


async def stuck_error(handle: WorkflowHandle[Any, Any], converter: DataConverter) -> str | None:
    """Why the run cannot make progress, or None if it is not jammed."""
    attempt = stuck_attempt(await handle.describe())
    if not attempt:
        return None
    failure = await _last_failure(handle, converter)
    return (
        f"the task cannot make progress: its workflow task failed {attempt - 1} times in a "
        f"row ({failure}); the run is still open - fix the worker/deployment and it "
        "resumes, or cancel/terminate it"
    )


async def watch_stuck(
    handle: WorkflowHandle[Any, Any], converter: DataConverter, interval: float = CHECK_INTERVAL
) -> str:
    """Returns (with the reason) once the run is jammed; runs until cancelled otherwise.

    The first check is immediate, so a run that is already jammed is reported
    at once. Errors (a server restart, an unknown id) are left to the caller's
    own wait, which sees them too.
    """
    while True:
        try:
            error = await stuck_error(handle, converter)
        except Exception:
            error = None
        if error is not None:
            return error
        await asyncio.sleep(interval)


__all__ = ["CHECK_INTERVAL", "STUCK_ATTEMPT", "stuck_attempt", "stuck_error", "watch_stuck"]
