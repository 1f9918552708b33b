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

from ..core import Task

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


__all__ = ["FINGERPRINT_MEMO", "fingerprint"]
