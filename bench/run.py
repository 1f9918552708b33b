"""Benchmarks: what durability costs, as ratios against baselines of the same run.

Usage: ``python bench/run.py [--runs N] [--smoke] [--out FILE]``

Starts its own file-backed Temporal dev server (like ``ai-orchestrator dev``)
and simulator, runs each scenario ``--runs`` times, prints one table of
medians with min-max spread, and writes every raw run to a JSON file.
Nothing here asserts a time; ``--smoke`` only proves the scenarios still run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from openai import AsyncOpenAI
from temporalio.client import Client
from temporalio.contrib.workflow_streams import WorkflowStreamClient
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import (
    SandboxedWorkflowRunner,
    SandboxRestrictions,
)

from ai_orchestrator import Task, TaskClient, TaskConstraints
from ai_orchestrator.config import ProviderSettings
from ai_orchestrator.converter import data_converter
from ai_orchestrator.devserver import DevServer
from ai_orchestrator.simulator import Simulator
from ai_orchestrator.worker import build_worker
from bench.baselines import TOPIC, BareWorkflow, BaselineActivities, StreamsWorkflow

# Same sandbox treatment as our worker: the module is passed through, not re-imported per run.
BASELINE_RUNNER = SandboxedWorkflowRunner(
    restrictions=SandboxRestrictions.default.with_passthrough_modules("bench", "openai")
)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@dataclass
class Row:
    scenario: str
    metric: str
    unit: str
    ours: list[float] = field(default_factory=list)
    baselines: dict[str, list[float]] = field(default_factory=dict)


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} [{min(values):.1f}-{max(values):.1f}]"


def print_table(rows: list[Row]) -> None:
    header = (
        f"{'scenario':34} {'metric':22} {'ours (median [min-max])':>26}  "
        "baselines (median, ours/baseline)"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        ours = statistics.median(row.ours)
        base = "; ".join(
            f"{name} {statistics.median(v):.1f} (x{ours / statistics.median(v):.2f})"
            for name, v in row.baselines.items()
            if v and statistics.median(v) > 0
        )
        metric = f"{row.metric} ({row.unit})"
        print(f"{row.scenario:34} {metric:22} {spread(row.ours):>26}  {base}")


async def history_stats(client: Client, workflow_id: str) -> tuple[int, int]:
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    return len(history.events), sum(e.ByteSize() for e in history.events)


async def timed(awaitable: Awaitable[Any]) -> float:
    start = time.perf_counter()
    await awaitable
    return (time.perf_counter() - start) * 1000


async def latency(ctx: Context, n: int) -> dict[str, list[float]]:
    """One non-streamed task at a time: ours vs a direct call vs a bare workflow."""
    ctx.sim.tokens_per_second = 0
    ctx.sim.default_tokens = 16
    out: dict[str, list[float]] = {"ours": [], "direct": [], "bare": []}
    for i in range(n):
        direct = ctx.openai.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": f"direct {i}"}]
        )
        out["direct"].append(await timed(direct))
        bare = ctx.client.execute_workflow(
            BareWorkflow.run, f"bare {i}", id=f"bare-{uuid.uuid4().hex}", task_queue=ctx.base_queue
        )
        out["bare"].append(await timed(bare))
        out["ours"].append(await timed(ctx.tasks.execute(Task(prompt=f"ours {i}"))))
    return out


def lags(sent: list[float], received: list[tuple[float, int]]) -> list[float]:
    """Per token: receive time of the first delivery covering it minus its send time."""
    result, k = [], 0
    for at, count in received:
        while k < min(count, len(sent)):
            result.append((at - sent[k]) * 1000)
            k += 1
    return result


async def stream_ours(ctx: Context, tokens: int) -> dict[str, float]:
    ctx.sim.default_tokens = tokens
    index = len(ctx.sim.requests)
    task_id = await ctx.tasks.submit_task(
        Task(prompt="stream ours", constraints=TaskConstraints(timeout_seconds=120))
    )
    received: list[tuple[float, int]] = []
    text = ""
    async for chunk in ctx.tasks.stream_result(task_id):
        text += chunk
        received.append((time.monotonic(), len(text.split())))
    request = ctx.sim.requests[index]
    lag = lags(request.token_sent_at, received)
    events, size = await history_stats(ctx.client, task_id)
    return {
        "lag_p50": pct(lag, 0.5),
        "lag_p95": pct(lag, 0.95),
        "first_chunk_ms": (received[0][0] - request.received_at) * 1000,
        "events": events,
        "bytes": size,
    }


async def stream_workflow_streams(ctx: Context, tokens: int) -> dict[str, float]:
    ctx.sim.default_tokens = tokens
    index = len(ctx.sim.requests)
    workflow_id = f"streams-{uuid.uuid4().hex}"
    await ctx.client.start_workflow(
        StreamsWorkflow.run, "stream baseline", id=workflow_id, task_queue=ctx.base_queue
    )
    received: list[tuple[float, int]] = []
    text = ""
    subscriber = WorkflowStreamClient.create(ctx.client, workflow_id)
    async for item in subscriber.subscribe(TOPIC, result_type=str):
        text += item.data
        received.append((time.monotonic(), len(text.split())))
        if len(text.split()) >= tokens:
            break
    await ctx.client.get_workflow_handle(workflow_id).result()
    request = ctx.sim.requests[index]
    lag = lags(request.token_sent_at, received)
    events, size = await history_stats(ctx.client, workflow_id)
    return {
        "lag_p50": pct(lag, 0.5),
        "lag_p95": pct(lag, 0.95),
        "first_chunk_ms": (received[0][0] - request.received_at) * 1000,
        "events": events,
        "bytes": size,
    }


async def stream_direct(ctx: Context, tokens: int) -> dict[str, float]:
    ctx.sim.default_tokens = tokens
    index = len(ctx.sim.requests)
    received: list[tuple[float, int]] = []
    text = ""
    stream = await ctx.openai.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "direct stream"}], stream=True
    )
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            text += chunk.choices[0].delta.content
            received.append((time.monotonic(), len(text.split())))
    request = ctx.sim.requests[index]
    lag = lags(request.token_sent_at, received)
    return {
        "lag_p50": pct(lag, 0.5),
        "lag_p95": pct(lag, 0.95),
        "first_chunk_ms": (received[0][0] - request.received_at) * 1000,
        "events": 0,
        "bytes": 0,
    }


@dataclass
class Context:
    client: Client
    sim: Simulator
    openai: AsyncOpenAI
    tasks: TaskClient
    base_queue: str


async def main(args: argparse.Namespace) -> dict[str, Any]:
    runs, n_latency, tokens = (1, 3, 50) if args.smoke else (args.runs, 50, 1000)
    rate = 500.0 if args.smoke else 100.0  # 1000 tokens over ~10 s
    raw: dict[str, Any] = {
        "machine": platform.platform(),
        "python": platform.python_version(),
        "runs": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        server = DevServer(db_file=Path(tmp) / "bench.db")
        async with server, Simulator(tokens_per_second=rate) as sim:
            client = await Client.connect(server.target, data_converter=data_converter())
            queue, base_queue = f"bench-{uuid.uuid4().hex[:6]}", f"base-{uuid.uuid4().hex[:6]}"
            provider = ProviderSettings(
                api_key="sk-bench",
                base_url=sim.base_url,
                default_model="gpt-4o-mini",
                read_timeout=30,
                flush_interval=0.1,
            )
            openai_client = AsyncOpenAI(api_key="sk-bench", base_url=sim.base_url, max_retries=0)
            baseline = BaselineActivities(openai_client, batch_interval=0.1)
            base_worker = Worker(
                client,
                task_queue=base_queue,
                workflows=[BareWorkflow, StreamsWorkflow],
                activities=[baseline.bare_completion, baseline.streams_completion],
                workflow_runner=BASELINE_RUNNER,
            )
            async with build_worker(client, task_queue=queue, provider=provider), base_worker:
                ctx = Context(
                    client, sim, openai_client, TaskClient(client, task_queue=queue), base_queue
                )
                lat_p50, lat_p95 = (
                    Row("one at a time, non-streamed", "p50 latency", "ms"),
                    Row("one at a time, non-streamed", "p95 latency", "ms"),
                )
                short_events = Row("non-streamed task", "history events", "count")
                stream_rows = {
                    k: Row(f"streamed task, {tokens} chunks", k, u)
                    for k, u in [
                        ("lag_p50", "ms"),
                        ("lag_p95", "ms"),
                        ("first_chunk_ms", "ms"),
                        ("events", "count"),
                        ("bytes", "bytes"),
                    ]
                }
                for run in range(runs):
                    lat = await latency(ctx, n_latency)
                    lat_p50.ours.append(pct(lat["ours"], 0.5))
                    lat_p95.ours.append(pct(lat["ours"], 0.95))
                    for name in ("direct", "bare"):
                        lat_p50.baselines.setdefault(name, []).append(pct(lat[name], 0.5))
                        lat_p95.baselines.setdefault(name, []).append(pct(lat[name], 0.95))
                    short = await ctx.tasks.execute(Task(prompt="short"))
                    short_events.ours.append(
                        (await history_stats(client, short.task.task_id or ""))[0]
                    )
                    sim.tokens_per_second = rate
                    ours = await stream_ours(ctx, tokens)
                    streams = await stream_workflow_streams(ctx, tokens)
                    direct = await stream_direct(ctx, tokens)
                    for key, row in stream_rows.items():
                        row.ours.append(ours[key])
                        row.baselines.setdefault("workflow_streams", []).append(streams[key])
                        if key not in ("events", "bytes"):
                            row.baselines.setdefault("direct", []).append(direct[key])
                    raw["runs"].append(
                        {
                            "run": run,
                            "latency_ms": lat,
                            "stream": {"ours": ours, "workflow_streams": streams, "direct": direct},
                        }
                    )
                    print(f"run {run + 1}/{runs} done", file=sys.stderr)
    print(
        f"\nmachine: {raw['machine']}, python {raw['python']}, runs: {runs}, "
        f"file-backed dev server, simulator over HTTP\n"
    )
    print_table([lat_p50, lat_p95, short_events, *stream_rows.values()])
    return raw


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="a few tasks, to prove it runs")
    parser.add_argument("--out", default="bench/results/latest.json")
    arguments = parser.parse_args()
    raw_runs = asyncio.run(main(arguments))
    Path(arguments.out).parent.mkdir(parents=True, exist_ok=True)
    Path(arguments.out).write_text(json.dumps(raw_runs, indent=2))
    print(f"\nraw runs: {arguments.out}")
