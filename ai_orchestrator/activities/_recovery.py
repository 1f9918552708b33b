"""What an attempt that follows a lost one does before it calls the provider.

**Taking the run back without waiting on its sticky queue.** Temporal sends a
run's workflow tasks to the queue of the worker that last processed it (its
sticky queue) and only moves one to the shared queue when it has waited there
for the schedule-to-start timeout (10 s by default). After a worker is
SIGKILLed, its runs' next workflow tasks (the new attempt's first checkpoint,
the completion) would all wait out that timeout. The attempt that takes over
from a dead one resets the run's sticky queue first, so they go to the shared
queue at once; a live sticky worker only loses its cached run (one history
replay).

**Looking for a cancel the dead worker never heard.** Temporal retries an
attempt that timed out even when the task was cancelled meanwhile, and drops
the activity's cancel request when it does; the workflow's own flag remains.
The attempt looks for it before paying the provider for an answer nobody wants.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from temporalio import activity
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import PendingActivityState
from temporalio.api.workflowservice.v1 import ResetStickyTaskQueueRequest
from temporalio.client import Client, WorkflowHandle

from ..messages import CHUNKS_SIGNAL, AttemptState, ChunkBatch
from ..providers import Provider
from ._failures import cancelled_before_start
from ._stop import stop_continuation

logger = logging.getLogger(__name__)

#: How long an attempt that found its task cancelled waits for Temporal to say so.
CANCEL_DELIVERY_TIMEOUT = 10.0


async def unstick(client: Client, workflow_id: str, run_id: str) -> None:
    """Reset the run's sticky queue; best effort (the timeout still applies if it fails)."""
    try:
        await client.workflow_service.reset_sticky_task_queue(
            ResetStickyTaskQueueRequest(
                namespace=client.namespace,
                execution=WorkflowExecution(workflow_id=workflow_id, run_id=run_id),
            )
        )
    except Exception as exc:
        logger.warning("could not reset the sticky queue of %s: %s", workflow_id, exc)


async def refuse_if_cancelled(
    handle: WorkflowHandle[Any, Any], state: AttemptState, provider: Provider
) -> None:
    """End the attempt as cancelled if its task was; best effort (an outage lets it run)."""
    info = activity.info()
    try:
        desc = await handle.describe()
    except Exception as exc:  # the check must not turn an outage into a failure
        logger.warning("could not check for a cancel before calling the provider: %s", exc)
        return
    # The workflow's own flag: Temporal drops the activity's cancel request
    # when it retries an attempt that timed out, but not the workflow's.
    requested = desc.raw_description.workflow_extended_info.cancel_requested or any(
        p.activity_id == info.activity_id
        and p.state == PendingActivityState.PENDING_ACTIVITY_STATE_CANCEL_REQUESTED
        for p in desc.raw_description.pending_activities
    )
    if not requested:
        return
    # An answer an earlier attempt left generating in the background is stopped.
    if state.continuation:
        await stop_continuation(provider, state.continuation)
    if state.ledger.attempts:  # what earlier attempts cost reaches the cancelled task
        with contextlib.suppress(Exception):
            await handle.signal(
                CHUNKS_SIGNAL,
                ChunkBatch(
                    attempt=info.attempt,
                    offset=0,
                    text="",
                    run_id=info.workflow_run_id,
                    generation=state.generation,
                    ledger=state.ledger,
                    bill_only=True,
                ),
            )
    # Let Temporal deliver the cancel (the heartbeat's answer carries it), so
    # the attempt ends as cancelled, not failed; no prompt is sent.
    activity.heartbeat(state)
    await asyncio.sleep(CANCEL_DELIVERY_TIMEOUT)
    raise cancelled_before_start(state.ledger)
