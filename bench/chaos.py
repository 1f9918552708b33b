"""Chaos: many streamed tasks through provider faults, a worker SIGKILL and a server SIGKILL.

The acceptance figure of the retry-budget change: with ~6 s answers, 30% of
provider requests failing at random, one of two worker processes SIGKILLed and
the Temporal server SIGKILLed (and restarted on its file) while tasks stream,
how many tasks complete, how many provider requests a task costs at most, how
many tokens the provider generated per token delivered, and how close what we
report as billed comes to what the provider generated.

It runs on its own file-backed dev server and simulator, so killing them
disturbs no other scenario. The killed worker is not replaced: the surviving
worker serves every task from then on (what a deployment sees until its
supervisor restarts the dead one).

Usage: ``python bench/chaos.py [--tasks N] [--tokens N] [--rate TOK_PER_S] [--out FILE]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from temporalio.client import Client
from temporalio.runtime import LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter

from ai_orchestrator import (
    Result,
    RetrySettings,
    Task,
    TaskClient,
    TaskConstraints,
    TaskStatus,
    TemporalUnavailableError,
)
from ai_orchestrator.converter import data_converter
from ai_orchestrator.devserver import DevServer
from ai_orchestrator.simulator import RecordedRequest, Simulator

ROOT = Path(__file__).resolve().parents[1]
FIRST_TOKEN = "[simulated]"
T = TypeVar("T")


def prompt_of(i: int) -> str:
    return f"chaos task {i}"


def _env(server: DevServer, sim: Simulator, queue: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "TEMPORAL_"))}
    env.update(
        TEMPORAL_ADDRESS=server.target,
        OPENAI_BASE_URL=sim.base_url,
        OPENAI_API_KEY="sk-chaos",
        AI_ORCHESTRATOR_TASK_QUEUE=queue,
        PYTHONPATH=str(ROOT),
        PYTHONUNBUFFERED="1",
    )
    return env


class WorkerProcess:
    """An ``ai-orchestrator worker`` process; the tail of its log is kept for post-mortems."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.log: deque[str] = deque(maxlen=200)
        self._drain: asyncio.Task[None] | None = None

    @classmethod
    async def start(cls, env: dict[str, str], timeout: float = 60) -> WorkerProcess:
        """Returned once the worker says it polls (before that, tasks would only queue)."""
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "ai_orchestrator",
            "worker",
            env=env,
            cwd=ROOT,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        worker = cls(proc)
        assert proc.stderr is not None
        stderr = proc.stderr

        async def listening() -> None:
            while True:
                line = await stderr.readline()
                if not line:
                    raise RuntimeError("worker exited before it was ready: " + "".join(worker.log))
                worker.log.append(line.decode(errors="replace"))
                if b"worker listening" in line:
                    return

        await asyncio.wait_for(listening(), timeout)
        # Keep draining, or a chatty worker would block on a full pipe.
        worker._drain = asyncio.create_task(worker._keep(stderr))
        return worker

    async def _keep(self, stderr: asyncio.StreamReader) -> None:
        while line := await stderr.readline():
            self.log.append(line.decode(errors="replace"))

    async def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        if self._drain is not None:
            await asyncio.gather(self._drain, return_exceptions=True)


async def _through_outage(call: Callable[[], Awaitable[T]], outages: list[float]) -> T:
    """``call()``, retried while Temporal is unavailable (the server is being restarted)."""
    while True:
        try:
            return await call()
        except TemporalUnavailableError:
            outages.append(time.monotonic())
            await asyncio.sleep(1.0)


def _quiet_runtime() -> Runtime:
    """The client's core logs every retried call during the outage; that is expected here."""
    quiet = TelemetryFilter(core_level="ERROR", other_level="ERROR")
    return Runtime(telemetry=TelemetryConfig(logging=LoggingConfig(filter=quiet)))


def _streaming(sim: Simulator) -> int:
    return sum(1 for r in sim.requests if r.tokens_sent > 0 and r.ended_at is None)


def _fault_kind(r: RecordedRequest) -> str:
    if r.fault == "status":
        return f"http {r.status}"
    if r.fault:
        return r.fault
    if r.disconnected:
        return "client gone (worker killed, zombie closed)"
    if r.ended_at is None:
        return "still open"
    return "none"


async def chaos_run(
    n_tasks: int = 40,
    tokens: int = 60,
    rate: float = 10.0,
    fault_rate: float = 0.3,
    rpm_limit: int | None = None,
    seed: int = 7,
    kill_worker: bool = True,
    kill_server: bool = True,
    *,
    timeout_seconds: float = 300.0,
    bound_seconds: float = 600.0,
    outage_seconds: float = 2.0,
    retry: RetrySettings | None = None,
) -> dict[str, Any]:
    """One chaos run; every figure of the report, plus the failed tasks' errors and bills.

    ``rpm_limit`` (None: no limit) makes the simulator answer 429 beyond that many
    requests a minute; rate-limit waits must not use up a task either. Nothing
    here asserts: a failed task is reported with its error text and billing.
    """
    retry = retry or RetrySettings()
    started = time.monotonic()
    events: dict[str, float] = {}
    outages: list[float] = []
    with tempfile.TemporaryDirectory(prefix="chaos-") as tmp:
        db = Path(tmp) / "chaos.db"
        server = await DevServer(db_file=db, log_file=Path(tmp) / "server.log").start()
        sim = Simulator(
            tokens_per_second=rate,
            default_tokens=tokens,
            fault_rate=fault_rate,
            chaos_seed=seed,
            rpm_limit=rpm_limit,
        )
        workers: list[WorkerProcess] = []
        try:
            await sim.start()
            client = await Client.connect(
                server.target, data_converter=data_converter(), runtime=_quiet_runtime()
            )
            queue = f"chaos-{uuid.uuid4().hex[:8]}"
            env = _env(server, sim, queue)
            workers = list(await asyncio.gather(WorkerProcess.start(env), WorkerProcess.start(env)))
            tasks = TaskClient(client, task_queue=queue, retry=retry)
            constraints = TaskConstraints(timeout_seconds=timeout_seconds)
            run = uuid.uuid4().hex[:6]
            ids = [f"chaos-{run}-{i}" for i in range(n_tasks)]
            t0 = time.monotonic()
            await asyncio.gather(
                *(
                    _through_outage(
                        partial(
                            tasks.submit_task,
                            Task(prompt=prompt_of(i), task_id=ids[i], constraints=constraints),
                        ),
                        outages,
                    )
                    for i in range(n_tasks)
                )
            )
            events["submitted_s"] = time.monotonic() - t0
            waiting = asyncio.ensure_future(
                asyncio.gather(
                    *(_through_outage(partial(tasks.get_result, i, None), outages) for i in ids)
                )
            )
            # Kill while about half the tasks stream (a quarter of the answer in, at least).
            half = max(1, n_tasks // 2)
            await sim.wait_until(
                lambda: (
                    sum(1 for r in sim.requests if r.tokens_sent >= max(1, tokens // 4)) >= half
                ),
                timeout=120,
            )
            if kill_worker:
                events["worker_killed_at_s"] = time.monotonic() - t0
                events["streaming_at_worker_kill"] = _streaming(sim)
                await workers[0].kill()
            if kill_server:
                await asyncio.sleep(1.0)
                await sim.wait_until(lambda: _streaming(sim) > 0, timeout=60)
                events["server_killed_at_s"] = time.monotonic() - t0
                events["streaming_at_server_kill"] = _streaming(sim)
                server.kill()
                await asyncio.sleep(outage_seconds)
                server = await DevServer(
                    db_file=db, port=server.port, log_file=Path(tmp) / "server.log"
                ).start()
                events["server_back_at_s"] = time.monotonic() - t0
            bound_hit = False
            try:
                results: list[Result] = await asyncio.wait_for(
                    asyncio.shield(waiting), max(1.0, bound_seconds - (time.monotonic() - started))
                )
            except asyncio.TimeoutError:
                bound_hit = True
                waiting.cancel()
                results = [
                    await _through_outage(partial(tasks.get_result, i, 5), outages) for i in ids
                ]
            wall = time.monotonic() - t0
            # Let zombie attempts (if any) end before counting what the provider generated.
            with contextlib.suppress(TimeoutError):
                await sim.wait_until(
                    lambda: all(r.ended_at is not None for r in sim.requests), timeout=30
                )
        finally:
            for worker in workers:
                await worker.kill()
            await sim.stop()
            await server.stop()
        report = _report(sim.requests, results, ids, tokens, retry, t0)
        if report["not_completed"]:
            report["worker_logs"] = [list(w.log)[-30:] for w in workers]
    report.update(
        n_tasks=n_tasks,
        tokens=tokens,
        rate=rate,
        fault_rate=fault_rate,
        rpm_limit=rpm_limit,
        seed=seed,
        kill_worker=kill_worker,
        kill_server=kill_server,
        replacement_worker=False,
        max_attempts=retry.max_attempts,
        wall_s=wall,
        bound_s=bound_seconds,
        bound_hit=bound_hit,
        client_saw_unavailable=len(outages),
        **events,
    )
    return report


def _report(
    requests: list[RecordedRequest],
    results: list[Result],
    ids: list[str],
    tokens: int,
    retry: RetrySettings,
    t0: float,
) -> dict[str, Any]:
    by_prompt: dict[str, list[RecordedRequest]] = {}
    for r in requests:
        prompt = r.messages[-1].get("content") if r.messages else None
        by_prompt.setdefault(str(prompt), []).append(r)
    per_task = [by_prompt.get(prompt_of(i), []) for i in range(len(ids))]
    counts = [len(reqs) for reqs in per_task]
    paid = [sum(1 for r in reqs if r.prompt_tokens > 0) for reqs in per_task]
    statuses = Counter(r.status.value for r in results)
    completed = [r for r in results if r.status == TaskStatus.COMPLETED]
    delivered = sum(len(r.output.split()) for r in completed)
    malformed_outputs = [
        r.task.task_id
        for r in completed
        if len(r.output.split()) != tokens or not r.output.startswith(FIRST_TOKEN)
    ]
    generated = sum(r.tokens_sent for r in requests)
    bills = [b for r in results for b in r.metadata.get("billing", [])]
    # Per task: what the provider generated that no bill of ours reports (or the reverse).
    gaps = {}
    for i, r in enumerate(results):
        sent = sum(q.tokens_sent for q in per_task[i])
        reported = sum(int(b["completion_tokens"]) for b in r.metadata.get("billing", []))
        if sent != reported:
            gaps[ids[i]] = {
                "generated": sent,
                "reported": reported,
                "requests": [(_fault_kind(q), q.tokens_sent) for q in per_task[i]],
                "bills": [
                    (b.get("outcome"), b["completion_tokens"], b.get("estimated"))
                    for b in r.metadata.get("billing", [])
                ],
            }
    billed = sum(int(b["completion_tokens"]) for b in bills)
    failed = [
        {
            "task_id": r.task.task_id,
            "status": r.status.value,
            "error": r.error,
            "requests": [
                (_fault_kind(q), q.tokens_sent) for q in per_task[ids.index(r.task.task_id)]
            ],
            "billing": r.metadata.get("billing"),
        }
        for r in results
        if r.status != TaskStatus.COMPLETED
    ]
    return {
        "completed": statuses.get(TaskStatus.COMPLETED.value, 0),
        "failed": statuses.get(TaskStatus.FAILED.value, 0),
        "cancelled": statuses.get(TaskStatus.CANCELLED.value, 0),
        "unfinished": len(results) - sum(statuses.get(s.value, 0) for s in _ENDED),
        "requests": len(requests),
        "unmatched_requests": len(requests) - sum(counts),
        "requests_per_task_max": max(counts, default=0),
        "requests_per_task_mean": statistics.fmean(counts) if counts else 0.0,
        "billable_requests_per_task_max": max(paid, default=0),
        "attempts_per_task_max": max((r.metadata.get("attempts", 0) for r in results), default=0),
        "tokens_generated": generated,
        "tokens_delivered": delivered,
        "generated_per_delivered": generated / delivered if delivered else float("inf"),
        "billed_completion_reported": billed,
        "reported_per_generated": billed / generated if generated else float("nan"),
        "prompt_tokens_simulator": sum(r.prompt_tokens for r in requests),
        "prompt_tokens_reported": sum(int(b["prompt_tokens"]) for b in bills),
        "bills": len(bills),
        "bills_estimated": sum(1 for b in bills if b.get("estimated")),
        "bill_outcomes": dict(Counter(str(b.get("outcome")) for b in bills)),
        "faults": dict(Counter(_fault_kind(r) for r in requests)),
        # Whole answers the provider streamed that no task used (attempts the server
        # gave up on while their worker still streamed: zombies).
        "unused_full_answers": sum(
            1 for reqs in per_task for q in reqs[:-1] if q.fault is None and q.tokens_sent == tokens
        ),
        "malformed_outputs": malformed_outputs,
        # One line per request, for post-mortems: task, fault, tokens, start and end (s).
        "request_log": [
            (
                str(q.messages[-1].get("content")) if q.messages else "",
                _fault_kind(q),
                q.tokens_sent,
                round(q.received_at - t0, 2),
                round(q.ended_at - t0, 2) if q.ended_at is not None else None,
            )
            for q in requests
        ],
        "billing_gaps": gaps,
        "not_completed": failed,
        "retry": retry.model_dump(),
    }


_ENDED = (TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED)


def render_report(r: dict[str, Any]) -> str:
    """A small table of one run, for people; the dict itself goes to JSON."""
    kills = " + ".join(
        k
        for k, on in (("worker SIGKILL", r["kill_worker"]), ("server SIGKILL", r["kill_server"]))
        if on
    )
    lines = [
        f"chaos: {r['n_tasks']} tasks x {r['tokens']} tokens at {r['rate']:g} tok/s, "
        f"fault_rate {r['fault_rate']:g} (seed {r['seed']}), rpm_limit {r['rpm_limit']}, "
        f"{kills or 'no kills'}; 2 workers (killed one not replaced); "
        f"max_attempts {r['max_attempts']}",
        f"  {'tasks completed / failed / cancelled / unfinished':52} "
        f"{r['completed']} / {r['failed']} / {r['cancelled']} / {r['unfinished']}",
        f"  {'provider requests per task: max / mean':52} "
        f"{r['requests_per_task_max']} / {r['requests_per_task_mean']:.2f}",
        f"  {'tokens generated / delivered (ratio)':52} "
        f"{r['tokens_generated']} / {r['tokens_delivered']} ({r['generated_per_delivered']:.3f})",
        f"  {'billed completion reported / generated (ratio)':52} "
        f"{r['billed_completion_reported']} / {r['tokens_generated']} "
        f"({r['reported_per_generated']:.3f}); "
        f"{r['bills_estimated']} of {r['bills']} bills estimated",
        f"  {'prompt tokens reported / simulator':52} "
        f"{r['prompt_tokens_reported']} / {r['prompt_tokens_simulator']}",
        f"  {'whole answers streamed but not used':52} {r['unused_full_answers']}",
        f"  {'requests by fault':52} "
        + ", ".join(f"{k} {v}" for k, v in sorted(r["faults"].items(), key=lambda kv: -kv[1])),
        f"  {'bills by outcome':52} "
        + ", ".join(f"{k} {v}" for k, v in sorted(r["bill_outcomes"].items())),
        f"  {'worker killed / server killed / server back at (s)':52} "
        + " / ".join(
            f"{r[k]:.1f}" if k in r else "-"
            for k in ("worker_killed_at_s", "server_killed_at_s", "server_back_at_s")
        ),
        f"  {'wall time (s)':52} {r['wall_s']:.1f}"
        + (f"  (BOUND OF {r['bound_s']:.0f}s HIT)" if r["bound_hit"] else ""),
    ]
    for t in r["not_completed"]:
        lines.append(f"  NOT COMPLETED {t['task_id']} ({t['status']}): {t['error']}")
        lines.append(f"    requests: {t['requests']}")
        lines.append(f"    billing: {t['billing']}")
    if r["malformed_outputs"]:
        lines.append(f"  OUTPUT NOT ONE FULL ANSWER: {r['malformed_outputs']}")
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", type=int, default=40)
    parser.add_argument("--tokens", type=int, default=60)
    parser.add_argument("--rate", type=float, default=10.0)
    parser.add_argument("--fault-rate", type=float, default=0.3)
    parser.add_argument("--rpm-limit", type=int, default=None)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--no-worker-kill", action="store_true")
    parser.add_argument("--no-server-kill", action="store_true")
    parser.add_argument("--out", default=None, help="write the raw report here (JSON)")
    args = parser.parse_args()
    report = asyncio.run(
        chaos_run(
            args.tasks,
            args.tokens,
            args.rate,
            args.fault_rate,
            args.rpm_limit,
            args.seed,
            not args.no_worker_kill,
            not args.no_server_kill,
        )
    )
    print(render_report(report))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2))
