"""What a batch's callers catch, watch and get back.

Kept in a leaf of its own: the input, the results file and the scheduler all
name these, and none of them should import another just for a type.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from ..core import Result


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
