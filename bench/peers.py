"""Peers: ours side by side with other Temporal integrations for LLM calls (issue 16).

In the same run, against the same simulator and the same dev server, each system with its
own worker process (:mod:`bench.peers_workers`; ours is ``ai-orchestrator worker``) and its
own task queue (:mod:`bench.peers_systems`):

- ``ours``: :class:`~ai_orchestrator.TaskClient` and our worker;
- ``pydantic_ai``: pydantic-ai's durable execution (``TemporalDurability``, ``PydanticAIPlugin``);
- ``openai_agents``: Temporal's OpenAI Agents SDK integration (``OpenAIAgentsPlugin``);
- ``bare``: a bare one-activity workflow (:mod:`bench.baselines`), polled like ours: the floor.

Per system:

- p50/p95 latency of short answers one at a time (the systems interleaved);
- throughput of short tasks with a bounded number in flight; per task, the CPU of the worker,
  of the dev server and of this process (``/proc``), and the dev server's frontend requests
  (from its metrics, when it has a metrics port, as in ``bench/run.py``);
- history events and bytes of one short task (by event kind in the footer and the JSON);
- for one streamed answer, where the system streams live (the bare workflow does not: n/a),
  the chunk lag (the reader's receive time minus the simulator's send time, per token), the
  time to first chunk (from the provider request) and the task's history; ours is read on
  its live channel, pydantic-ai with ``stream_agent_events``, the OpenAI Agents SDK's raw
  model events with a ``WorkflowStreamClient`` (both peers publish to a
  ``temporalio.contrib.workflow_streams`` topic from the model activity);
- from a SIGKILL of the worker mid-answer (a replacement worker started at once) to the
  task's result (not for the bare workflow: it has no heartbeat timeout).

Every peer runs with its defaults except its model activity's heartbeat timeout, set to ours
(without it, a killed worker is noticed after 30 s, pydantic-ai, or 60 s, the OpenAI Agents
integration's start-to-close timeout), and the OpenAI Agents SDK's tracing export, turned off
(it would post to OpenAI).

Needs the ``peers`` extra (``pip install -e '.[peers]'``); without it the scenario says so and
is skipped. Sizes: :data:`FULL`, :data:`SMOKE` (``--smoke``), each field replaceable with
``BENCH_PEERS=field=value,...`` (e.g. ``BENCH_PEERS=load_tasks=150,load_open=50``).
Where a short task's time goes: :mod:`bench.peers_profile`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.metadata
import importlib.util
import os
import sys
import textwrap
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from temporalio.client import Client

from ai_orchestrator import RetrySettings

from .context import Bench
from .live import cpu_seconds
from .peers_systems import PEERS, READERS, System, spawn, systems
from .server_profile import frontend_requests
from .stats import Row, lags, pct

#: What the extra brings: module -> distribution (for the versions and the skip message).
REQUIRED = {
    "pydantic_ai.durable_exec.temporal": "pydantic-ai-slim",
    "agents": "openai-agents",
    "temporalio.openai_agents": "temporalio-openai-agents",
}
NO_STREAM = {"bare": "n/a: one activity returning the whole answer; nothing to stream"}
NO_KILL = {
    "bare": "n/a: no heartbeat timeout; a killed attempt waits out its 60 s start-to-close timeout"
}
#: A short task's workflow id, and the wall-clock times of its submit and of its result.
Timing = tuple[str, float, float]


@dataclass(frozen=True)
class PeerSizes:
    latency_tasks: int = 20
    load_tasks: int = 150
    load_open: int = 50
    stream_tokens: int = 300
    stream_rate: float = 100.0
    #: The killed answer: tokens at a rate, the kill this long after the request arrived.
    kill_tokens: int = 60
    kill_rate: float = 20.0
    kill_after_s: float = 1.0


FULL = PeerSizes()
SMOKE = PeerSizes(3, 20, 10, 40, 200.0, 30, 30.0, 0.5)


def sizes(smoke: bool) -> PeerSizes:
    """:data:`SMOKE` or :data:`FULL`, with the fields ``BENCH_PEERS`` replaces."""
    chosen = SMOKE if smoke else FULL
    raw = os.environ.get("BENCH_PEERS", "").strip()
    if not raw:
        return chosen
    types = {f.name: type(getattr(chosen, f.name)) for f in dataclasses.fields(chosen)}
    changes = {k: types[k](v) for k, v in (item.split("=", 1) for item in raw.split(","))}
    return dataclasses.replace(chosen, **changes)


def missing() -> list[str]:
    """The extra's modules that cannot be imported here."""
    gone = []
    for module in REQUIRED:
        try:
            found = importlib.util.find_spec(module) is not None
        except ImportError:
            found = False
        if not found:
            gone.append(module)
    return gone


def rows(s: PeerSizes) -> dict[str, Row]:
    one, load = "peers: one at a time, short", f"peers: {s.load_tasks} short, <= {s.load_open} open"
    stream, kill = (
        f"peers: 1 streamed task, {s.stream_tokens} chunks",
        "peers: worker SIGKILL mid-answer",
    )
    return {
        "peers_p50": Row(one, "p50 latency", "ms"),
        "peers_p95": Row(one, "p95 latency", "ms"),
        "peers_tput": Row(load, "throughput", "tasks/s", target=">= bare x0.95, >= openai_agents"),
        "peers_worker_cpu": Row(load, "worker CPU per task", "ms"),
        "peers_server_cpu": Row(load, "server CPU per task", "ms"),
        "peers_bench_cpu": Row(load, "bench CPU per task", "ms"),
        "peers_requests": Row(load, "server requests per task", "count"),
        "peers_events": Row("peers: one short task", "history events", "count"),
        "peers_bytes": Row("peers: one short task", "history bytes", "bytes"),
        "peers_lag_p50": Row(stream, "chunk lag p50", "ms"),
        "peers_lag_p95": Row(stream, "chunk lag p95", "ms"),
        "peers_first_chunk": Row(stream, "time to first chunk", "ms"),
        "peers_stream_events": Row(stream, "history events", "count"),
        "peers_stream_bytes": Row(stream, "history bytes", "bytes"),
        "peers_kill": Row(kill, "kill -> result", "s"),
    }


#: A short task's workflow id, and the wall-clock times of its submit and of its result.

# -- the measurements ------------------------------------------------------------------------


async def latency(b: Bench, all_: dict[str, System], n: int) -> dict[str, dict[str, float]]:
    """p50/p95 ms of short answers, one at a time, the systems interleaved."""
    b.sim.tokens_per_second, b.sim.default_tokens = 0, 16
    times: dict[str, list[float]] = {name: [] for name in all_}
    for i in range(n):
        for name, system in all_.items():
            start = time.perf_counter()
            await system.run(f"peers latency {name} {i}")
            times[name].append((time.perf_counter() - start) * 1000)
    return {k: {"p50": pct(v, 0.5), "p95": pct(v, 0.95)} for k, v in times.items()}


async def throughput(
    b: Bench,
    system: System,
    total: int,
    open_max: int,
    timings: list[Timing] | None = None,
    tokens_per_second: float = 0,
) -> dict[str, Any]:
    """Tasks per second with at most ``open_max`` in flight; per task, CPU (the worker's, the
    dev server's, this process's: clients and the simulator) and the dev server's frontend
    requests (with ``b.metrics_url``); ``timings`` gets each task's (workflow id, submit,
    result) wall-clock times. ``tokens_per_second`` paces the answers (0: at once)."""
    b.sim.tokens_per_second, b.sim.default_tokens = tokens_per_second, 16
    gate = asyncio.Semaphore(open_max)
    server_pid = b.server.process.pid if b.server.process else None

    async def one(i: int) -> None:
        async with gate:
            submitted = time.time()
            workflow_id = await system.run(f"peers load {system.name} {i}")
            if timings is not None:
                timings.append((workflow_id, submitted, time.time()))

    pids = (system.proc.pid, server_pid)
    if b.metrics_url:
        await asyncio.sleep(1.1)  # the server's metrics are flushed every second
    requests = await frontend_requests(b.metrics_url)
    before, here = [cpu_seconds(p) for p in pids], time.process_time()
    start = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(total)))
    elapsed = time.perf_counter() - start
    worker, server = (cpu_seconds(p) - was for p, was in zip(pids, before, strict=True))
    bench_cpu = time.process_time() - here
    if b.metrics_url:
        await asyncio.sleep(1.1)
    asked = await frontend_requests(b.metrics_url) - requests
    return {
        "tasks_per_s": total / elapsed,
        "worker_cpu_ms_per_task": worker * 1000 / total,
        "server_cpu_ms_per_task": server * 1000 / total,
        "bench_cpu_ms_per_task": bench_cpu * 1000 / total,
        "server_requests_per_task": sum(asked.values()) / total,
        "server_requests_by_operation": {op: n / total for op, n in asked.most_common()},
    }


async def history(client: Client, workflow_id: str) -> dict[str, Any]:
    """Events, bytes, and both by event kind."""
    events = (await client.get_workflow_handle(workflow_id).fetch_history()).events
    kinds: Counter[str] = Counter()
    kind_bytes: Counter[str] = Counter()
    for event in events:
        kind = (event.WhichOneof("attributes") or "?").removesuffix("_event_attributes")
        kinds[kind] += 1
        kind_bytes[kind] += event.ByteSize()
    return {
        "events": len(events),
        "bytes": sum(kind_bytes.values()),
        "kinds": dict(kinds),
        "kind_bytes": dict(kind_bytes),
    }


async def stream(b: Bench, system: System, tokens: int, rate: float) -> dict[str, Any]:
    """One streamed answer: chunk lag and time to first chunk; its history."""
    b.sim.tokens_per_second, b.sim.default_tokens = rate, tokens
    index = len(b.sim.requests)
    workflow_id = await system.start(f"peers stream {system.name}", stream=True)
    got: list[tuple[float, int]] = []
    await asyncio.wait_for(READERS[system.name](system, workflow_id, got), tokens / rate + 60)
    await asyncio.wait_for(system.result(workflow_id), 60)
    request = b.sim.requests[index]
    lag = lags(request.token_sent_at, got)
    if not lag or got[-1][1] < tokens:
        raise RuntimeError(
            f"{system.name}: the reader saw {got[-1][1] if got else 0}/{tokens} tokens"
        )
    return {
        "lag_p50": pct(lag, 0.5),
        "lag_p95": pct(lag, 0.95),
        "first_chunk_ms": (got[0][0] - request.received_at) * 1000,
        **await history(b.client, workflow_id),
    }


async def kill(b: Bench, system: System, s: PeerSizes) -> dict[str, float]:
    """From SIGKILL of the worker mid-answer to the task's result; a new worker starts at once."""
    b.sim.tokens_per_second, b.sim.default_tokens = s.kill_rate, s.kill_tokens
    index = len(b.sim.requests)
    workflow_id = await system.start(f"peers kill {system.name}")
    await b.sim.wait_for_requests(index + 1, timeout=60)
    await asyncio.sleep(
        max(0.0, b.sim.requests[index].received_at + s.kill_after_s - time.monotonic())
    )
    killed = time.monotonic()
    system.proc.kill()
    await system.proc.wait()
    replacement = asyncio.create_task(spawn(b, system.name, system.queue, system.log))
    try:
        await asyncio.wait_for(system.result(workflow_id), 180)
        done = time.monotonic()
    finally:
        system.proc = await replacement
    retried = (
        b.sim.requests[index + 1].received_at - killed if len(b.sim.requests) > index + 1 else -1.0
    )
    return {"kill_to_result_s": done - killed, "kill_to_retry_request_s": retried}


def versions() -> dict[str, str]:
    found = {}
    for dist in ("temporalio", *REQUIRED.values()):
        try:
            found[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            found[dist] = "not installed"
    return found


# -- the scenario ---------------------------------------------------------------------------


async def run(b: Bench, table: dict[str, Row]) -> dict[str, Any]:
    """Every measurement of every system; fills ``table`` (see :func:`rows`); the raw figures."""
    gone = missing()
    if gone:
        reason = (
            "skipped: the `peers` extra is not installed (pip install -e '.[peers]'); "
            f"cannot import {', '.join(gone)}"
        )
        print(f"peers: {reason}", file=sys.stderr)
        return {"skipped": reason}
    s = sizes(b.smoke)
    report: dict[str, Any] = {"sizes": dataclasses.asdict(s), "versions": versions()}
    async with systems(b) as all_:
        report["latency_ms"] = await latency(b, all_, s.latency_tasks)
        report["throughput"] = {
            name: await throughput(b, system, s.load_tasks, s.load_open)
            for name, system in all_.items()
        }
        report["history"] = {
            name: await history(b.client, await system.run(f"peers history {name}"))
            for name, system in all_.items()
        }
        report["stream"] = {
            name: await stream(b, all_[name], s.stream_tokens, s.stream_rate) for name in READERS
        }
        report["kill"] = {
            name: await kill(b, system, s) for name, system in all_.items() if name not in NO_KILL
        }
    report["notes"] = [f"{name}: live lag {why}" for name, why in NO_STREAM.items()]
    report["notes"] += [f"{name}: kill -> result {why}" for name, why in NO_KILL.items()]
    _fill(table, report)
    return report


def _fill(table: dict[str, Row], r: dict[str, Any]) -> None:
    def add(key: str, figures: dict[str, dict[str, float]], metric: str) -> None:
        table[key].add(
            figures["ours"][metric], **{p: figures[p][metric] for p in PEERS if p in figures}
        )

    add("peers_p50", r["latency_ms"], "p50")
    add("peers_p95", r["latency_ms"], "p95")
    add("peers_tput", r["throughput"], "tasks_per_s")
    add("peers_worker_cpu", r["throughput"], "worker_cpu_ms_per_task")
    add("peers_server_cpu", r["throughput"], "server_cpu_ms_per_task")
    add("peers_bench_cpu", r["throughput"], "bench_cpu_ms_per_task")
    if r["throughput"]["ours"]["server_requests_per_task"]:  # the server has a metrics port
        add("peers_requests", r["throughput"], "server_requests_per_task")
    add("peers_events", r["history"], "events")
    add("peers_bytes", r["history"], "bytes")
    for key, metric in (
        ("lag_p50", "lag_p50"),
        ("lag_p95", "lag_p95"),
        ("first_chunk", "first_chunk_ms"),
    ):
        add(f"peers_{key}", r["stream"], metric)
    add("peers_stream_events", r["stream"], "events")
    add("peers_stream_bytes", r["stream"], "bytes")
    add("peers_kill", r["kill"], "kill_to_result_s")


def footer(runs: list[dict[str, Any]]) -> str:
    """What the table cannot say: versions, n/a cells, skips, the short task's history by kind."""
    reports = [r["peers"] for r in runs if "peers" in r]
    if not reports:
        return ""
    first = reports[0]
    if "skipped" in first:
        return f"\n\npeers: {first['skipped']}"
    lines = ["", "", "peers: " + ", ".join(f"{k} {v}" for k, v in first["versions"].items())]
    lines += [f"  {note}" for note in first["notes"]]
    hb = RetrySettings().heartbeat_timeout_seconds
    lines.append(
        f"  peers' model activities: heartbeat timeout {hb:g} s, as ours (not their default)"
    )
    lines.append("  one short task's history, events by kind: count/bytes (first run):")
    for name, h in first["history"].items():
        kinds = ", ".join(
            f"{k.replace('workflow_', 'wf_').replace('activity_', 'act_')} {n}/{h['kind_bytes'][k]}"
            for k, n in sorted(h["kinds"].items())
        )
        lines.append(
            textwrap.fill(kinds, 140, initial_indent=f"    {name}: ", subsequent_indent=" " * 6)
        )
    ops = first["throughput"]["ours"]["server_requests_by_operation"]
    if ops:
        lines.append("  server requests per short task, by operation (first run):")
        for name, t in first["throughput"].items():
            by_op = ", ".join(
                f"{op} {n:.2f}" for op, n in t["server_requests_by_operation"].items()
            )
            lines.append(
                textwrap.fill(by_op, 140, initial_indent=f"    {name}: ", subsequent_indent=" " * 6)
            )
    return "\n".join(lines)
