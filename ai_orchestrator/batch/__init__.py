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

A batch can be held to a cost cap (``run_batch(..., max_cost_usd=...)``): tasks
are submitted only while what they may cost fits, and running ones are
cancelled once spend would cross it (see :mod:`._budget`).
"""

from ._budget import reservation
from ._ids import assign_task_ids, batch_id_for, check_batch_id, task_id_for
from ._input import read_tasks
from ._results import WRITE_INTERVAL, read_results, result_record, write_results
from ._run import run_batch
from ._types import (
    CAP_CANCELLED,
    CAP_NOT_SUBMITTED,
    BatchInputError,
    BatchProgress,
    BatchReport,
    BatchSummary,
)

__all__ = [
    "CAP_CANCELLED",
    "CAP_NOT_SUBMITTED",
    "WRITE_INTERVAL",
    "BatchInputError",
    "BatchProgress",
    "BatchReport",
    "BatchSummary",
    "assign_task_ids",
    "batch_id_for",
    "check_batch_id",
    "read_results",
    "read_tasks",
    "reservation",
    "result_record",
    "run_batch",
    "task_id_for",
    "write_results",
]
