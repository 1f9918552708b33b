"""Percentiles, the result table, and history measurements."""

from __future__ import annotations

import asyncio
import statistics
from dataclasses import dataclass, field

from temporalio.api.enums.v1 import TimeoutType
from temporalio.client import Client

TIMEOUT_TYPE_SCHEDULE_TO_START = TimeoutType.TIMEOUT_TYPE_SCHEDULE_TO_START


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def lags(sent: list[float], received: list[tuple[float, int]]) -> list[float]:
    """Per token (ms): first delivery covering it minus the time the simulator sent it."""
    result, k = [], 0
    for at, count in received:
        while k < min(count, len(sent)):
            result.append((at - sent[k]) * 1000)
            k += 1
    return result


async def history_stats(client: Client, workflow_id: str) -> tuple[int, int]:
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    return len(history.events), sum(e.ByteSize() for e in history.events)


async def history_scan(
    client: Client, workflow_ids: list[str], parallel: int = 20
) -> list[dict[str, int]]:
    """Per workflow: history events, bytes, and the timeouts its history records.

    A workflow-task timeout is either schedule-to-start (a sticky queue nobody
    polled in time: the task moves to the normal queue, a hiccup) or
    start-to-close (a worker took a task and did not finish it: the worse kind),
    so both are counted apart.
    """
    gate = asyncio.Semaphore(parallel)

    async def scan(workflow_id: str) -> dict[str, int]:
        async with gate:
            history = await client.get_workflow_handle(workflow_id).fetch_history()
        counts = {
            "events": len(history.events),
            "bytes": sum(e.ByteSize() for e in history.events),
            "workflow_task_timeouts": 0,
            "sticky_schedule_to_start": 0,
            "activity_timeouts": 0,
        }
        by_id = {e.event_id: e for e in history.events}
        for event in history.events:
            if event.HasField("workflow_task_timed_out_event_attributes"):
                counts["workflow_task_timeouts"] += 1
                timed_out = event.workflow_task_timed_out_event_attributes
                kind = timed_out.timeout_type
                counts["sticky_schedule_to_start"] += kind == TIMEOUT_TYPE_SCHEDULE_TO_START
                # What the timed-out task was for: the event that made it be scheduled.
                cause = by_id.get(timed_out.scheduled_event_id - 1)
                name = cause.WhichOneof("attributes") if cause else None
                key = f"timeout after {(name or 'start').removesuffix('_event_attributes')}"
                counts[key] = counts.get(key, 0) + 1
            if event.HasField("activity_task_timed_out_event_attributes"):
                counts["activity_timeouts"] += 1
        return counts

    return list(await asyncio.gather(*(scan(i) for i in workflow_ids)))


def timeout_totals(histories: list[dict[str, int]]) -> dict[str, int]:
    """Timeouts of every kind, and what the timed-out workflow tasks were woken by."""
    keys = {"workflow_task_timeouts", "sticky_schedule_to_start", "activity_timeouts"}
    keys |= {k for h in histories for k in h if k.startswith("timeout after ")}
    return {k: sum(h.get(k, 0) for h in histories) for k in sorted(keys)}


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    """The most intervals (start, end) open at one instant."""
    edges = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    most = open_now = 0
    for _, step in edges:
        open_now += step
        most = max(most, open_now)
    return most


@dataclass
class Row:
    """One line of the table: our runs and each baseline's runs of one metric."""

    scenario: str
    metric: str
    unit: str
    ours: list[float] = field(default_factory=list)
    baselines: dict[str, list[float]] = field(default_factory=dict)
    target: str = ""

    def add(self, ours: float, **baselines: float) -> None:
        self.ours.append(ours)
        for name, value in baselines.items():
            self.baselines.setdefault(name, []).append(value)


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} [{min(values):.1f}-{max(values):.1f}]"


def render(rows: list[Row]) -> str:
    header = (
        f"{'scenario':38} {'metric':24} {'ours: median [min-max]':>26}  "
        f"{'baselines: median (ours/baseline)':52} target"
    )
    lines = [header, "-" * len(header)]
    for row in rows:
        if not row.ours:
            continue
        ours = statistics.median(row.ours)
        base = "; ".join(
            f"{name} {statistics.median(v):.1f}"
            + (f" (x{ours / statistics.median(v):.2f})" if statistics.median(v) else "")
            for name, v in row.baselines.items()
            if v
        )
        metric = f"{row.metric} ({row.unit})"
        lines.append(
            f"{row.scenario:38} {metric:24} {_spread(row.ours):>26}  {base:52} {row.target}"
        )
    return "\n".join(lines)
