"""The collector of one task queue, platform and model: gathers batch tasks until
a window passes with no new one (or for ``max_wait_seconds`` at most, or until a
batch is full), then hands them to a provider batch.

One run per key at a time, started by the first task that joins (a
signal-with-start from the join activity). Each join is one small signal (ids
only, never a prompt), so a collector continues as new long before Temporal's
limits; a batch of ``max_items`` closes the window early. Provider batches are
child workflows it abandons: they outlive the collector, which ends itself after
a while without tasks (the next join starts a new run).
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from ..delivery import (
        BATCH_QUERY,
        COLLECTOR_WORKFLOW,
        JOIN_SIGNAL,
        LEAVE_SIGNAL,
        PROVIDER_BATCH_WORKFLOW,
        BatchMember,
        BatchState,
        CollectorInput,
        ProviderBatchInput,
    )

#: A collector with nobody waiting ends after this long.
IDLE = timedelta(minutes=10)
#: History events after which a collector continues as new (joins are ~2 each).
MAX_EVENTS = 4000


def _history_full() -> bool:
    info = workflow.info()
    return info.is_continue_as_new_suggested() or info.get_current_history_length() > MAX_EVENTS


@workflow.defn(name=COLLECTOR_WORKFLOW)
class BatchCollectorWorkflow:
    @workflow.init
    def __init__(self, input: CollectorInput) -> None:
        self._pending: list[BatchMember] = list(input.pending)
        self._known = {m.workflow_id for m in self._pending}
        self._joins = 0

    @workflow.signal(name=JOIN_SIGNAL)
    def join(self, member: BatchMember) -> None:
        if member.workflow_id not in self._known:  # a retried join is one member
            self._known.add(member.workflow_id)
            self._pending.append(member)
            self._joins += 1

    @workflow.signal(name=LEAVE_SIGNAL)
    def leave(self, member: BatchMember) -> None:
        """A task cancelled before its batch was sent is simply left out."""
        self._pending = [m for m in self._pending if m.workflow_id != member.workflow_id]

    @workflow.query(name=BATCH_QUERY)
    def state(self) -> BatchState:
        return BatchState(status="gathering", total=len(self._pending))

    async def _gather(self, input: CollectorInput) -> None:
        """Until a window passes with no new task, the batch is full, or the longest
        wait is up: tasks submitted over a while still go as one batch."""
        window = timedelta(seconds=input.window_seconds)
        cap = workflow.now() + timedelta(seconds=input.max_wait_seconds)
        while len(self._pending) < input.max_items:
            seen = self._joins
            timeout = min(window, cap - workflow.now())
            if timeout <= timedelta(0):
                return
            try:
                await workflow.wait_condition(
                    lambda: len(self._pending) >= input.max_items, timeout=timeout
                )
            except TimeoutError:
                pass
            if self._joins == seen:
                return  # a whole window without a new task

    @workflow.run
    async def run(self, input: CollectorInput) -> int:
        """Batches handed on by this run."""
        sequence = input.sequence
        handed = 0
        while True:
            if not self._pending:
                try:
                    await workflow.wait_condition(lambda: bool(self._pending), timeout=IDLE)
                except TimeoutError:
                    if not self._pending:
                        return handed
            await self._gather(input)
            take = self._pending[: input.max_items]
            self._pending = self._pending[input.max_items :]
            if take:
                sequence += 1
                handed += 1
                await workflow.start_child_workflow(
                    PROVIDER_BATCH_WORKFLOW,
                    ProviderBatchInput(
                        task_queue=input.task_queue,
                        platform=input.platform,
                        model=input.model,
                        members=take,
                        poll_seconds=input.poll_seconds,
                        poll_max_seconds=input.poll_max_seconds,
                    ),
                    # Unique across the collector's runs: a provider batch outlives them.
                    id=f"{workflow.info().workflow_id}/{workflow.uuid4().hex[:12]}",
                    task_queue=input.task_queue,
                    parent_close_policy=workflow.ParentClosePolicy.ABANDON,
                    static_summary=f"provider batch of {len(take)} ({input.model})",
                )
            if _history_full():
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(
                    input.model_copy(update={"pending": self._pending, "sequence": sequence})
                )
