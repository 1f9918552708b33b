"""Running a batch: at most ``concurrency`` tasks open at once, results in input order.

The scheduler only submits and follows; workers run the tasks. Kept apart
from the files it reads and writes so the bound on open tasks (on spend and on
provider rate limits) and the abort-or-fail-alone rules can be read in one place.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from ..client import TaskClient
from ..client._identity import fingerprint
from ..core import Result, Task, TaskStatus
from ..exceptions import TaskNotFoundError, TaskValidationError
from ._ids import assign_task_ids
from ._results import WRITE_INTERVAL, ResultsFile, from_record, read_results
from ._types import BatchProgress, BatchReport, BatchSummary


class _Tally:
    """Mutable counters behind the frozen :class:`BatchProgress` snapshots."""

    def __init__(self, total: int, on_progress: Callable[[BatchProgress], None] | None) -> None:
        self.total = total
        self.submitted = self.running = 0
        self.completed = self.failed = self.cancelled = 0
        self._on_progress = on_progress

    def report(self) -> None:
        if self._on_progress is not None:
            self._on_progress(
                BatchProgress(
                    total=self.total,
                    submitted=self.submitted,
                    running=self.running,
                    completed=self.completed,
                    failed=self.failed,
                    cancelled=self.cancelled,
                )
            )

    def count(self, status: TaskStatus) -> None:
        if status == TaskStatus.COMPLETED:
            self.completed += 1
        elif status == TaskStatus.CANCELLED:
            self.cancelled += 1
        else:  # FAILED, or UNKNOWN if the run vanished: either way, not done well
            self.failed += 1


async def _run_one(client: TaskClient, task: Task, tally: _Tally) -> Result:
    try:
        task_id = await client.submit_task(task)
    except TaskValidationError as exc:
        # Refused before starting (model not allowed, too large): fail this task only.
        tally.count(TaskStatus.FAILED)
        tally.report()
        return Result(task=task, status=TaskStatus.FAILED, success=False, error=str(exc))
    tally.submitted += 1
    tally.running += 1
    tally.report()
    try:
        result = await client.get_result(task_id, timeout=None)
    except TaskNotFoundError:  # deleted while we waited: this task only, not the batch
        result = Result(
            task=task,
            status=TaskStatus.FAILED,
            error=f"task {task_id!r} disappeared (deleted, or past the namespace's retention)",
        )
    tally.running -= 1
    tally.count(result.status)
    tally.report()
    return result


async def run_batch(
    client: TaskClient,
    tasks: Sequence[Task],
    *,
    batch_id: str,
    concurrency: int = 20,
    on_progress: Callable[[BatchProgress], None] | None = None,
    results_path: Path | None = None,
    write_interval: float = WRITE_INTERVAL,
) -> BatchReport:
    """Run ``tasks`` with at most ``concurrency`` open at once; results in input order.

    Each of ``concurrency`` slots takes the next task, submits it and waits for
    its result, so the server never holds more than ``concurrency`` of this
    batch's tasks at a time (a bound on spend and on provider rate limits, not
    only on local work). Tasks without a ``task_id`` get ``{batch_id}-{index:05d}``.

    Resumable: with the same ids, tasks already submitted by an earlier run that
    died are followed rather than started again, and finished ones return at
    once. Cancelling this coroutine stops following; the open tasks keep running.

    With ``results_path``, that file is read first: a ``completed`` record whose
    task id and fingerprint match its task is taken as done without submitting
    (so a batch resumed after Temporal's retention pays nothing again), and the
    file is rewritten as tasks finish (atomically, at most every
    ``write_interval`` seconds, and at the end, also when interrupted).

    A task the client refuses (:class:`TaskValidationError`) fails alone; any
    other error (Temporal unavailable) aborts the batch, to be re-run.

    Raises:
        ValueError: ``concurrency`` < 1, or bad ids (:class:`BatchInputError`).
    """
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    tasks = assign_task_ids(tasks, batch_id)
    started = time.monotonic()
    tally = _Tally(len(tasks), on_progress)
    results: list[Result | None] = [None] * len(tasks)
    fingerprints = [fingerprint(task) for task in tasks]
    sink: ResultsFile | None = None
    if results_path is not None:
        previous = read_results(results_path)
        for index, task in enumerate(tasks):
            record = previous.get(task.task_id or "")
            if (
                record is not None
                and record.get("status") == TaskStatus.COMPLETED.value
                and record.get("fingerprint") == fingerprints[index]
            ):
                results[index] = from_record(task, record)
                tally.count(TaskStatus.COMPLETED)
        sink = ResultsFile(Path(results_path), results, fingerprints, write_interval)
    queue: Iterator[tuple[int, Task]] = iter(
        (index, task) for index, task in enumerate(tasks) if results[index] is None
    )

    async def slot() -> None:
        # The iterator is shared: each slot pulls the next index when it frees up,
        # so input order is the submission order.
        for index, task in queue:
            results[index] = await _run_one(client, task, tally)
            if sink is not None:
                sink.changed()

    tally.report()
    slots = [asyncio.ensure_future(slot()) for _ in range(min(concurrency, len(tasks)))]
    writer = asyncio.ensure_future(sink.trailing()) if sink is not None else None
    try:
        await asyncio.gather(*slots)
    except BaseException:
        for pending in slots:
            pending.cancel()
        await asyncio.gather(*slots, return_exceptions=True)
        raise
    finally:
        if writer is not None:
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)
        if sink is not None:
            sink.write()  # what finished is kept, even when interrupted
    done = [r for r in results if r is not None]
    assert len(done) == len(tasks)
    summary = BatchSummary(
        batch_id=batch_id,
        total=len(tasks),
        completed=tally.completed,
        failed=tally.failed,
        cancelled=tally.cancelled,
        tokens=sum(r.tokens_used for r in done),
        cost_usd=sum(r.cost for r in done),
        duration_seconds=time.monotonic() - started,
    )
    return BatchReport(results=done, summary=summary)
