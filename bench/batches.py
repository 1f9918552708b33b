"""Batch delivery: one model's tasks sent as one provider batch, against real time.

Issue 18's figures: 1,000 tasks of one model with ``delivery="batch"`` submitted
at once to 2 worker processes, measured four ways in one run, each on its own
task queue (so its own collector) and fresh worker processes, after
``sim.reset()``:

- ``realtime``: the same prompts and ``max_tokens`` answered live, the baseline of
  every ratio (cost, history events and bytes per task);
- ``batch``: how many provider batches, how long from the batch's end (the
  simulator's ``BatchRecord.ended_at``) until each task has its answer (the
  client's ``get_result`` returning, and the task's close event), the fan-out's
  throughput (its activity's own events in the provider-batch history), the
  cost against real time and the price table, and history events per task,
  the collector's and provider batches' shared out over the tasks;
- ``worker kill``: the worker that last ran a provider-batch workflow's task is
  SIGKILLed while the batch is out (30% into its turnaround), and replaced;
- ``server kill``: the Temporal server is SIGKILLed while the fan-out activity
  hands out answers (a tenth of the tasks answered) and restarted on its SQLite
  file and port after 1 s. ``--smoke`` does both kills in one run.

The provider's side is read back from the provider itself: each batch's input
file says which prompts (so which tasks) it asked, so a task sent twice, in two
batches or never shows; ``sim.requests`` holds anything asked in real time.
The collector and polling keep the product's defaults (window 2 s, polls from
1 s growing to 5 s) in the full run; ``--smoke`` shortens them.

Usage: ``python bench/batches.py [--tasks 1000] [--smoke] [--out FILE]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, replace
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from openai import AsyncOpenAI
from temporalio.client import Client
from temporalio.runtime import LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter
from temporalio.service import RPCError

from ai_orchestrator import Result, Task, TaskClient, TaskConstraints, TaskStatus
from ai_orchestrator.delivery import FAN_OUT_ACTIVITY, PROVIDER_BATCH_WORKFLOW
from ai_orchestrator.exceptions import TemporalUnavailableError
from ai_orchestrator.local.devserver import DevServer
from ai_orchestrator.messages import WORKFLOW_TYPE
from ai_orchestrator.payloads.converter import data_converter
from ai_orchestrator.pricing import PricingTable
from ai_orchestrator.simulator import BatchBehaviour, Simulator
from bench.batches_floor import floor_run
from bench.batches_report import PROMPT, histories, history_sizes, provider_view, render, timings
from bench.quotas import Worker
from bench.stats import Row

ROOT = Path(__file__).resolve().parents[1]
MODEL = "gpt-4o-mini"
API_KEY = "sk-batch-bench"
#: What the workers may see of our environment (a subprocess gets an allow-list).
_PASSED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "VIRTUAL_ENV")
T = TypeVar("T")


@dataclass(frozen=True)
class Sizes:
    tasks: int
    #: The simulated provider's time from create to the batch's end.
    turnaround: float
    max_tokens: int = 20
    workers: int = 2
    #: Longest a run may take before its unfinished tasks are reported as such.
    bound_s: float = 900.0
    #: Collector and polling settings for the workers; empty: the product's defaults.
    settings: tuple[tuple[str, str], ...] = ()
    #: Each kill in a run of its own (else both in one run).
    separate_kills: bool = True


FULL = Sizes(1000, 20.0)
SMOKE = Sizes(
    50,
    1.0,
    bound_s=120.0,
    settings=(
        ("AI_ORCHESTRATOR_BATCH_POLL_SECONDS", "0.3"),
        ("AI_ORCHESTRATOR_BATCH_POLL_MAX_SECONDS", "0.5"),
    ),
    separate_kills=False,
)


@dataclass(frozen=True)
class Mode:
    key: str  # realtime, batch, worker_kill, server_kill or kills
    label: str
    delivery: str = "batch"
    kills: tuple[str, ...] = ()  # "worker" (while waiting), "server" (while fanning out)


def modes(sizes: Sizes) -> list[Mode]:
    """The kills in runs of their own, or (``--smoke``) both in one run."""
    worker, server = "worker SIGKILL while waiting", "server SIGKILL while fanning out"
    kills = [
        Mode("worker_kill", f"batch, {worker}", kills=("worker",)),
        Mode("server_kill", f"batch, {server}", kills=("server",)),
    ]
    if not sizes.separate_kills:
        kills = [Mode("kills", f"batch, {worker}, {server}", kills=("worker", "server"))]
    return [
        Mode("realtime", "real time (baseline)", delivery="realtime"),
        Mode("batch", "batch"),
        *kills,
    ]


@cache
def _quiet_runtime() -> Runtime:
    """The client's core logs every retried call while the server is down; expected here."""
    quiet = TelemetryFilter(core_level="ERROR", other_level="ERROR")
    return Runtime(telemetry=TelemetryConfig(logging=LoggingConfig(filter=quiet)))


async def _through_outage(call: Callable[[], Awaitable[T]]) -> T:
    """``call()``, again while Temporal is unavailable (the server is being restarted)."""
    while True:
        try:
            return await call()
        except (TemporalUnavailableError, RPCError):
            await asyncio.sleep(0.5)


@dataclass
class Stage:
    """What every run shares: the server (replaced when restarted), simulator, client."""

    server: DevServer
    db: Path
    log: Path
    sim: Simulator
    client: Client
    openai: AsyncOpenAI
    sizes: Sizes
    #: The real-time run's cost of each prompt, by task index.
    realtime_cost: dict[int, float]

    def env(self, queue: str) -> dict[str, str]:
        env = {k: os.environ[k] for k in _PASSED_ENV if k in os.environ}
        env.update(
            TEMPORAL_ADDRESS=self.server.target,
            OPENAI_BASE_URL=self.sim.base_url,
            OPENAI_API_KEY=API_KEY,
            AI_ORCHESTRATOR_TASK_QUEUE=queue,
            PYTHONPATH=str(ROOT),
            PYTHONUNBUFFERED="1",
        )
        env.update(dict(self.sizes.settings))
        return env

    async def workers(self, queue: str, n: int) -> list[Worker]:
        started = await asyncio.gather(
            *(Worker.start(self.env(queue)) for _ in range(n)), return_exceptions=True
        )
        workers = [w for w in started if isinstance(w, Worker)]
        failed = [e for e in started if isinstance(e, BaseException)]
        if failed:
            for w in workers:
                await w.kill()
            raise failed[0]
        return workers


def _task(i: int, run: str, delivery: str, max_tokens: int) -> Task:
    return Task(
        prompt=PROMPT.format(i=i),
        task_id=f"bb-{run}-{i}",
        constraints=TaskConstraints(
            model=MODEL, max_tokens=max_tokens, timeout_seconds=3600, delivery=delivery
        ),
    )


async def _provider_batches(client: Client, queue: str) -> list[str]:
    query = f'TaskQueue="{queue}" AND WorkflowType="{PROVIDER_BATCH_WORKFLOW}"'
    return sorted({e.id async for e in client.list_workflows(query)})


async def _until(predicate: Callable[[], bool], timeout: float, every: float = 0.05) -> None:
    """Look every ``every`` s (a batch ends by the clock, which wakes no waiter)."""
    for _ in range(int(timeout / every)):
        if predicate():
            return
        await asyncio.sleep(every)


async def _kill_worker_waiting(
    stage: Stage, queue: str, workers: list[Worker], t0: float
) -> dict[str, Any]:
    """Once every task is in a provider batch, SIGKILL the worker that last ran a
    provider-batch workflow's task, 30% into the newest batch's turnaround; start
    another in its place. Waits on the simulator alone (no load on the server)."""
    sim, n = stage.sim, stage.sizes.tasks
    with contextlib.suppress(TimeoutError):  # some went real time: kill all the same
        await sim.wait_until(
            lambda: sum(len(b.items) for b in sim.batches.values()) >= n,
            timeout=stage.sizes.bound_s,
        )
    record = max(sim.batches.values(), key=lambda b: b.created_at)
    await asyncio.sleep(
        max(0.0, record.created_at + 0.3 * stage.sizes.turnaround - time.monotonic())
    )
    latest = (0, "")  # (event time, identity) of the newest workflow task of any batch
    for batch_id in await _provider_batches(stage.client, queue):
        history = await stage.client.get_workflow_handle(batch_id).fetch_history()
        for e in history.events:
            if e.HasField("workflow_task_started_event_attributes"):
                at = e.event_time.seconds * 10**9 + e.event_time.nanos
                latest = max(latest, (at, e.workflow_task_started_event_attributes.identity))
    holder = latest[1]
    by_pid = {str(w.proc.pid): w for w in workers}
    victim = by_pid.get(holder.split("@")[0], workers[0])
    state = stage.sim.batches[record.id].status
    killed_at = time.monotonic()
    await victim.kill()
    workers.remove(victim)
    workers.append(await Worker.start(stage.env(queue)))
    held = "the provider-batch workflow's" if holder.startswith(f"{victim.proc.pid}@") else "a"
    return {
        "at_s": killed_at - t0,
        "batch_status": state,
        "held_batch_workflow": held != "a",
        "what": f"{held} worker at {killed_at - t0:.1f} s (batch {state}), replaced",
    }


async def _kill_server_fanning(
    stage: Stage, queue: str, done: dict[int, float], tenth: asyncio.Event, t0: float
) -> dict[str, Any]:
    """SIGKILL the server once the fan-out activity runs and a tenth of the tasks are
    answered; restart it on its file and port 1 s later."""
    client, sim, n = stage.client, stage.sim, stage.sizes.tasks
    deadline = time.monotonic() + stage.sizes.bound_s
    # The simulator first (no load on the server), then the batch workflows' state.
    await _until(lambda: any(b.ended for b in sim.batches.values()), stage.sizes.bound_s)
    handles = [client.get_workflow_handle(i) for i in await _provider_batches(client, queue)]
    fanning = False
    while not (fanning or tenth.is_set()) and time.monotonic() < deadline:
        for handle in handles:
            pending = (await handle.describe()).raw_description.pending_activities
            fanning |= any(a.activity_type.name == FAN_OUT_ACTIVITY for a in pending)
        await asyncio.sleep(0.05)
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(tenth.wait(), max(0.1, deadline - time.monotonic()))
    answered = len(done)
    killed_at, killed_wall = time.monotonic(), time.time()
    stage.server.kill()
    await asyncio.sleep(1.0)
    server = DevServer(db_file=stage.db, port=stage.server.port, log_file=stage.log)
    stage.server = await server.start()
    back = time.monotonic() - killed_at
    return {
        "at_s": killed_at - t0,
        "killed_wall": killed_wall,
        "answered_at_kill": answered,
        "outage_s": back,
        "what": f"server at {killed_at - t0:.1f} s ({answered}/{n} answered), "
        f"back after {back:.1f} s",
    }


def _answer_cost(result: Result) -> float:
    """What the attempt that answered cost (a real-time task may have paid for others)."""
    done = [b for b in result.metadata.get("billing", []) if b.get("outcome") == "completed"]
    return float(done[-1]["cost"]) if done else result.cost


def _cost(results: dict[int, Result], realtime: dict[int, float]) -> dict[str, Any]:
    """The batch-answered tasks' bills against the real-time run's answer to the same
    prompt and against the price table; the tasks that went to real time, counted."""
    price = PricingTable().lookup(MODEL)
    ratios, errors, fell_back, extra = [], [], 0, 0
    for i, r in results.items():
        bills = r.metadata.get("billing", [])
        batch = [b for b in bills if b.get("delivery") == "batch"]
        extra += len(bills) > 1
        if not batch:
            fell_back += 1
            continue
        cost = float(batch[0]["cost"])
        if realtime.get(i):
            ratios.append(cost / realtime[i])
        if price is not None:
            expected = price.batch_cost(batch[0]["prompt_tokens"], batch[0]["completion_tokens"])
            errors.append(abs(cost - expected) / expected if expected else 0.0)
    return {
        "batch_answered": len(results) - fell_back,
        "realtime_answered": fell_back,
        "tasks_billed_twice": extra,
        "total_usd": sum(r.cost for r in results.values()),
        "realtime_usd": sum(realtime.get(i, 0.0) for i in results),
        "ratio_mean": sum(ratios) / len(ratios) if ratios else None,
        "ratio_min": min(ratios, default=None),
        "ratio_max": max(ratios, default=None),
        "price_error_max": max(errors, default=None),
    }


async def one_run(stage: Stage, mode: Mode) -> dict[str, Any]:
    s = stage.sizes
    run = uuid.uuid4().hex[:6]
    queue = f"bb-{mode.key}-{run}"
    report: dict[str, Any] = {"label": mode.label, "mode": mode.key, "tasks": s.tasks}
    workers = await stage.workers(queue, s.workers)
    stage.sim.reset()
    tasks = TaskClient(stage.client, task_queue=queue)
    ids = [f"bb-{run}-{i}" for i in range(s.tasks)]
    done: dict[int, float] = {}
    results: dict[int, Result] = {}
    tenth = asyncio.Event()  # a tenth of the tasks have their answer
    try:
        t0 = time.monotonic()
        await asyncio.gather(
            *(
                _through_outage(
                    lambda i=i: tasks.submit_task(_task(i, run, mode.delivery, s.max_tokens))
                )
                for i in range(s.tasks)
            )
        )
        report["submitted_s"] = time.monotonic() - t0

        async def result(i: int) -> None:
            results[i] = await _through_outage(lambda: tasks.get_result(ids[i], None))
            done[i] = time.monotonic()
            if len(done) >= max(1, s.tasks // 10):
                tenth.set()

        waiting = asyncio.ensure_future(asyncio.gather(*(result(i) for i in range(s.tasks))))
        if "worker" in mode.kills:
            report["worker_kill"] = await _kill_worker_waiting(stage, queue, workers, t0)
        if "server" in mode.kills:
            report["server_kill"] = await _kill_server_fanning(stage, queue, done, tenth, t0)
        try:
            await asyncio.wait_for(asyncio.shield(waiting), s.bound_s - (time.monotonic() - t0))
        except asyncio.TimeoutError:
            waiting.cancel()
            for i in range(s.tasks):
                results.setdefault(
                    i, await _through_outage(lambda i=i: tasks.get_result(ids[i], 5))
                )
        report["wall_s"] = max(done.values(), default=time.monotonic()) - t0
        # The provider batches close after their fan-out: read them whole.
        for batch_id in await _provider_batches(stage.client, queue):
            handle = stage.client.get_workflow_handle(batch_id)
            await _through_outage(lambda h=handle: asyncio.wait_for(h.result(), 120))
    finally:
        for w in workers:
            await w.kill()
    by_type = await histories(stage.client, queue)
    completed = {i: r for i, r in results.items() if r.status == TaskStatus.COMPLETED}
    report.update(
        completed=len(completed),
        not_completed=[
            f"{r.task.task_id}: {r.status.value} {r.error}"
            for r in results.values()
            if r.status != TaskStatus.COMPLETED
        ],
        history=history_sizes(by_type, s.tasks, WORKFLOW_TYPE),
    )
    if mode.delivery == "realtime":
        stage.realtime_cost.update({i: _answer_cost(r) for i, r in completed.items()})
        report["cost"] = {"total_usd": sum(r.cost for r in completed.values())}
        report["realtime_requests"] = len(stage.sim.requests)
        return report
    provider = await provider_view(stage.sim, stage.openai, s.tasks)
    batch_of = provider.pop("_batch_of")
    report.update(
        provider=provider,
        timing=timings(stage.sim, by_type, batch_of, ids, done, t0),
        cost=_cost(completed, stage.realtime_cost),
    )
    if "server_kill" in report:
        closes = [p.get("fan_out_closed", 0.0) for p in report["timing"]["phases"]]
        report["server_kill"]["fan_out_running_at_kill"] = any(
            c > report["server_kill"]["killed_wall"] for c in closes
        )
    return report


async def batch_runs(sizes: Sizes) -> dict[str, Any]:
    """Every run of :data:`MODES` on one server and simulator; the report for JSON."""
    started, load = time.monotonic(), [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory(prefix="batches-") as tmp:
        db, log = Path(tmp) / "batches.db", Path(tmp) / "server.log"
        sim = Simulator(tokens_per_second=2000.0, default_tokens=sizes.max_tokens)
        sim.batch_behaviour = BatchBehaviour(turnaround=sizes.turnaround)
        server = await DevServer(db_file=db, log_file=log).start()
        stage: Stage | None = None
        try:
            async with sim:
                client = await Client.connect(
                    server.target, data_converter=data_converter(), runtime=_quiet_runtime()
                )
                openai = AsyncOpenAI(api_key=API_KEY, base_url=sim.base_url, max_retries=0)
                stage = Stage(server, db, log, sim, client, openai, sizes, {})
                runs = []
                for mode in modes(sizes):
                    runs.append(await one_run(stage, mode))
                    print(
                        f"batches: {mode.label} done ({time.monotonic() - started:.0f}s)",
                        file=sys.stderr,
                    )
                queue = f"bb-floor-{uuid.uuid4().hex[:6]}"
                floor = await floor_run(client, stage.env(queue), queue, sizes.tasks, sizes.workers)
                print(
                    f"batches: floor (bare workflows answered) done "
                    f"({time.monotonic() - started:.0f}s)",
                    file=sys.stderr,
                )
        finally:
            await (stage.server if stage is not None else server).stop()
    return {
        "sizes": asdict(sizes),
        "model": MODEL,
        "settings": ", ".join(
            f"{k.removeprefix('AI_ORCHESTRATOR_BATCH_')}={v}" for k, v in sizes.settings
        ),
        "runs": runs,
        "floor": floor,
        "total_s": time.monotonic() - started,
        "load_avg": [*load, os.getloadavg()[0]],
        "cores": os.cpu_count(),
    }


# -- the lines of bench/run.py's table ----------------------------------------------------


def rows(sizes: Sizes) -> dict[str, Row]:
    name = f"batches: {sizes.tasks} tasks, 1 model"
    kills = f"batches: {sizes.tasks} tasks, 2 SIGKILLs"
    return {
        "batch_batches": Row(name, "provider batches", "count", target="1"),
        "batch_lag": Row(name, "batch end -> last answer", "s", target="<= 10 s"),
        "batch_fanout": Row(name, "fan-out throughput", "items/s"),
        "batch_cost": Row(name, "cost / real time", "%", target="50%"),
        "batch_events": Row(name, "history events/task", "count"),
        "batch_bytes": Row(name, "history bytes/task", "bytes"),
        "batch_kill_done": Row(kills, "tasks completed", "%", target="100%"),
        "batch_kill_dupes": Row(kills, "sent twice + real time", "count", target="0"),
    }


def add_rows(table: dict[str, Row], report: dict[str, Any]) -> None:
    by = {r["mode"]: r for r in report["runs"]}
    ours, base = by.get("batch"), by.get("realtime")
    if ours is None or base is None:
        return
    t, h, hb = ours["timing"], ours["history"], base["history"]
    table["batch_batches"].add(ours["provider"]["batches"])
    floor = report.get("floor")
    lag = t.get("client_lag_s", {}).get("max", 0.0)
    if floor:
        table["batch_lag"].add(lag, bare_answered=floor["last_closed_s"])
    else:
        table["batch_lag"].add(lag)
    table["batch_fanout"].add(t.get("fan_out_items_per_s", 0.0))
    table["batch_cost"].add(100 * (ours["cost"]["ratio_mean"] or 0.0), realtime=100)
    table["batch_events"].add(h["all_events_per_task"], realtime=hb["task_events"])
    table["batch_bytes"].add(h["all_bytes_per_task"], realtime=hb["task_bytes"])
    kills = [by[k] for k in ("worker_kill", "server_kill", "kills") if k in by]
    if not kills:
        return
    table["batch_kill_done"].add(
        100 * sum(r["completed"] for r in kills) / sum(r["tasks"] for r in kills)
    )
    table["batch_kill_dupes"].add(
        sum(r["provider"]["tasks_sent_twice"] + r["provider"]["realtime_requests"] for r in kills)
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", type=int, default=None, help="tasks per run (default 1000)")
    parser.add_argument("--smoke", action="store_true", help="50 tasks, short windows")
    parser.add_argument("--out", default=None, help="write the report here (JSON)")
    args = parser.parse_args()
    chosen = SMOKE if args.smoke else FULL
    if args.tasks:
        chosen = replace(chosen, tasks=args.tasks)
    result = asyncio.run(batch_runs(chosen))
    print(render(result))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2))
        print(f"\nreport: {args.out}")
