"""What a batch's callers catch, watch and get back.

Kept in a leaf of its own: the input, the results file and the scheduler all
name these, and none of them should import another just for a type.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from ..client._describe import ProviderBatchInfo
from ..core import Result

#: How the error of a task the batch's cost cap kept from running begins. Such a
#: task is FAILED in its result and results file (so a re-run submits it) and
#: counted apart, as ``not_submitted``.
CAP_NOT_SUBMITTED = "not submitted: the batch's cost cap"
#: How the error of a task the batch's cost cap cancelled begins; a re-run reads
#: it back from the results file and runs the task again (``rerun_task``).
CAP_CANCELLED = "cancelled: the batch's cost cap"


class BatchInputError(ValueError):
    """The batch file cannot be used; the message names the file, line and problem."""


@dataclass(frozen=True)
class BatchProgress:
    """A snapshot of a running batch, reported after every change.

    ``running`` counts tasks submitted and not yet finished (at most the
    concurrency). A task refused before submission counts as failed without
    having been submitted; one the batch's cost cap kept from running counts
    as ``not_submitted``. ``provider_batches``: the provider batches found
    holding tasks with batch delivery, as last seen (refreshed every couple of
    seconds while such tasks run).
    """

    total: int
    submitted: int = 0
    running: int = 0
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    not_submitted: int = 0
    provider_batches: tuple[ProviderBatchInfo, ...] = ()

    @property
    def done(self) -> int:
        return self.completed + self.failed + self.cancelled + self.not_submitted


@dataclass(frozen=True)
class BatchSummary:
    """Totals of a finished batch; ``cost_usd`` and ``tokens`` add up every task.

    ``max_cost_usd`` is the batch's cost cap (None: none), and ``stopped_by_cap``
    says whether it stopped the batch: ``not_submitted`` tasks were never
    started, and tasks it cancelled are among ``cancelled``.
    """

    batch_id: str
    total: int
    completed: int
    failed: int
    cancelled: int
    tokens: int
    cost_usd: float
    duration_seconds: float
    not_submitted: int = 0
    max_cost_usd: float | None = None
    stopped_by_cap: bool = False

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
