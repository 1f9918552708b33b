"""Taking a run back from a worker that died, without waiting on its sticky queue.

Temporal sends a run's workflow tasks to the queue of the worker that last
processed it (its sticky queue) and only moves one to the shared queue when it
has waited there for the schedule-to-start timeout (10 s by default). After a
worker is SIGKILLed, its runs' next workflow tasks (the new attempt's first
checkpoint, the completion) would all wait out that timeout. The attempt that
takes over from a dead one resets the run's sticky queue first, so they go to
the shared queue at once; a live sticky worker only loses its cached run (one
history replay).
"""

from __future__ import annotations

import logging

from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.workflowservice.v1 import ResetStickyTaskQueueRequest
from temporalio.client import Client

logger = logging.getLogger(__name__)


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
