"""What a caller is told when Temporal does not answer.

An outage must not make a caller submit the same work twice: the message for
a failed start names the task id to resubmit, so the retry attaches to a run
that may already exist. Kept apart so every method of the client words an
outage the same way.
"""

from __future__ import annotations

from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from ..exceptions import TemporalUnavailableError

#: Statuses that say nothing about the task, only that the server did not answer.
UNAVAILABLE = frozenset(
    {RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.CANCELLED}
)


def unavailable(
    client: Client, exc: RPCError, task_id: str | None = None
) -> TemporalUnavailableError:
    where = (
        f"Temporal at {client.service_client.config.target_host} is unavailable "
        f"({exc.status.name if exc.status else 'error'}: {exc.message})"
    )
    if task_id is None:
        return TemporalUnavailableError(
            f"{where}; the task is safe in Temporal, try again when the server is back"
        )
    # A plain "try again" would make the caller build a new Task with a new id,
    # and a second paid run if the first start did reach the server.
    return TemporalUnavailableError(
        f"{where}; task {task_id!r} may or may not have started. When the server is "
        f"back, resubmit the same Task (or one with task_id={task_id!r}): it attaches "
        "to the run if there is one and starts it otherwise, never twice",
        task_id=task_id,
    )
