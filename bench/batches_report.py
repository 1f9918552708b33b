"""What a batch-delivery run is measured from (:mod:`bench.batches`): the tasks' and the
batch workflows' histories, the provider's own record of its batches, and the tables.

Times compared across processes are wall clock on one machine: the history's event
times (the server's), and the simulator's batch end (``BatchRecord.ended_at`` is
``time.monotonic()`` in this process; :meth:`BatchRecord.wall` turns it into wall
time). The client's own completion times are monotonic, like ``ended_at``.
"""

from __future__ import annotations

import asyncio
import re
import statistics
from collections import Counter
from itertools import pairwise
from typing import Any

from openai import AsyncOpenAI
from temporalio.api.enums.v1 import TimeoutType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client

from ai_orchestrator.delivery import (
    ANSWER_SIGNAL,
    COLLECTOR_WORKFLOW,
    FAN_OUT_ACTIVITY,
    JOIN_ACTIVITY,
    PROVIDER_BATCH_WORKFLOW,
    SUBMIT_ACTIVITY,
)
from ai_orchestrator.simulator import Simulator

PROMPT = "batch bench task {i}: name one thing about the tides"
_PROMPT_INDEX = re.compile(r"batch bench task (\d+):")
_ACTIVITIES = {JOIN_ACTIVITY: "join", SUBMIT_ACTIVITY: "send", FAN_OUT_ACTIVITY: "fan_out"}


def _wall(event: HistoryEvent) -> float:
    # Not ToDatetime().timestamp(): that reads the server's UTC time as local time.
    return event.event_time.seconds + event.event_time.nanos / 1e9


def summarise(events: list[HistoryEvent]) -> dict[str, Any]:
    """One run's history: size, when it closed and got its answer, its batch activities."""
    out: dict[str, Any] = {
        "events": len(events),
        "bytes": sum(e.ByteSize() for e in events),
        "closed_at": _wall(events[-1]) if events else None,
    }
    names: dict[int, str] = {}
    for e in events:
        kind = e.WhichOneof("attributes")
        if kind == "workflow_execution_signaled_event_attributes":
            if e.workflow_execution_signaled_event_attributes.signal_name == ANSWER_SIGNAL:
                out.setdefault("answer_at", _wall(e))
            out.setdefault("first_signal_at", _wall(e))
            out["last_signal_at"] = _wall(e)
        elif kind == "activity_task_scheduled_event_attributes":
            name = _ACTIVITIES.get(e.activity_task_scheduled_event_attributes.activity_type.name)
            if name:
                names[e.event_id] = name
                out[name] = {"scheduled": _wall(e), "attempt": 1}
        elif kind == "activity_task_started_event_attributes":
            a = e.activity_task_started_event_attributes
            if a.scheduled_event_id in names:
                # Written when the attempt ends, with the time the last attempt started.
                entry = out[names[a.scheduled_event_id]]
                entry.update(started=_wall(e), attempt=a.attempt)
        elif kind and kind.startswith("activity_task_") and kind.endswith("_event_attributes"):
            a = getattr(e, kind)
            if kind == "activity_task_timed_out_event_attributes":
                out["activity_timeouts"] = out.get("activity_timeouts", 0) + 1
            if getattr(a, "scheduled_event_id", 0) in names:
                entry = out[names[a.scheduled_event_id]]
                entry.update(closed=_wall(e), outcome=kind.removeprefix("activity_task_")[:-17])
        elif kind == "workflow_task_started_event_attributes":
            out["last_worker"] = e.workflow_task_started_event_attributes.identity
        elif kind == "workflow_task_timed_out_event_attributes":
            # Schedule-to-start: a sticky queue nobody polls (its worker died) held the task.
            out["wft_timeouts"] = out.get("wft_timeouts", 0) + 1
            kind = e.workflow_task_timed_out_event_attributes.timeout_type
            sticky = kind == TimeoutType.TIMEOUT_TYPE_SCHEDULE_TO_START
            out["wft_sticky"] = out.get("wft_sticky", 0) + sticky
        elif kind == "start_child_workflow_execution_initiated_event_attributes":
            out.setdefault("handed_at", []).append(_wall(e))
    return out


async def histories(client: Client, queue: str, parallel: int = 20) -> dict[str, list[dict]]:
    """Every run on the queue (continued-as-new runs too), summarised, by workflow type."""
    executions = [e async for e in client.list_workflows(f'TaskQueue="{queue}"')]
    gate = asyncio.Semaphore(parallel)

    async def one(workflow_id: str, run_id: str | None) -> dict[str, Any]:
        async with gate:
            handle = client.get_workflow_handle(workflow_id, run_id=run_id)
            history = await handle.fetch_history()
        return {"id": workflow_id, **summarise(list(history.events))}

    summaries = await asyncio.gather(*(one(e.id, e.run_id) for e in executions))
    by_type: dict[str, list[dict]] = {}
    for execution, summary in zip(executions, summaries, strict=True):
        by_type.setdefault(execution.workflow_type, []).append(summary)
    return by_type


async def provider_view(sim: Simulator, openai: AsyncOpenAI, tasks: int) -> dict[str, Any]:
    """What the provider was sent, read back from each batch's own input file: which
    task each item asked for (its prompt), so a task sent twice shows."""
    batches = sorted(sim.batches.values(), key=lambda b: b.created_at)
    where: dict[int, list[str]] = {}
    for b in batches:
        text = (await openai.files.content(b.input_file_id or "")).text
        for line in text.splitlines():
            found = _PROMPT_INDEX.search(line)
            if found:
                where.setdefault(int(found.group(1)), []).append(b.id)
    counts = Counter(len(ids) for ids in where.values())
    return {
        "batches": len(batches),
        "items": [len(b.items) for b in batches],
        "items_total": sum(len(b.items) for b in batches),
        "tasks_in_two_batches": sum(1 for ids in where.values() if len(set(ids)) > 1),
        "tasks_sent_twice": sum(n for k, n in counts.items() if k > 1),
        "tasks_never_sent": tasks - len(where),
        "realtime_requests": len(sim.requests),
        "_batch_of": {i: ids[0] for i, ids in where.items()},
    }


def _stats(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)
    return {
        "min": ordered[0],
        "p50": statistics.median(ordered),
        "p95": ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))],
        "max": ordered[-1],
    }


def history_sizes(by_type: dict[str, list[dict]], tasks: int, task_type: str) -> dict[str, Any]:
    """Per task: its own history; the collector's and provider batches' shared out."""
    own = by_type.get(task_type, [])
    shared = {
        "collector": by_type.get(COLLECTOR_WORKFLOW, []),
        "provider_batch": by_type.get(PROVIDER_BATCH_WORKFLOW, []),
    }
    out: dict[str, Any] = {
        "task_events": statistics.mean(h["events"] for h in own) if own else 0.0,
        "task_events_max": max((h["events"] for h in own), default=0),
        "task_bytes": statistics.mean(h["bytes"] for h in own) if own else 0.0,
    }
    for name, runs in shared.items():
        out[f"{name}_runs"] = len(runs)
        out[f"{name}_events_per_task"] = sum(h["events"] for h in runs) / max(1, tasks)
        out[f"{name}_bytes_per_task"] = sum(h["bytes"] for h in runs) / max(1, tasks)
    out["task_wft_timeouts"] = sum(h.get("wft_timeouts", 0) for h in own)
    out["batch_wft_timeouts"] = sum(h.get("wft_timeouts", 0) for r in shared.values() for h in r)
    out["wft_sticky"] = sum(h.get("wft_sticky", 0) for r in (own, *shared.values()) for h in r)
    out["activity_timeouts"] = sum(
        h.get("activity_timeouts", 0) for r in (own, *shared.values()) for h in r
    )
    out["all_events_per_task"] = out["task_events"] + sum(
        out[f"{n}_events_per_task"] for n in shared
    )
    out["all_bytes_per_task"] = out["task_bytes"] + sum(out[f"{n}_bytes_per_task"] for n in shared)
    return out


def timings(
    sim: Simulator,
    by_type: dict[str, list[dict]],
    batch_of: dict[int, str],
    ids: list[str],
    done: dict[int, float],
    t0: float,
) -> dict[str, Any]:
    """Each task's answer against its batch's end; each batch's send and fan-out."""
    records = sim.batches
    tasks = {h["id"]: h for h in by_type.get("AiTask", [])}
    client_lag, signal_lag, close_lag, signals = [], [], [], []
    for i, task_id in enumerate(ids):
        record = records.get(batch_of.get(i, ""))
        if record is None or record.ended_at is None:
            continue
        if i in done:
            client_lag.append(done[i] - record.ended_at)
        h = tasks.get(task_id, {})
        if h.get("answer_at") is not None:
            signal_lag.append(h["answer_at"] - record.wall(record.ended_at))
            signals.append(h["answer_at"])
        if h.get("closed_at") is not None:
            close_lag.append(h["closed_at"] - record.wall(record.ended_at))
    phases = []
    for h in by_type.get(PROVIDER_BATCH_WORKFLOW, []):
        fan, send = h.get("fan_out"), h.get("send")
        if fan is None and send is None:
            continue  # a run that only waited (continued as new)
        phase: dict[str, Any] = {"workflow": h["id"]}
        if send and "closed" in send:
            phase["send_s"] = send["closed"] - send["scheduled"]
        if fan and "closed" in fan:
            phase.update(
                fan_out_s=fan["closed"] - fan["scheduled"],
                fan_out_last_attempt_s=fan["closed"] - fan.get("started", fan["scheduled"]),
                fan_out_attempts=fan["attempt"],
                fan_out_scheduled=fan["scheduled"],
                fan_out_closed=fan["closed"],
            )
        phases.append(phase)
    gathered = [
        {
            "joins_over_s": h["last_signal_at"] - h["first_signal_at"],
            "handed_after_first_join_s": [x - h["first_signal_at"] for x in h["handed_at"]],
        }
        for h in by_type.get(COLLECTOR_WORKFLOW, [])
        if h.get("handed_at") and h.get("first_signal_at")
    ]
    signals.sort()
    joins = [h["join"] for h in tasks.values() if "join" in h]
    batches = sorted(records.values(), key=lambda b: b.created_at)
    ended = [b.ended_at for b in batches if b.ended_at is not None]
    out: dict[str, Any] = {
        "batch_created_s": [b.created_at - t0 for b in batches],
        "batch_ended_s": [e - t0 for e in ended],
        "client_lag_s": _stats(client_lag),
        "answer_signal_lag_s": _stats(signal_lag),
        # The fan-out's pace as the tasks' histories saw it: time between answers.
        "answer_gap_ms": _stats([1000 * (b - a) for a, b in pairwise(signals)]),
        "close_lag_s": _stats(close_lag),
        "phases": phases,
        "gathered": gathered,
        "joins": dict(Counter(j.get("outcome", "open") for j in joins)),
        # Scheduled -> the last attempt started: how long a join waited for a worker.
        "join_wait_s": _stats([j["started"] - j["scheduled"] for j in joins if "started" in j]),
        "join_s": _stats([j["closed"] - j["scheduled"] for j in joins if "closed" in j]),
    }
    if ended and done:
        span = max(done.values()) - min(ended)
        out["end_to_last_answer_s"] = span
        out["end_to_last_items_per_s"] = len(done) / span if span > 0 else 0.0
    fanned = [p for p in phases if "fan_out_s" in p]
    if fanned and batches:
        items = sum(len(b.items) for b in batches)
        spent = sum(p["fan_out_s"] for p in fanned)  # scheduled -> closed, retries too
        out["fan_out_items_per_s"] = items / spent if spent > 0 else 0.0
        first_end = batches[0].wall(min(ended)) if ended else 0.0
        out["end_to_fan_out_s"] = min(p["fan_out_scheduled"] for p in fanned) - first_end
    return out


# -- tables --------------------------------------------------------------------------


def _f(value: Any, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def _ratio(ours: float | None, base: float | None) -> str:
    return f" (x{ours / base:.2f})" if ours is not None and base else ""


def _lines(run: dict[str, Any], base: dict[str, Any] | None) -> list[tuple[str, str]]:
    p, t, h = run.get("provider", {}), run.get("timing", {}), run["history"]
    hb = base["history"] if base else {}
    cost = run.get("cost", {})
    rows = [
        ("tasks completed", f"{run['completed']}/{run['tasks']}"),
        ("wall (submit -> last answer)", f"{run['wall_s']:.1f} s"),
    ]
    if run["mode"] != "realtime":
        lag = t.get("client_lag_s", {})
        close = t.get("close_lag_s", {})
        gap = t.get("answer_gap_ms", {})
        jw, jc = t.get("join_wait_s", {}), t.get("join_s", {})
        phases = t.get("phases", [])
        rows += [
            ("provider batches (items each)", f"{p['batches']} ({p['items']})"),
            (
                "sent twice / in two batches / never",
                f"{p['tasks_sent_twice']} / {p['tasks_in_two_batches']} / {p['tasks_never_sent']}",
            ),
            ("asked in real time", str(p["realtime_requests"])),
            (
                "join activities (outcome: count)",
                ", ".join(f"{k}: {v}" for k, v in sorted(t.get("joins", {}).items())),
            ),
            (
                "join scheduled -> started, closed",
                f"p50 {_f(jw.get('p50'))} s, max {_f(jw.get('max'))} s; "
                f"p50 {_f(jc.get('p50'))} s, max {_f(jc.get('max'))} s",
            ),
            (
                "joins over; batches handed at",
                ", ".join(
                    f"{g['joins_over_s']:.1f} s; "
                    + ", ".join(f"+{x:.1f} s" for x in g["handed_after_first_join_s"])
                    for g in t.get("gathered", [])
                ),
            ),
            (
                "send (ask members, upload)",
                ", ".join(f"{x.get('send_s', 0):.1f} s" for x in phases),
            ),
            ("batch end -> fan-out scheduled", f"{_f(t.get('end_to_fan_out_s'))} s"),
            (
                "fan-out activity (attempts)",
                ", ".join(
                    f"{x['fan_out_s']:.1f} s ({x['fan_out_attempts']})"
                    for x in phases
                    if "fan_out_s" in x
                ),
            ),
            ("fan-out throughput", f"{_f(t.get('fan_out_items_per_s'), '.0f')} items/s"),
            (
                "time between answers (tasks' hist.)",
                f"p50 {_f(gap.get('p50'))} ms, p95 {_f(gap.get('p95'))} ms",
            ),
            (
                "batch end -> answer, client",
                f"p50 {_f(lag.get('p50'))} s, max {_f(lag.get('max'))} s",
            ),
            (
                "batch end -> task closed, history",
                f"p50 {_f(close.get('p50'))} s, max {_f(close.get('max'))} s",
            ),
            ("batch end -> last answer", f"{_f(t.get('end_to_last_answer_s'))} s"),
            (
                "answered by the batch / real time",
                f"{cost.get('batch_answered')} / {cost.get('realtime_answered')} "
                f"({cost.get('tasks_billed_twice')} billed twice)",
            ),
            (
                "batch answer cost / real time's",
                f"{_f(cost.get('ratio_min'), '.4f')}-{_f(cost.get('ratio_max'), '.4f')} "
                "(same prompt, answering attempt)",
            ),
            ("cost vs batch price, max error", f"{_f(cost.get('price_error_max'), '.2e')}"),
        ]
    rows += [
        (
            "task history events (bytes)",
            f"{h['task_events']:.1f}{_ratio(h['task_events'], hb.get('task_events'))} "
            f"({h['task_bytes']:.0f}{_ratio(h['task_bytes'], hb.get('task_bytes'))})",
        ),
    ]
    if run["mode"] != "realtime":
        rows += [
            (
                "+ collector, provider batch /task",
                f"{h['collector_events_per_task']:.2f} + {h['provider_batch_events_per_task']:.2f}"
                f" events ({h['collector_bytes_per_task']:.0f} + "
                f"{h['provider_batch_bytes_per_task']:.0f} B; {h['collector_runs']} + "
                f"{h['provider_batch_runs']} runs)",
            ),
            (
                "all events (bytes) per task",
                f"{h['all_events_per_task']:.1f}"
                f"{_ratio(h['all_events_per_task'], hb.get('task_events'))} "
                f"({h['all_bytes_per_task']:.0f}"
                f"{_ratio(h['all_bytes_per_task'], hb.get('task_bytes'))})",
            ),
        ]
    rows.append(
        (
            "timeouts: wft tasks / batch wfs, act.",
            f"{h['task_wft_timeouts']} / {h['batch_wft_timeouts']} "
            f"({h['wft_sticky']} sticky), {h['activity_timeouts']}",
        )
    )
    for key in ("worker_kill", "server_kill"):
        if key in run:
            rows.append((key.replace("_", " "), run[key]["what"]))
    return rows


def render(report: dict[str, Any]) -> str:
    s = report["sizes"]
    base = next((r for r in report["runs"] if r["mode"] == "realtime"), None)
    lines = [
        f"batches: {s['tasks']} tasks of {report['model']} (max_tokens={s['max_tokens']}), "
        f"{s['workers']} worker processes, provider turnaround {s['turnaround']:g} s; "
        f"collector/polling settings: {report['settings'] or 'defaults'}; ratios (xN) are "
        "against the real-time run of the same prompts",
    ]
    if "load_avg" in report:
        lines.append(
            "  load average (1 min) at the start and end: "
            + ", ".join(f"{x:.1f}" for x in report["load_avg"])
            + f" on {report.get('cores', '?')} cores (others' processes count too)"
        )
    for run in report["runs"]:
        lines.append(f"  [{run['label']}]")
        for name, value in _lines(run, base if run is not base else None):
            lines.append(f"    {name:36} {value}")
        for failure in run.get("not_completed", [])[:5]:
            lines.append(f"    NOT COMPLETED {failure}")
    if floor := report.get("floor"):
        lines += [
            f"  [floor: {floor['tasks']} bare workflows parked on a signal, each handed its"
            " answer as the fan-out does, from the moment all were parked]",
            f"    {'all answers signalled':36} {floor['last_signalled_s']:.1f} s"
            f" ({floor['signals_per_s']:.0f}/s)",
            f"    {'closed, p50 and last':36} {floor['closed_p50_s']:.1f} s,"
            f" {floor['last_closed_s']:.1f} s",
        ]
    return "\n".join(lines)
