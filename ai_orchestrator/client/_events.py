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


def apply_event(shown: str, event: StreamEvent) -> str:
    """The text a reader shows after ``event``: a restart takes back what it discards.

    Folding every event of ``stream_events`` from ``""`` gives the final output.

    Raises:
        ValueError: ``shown`` does not end with the text a restart discards (events
            were skipped or applied out of order).
    """
    if isinstance(event, Restart):
        if not shown.endswith(event.discarded):
            raise ValueError("restart does not match the text shown; events out of order?")
        return shown[: len(shown) - len(event.discarded)]
    if isinstance(event, TextDelta):
        return shown + event.text
    return shown


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
    platform: str | None = None
