"""Running a batch: at most ``concurrency`` tasks open at once, results in input order.

The scheduler only submits and follows; workers run the tasks. Kept apart
from the files it reads and writes so the bound on open tasks (on spend and on
provider rate limits) and the abort-or-fail-alone rules can be read in one place.
The cost cap's own rules live in :mod:`._budget`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from ..client import ProviderBatchInfo, TaskClient
from ..client._identity import fingerprint
from ..core import Result, Task, TaskStatus
from ..delivery import takes_batch
from ..exceptions import TaskNotFoundError, TaskValidationError
from ._budget import CapGuard
from ._ids import assign_task_ids
from ._provider_batches import ProviderBatchWatch
from ._results import WRITE_INTERVAL, ResultsFile, from_record, read_results
from ._types import CAP_CANCELLED, CAP_NOT_SUBMITTED, BatchProgress, BatchReport, BatchSummary


class _Tally:
    """Mutable counters behind the frozen :class:`BatchProgress` snapshots."""

    def __init__(self, total: int, on_progress: Callable[[BatchProgress], None] | None) -> None:
        self.total = total
        self.submitted = self.running = 0
        self.completed = self.failed = self.cancelled = self.not_submitted = 0
        #: Open tasks that take a provider batch (only while one is watched).
        self.batched: dict[str, None] = {}
        self.provider_batches: tuple[ProviderBatchInfo, ...] = ()
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
                    not_submitted=self.not_submitted,
                    provider_batches=self.provider_batches,
                )
            )

    def show(self, provider_batches: tuple[ProviderBatchInfo, ...]) -> None:
        self.provider_batches = provider_batches
        self.report()

    def count(self, status: TaskStatus) -> None:
        if status == TaskStatus.COMPLETED:
            self.completed += 1
        elif status == TaskStatus.CANCELLED:
            self.cancelled += 1
        else:  # FAILED, or UNKNOWN if the run vanished: either way, not done well
            self.failed += 1


async def _submit(client: TaskClient, task: Task, rerun: bool) -> str:
    """Submit ``task``; or, if the batch's cap cancelled it before, run it again."""
    if rerun:
        assert task.task_id is not None
        try:
            return await client.rerun_task(task.task_id)
        except TaskNotFoundError:  # past the namespace's retention: a new run
            pass
    return await client.submit_task(task)


async def _follow(client: TaskClient, task_id: str, task: Task) -> Result:
    try:
        return await client.get_result(task_id, timeout=None)
    except TaskNotFoundError:  # deleted while we waited: this task only, not the batch
        return Result(
            task=task,
            status=TaskStatus.FAILED,
            error=f"task {task_id!r} disappeared (deleted, or past the namespace's retention)",
        )


async def _not_admitted(
    client: TaskClient, task: Task, tally: _Tally, guard: CapGuard, rerun: bool
) -> Result:
    """A task the cap stops: not submitted, unless an earlier run of the batch did."""
    assert task.task_id is not None
    status = await client.get_status(task.task_id)
    if status == TaskStatus.UNKNOWN:
        tally.not_submitted += 1
        tally.report()
        return Result(task=task, status=TaskStatus.FAILED, error=guard.refusal(task))
    if not status.is_terminal:  # running since an earlier run: the cap cannot afford it
        await guard.cancel(task.task_id)
    result = await _follow(client, task.task_id, task)
    tally.count(result.status)
    tally.report()
    return await guard.settle(task, result, cap_cancelled_before=rerun)


async def _run_one(
    client: TaskClient,
    task: Task,
    tally: _Tally,
    guard: CapGuard | None = None,
    *,
    rerun: bool = False,
) -> Result:
    if guard is not None and not await guard.admit(task):
        return await _not_admitted(client, task, tally, guard, rerun)
    try:
        task_id = await _submit(client, task, rerun)
    except TaskValidationError as exc:
        # Refused before starting (model not allowed, too large): fail this task only.
        if guard is not None:
            guard.release(task.task_id or "")  # nothing started: the reservation goes back
        tally.count(TaskStatus.FAILED)
        tally.report()
        return Result(task=task, status=TaskStatus.FAILED, success=False, error=str(exc))
    tally.submitted += 1
    tally.running += 1
    tally.report()
    if guard is not None:
        await guard.started(task_id)
    if takes_batch(task):
        tally.batched[task_id] = None
    result = await _follow(client, task_id, task)
    tally.batched.pop(task_id, None)
    tally.running -= 1
    tally.count(result.status)
    tally.report()
    if guard is not None:
        result = await guard.settle(task, result, cap_cancelled_before=rerun)
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
    max_cost_usd: float | None = None,
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

    Tasks with batch delivery wait in provider batches, which hold only the
    tasks open at once: give them a ``concurrency`` as large as the batch you
    want sent. ``on_progress`` then also hears what those provider batches do
    (``BatchProgress.provider_batches``, see :mod:`._provider_batches`).

    With ``max_cost_usd``, the batch's cost (``summary.cost_usd``, tasks the
    results file holds included) is held to that cap (see :mod:`._budget`): a
    task is submitted only if the spend settled so far, plus what the running
    tasks reserved, plus the most it can cost itself fits; and once the running
    tasks' spend would cross it, every running task is cancelled. Tasks the cap
    kept from running end FAILED with an error starting ``not submitted:`` (counted
    as ``not_submitted``); a re-run with a higher cap runs them, and runs again
    the tasks the cap cancelled (when their results file says so).

    Raises:
        ValueError: ``concurrency`` < 1, ``max_cost_usd`` not above 0, or bad
            ids or a task the cap cannot price (:class:`BatchInputError`).
    """
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    tasks = assign_task_ids(tasks, batch_id)
    started = time.monotonic()
    tally = _Tally(len(tasks), on_progress)
    results: list[Result | None] = [None] * len(tasks)
    fingerprints = [fingerprint(task) for task in tasks]
    sink: ResultsFile | None = None
    reruns: set[int] = set()  # cancelled by an earlier run's cost cap: run them again
    if results_path is not None:
        previous = read_results(results_path)
        for index, task in enumerate(tasks):
            record = previous.get(task.task_id or "")
            if record is None or record.get("fingerprint") != fingerprints[index]:
                continue
            if record.get("status") == TaskStatus.COMPLETED.value:
                results[index] = from_record(task, record)
                tally.count(TaskStatus.COMPLETED)
            elif record.get("status") == TaskStatus.CANCELLED.value and str(
                record.get("error") or ""
            ).startswith(CAP_CANCELLED):
                reruns.add(index)
        sink = ResultsFile(Path(results_path), results, fingerprints, write_interval)
    guard = None
    if max_cost_usd is not None:
        guard = CapGuard(
            client,
            max_cost_usd,
            (task for index, task in enumerate(tasks) if results[index] is None),
            settled=sum(r.cost for r in results if r is not None),
        )
    queue: Iterator[tuple[int, Task]] = iter(
        (index, task) for index, task in enumerate(tasks) if results[index] is None
    )

    async def slot() -> None:
        # The iterator is shared: each slot pulls the next index when it frees up,
        # so input order is the submission order.
        for index, task in queue:
            results[index] = await _run_one(client, task, tally, guard, rerun=index in reruns)
            if sink is not None:
                sink.changed()

    tally.report()
    slots = [asyncio.ensure_future(slot()) for _ in range(min(concurrency, len(tasks)))]
    writer = asyncio.ensure_future(sink.trailing()) if sink is not None else None
    watcher = asyncio.ensure_future(guard.watch()) if guard is not None else None
    batches = None
    if any(takes_batch(task) for task in tasks):  # their provider batches, for the progress
        watch = ProviderBatchWatch(client.client, lambda: list(tally.batched), tally.show)
        batches = asyncio.ensure_future(watch.watch())
    try:
        await asyncio.gather(*slots)
    except BaseException:
        for pending in slots:
            pending.cancel()
        await asyncio.gather(*slots, return_exceptions=True)
        raise
    finally:
        for helper in (writer, watcher, batches):
            if helper is not None:
                helper.cancel()
                await asyncio.gather(helper, return_exceptions=True)
        if sink is not None:
            sink.write()  # what finished is kept, even when interrupted
    if watcher is not None and not watcher.cancelled() and watcher.exception() is not None:
        raise RuntimeError("the batch's cost cap stopped watching spend") from watcher.exception()
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
        not_submitted=tally.not_submitted,
        max_cost_usd=max_cost_usd,
        stopped_by_cap=guard is not None
        and any((r.error or "").startswith((CAP_NOT_SUBMITTED, CAP_CANCELLED)) for r in done),
    )
    return BatchReport(results=done, summary=summary)
