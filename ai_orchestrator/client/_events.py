"""What ``TaskClient.stream_events`` yields.

The plain text stream hides restarts when it can (see ``PrefixGuard``); these
events show them, for consumers that render text and can take some back.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ..core import Result


@dataclass(frozen=True)
class TextDelta:
    """New text of ``attempt``, starting at character ``offset`` of that attempt."""

    text: str
    attempt: int
    offset: int


@dataclass(frozen=True)
class Restart:
    """The provider call started over; ``discarded`` is the text to take back."""

    attempt: int
    discarded: str


@dataclass(frozen=True)
class Finished:
    """The task ended; ``result`` is final (completed, failed or cancelled)."""

    result: Result


StreamEvent = TextDelta | Restart | Finished


@dataclass(frozen=True)
class TaskSummary:
    """One row of ``list``: what visibility knows, without reading history."""

    task_id: str
    status: str
    model: str | None
    task_type: str | None
    priority: int | None
    tokens: int | None
    cost_usd: float | None
    started_at: datetime | None
    closed_at: datetime | None
    summary: str | None = None
