"""Rebuild a task's state from its recorded history, with no worker needed.

A cancelled or failed run returns no result payload, yet the user is owed the
partial output and the bill; the history holds every chunk signal, the input
task and the activity's failures, and :class:`OutputBuffer` folds them exactly
as the workflow did. Batches from another run (an operator reset re-applies
the old run's signals) are left out, as the workflow leaves them out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import WorkflowHandle
from temporalio.converter import DataConverter
from temporalio.exceptions import ApplicationError

from ..core import LENIENT_CONTEXT, Task
from ..messages import (
    CHUNKS_SIGNAL,
    STOP_ACTIVITY,
    AttemptState,
    ChunkBatch,
    CompletionOutput,
    Ledger,
    StoppedAnswers,
    TaskInput,
)
from ..output import OutputBuffer


@dataclass
class HistoryView:
    task: Task | None
    output: OutputBuffer
    #: What the provider billed over every attempt, when the history says (None: unknown).
    ledger: Ledger | None = None


def _ledger(value: Any) -> Ledger | None:
    try:
        return Ledger.model_validate(value, context=LENIENT_CONTEXT)
    except ValueError:
        return None


async def _failure_ledger(event: HistoryEvent, converter: DataConverter) -> Ledger | None:
    """The ledger an activity attempt left in its failure (details or last heartbeat)."""
    if event.HasField("activity_task_failed_event_attributes"):
        failure = event.activity_task_failed_event_attributes.failure
    else:
        failure = event.activity_task_timed_out_event_attributes.failure
    try:
        error = await converter.decode_failure(failure)
    except Exception:  # an undecodable failure leaves the bill unknown, not the output
        return None
    details = getattr(error, "details", None) or ()
    if isinstance(error, ApplicationError) and details:
        return _ledger(details[0])
    heartbeat = getattr(error, "last_heartbeat_details", None) or ()
    if heartbeat:
        try:
            state = AttemptState.model_validate(heartbeat[0], context=LENIENT_CONTEXT)
        except ValueError:
            return None
        return state.ledger if state.closed else state.settled(0)
    return None


async def replay_history(handle: WorkflowHandle, converter: DataConverter) -> HistoryView:
    """Fold the history of the handle's run (the latest run if it names none)."""
    run_id = handle.run_id
    if run_id is None:
        # Pin the run: its id tells its own batches from a reset's re-applied ones,
        # and the history read must be that run's even if a new one starts meanwhile.
        run_id = (await handle.describe()).run_id
        handle = handle._client.get_workflow_handle(handle.id, run_id=run_id)
    task: Task | None = None
    buffer = OutputBuffer(run_id=run_id)
    ledger: Ledger | None = None
    stops: set[int] = set()  # scheduled-event ids of the stop activity
    async for event in handle.fetch_history_events():
        if event.HasField("workflow_execution_started_event_attributes"):
            payloads = event.workflow_execution_started_event_attributes.input.payloads
            if payloads:
                task = (await converter.decode(payloads, [TaskInput]))[0].task
        elif event.HasField("workflow_execution_signaled_event_attributes"):
            attrs = event.workflow_execution_signaled_event_attributes
            if attrs.signal_name == CHUNKS_SIGNAL and attrs.input.payloads:
                batch = (await converter.decode(attrs.input.payloads, [ChunkBatch]))[0]
                if buffer.apply(batch) and batch.ledger is not None:
                    ledger = batch.ledger
        elif event.HasField("activity_task_scheduled_event_attributes"):
            if event.activity_task_scheduled_event_attributes.activity_type.name == STOP_ACTIVITY:
                stops.add(event.event_id)
        elif event.HasField("activity_task_completed_event_attributes"):
            attrs = event.activity_task_completed_event_attributes
            payloads = attrs.result.payloads
            if attrs.scheduled_event_id in stops:
                if payloads and ledger is not None:
                    stopped = (await converter.decode(payloads, [StoppedAnswers]))[0]
                    for bill in stopped.bills:  # the provider's count replaces the estimates
                        ledger = ledger.settle_response(bill)
            elif payloads:
                out = (await converter.decode(payloads, [CompletionOutput]))[0]
                buffer.apply(
                    ChunkBatch(
                        attempt=out.attempt,
                        offset=out.offset,
                        text=out.tail,
                        run_id=run_id,
                        generation=out.generation,
                    )
                )
                ledger = out.ledger or ledger
        elif event.HasField("activity_task_failed_event_attributes") or event.HasField(
            "activity_task_timed_out_event_attributes"
        ):
            ledger = await _failure_ledger(event, converter) or ledger
    if ledger is not None:  # as the workflow does: an attempt's own late bill wins
        ledger = ledger.with_late_bills(buffer.own_bills) or ledger
    return HistoryView(task=task, output=buffer, ledger=ledger)
