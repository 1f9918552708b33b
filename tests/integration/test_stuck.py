"""A run whose workflow task keeps failing is reported failed within seconds, never waited on.

The jam is real: a workflow of our type started with input the worker cannot
decode. The worker fails the workflow task ("Failed decoding arguments") and
Temporal retries it forever, the run staying open; only the waiting callers'
checks can tell.
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import pytest
from temporalio.client import Client, WorkflowExecutionStatus

from ai_orchestrator import Finished, TaskClient, TaskFailedError, TaskStatus
from ai_orchestrator.messages import WORKFLOW_TYPE
from ai_orchestrator.simulator import Simulator

from ..conftest import running_worker, unique

#: The promise: a jammed task is reported within seconds (here a 3 s workflow task
#: timeout: attempts 1 and 2 fail, the third is pending after ~3 s; with the
#: default 10 s it takes ~11 s).
WITHIN = 15.0


async def test_jammed_run_surfaces_as_failed_within_seconds(
    client: Client, queue: str, sim: Simulator, tasks: TaskClient
) -> None:
    """Promise: a jammed workflow surfaces as failed within seconds, never hangs."""
    task_id = unique("jam")
    async with running_worker(client, queue, sim):
        handle = await client.start_workflow(
            WORKFLOW_TYPE,
            {"not": "a task input"},
            id=task_id,
            task_queue=queue,
            task_timeout=timedelta(seconds=3),
        )
        began = time.monotonic()
        result = await asyncio.wait_for(tasks.get_result(task_id, timeout=None), WITHIN)
        assert time.monotonic() - began < WITHIN
        assert result.status == TaskStatus.FAILED and not result.success
        error = result.error or ""
        assert error.startswith("the task cannot make progress: its workflow task failed")
        assert "(WORKFLOW_TASK_FAILED_CAUSE_WORKFLOW_WORKER_UNHANDLED_FAILURE: " in error
        assert "Failed decoding arguments" in error
        assert "still open" in error
        assert await tasks.get_status(task_id) == TaskStatus.FAILED

        with pytest.raises(TaskFailedError, match="cannot make progress"):
            async for _ in tasks.stream_result(task_id):
                pass
        events = [e async for e in tasks.stream_events(task_id)]
        assert isinstance(events[-1], Finished) and events[-1].result.status == TaskStatus.FAILED
        assert time.monotonic() - began < 3 * WITHIN
        # Reported, not ended: the run is still open for an operator to fix or stop.
        assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
        await handle.terminate("test done")
