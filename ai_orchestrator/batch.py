"""Run a file of prompts as durable tasks, resumably.

A batch is a JSONL file: each non-blank line is a JSON string (the prompt) or
an object with :class:`~ai_orchestrator.core.Task` fields. Every task gets a
deterministic id derived from the file's content and its position, so the
task id is a checkpoint: running the same file again after the submitting
process died submits the same ids, Temporal starts nothing twice (submission is
idempotent) and already finished tasks answer at once.

Temporal forgets closed runs after the namespace's retention period, so the
results file is the other checkpoint: it is written as tasks finish (atomically,
every couple of seconds and at the end), and a re-run takes every completed
record whose task id and fingerprint match its task as done, without
submitting it. No task is paid for twice, whenever the batch is resumed.

The submitting process only follows tasks; workers run them. Killing it loses
nothing: the open tasks keep running, and the next run collects them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from .client import TaskClient
from .client._identity import fingerprint
from .core import Result, Task, TaskStatus
from .exceptions import TaskNotFoundError, TaskValidationError

#: Digits of the input index in generated task ids; sorts well up to 99,999 tasks.
_INDEX_DIGITS = 5
#: Generated ids are ``{batch_id}-{index}``; keep them within Task's 255 chars.
_MAX_BATCH_ID = 200
#: Seconds between rewrites of the results file while a batch runs.
WRITE_INTERVAL = 2.0


class BatchInputError(ValueError):
    """The batch file cannot be used; the message names the file, line and problem."""


@dataclass(frozen=True)
class BatchProgress:
    """A snapshot of a running batch, reported after every change.

    ``running`` counts tasks submitted and not yet finished (at most the
    concurrency). A task refused before submission counts as failed without
    having been submitted.
    """

    total: int
    submitted: int = 0
    running: int = 0
    completed: int = 0
    failed: int = 0
    cancelled: int = 0

    @property
    def done(self) -> int:
        return self.completed + self.failed + self.cancelled


@dataclass(frozen=True)
class BatchSummary:
    """Totals of a finished batch; ``cost_usd`` and ``tokens`` add up every task."""

    batch_id: str
    total: int
    completed: int
    failed: int
    cancelled: int
    tokens: int
    cost_usd: float
    duration_seconds: float

    @property
    def ok(self) -> bool:
        """True when every task completed."""
        return self.completed == self.total

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class BatchReport:
    """What :func:`run_batch` returns: one result per task in input order, and totals."""

    results: list[Result]
    summary: BatchSummary


# -- input ----------------------------------------------------------------------


def _validation_summary(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        loc = ".".join(str(p) for p in error["loc"])
        parts.append(f"{loc}: {error['msg']}" if loc else str(error["msg"]))
    return "; ".join(parts)


def _parse_line(path: Path, number: int, line: str) -> Task:
    where = f"{path} line {number}"
    try:
        value = json.loads(line)
    except json.JSONDecodeError as exc:
        raise BatchInputError(f"{where}: invalid JSON: {exc.msg} (column {exc.colno})") from None
    try:
        if isinstance(value, str):
            return Task(prompt=value)
        if isinstance(value, dict):
            return Task.model_validate(value)
    except ValidationError as exc:
        raise BatchInputError(f"{where}: {_validation_summary(exc)}") from None
    raise BatchInputError(
        f"{where}: expected a JSON string (the prompt) or an object with task fields, "
        f"got {type(value).__name__}"
    )


def read_tasks(path: Path) -> list[Task]:
    """Parse a JSONL batch file into tasks, in file order; blank lines are skipped.

    All validation happens here, before anything is submitted, so a bad line
    costs nothing. Explicit ``task_id`` values must be unique: two lines with
    one id would silently share one run.

    Raises:
        BatchInputError: unreadable file, invalid JSON or task fields (with the
            1-based line number), duplicate task ids, or no tasks at all.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BatchInputError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        number = data.count(b"\n", 0, exc.start) + 1
        raise BatchInputError(f"{path} line {number}: not valid UTF-8") from None
    tasks: list[Task] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        task = _parse_line(path, number, line)
        if task.task_id is not None:
            if task.task_id in seen:
                raise BatchInputError(
                    f"{path} line {number}: duplicate task_id {task.task_id!r} "
                    f"(first on line {seen[task.task_id]})"
                )
            seen[task.task_id] = number
        tasks.append(task)
    if not tasks:
        raise BatchInputError(f"{path}: no tasks (the file is empty)")
    return tasks


# -- ids ------------------------------------------------------------------------


def batch_id_for(path: Path) -> str:
    """``batch-`` + the first 12 hex digits of the file's SHA-256.

    Derived from content, not name or time, so re-running the same file resumes
    the same batch, and an edited file is a new batch.
    """
    return "batch-" + hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]


def check_batch_id(batch_id: str) -> str:
    """Refuse a batch id that cannot prefix Temporal workflow ids."""
    if not batch_id.strip() or len(batch_id) > _MAX_BATCH_ID or "\n" in batch_id:
        raise BatchInputError(f"batch id must be 1-{_MAX_BATCH_ID} characters on one line")
    return batch_id


def task_id_for(batch_id: str, index: int) -> str:
    """The id of the task at 0-based ``index`` of a batch without its own id."""
    return f"{batch_id}-{index:0{_INDEX_DIGITS}d}"


def assign_task_ids(tasks: Sequence[Task], batch_id: str) -> list[Task]:
    """Copies of ``tasks`` where each task without a ``task_id`` gets its batch id.

    Tasks that carry their own id keep it. Idempotent.

    Raises:
        BatchInputError: a bad batch id, or two tasks ending up with one id.
    """
    check_batch_id(batch_id)
    assigned: list[Task] = []
    seen: dict[str, int] = {}
    for index, task in enumerate(tasks):
        if task.task_id is None:
            task = task.model_copy(update={"task_id": task_id_for(batch_id, index)})
        task_id = task.task_id
        assert task_id is not None
        if task_id in seen:
            raise BatchInputError(
                f"tasks {seen[task_id]} and {index} (0-based) have the same task_id {task_id!r}"
            )
        seen[task_id] = index
        assigned.append(task)
    return assigned


# -- running --------------------------------------------------------------------


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


class _ResultsFile:
    """The results file as a checkpoint: rewritten at most every ``interval`` seconds."""

    def __init__(
        self,
        path: Path,
        results: list[Result | None],
        fingerprints: list[str],
        interval: float,
    ) -> None:
        self.path, self.interval = path, interval
        self._results, self._fingerprints = results, fingerprints
        self._dirty = False
        self._written_at = float("-inf")

    def changed(self) -> None:
        self._dirty = True
        if time.monotonic() - self._written_at >= self.interval:
            self.write()

    async def trailing(self) -> None:
        """Writes changes made since the last write (the loop's other half)."""
        while True:
            await asyncio.sleep(self.interval)
            if self._dirty:
                self.write()

    def write(self) -> None:
        self._dirty, self._written_at = False, time.monotonic()
        _write_records(
            self.path,
            (
                result_record(index, result, self._fingerprints[index])
                for index, result in enumerate(self._results)
                if result is not None
            ),
        )


def _from_record(task: Task, record: dict[str, Any]) -> Result:
    """A completed result as an earlier run recorded it (no run needed)."""
    return Result(
        task=task,
        status=TaskStatus.COMPLETED,
        success=True,
        output=str(record.get("output") or ""),
        tokens_used=int(record.get("tokens") or 0),
        cost=float(record.get("cost_usd") or 0.0),
        metadata={"model": record.get("model"), "from_results_file": True},
    )


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
    sink: _ResultsFile | None = None
    if results_path is not None:
        previous = read_results(results_path)
        for index, task in enumerate(tasks):
            record = previous.get(task.task_id or "")
            if (
                record is not None
                and record.get("status") == TaskStatus.COMPLETED.value
                and record.get("fingerprint") == fingerprints[index]
            ):
                results[index] = _from_record(task, record)
                tally.count(TaskStatus.COMPLETED)
        sink = _ResultsFile(Path(results_path), results, fingerprints, write_interval)
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


# -- output ---------------------------------------------------------------------


def result_record(
    index: int, result: Result, task_fingerprint: str | None = None
) -> dict[str, Any]:
    """One line of the results file.

    ``output`` is the answer of a completed task, else whatever partial output
    was produced before it failed or was cancelled. ``fingerprint`` identifies
    the task (see :func:`ai_orchestrator.client._identity.fingerprint`; by
    default that of ``result.task``): a re-run trusts a completed record only
    for the very same task.
    """
    task = result.task
    completed = result.status == TaskStatus.COMPLETED
    model = result.metadata.get("model") or (task.constraints.model if task.constraints else None)
    return {
        "index": index,
        "task_id": task.task_id,
        "status": result.status.value,
        "output": result.output if completed else (result.partial_output or ""),
        "error": result.error,
        "tokens": result.tokens_used,
        "cost_usd": result.cost,
        "model": model,
        "fingerprint": task_fingerprint or fingerprint(task),
    }


def write_results(path: Path, results: Sequence[Result]) -> None:
    """Write one JSON line per result, in the given (input) order, atomically.

    The file is written beside ``path`` and renamed over it, so a reader (or a
    crash) never sees half a file: it holds the previous results or the new ones.
    """
    _write_records(path, (result_record(index, result) for index, result in enumerate(results)))


def read_results(path: Path) -> dict[str, dict[str, Any]]:
    """The records of an existing results file by task id ({} if there is none).

    Lines that are not JSON objects with a ``task_id`` are ignored: the file is
    a cache of finished work, and a damaged line only means that task is
    followed (or run) again.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return {}
    records: dict[str, dict[str, Any]] = {}
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and isinstance(record.get("task_id"), str):
            records[record["task_id"]] = record
    return records


def _write_records(path: Path, records: Iterable[dict[str, Any]]) -> None:
    path = Path(path)
    # A plain open (not mkstemp) so the file gets the usual umask permissions.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            for record in records:
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


__all__ = [
    "BatchInputError",
    "BatchProgress",
    "BatchReport",
    "BatchSummary",
    "assign_task_ids",
    "batch_id_for",
    "read_results",
    "read_tasks",
    "run_batch",
    "task_id_for",
    "write_results",
]
