"""Quotas: a burst of tasks against one provider quota, with each limiter side by side.

Issue 17's figures: 40 tasks x ``max_tokens=300`` submitted at once to 2 worker
processes against a simulated provider allowing 6,000 tokens a minute. The same
burst runs once per limiter (the workers' ``AI_ORCHESTRATOR_LIMITER``):

- ``off``: the old path, each call only reacts to its own 429 (Temporal retries
  after the Retry-After);
- ``local``: each worker process keeps its own view of the quota;
- ``redis``: one view shared by every worker through Redis (and once more with
  the limit configured in ``AI_ORCHESTRATOR_LIMITS`` instead of only learned
  from the answers' headers);
- ``redis`` with 4 workers, one SIGKILLed once a third of the tasks are done: the
  one streaming an answer then (so a task dies mid-answer and is charged again),
  with its calls waiting in the shared line.

Per run: the provider's 429s, the wall time against the quota's floor (see
:mod:`bench.quotas_report`) and against the ``off`` run's, the tasks completed,
and the capacity lost (time the provider's bucket sat full while tasks waited).
Everything runs here: a Temporal dev server, a redis-server, the simulator over
HTTP and real ``ai-orchestrator worker`` processes, each run on its own task
queue and API key (so on its own quota and limiter key), after ``sim.reset()``.

Usage: ``python bench/quotas.py [--smoke] [--out FILE]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from temporalio.client import Client

from ai_orchestrator import RetrySettings, Task, TaskClient, TaskConstraints, TaskStatus
from ai_orchestrator.limits import DEFAULT_LEASE_SECONDS
from ai_orchestrator.local.devserver import DevServer, die_with_parent, free_port
from ai_orchestrator.payloads.converter import data_converter
from ai_orchestrator.simulator import Quotas, Simulator
from bench.quotas_report import answer_seconds, capacity, floor_seconds, render, with_ratios
from bench.stats import Row

ROOT = Path(__file__).resolve().parents[1]
MODEL = "gpt-4o-mini"
#: What the workers may see of our environment (a subprocess gets an allow-list).
_PASSED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "VIRTUAL_ENV")
#: Where the shared limiter's dead waiters leave the line (the import needs redis-py
#: and the shared limiter itself; without them the redis rows say so anyway).
_WAITER_TTL_FALLBACK = 10.0


@dataclass(frozen=True)
class Sizes:
    tasks: int
    max_tokens: int
    tpm: int
    tokens_per_second: float
    #: Longest a run may take before its unfinished tasks are reported as such.
    bound_s: float
    configured_row: bool = True


FULL = Sizes(40, 300, 6000, 100.0, bound_s=900.0)
# 16 x ~305 tokens against 4,500 a minute: 14 fit at once, the floor is ~6 s.
SMOKE = Sizes(16, 300, 4500, 600.0, bound_s=120.0, configured_row=False)


@dataclass(frozen=True)
class Mode:
    #: The run's name in the report: off, local, redis, configured or kill.
    key: str
    label: str
    limiter: str  # off, local or redis (the URL is filled in)
    workers: int = 2
    kill: bool = False
    configured: bool = False


def modes(sizes: Sizes) -> list[Mode]:
    configured = [Mode("configured", "redis, configured tpm", "redis", configured=True)]
    return [
        Mode("off", "off (old: react to 429)", "off"),
        Mode("local", "local (per process)", "local"),
        Mode("redis", "redis (shared)", "redis"),
        *(configured if sizes.configured_row else []),
        Mode("kill", "redis, 4 workers, 1 SIGKILL", "redis", workers=4, kill=True),
    ]


class WorkerRefused(RuntimeError):
    """The worker exited before it polled (e.g. it does not know the limiter asked for)."""


class Worker:
    """An ``ai-orchestrator worker`` process that dies with us; its log's tail is kept."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.log: deque[str] = deque(maxlen=40)
        self._drain: asyncio.Task[None] | None = None

    @classmethod
    async def start(
        cls,
        env: dict[str, str],
        timeout: float = 60,
        command: tuple[str, ...] = ("-m", "ai_orchestrator", "worker"),
    ) -> Worker:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            *command,
            env=env,
            cwd=ROOT,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            preexec_fn=die_with_parent(),
        )
        worker = cls(proc)
        assert proc.stderr is not None
        try:
            await asyncio.wait_for(worker._listening(proc.stderr), timeout)
        except BaseException:
            await worker.kill()
            raise
        worker._drain = asyncio.create_task(worker._keep(proc.stderr))
        return worker

    async def _listening(self, stderr: asyncio.StreamReader) -> None:
        while line := await stderr.readline():
            self.log.append(line.decode(errors="replace").rstrip())
            if b"worker listening" in line:
                return
        raise WorkerRefused(" | ".join(list(self.log)[-3:]))

    async def _keep(self, stderr: asyncio.StreamReader) -> None:
        while line := await stderr.readline():  # a full pipe would block the worker
            self.log.append(line.decode(errors="replace").rstrip())

    async def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        if self._drain is not None:
            await asyncio.gather(self._drain, return_exceptions=True)


@contextlib.asynccontextmanager
async def redis_server(log: Path) -> AsyncIterator[str | None]:
    """A throwaway redis-server (no persistence) on a free port: its URL, or None."""
    binary = shutil.which("redis-server") or shutil.which("/usr/bin/redis-server")
    if binary is None:
        yield None
        return
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        *(binary, "--save", "", "--appendonly", "no", "--port", str(port)),
        *("--bind", "127.0.0.1", "--daemonize", "no", "--logfile", str(log)),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        env={"PATH": os.environ.get("PATH", "")},
        preexec_fn=die_with_parent(),
    )
    try:
        deadline = time.monotonic() + 15
        while not await _pong(port):
            if proc.returncode is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not answer PING on port {port}; see {log}")
            await asyncio.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        if proc.returncode is None:
            proc.terminate()
            await proc.wait()


async def _pong(port: int) -> bool:
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    try:
        writer.write(b"PING\r\n")
        return (await reader.readline()).startswith(b"+PONG")
    finally:
        writer.close()


@dataclass
class Stage:
    """What every run shares: the server, the simulator, the client, the Redis URL."""

    server: DevServer
    sim: Simulator
    client: Client
    redis_url: str | None
    sizes: Sizes

    def env(self, queue: str, api_key: str, mode: Mode) -> dict[str, str]:
        env = {k: os.environ[k] for k in _PASSED_ENV if k in os.environ}
        env.update(
            TEMPORAL_ADDRESS=self.server.target,
            OPENAI_BASE_URL=self.sim.base_url,
            OPENAI_API_KEY=api_key,
            AI_ORCHESTRATOR_TASK_QUEUE=queue,
            AI_ORCHESTRATOR_LIMITER=(self.redis_url or "")
            if mode.limiter == "redis"
            else mode.limiter,
            PYTHONPATH=str(ROOT),
            PYTHONUNBUFFERED="1",
        )
        if mode.configured:
            env["AI_ORCHESTRATOR_LIMITS"] = f"{MODEL}:tpm={self.sizes.tpm}"
        return env

    def fresh_quota(self) -> None:
        """Full buckets and zero counters: each run meets the provider as the first did."""
        self.sim.quotas = Quotas(tpm=self.sizes.tpm)
        self.sim.reset()

    async def workers(self, mode: Mode, queue: str, api_key: str) -> list[Worker]:
        started = await asyncio.gather(
            *(Worker.start(self.env(queue, api_key, mode)) for _ in range(mode.workers)),
            return_exceptions=True,
        )
        workers = [w for w in started if isinstance(w, Worker)]
        failed = [e for e in started if isinstance(e, BaseException)]
        if failed:
            for w in workers:
                await w.kill()
            raise failed[0]
        return workers


def _task(i: int, run: str, max_tokens: int) -> Task:
    return Task(
        prompt=f"quota task {i}: tell me about the sea",
        task_id=f"quota-{run}-{i}",
        constraints=TaskConstraints(max_tokens=max_tokens, timeout_seconds=1200),
    )


async def uncontended(stage: Stage) -> dict[str, float]:
    """One task alone, on ``off`` workers: the provider's time for one answer (d)."""
    queue, key = f"quota-solo-{uuid.uuid4().hex[:6]}", f"sk-quota-solo-{uuid.uuid4().hex[:8]}"
    workers = await stage.workers(Mode("solo", "solo", "off", workers=1), queue, key)
    try:
        stage.fresh_quota()
        tasks = TaskClient(stage.client, task_queue=queue)
        started = time.monotonic()
        task_id = await tasks.submit_task(_task(0, uuid.uuid4().hex[:6], stage.sizes.max_tokens))
        result = await tasks.get_result(task_id, 120)
        if result.status != TaskStatus.COMPLETED:
            raise RuntimeError(f"the uncontended task did not complete: {result.error}")
        whole = time.monotonic() - started
    finally:
        for w in workers:
            await w.kill()
    return {"answer_s": answer_seconds(stage.sim.requests), "uncontended_task_s": whole}


async def one_run(stage: Stage, mode: Mode, answer_s: float) -> dict[str, Any]:
    s = stage.sizes
    run = uuid.uuid4().hex[:6]
    queue, key = f"quota-{run}", f"sk-quota-{run}"
    report: dict[str, Any] = {
        "label": mode.label,
        "limiter": mode.limiter,
        "mode": mode.key,
        "workers": mode.workers,
        "configured_limits": mode.configured,
        "tasks": s.tasks,
        "available": False,
    }
    if mode.limiter == "redis" and stage.redis_url is None:
        report["error"] = "redis limiter not available (no redis-server)"
        return report
    try:
        workers = await stage.workers(mode, queue, key)
    except WorkerRefused as exc:
        what = "redis limiter not available" if mode.limiter == "redis" else "worker refused"
        report["error"] = f"{what}: {str(exc)[-200:]}"
        return report
    stage.fresh_quota()
    tasks = TaskClient(stage.client, task_queue=queue)
    done: list[float] = []
    third = asyncio.Event()  # when the kill run's worker is SIGKILLed
    try:
        t0 = time.monotonic()
        ids = await asyncio.gather(
            *(tasks.submit_task(_task(i, run, s.max_tokens)) for i in range(s.tasks))
        )

        async def result(task_id: str) -> Any:
            r = await tasks.get_result(task_id, None)
            done.append(time.monotonic() - t0)
            if len(done) >= s.tasks // 3:
                third.set()
            return r

        waiting = asyncio.ensure_future(asyncio.gather(*(result(i) for i in ids)))
        if mode.kill:
            reached = asyncio.ensure_future(third.wait())
            await asyncio.wait([reached, waiting], return_when=asyncio.FIRST_COMPLETED)
            reached.cancel()
            victim, task_id = await _streaming_worker(stage, workers, run)
            report["killed_at_s"] = time.monotonic() - t0
            report["completed_at_kill"] = len(done)
            report["killed_mid_answer"] = task_id
            await victim.kill()
        try:
            results = await asyncio.wait_for(waiting, s.bound_s)
        except asyncio.TimeoutError:
            results = [await tasks.get_result(i, 5) for i in ids]
        wall = time.monotonic() - t0
    finally:
        for w in workers:
            await w.kill()
    requests = list(stage.sim.requests)
    charged = sum(r.quota_tokens for r in requests)
    report.update(
        available=True,
        wall_s=wall,
        completed=sum(1 for r in results if r.status == TaskStatus.COMPLETED),
        not_completed=[
            f"{r.task.task_id}: {r.status.value} {r.error}"
            for r in results
            if r.status != TaskStatus.COMPLETED
        ],
        rate_limited=stage.sim.rate_limited,
        requests=len(requests),
        charged_tokens=charged,
        charged_per_task=charged / max(1, sum(1 for r in requests if r.quota_tokens > 0)),
        floor_s=floor_seconds(charged, s.tpm, answer_s),
        capacity=capacity(requests, s.tpm, t0),
        completed_at_s=sorted(done),
    )
    return report


async def _streaming_worker(
    stage: Stage, workers: list[Worker], run: str, patience: float = 10.0
) -> tuple[Worker, str | None]:
    """The worker streaming an answer now (a quarter in, at least), and its task; else the first.

    The simulator sees the prompt, Temporal the attempt's worker (``pid@host``).
    """
    deadline = time.monotonic() + patience
    quarter = stage.sizes.max_tokens // 4
    by_pid = {str(w.proc.pid): w for w in workers}
    while time.monotonic() < deadline:
        for r in list(stage.sim.requests):
            if r.ended_at is not None or r.tokens_sent < quarter:
                continue
            prompt = str(r.messages[-1].get("content", "")) if r.messages else ""
            task_id = f"quota-{run}-{prompt.removeprefix('quota task ').split(':')[0]}"
            description = await stage.client.get_workflow_handle(task_id).describe()
            for activity in description.raw_description.pending_activities:
                worker = by_pid.get(activity.last_worker_identity.split("@")[0])
                if worker is not None:
                    return worker, task_id
        await asyncio.sleep(0.05)
    return workers[0], None


async def quota_runs(sizes: Sizes) -> dict[str, Any]:
    """Every run of :func:`modes` on one server, simulator and Redis; the report for JSON."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="quotas-") as tmp:
        server = DevServer(db_file=Path(tmp) / "quotas.db", log_file=Path(tmp) / "server.log")
        sim = Simulator(tokens_per_second=sizes.tokens_per_second, default_tokens=sizes.max_tokens)
        async with server, sim, redis_server(Path(tmp) / "redis.log") as redis_url:
            client = await Client.connect(server.target, data_converter=data_converter())
            stage = Stage(server, sim, client, redis_url, sizes)
            solo = await uncontended(stage)
            runs = []
            for mode in modes(sizes):
                runs.append(await one_run(stage, mode, solo["answer_s"]))
                print(
                    f"quotas: {mode.label} done ({time.monotonic() - started:.0f}s)",
                    file=sys.stderr,
                )
    with_ratios(runs)
    return {
        "sizes": asdict(sizes),
        **solo,
        "lease_s": DEFAULT_LEASE_SECONDS,
        "waiter_ttl_s": _waiter_ttl(),
        "heartbeat_timeout_s": RetrySettings().heartbeat_timeout_seconds,
        "runs": runs,
        "total_s": time.monotonic() - started,
    }


def _waiter_ttl() -> float:
    try:
        from ai_orchestrator.limits._redis import WAITER_TTL
    except ImportError:
        return _WAITER_TTL_FALLBACK
    return float(WAITER_TTL)


# -- the lines of bench/run.py's table ----------------------------------------------------


def rows(sizes: Sizes) -> dict[str, Row]:
    name = f"quotas: {sizes.tasks} x {sizes.max_tokens} tok, TPM {sizes.tpm}"
    kill = f"quotas: {sizes.tasks} tasks, 4 workers, 1 SIGKILL"
    return {
        "quota_429": Row(name, "429 responses", "count", target="<= 2"),
        "quota_ratio": Row(name, "wall / floor", "%", target="<= 110%"),
        "quota_done": Row(name, "tasks completed", "count", target=f"{sizes.tasks}"),
        "quota_kill_ratio": Row(kill, "wall / floor", "%", target="<= 110%"),
        "quota_kill_full": Row(kill, "bucket full, longest", "s", target="< 1 lease"),
        "quota_kill_done": Row(kill, "tasks completed", "count", target=f"{sizes.tasks}"),
    }


def add_rows(table: dict[str, Row], report: dict[str, Any]) -> None:
    """Ours is the shared limiter; the old path and the per-process one are the baselines."""
    by = {r["mode"]: r for r in report["runs"] if r.get("available")}
    ours = by.get("redis") or by.get("local")
    if ours is None:
        return
    base = {m: by[m] for m in ("off", "local") if m in by and by[m] is not ours}
    table["quota_429"].add(ours["rate_limited"], **{m: r["rate_limited"] for m, r in base.items()})
    table["quota_ratio"].add(100 * ours["ratio"], **{m: 100 * r["ratio"] for m, r in base.items()})
    table["quota_done"].add(ours["completed"], **{m: r["completed"] for m, r in base.items()})
    if "kill" in by:
        killed = by["kill"]
        table["quota_kill_ratio"].add(100 * killed["ratio"])
        table["quota_kill_full"].add(killed["capacity"].get("longest_full_s", 0.0))
        table["quota_kill_done"].add(killed["completed"])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--smoke", action="store_true", help="few tasks, a short floor")
    parser.add_argument("--out", default=None, help="write the report here (JSON)")
    args = parser.parse_args()
    result = asyncio.run(quota_runs(SMOKE if args.smoke else FULL))
    print(render(result))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2))
        print(f"\nreport: {args.out}")
