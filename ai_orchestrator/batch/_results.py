"""The results file: one JSON line per task, the batch's second checkpoint.

Temporal forgets closed runs after the namespace's retention; this file does
not. Kept apart from the scheduler because it is also a format others read
(the CLI's output, ``read_results`` on a re-run) and because every write must
be atomic, whoever triggers it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ..client._identity import fingerprint
from ..core import Result, Task, TaskStatus

#: Seconds between rewrites of the results file while a batch runs.
WRITE_INTERVAL = 2.0


class ResultsFile:
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


def from_record(task: Task, record: dict[str, Any]) -> Result:
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
