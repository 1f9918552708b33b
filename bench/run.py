"""Benchmarks: what durability costs, as ratios against baselines of the same run.

Usage: ``python bench/run.py [--runs N] [--smoke] [--out FILE] [--only SCENARIO...]``

Starts its own file-backed Temporal dev server (like ``ai-orchestrator dev``)
and simulator, runs each scenario ``--runs`` times, prints one table of medians
with min-max spread and each figure's ratio to the baselines measured in the
same run, and writes every raw run to a JSON file. Nothing here asserts a time;
``--smoke`` runs every scenario small, only to prove that it still runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from openai import AsyncOpenAI
from temporalio.client import Client

from ai_orchestrator import RetrySettings, TaskClient
from ai_orchestrator.config import ProviderSettings
from ai_orchestrator.local.devserver import DevServer, free_port
from ai_orchestrator.payloads.converter import data_converter
from ai_orchestrator.simulator import Simulator
from ai_orchestrator.worker import running
from bench import batches, chaos, concurrency, failures, latency, live, peers, quotas, streaming
from bench.baselines import baseline_worker
from bench.context import Bench
from bench.server_profile import describe
from bench.stats import Row, render


@dataclass(frozen=True)
class Sizes:
    latency_tasks: int
    load_tasks: int
    load_open: int
    stream_tokens: int
    stream_rate: float
    concurrent: int
    concurrent_tokens: int
    concurrent_rate: float
    chaos_tasks: int = 40
    chaos_tokens: int = 60
    chaos_rate: float = 10.0
    chaos_kill_server: bool = True
    #: Retry backoff cap of the chaos tasks: the default (30 s) in the full run;
    #: a task that draws five faults in a row would take 31 s of backoff alone.
    chaos_max_interval: float = 30.0


FULL = Sizes(50, 500, 100, 1000, 100.0, 1000, 50, 5.0)
# Chaos in the smoke run: 2 s answers, both kills, backoff capped at 4 s; each of
# the two paths (chat, Responses) 10-40 s.
SMOKE = Sizes(
    3,
    20,
    10,
    50,
    500.0,
    10,
    20,
    20.0,
    chaos_tasks=6,
    chaos_tokens=40,
    chaos_rate=20.0,
    chaos_max_interval=4.0,
)


def rows_for(s: Sizes) -> dict[str, Row]:
    one, load = "one at a time, non-streamed", f"{s.load_tasks} tasks, <= {s.load_open} open"
    stream = f"1 streamed task, {s.stream_tokens} chunks"
    conc = f"{s.concurrent} concurrent streams, 1 worker"
    kills = "2 kills" if s.chaos_kill_server else "worker kill"
    chaos_name = f"chaos: {s.chaos_tasks} tasks, 30% faults, {kills}"
    return {
        "p50": Row(one, "p50 latency", "ms", target="<= bare x1.05"),
        "p95": Row(one, "p95 latency", "ms", target="<= bare x1.05"),
        "short_events": Row(one, "history events", "count"),
        "tput": Row(load, "throughput", "tasks/s", target=">= bare x0.95"),
        "lag_p50": Row(stream, "chunk lag p50", "ms", target="<= 100 ms"),
        "lag_p95": Row(stream, "chunk lag p95", "ms", target="<= 250 ms"),
        "first_chunk_ms": Row(stream, "time to first chunk", "ms"),
        "events": Row(stream, "history events", "count", target="<= 400"),
        "bytes": Row(stream, "history bytes", "bytes"),
        "cancel": Row("cancel mid-stream", "until stream closed", "ms", target="<= 1000 ms"),
        "kill": Row(
            "worker SIGKILL mid-stream", "until next attempt streams", "s", target="<= 5 s"
        ),
        "rss": Row(conc, "worker peak RSS", "MB", target="<= 350 MB"),
        "wft": Row(conc, "workflow task timeouts", "count", target="0"),
        "conc_s": Row(conc, "completion time", "s"),
        **_chaos_rows(s, chaos_name, "chat"),
        # The Responses twin: 30% faults too (same seed and sizes), in a narrower name.
        **_chaos_rows(s, f"chaos (responses): {s.chaos_tasks} tasks, {kills}", "responses"),
        **peers.rows(peers.sizes(smoke=s is SMOKE)),
        **quotas.rows(_quota_sizes(s)),
        **batches.rows(_batch_sizes(s)),
    }


def _quota_sizes(s: Sizes) -> quotas.Sizes:
    return quotas.SMOKE if s is SMOKE else quotas.FULL


def _batch_sizes(s: Sizes) -> batches.Sizes:
    return batches.SMOKE if s is SMOKE else batches.FULL


def _chaos_rows(s: Sizes, name: str, api: str) -> dict[str, Row]:
    """The chaos rows of one path; the Responses twins' keys end in ``_responses``."""
    key = "" if api == "chat" else "_responses"
    responses = api == "responses"
    hb = RetrySettings().heartbeat_timeout_seconds
    return {
        f"chaos_done{key}": Row(name, "tasks completed", "count", target=f"{s.chaos_tasks}"),
        f"chaos_req{key}": Row(name, "max requests per task", "count"),
        f"chaos_creates{key}": Row(
            name, "max creates/task", "count", target="1" if responses else ""
        ),
        f"chaos_extra_creates{key}": Row(
            name, "tasks >1 create", "count", target="0" if responses else ""
        ),
        f"chaos_reattach{key}": Row(name, "re-attaches", "count"),
        # Percentages: the table prints one decimal.
        f"chaos_gen{key}": Row(
            name,
            "generated/delivered",
            "%",
            target="<= 105%" if responses else "< 157% (before the change)",
        ),
        f"chaos_billed{key}": Row(name, "billed reported/generated", "%", target="100%"),
        f"chaos_exact{key}": Row(name, "outputs == answer", "count", target=f"{s.chaos_tasks}"),
        f"chaos_kill{key}": Row(
            name, "SIGKILL -> text, max", "s", target=f"<= {hb + 1:g} s" if responses else ""
        ),
        f"chaos_s{key}": Row(name, "wall time", "s"),
    }


SCENARIOS = (
    "latency",
    "throughput",
    "stream",
    "cancel",
    "kill",
    "concurrency",
    "chaos",
    "live",
    "peers",
    "quotas",
    "batches",
)


async def one_run(b: Bench, s: Sizes, rows: dict[str, Row], only: set[str]) -> dict[str, Any]:
    raw: dict[str, Any] = {}
    if "latency" in only:
        raw["latency_ms"] = lat = await latency.one_at_a_time(b, s.latency_tasks)
        rows["p50"].add(lat["ours"]["p50"], direct=lat["direct"]["p50"], bare=lat["bare"]["p50"])
        rows["p95"].add(lat["ours"]["p95"], direct=lat["direct"]["p95"], bare=lat["bare"]["p95"])
        rows["short_events"].add(lat["ours"]["events"], bare=lat["bare"]["events"])
    if "throughput" in only:
        raw["throughput"] = tput = await latency.throughput(b, s.load_tasks, s.load_open)
        rows["tput"].add(tput["ours"], bare=tput["bare"])
    if "stream" in only:
        await _stream(b, s, rows, raw)
    if "cancel" in only:
        raw["cancel_ms"] = await failures.cancel_latency_ms(b)
        rows["cancel"].add(raw["cancel_ms"])
    if "kill" in only:
        retry = RetrySettings()
        raw["sigkill_recovery_s"] = await failures.sigkill_recovery_s(b, retry)
        rows["kill"].add(
            raw["sigkill_recovery_s"], heartbeat_timeout=retry.heartbeat_timeout_seconds
        )
    if "concurrency" in only:
        raw["concurrency"] = conc = await concurrency.concurrent_streams(
            b, s.concurrent, s.concurrent_tokens, s.concurrent_rate
        )
        rows["rss"].add(conc["ours"]["worker_rss_mb"], parked=conc["parked"]["worker_rss_mb"])
        rows["wft"].add(
            conc["ours"]["workflow_task_timeouts"], parked=conc["parked"]["workflow_task_timeouts"]
        )
        rows["conc_s"].add(conc["ours"]["completion_s"], parked=conc["parked"]["completion_s"])
    if "chaos" in only:
        await _chaos(s, rows, raw)
    if "live" in only:
        raw["live"] = await live.live_streams(b, rows)
    if "peers" in only:  # skipped, saying why, without the peers extra
        raw["peers"] = await peers.run(b, rows)
    if "quotas" in only:  # its own server, simulator, Redis and worker processes
        raw["quotas"] = report = await quotas.quota_runs(_quota_sizes(s))
        print(quotas.render(report), file=sys.stderr)
        quotas.add_rows(rows, report)
    if "batches" in only:  # its own server, simulator and worker processes
        raw["batches"] = report = await batches.batch_runs(_batch_sizes(s))
        print(batches.render(report), file=sys.stderr)
        batches.add_rows(rows, report)
    return raw


async def _chaos(s: Sizes, rows: dict[str, Row], raw: dict[str, Any]) -> None:
    """On its own server and simulator: killing them must not disturb the other scenarios.

    Both paths, one after the other, with the same seed and sizes.
    """
    raw["chaos"] = reports = await chaos.chaos_both(
        s.chaos_tasks,
        s.chaos_tokens,
        s.chaos_rate,
        kill_server=s.chaos_kill_server,
        retry=RetrySettings(max_interval_seconds=s.chaos_max_interval),
    )
    print(chaos.render_both(reports), file=sys.stderr)
    for api, report in reports.items():
        key = "" if api == "chat" else "_responses"
        rows[f"chaos_done{key}"].add(report["completed"])
        rows[f"chaos_req{key}"].add(report["requests_per_task_max"])
        rows[f"chaos_creates{key}"].add(report["creates_per_task_max"])
        rows[f"chaos_extra_creates{key}"].add(report["tasks_with_extra_creates"])
        rows[f"chaos_reattach{key}"].add(report["reattaches"])
        rows[f"chaos_gen{key}"].add(100 * report["generated_per_delivered"])
        rows[f"chaos_billed{key}"].add(100 * report["reported_per_generated"])
        rows[f"chaos_exact{key}"].add(report["completed"] - len(report["inexact_outputs"]))
        if report.get("kill_to_text_s"):
            rows[f"chaos_kill{key}"].add(report["kill_to_text_s"]["max"])
        rows[f"chaos_s{key}"].add(report["wall_s"])


async def _stream(b: Bench, s: Sizes, rows: dict[str, Row], raw: dict[str, Any]) -> None:
    b.sim.tokens_per_second = s.stream_rate
    ours = await streaming.ours(b, s.stream_tokens)
    streams = await streaming.workflow_streams(b, s.stream_tokens)
    direct = await streaming.direct(b, s.stream_tokens)
    raw["stream"] = {"ours": ours, "workflow_streams": streams, "direct": direct}
    for key in ("lag_p50", "lag_p95", "first_chunk_ms"):
        rows[key].add(ours[key], workflow_streams=streams[key], direct=direct[key])
    for key in ("events", "bytes"):
        rows[key].add(ours[key], workflow_streams=streams[key])


async def main(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    sizes = SMOKE if args.smoke else FULL
    runs = 1 if args.smoke else args.runs
    rows = rows_for(sizes)
    raw: dict[str, Any] = {
        "machine": f"{platform.platform()}, {platform.processor() or ''}".strip(", "),
        "python": platform.python_version(),
        "sizes": sizes.__dict__,
        "runs": [],
    }
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        # BENCH_SERVER_ARGS: extra dev-server flags for an investigation.
        extra = tuple(os.environ.get("BENCH_SERVER_ARGS", "").split())
        if "--metrics-port" not in extra:  # the live scenario's server profile reads it
            extra += ("--metrics-port", str(free_port()))
        log = Path(tmp) / "server.log"
        server = DevServer(db_file=Path(tmp) / "bench.db", extra_args=extra, log_file=log)
        try:
            await _run_all(args, server, sizes, runs, rows, raw, started)
        except BaseException:
            # A failed run says what the server said (it is the usual suspect when RPCs fail).
            code = server.exited_before_stop
            state = "ran until stopped" if code is None else f"had exited with code {code}"
            tail = log.read_text(errors="replace")[-4000:] if log.exists() else "(no log)"
            print(
                f"\nbench failed; dev server {state}; its log ends:\n{tail}",
                file=sys.stderr,
            )
            raise
    header = (
        f"machine: {raw['machine']}, {_cores()} cores, python {raw['python']}; {runs} run(s); "
        f"file-backed Temporal dev server; simulator over HTTP; "
        f"{time.perf_counter() - started:.0f}s in all"
    )
    table = f"{render(list(rows.values()))}{_profiles(raw)}{peers.footer(raw['runs'])}"
    return f"{header}\n\n{table}", raw


def _metrics_url(args: tuple[str, ...]) -> str:
    return f"http://127.0.0.1:{args[args.index('--metrics-port') + 1]}/metrics"


def _profiles(raw: dict[str, Any]) -> str:
    """The server's busiest calls in each live case of the first run: why it was busy."""
    live = next((r["live"] for r in raw["runs"] if "live" in r), None)
    if not live:
        return ""
    lines = ["", "", "Temporal server requests during the live cases (frontend, per second):"]
    for case, figures in live["cases"].items():
        for mode, f in figures.items():
            if "server_profile" in f:
                lines.append(f"  {case} [{mode}]: {describe(f['server_profile'])}")
    return "\n".join(lines)


async def _run_all(
    args: argparse.Namespace,
    server: DevServer,
    sizes: Sizes,
    runs: int,
    rows: dict[str, Row],
    raw: dict[str, Any],
    started: float,
) -> None:
    async with server, Simulator(tokens_per_second=sizes.stream_rate) as sim:
        client = await Client.connect(server.target, data_converter=data_converter())
        queue, base_queue = f"bench-{uuid.uuid4().hex[:6]}", f"base-{uuid.uuid4().hex[:6]}"
        provider = ProviderSettings(
            api_key="sk-bench",
            base_url=sim.base_url,
            default_model="gpt-4o-mini",
            read_timeout=60,
            flush_interval=ProviderSettings.from_env().flush_interval,
        )
        openai_client = AsyncOpenAI(api_key="sk-bench", base_url=sim.base_url, max_retries=0)
        async with (
            running(client, task_queue=queue, provider=provider),
            baseline_worker(client, base_queue, openai_client),
        ):
            bench = Bench(
                server,
                client,
                sim,
                openai_client,
                TaskClient(client, task_queue=queue),
                queue,
                base_queue,
                args.smoke,
                metrics_url=_metrics_url(server.extra_args),
            )
            for run in range(runs):
                only = set(args.only)
                if run >= args.heavy_runs:
                    only.discard("concurrency")
                    only.discard("live")
                if run >= args.chaos_runs:
                    only.discard("chaos")
                if run >= args.quota_runs:
                    only.discard("quotas")
                if run >= args.batch_runs:
                    only.discard("batches")
                raw["runs"].append(await one_run(bench, sizes, rows, only))
                print(
                    f"run {run + 1}/{runs} done ({time.perf_counter() - started:.0f}s)",
                    file=sys.stderr,
                )


def _cores() -> int:
    import os

    return os.cpu_count() or 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="every scenario, small, once")
    parser.add_argument("--out", default="bench/results/latest.json")
    parser.add_argument(
        "--heavy-runs",
        type=int,
        default=1,
        help="runs of the 1000-stream scenarios, concurrency and live (minutes each)",
    )
    parser.add_argument(
        "--chaos-runs",
        type=int,
        default=1,
        help="runs of the 40-task chaos scenario, chat and Responses paths (minutes each)",
    )
    parser.add_argument(
        "--quota-runs",
        type=int,
        default=1,
        help="runs of the quotas scenario, five bursts of 40 tasks (minutes each)",
    )
    parser.add_argument(
        "--batch-runs",
        type=int,
        default=1,
        help="runs of the batches scenario, 4 x 1000 tasks (minutes each)",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        choices=SCENARIOS,
        default=list(SCENARIOS),
        help="run only these scenarios",
    )
    arguments = parser.parse_args()
    table, raw_runs = asyncio.run(main(arguments))
    print(table)
    Path(arguments.out).parent.mkdir(parents=True, exist_ok=True)
    Path(arguments.out).write_text(json.dumps(raw_runs, indent=2))
    print(f"\nraw runs: {arguments.out}")
