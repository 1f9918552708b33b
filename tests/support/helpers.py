"""Reading what Temporal recorded, for assertions that do not trust our own code;
waiting for a condition instead of sleeping for one."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable

from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client


async def history_events(client: Client, task_id: str) -> list[HistoryEvent]:
    history = await client.get_workflow_handle(task_id).fetch_history()
    return list(history.events)


async def raw_history(client: Client, task_id: str) -> bytes:
    """Every byte the server stored for the run, payloads undecoded."""
    return b"".join(e.SerializeToString() for e in await history_events(client, task_id))


def count(events: list[HistoryEvent], attribute: str) -> int:
    return sum(1 for e in events if e.HasField(attribute))


def activity_attempts(events: list[HistoryEvent]) -> list[int]:
    return [
        e.activity_task_started_event_attributes.attempt
        for e in events
        if e.HasField("activity_task_started_event_attributes")
    ]


async def wait_until(
    condition: Callable[[], bool | Awaitable[bool]], timeout: float, what: str
) -> None:
    """Polls ``condition`` (plain or async) until true; fails naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        met = condition()
        if inspect.isawaitable(met):
            met = await met
        if met:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)
