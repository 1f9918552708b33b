"""What ``get_result`` returns for a run that did not complete.

A failed, cancelled, jammed or still running task is answered with a Result,
not an exception: its partial output, bill and attempts, replayed from the
run's history, are worth as much to the caller as the error. Kept apart from
the client because it reads only the run (its handle and the data
converter), never the client's settings.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from typing import Any

from temporalio.client import WorkflowFailureError, WorkflowHandle
from temporalio.converter import DataConverter
from temporalio.exceptions import ApplicationError, CancelledError, TerminatedError
from temporalio.exceptions import TimeoutError as TemporalTimeoutError
from temporalio.service import RPCError

from ..core import Result, Task, TaskStatus
from ._history import HistoryView, replay_history
from ._stuck import watch_stuck


async def wait(
    handle: WorkflowHandle[Any, Any], converter: DataConverter, timeout: float | None
) -> Result | str | None:
    """The result; or why the run is jammed; or None after ``timeout``.

    The result's long poll and :func:`watch_stuck` run side by side: a
    jammed run never answers the first.
    """
    result = asyncio.ensure_future(handle.result())
    watch = asyncio.ensure_future(watch_stuck(handle, converter))
    try:
        done, _ = await asyncio.wait(
            {result, watch}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        for pending in (result, watch):
            pending.cancel()
        await asyncio.gather(result, watch, return_exceptions=True)
    if result in done:
        return result.result()
    if watch in done:
        return watch.result()
    return None


def failure(exc: WorkflowFailureError) -> tuple[TaskStatus, str]:
    """The status and error a failed run reports, from its failure's cause."""
    cause = exc.cause
    if isinstance(cause, CancelledError):
        return TaskStatus.CANCELLED, "cancelled"
    if isinstance(cause, TerminatedError):
        return TaskStatus.FAILED, f"terminated: {cause.message}"
    if isinstance(cause, TemporalTimeoutError):
        return TaskStatus.FAILED, f"timed out: {cause.message}"
    if isinstance(cause, ApplicationError):
        return TaskStatus.FAILED, cause.message
    return TaskStatus.FAILED, str(cause or exc)


async def unfinished(
    handle: WorkflowHandle[Any, Any], converter: DataConverter, status: TaskStatus, error: str
) -> Result:
    """A Result for a run that did not complete, with what its history recorded."""
    try:
        view: HistoryView | None = await replay_history(handle, converter)
    except RPCError:
        raise
    except Exception:  # an input this client cannot decode (a jammed run): no details
        view = None
    if view is None:
        return Result(
            task=Task(prompt=f"<task {handle.id}: input unreadable>", task_id=handle.id),
            success=False,
            status=status,
            error=error,
            partial_output="",
        )
    metadata: dict[str, Any] = {
        "attempts": view.output.attempt,
        "restarts": view.output.restarts,
        "input_tokens": 0,
        "output_tokens": 0,
    }
    cost, tokens = 0.0, 0
    if view.ledger is not None:
        cost, tokens = view.ledger.cost, view.ledger.tokens
        metadata["input_tokens"] = view.ledger.prompt_tokens
        metadata["output_tokens"] = view.ledger.completion_tokens
        metadata["billing"] = [bill.model_dump() for bill in view.ledger.attempts]
    return Result(
        task=view.task or Task(prompt=f"<task {handle.id}>", task_id=handle.id),
        success=False,
        status=status,
        error=error,
        partial_output=view.output.text,
        cost=cost,
        tokens_used=tokens,
        duration_seconds=await _run_seconds(handle),
        metadata=metadata,
    )


async def _run_seconds(handle: WorkflowHandle[Any, Any]) -> float:
    """How long the run took (so far, if it is still open), as a completed result says."""
    desc = await handle.describe()
    end = desc.close_time or datetime.now(timezone.utc)
    return max(0.0, (end - desc.start_time).total_seconds())
