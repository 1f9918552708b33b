"""Deterministic task ids: the batch's first checkpoint.

An id made from the file's content and the task's position is the same on
every run of the same file, so a re-run submits the same ids and Temporal
starts nothing twice. The rules live here, apart from reading and running,
because the CLI also applies them before it connects.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

from ..core import Task
from ._types import BatchInputError

#: Digits of the input index in generated task ids; sorts well up to 99,999 tasks.
_INDEX_DIGITS = 5
#: Generated ids are ``{batch_id}-{index}``; keep them within Task's 255 chars.
_MAX_BATCH_ID = 200


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
