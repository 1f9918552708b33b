"""What makes two submissions "the same task": a fingerprint of its meaning.

A task id is an idempotency key, so re-submitting it must attach to the run it
names only when the caller is asking for the same work; a different prompt under
a reused id would otherwise get someone else's answer without any error. The
fingerprint hashes every field that changes what the provider is asked or how
the task runs, and leaves out two that do not:

* ``task_id``: it is the key the fingerprint is compared under, not content
  (and a generated id is assigned during submission, after the caller built
  the task).
* ``created_at``: it defaults to the time the ``Task`` object was built, so a
  retry that rebuilds the same task (a re-run batch, a restarted web request)
  would otherwise never match its own first submission.

``constraints=None`` and ``TaskConstraints()`` run identically, so constraints
are hashed in their effective form; fields left at their default are left out,
so a field added to ``Task`` later (with a default) does not change the
fingerprint of tasks submitted before it existed.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from temporalio.client import WorkflowHandle
from temporalio.converter import DataConverter

from ..core import Task
from ..messages import TaskInput

#: The memo key holding a run's fingerprint. Memo values go through the data
#: converter, so with encryption on the fingerprint is encrypted too.
FINGERPRINT_MEMO = "ai_orchestrator.fingerprint"

_NOT_SEMANTIC = frozenset({"task_id", "created_at"})


def fingerprint(task: Task) -> str:
    """``sha256:`` + the hex digest of the task's semantic fields as canonical JSON."""
    fields = task.model_dump(mode="json", exclude=set(_NOT_SEMANTIC), exclude_defaults=True)
    constraints = task.effective_constraints.model_dump(mode="json", exclude_defaults=True)
    fields.pop("constraints", None)
    if constraints:
        fields["constraints"] = constraints
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()


async def run_input(handle: WorkflowHandle[Any, Any], converter: DataConverter) -> TaskInput | None:
    """The latest run's input from its start event; None if it cannot be decoded."""
    async for event in handle.fetch_history_events():
        payloads = event.workflow_execution_started_event_attributes.input.payloads
        if not payloads:
            return None
        try:
            return (await converter.decode(payloads, [TaskInput]))[0]
        except Exception:  # not our input, or encrypted with a key we lack
            return None
    return None


async def run_fingerprint(handle: WorkflowHandle[Any, Any], converter: DataConverter) -> str | None:
    """The latest run's fingerprint: its memo, or (runs of older clients) its input.

    None when neither can be read (another workflow, another encryption key):
    the caller must then treat the run as a different task, never attach blindly.
    """
    desc = await handle.describe()
    try:
        value = await desc.memo_value(FINGERPRINT_MEMO, None, type_hint=str)
    except Exception:  # a memo this client cannot decode (another key): use the input
        value = None
    if isinstance(value, str):
        return value
    task_input = await run_input(handle, converter)
    return fingerprint(task_input.task) if task_input is not None else None


__all__ = ["FINGERPRINT_MEMO", "fingerprint", "run_fingerprint", "run_input"]
