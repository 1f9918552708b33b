"""Live streaming at scale: N concurrent streams with one reader each, and one task with
many readers; the live channel against today's query polling and direct streaming.

Modes, measured in the same run, case by case (each case runs every mode in turn):

- ``live`` ("ours"): a worker process with ``AI_ORCHESTRATOR_LIVE=http``, readers
  with ``TaskClient(live=True)``;
- ``redis`` (only when ``AI_ORCHESTRATOR_LIVE_REDIS_URL`` is set): a worker with
  ``AI_ORCHESTRATOR_LIVE=redis``, readers with ``live=True``;
- ``polling`` (today's path): a worker with ``AI_ORCHESTRATOR_LIVE=off`` (frequent
  chunk signals), readers with ``TaskClient(live=False)`` polling the progress query;
- ``direct`` (the floor): the same number of streams as direct ``AsyncOpenAI``
  streaming calls to the simulator, no Temporal (k readers on one task: k calls).

Each mode has its own worker process and task queue. Readers run in another
process (``bench/live_readers.py``), so their CPU is not charged to the worker;
tasks are submitted concurrently (50 at a time) and each id is handed to the
readers as soon as its submit returns. Per case and mode:

- chunk lag p50/p95: per token, the reader's receive time of the first chunk
  covering it minus the simulator's ``token_sent_at`` (``stats.lags``), pooled
  over every reader; CLOCK_MONOTONIC is system-wide, so the processes compare;
- TTFC from request: first text at the reader minus the simulator's
  ``received_at`` of the task's provider request (the streaming part alone);
  TTFC from submit: minus the time the benchmark called ``submit_task`` (direct:
  the time the call was made), which adds the workflow start and its queueing;
- worker / Temporal server CPU seconds: utime+stime from ``/proc/<pid>/stat`` of
  the worker process and the dev server process (each with any children),
  from just before the first submit until every reader has finished; reader
  CPU is the reader process's own, over the same span;
- history events per task (median), workflow-task timeouts (sum over the
  case's tasks), texts that differ from the task's final output (0 expected;
  a reader error counts; direct: a text whose word count is not the answer's);
- max concurrent streams: the most simulator requests of the case open at one
  instant, which shows whether N streams really overlapped.

Before the cases, each mode runs two short tasks, not measured (first workflows,
first connections). When the client has no ``live=`` switch yet, the ``live`` mode runs today's
polling path (the report says so).
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ai_orchestrator import RetrySettings, Task, TaskClient, TaskConstraints, TaskStatus
from ai_orchestrator.simulator import RecordedRequest

from .context import ROOT, Bench, prompt_of, stop
from .live_readers import LIVE_SUPPORTED
from .server_profile import describe, frontend_requests, top
from .start_floor import bare_start_floor
from .stats import Row, history_scan, lags, max_overlap, pct, timeout_totals


@dataclass(frozen=True)
class Case:
    key: str
    label: str
    tasks: int
    readers_per_task: int
    tokens: int
    rate: float

    @property
    def answer_s(self) -> float:
        return self.tokens / self.rate


@dataclass(frozen=True)
class LiveSizes:
    #: (N concurrent streams, tokens per answer, simulator tokens per second)
    streams: tuple[tuple[int, int, float], ...]
    #: (readers on one task, tokens, tokens per second)
    fanout: tuple[int, int, float]
    #: (chunks of the one long task, tokens per second)
    long: tuple[int, float]

    def cases(self) -> list[Case]:
        cases = [
            Case(f"n{n}", f"{n} streams, {tok} tok @ {rate:g}/s", n, 1, tok, rate)
            for n, tok, rate in self.streams
        ]
        k, tok, rate = self.fanout
        label = f"1 task/{k} readers, {tok} tok @ {rate:g}/s"
        cases.append(Case(f"fan{k}", label, 1, k, tok, rate))
        chunks, rate = self.long
        cases.append(Case("long", f"1 task, {chunks} chunks @ {rate:g}/s", 1, 1, chunks, rate))
        return cases


# The dev server starts ~12-22 workflows/s: 1000 tasks take up to ~85 s to start,
# so the 1000-stream answers last 150 s (the last starts well before the first ends).
FULL = LiveSizes(
    streams=((1, 240, 8.0), (100, 240, 8.0), (1000, 300, 2.0)),
    fanout=(10, 240, 8.0),
    long=(1000, 100.0),
)
# Smoke: 1 s answers, so every mode of every case runs in a minute.
SMOKE = LiveSizes(streams=((1, 20, 20.0), (5, 20, 20.0)), fanout=(3, 20, 20.0), long=(1000, 1000.0))

SUBMIT_PARALLEL = 50
#: From this many streams: a 30 s heartbeat timeout, and no polling baseline.
BIG = 1000
WARM_UP = Case("warm", "warm-up", 2, 1, 5, 50.0)


@dataclass
class Mode:
    name: str
    reader_mode: str  # live_readers.py --mode
    worker_env: dict[str, str] | None  # None: no worker (direct)
    queue: str = ""
    worker: asyncio.subprocess.Process | None = None
    readers: asyncio.subprocess.Process | None = None


def sizes_from_env(default: LiveSizes) -> LiveSizes:
    """``BENCH_LIVE_STREAMS=N:TOKENS:RATE,...`` replaces the stream cases (for experiments)."""
    raw = os.environ.get("BENCH_LIVE_STREAMS")
    if not raw:
        return default
    streams = tuple(
        (int(n), int(tok), float(rate))
        for n, tok, rate in (item.split(":") for item in raw.split(","))
    )
    return LiveSizes(streams=streams, fanout=default.fanout, long=default.long)


def modes() -> list[Mode]:
    wanted = os.environ.get("BENCH_LIVE_MODES")
    return [m for m in _modes() if not wanted or m.name in wanted.split(",")]


def _modes() -> list[Mode]:
    found = [
        Mode("live", "live", {"AI_ORCHESTRATOR_LIVE": "http"}),
        Mode("polling", "polling", {"AI_ORCHESTRATOR_LIVE": "off"}),
        Mode("direct", "direct", None),
    ]
    if os.environ.get("AI_ORCHESTRATOR_LIVE_REDIS_URL"):
        found.insert(1, Mode("redis", "live", {"AI_ORCHESTRATOR_LIVE": "redis"}))
    return found


# -- CPU of a process tree, from /proc -------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, utime+stime seconds) of a live process."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rfind(")") + 2 :].split()  # fields[0] is field 3 (state)
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / _TICK


def cpu_seconds(pid: int | None) -> float:
    """utime+stime of ``pid`` and its live descendants, in seconds."""
    if pid is None:
        return 0.0
    stats = {
        int(p.name): s
        for p in Path("/proc").iterdir()
        if p.name.isdigit()
        if (s := _stat(int(p.name)))
    }
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        if current in stats:
            total += stats[current][1]
            todo += [child for child, (parent, _) in stats.items() if parent == current]
    return total


# -- one case in one mode --------------------------------------------------------------


async def _readers(b: Bench, mode: Mode) -> asyncio.subprocess.Process:
    """The mode's reader process, once it said ready (``run_case`` feeds it keys)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "bench" / "live_readers.py"),
        "--mode",
        mode.reader_mode,
        env=b.env(mode.queue or "live-readers"),
        cwd=ROOT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 60)
    if line.strip() != b"ready":
        await stop(proc)
        raise RuntimeError(f"live_readers.py did not start ({line!r})")
    return proc


async def run_case(b: Bench, mode: Mode, case: Case, tmp: Path) -> dict[str, Any]:
    b.sim.tokens_per_second, b.sim.default_tokens = case.rate, case.tokens
    first_request = len(b.sim.requests)
    tag = uuid.uuid4().hex[:6]
    deadline = 3 * case.answer_s + case.tasks / 5 + 120
    out = tmp / f"{mode.name}-{case.key}-{tag}.json"
    readers = mode.readers
    assert readers is not None and readers.stdin is not None and readers.stdout is not None
    stdin = readers.stdin
    prompts: dict[str, str] = {}  # reader key -> prompt
    submitted: dict[str, float] = {}  # reader key -> monotonic time of submit
    worker_pid = mode.worker.pid if mode.worker else None
    server_pid = b.server.process.pid if b.server.process else None
    cpu_worker, cpu_server = cpu_seconds(worker_pid), cpu_seconds(server_pid)
    requests_before = await frontend_requests(b.metrics_url)
    started = time.monotonic()
    if mode.worker is None:
        for i in range(case.tasks * case.readers_per_task):
            key = f"live direct {case.key} {tag} {i}"
            prompts[key] = key
            stdin.write(f"{key}\n".encode())
        await stdin.drain()
    else:
        # A thousand attempts heartbeating once a second are more writes than a dev
        # server takes: with a 30 s heartbeat timeout the worker's heartbeat budget
        # spaces them out (cancels then reach an attempt within seconds, not 1 s).
        retry = RetrySettings(heartbeat_timeout_seconds=30) if case.tasks >= BIG else None
        tasks = TaskClient(b.client, task_queue=mode.queue, retry=retry)
        gate = asyncio.Semaphore(SUBMIT_PARALLEL)

        async def submit(i: int) -> None:
            prompt = f"live {mode.name} {case.key} {tag} {i}"
            task = Task(prompt=prompt, constraints=TaskConstraints(timeout_seconds=1800))
            async with gate:
                at = time.monotonic()
                task_id = await tasks.submit_task(task)
            prompts[task_id], submitted[task_id] = prompt, at
            stdin.write(f"{task_id}\n".encode() * case.readers_per_task)
            await stdin.drain()

        await asyncio.gather(*(submit(i) for i in range(case.tasks)))
    submit_s = time.monotonic() - started
    stdin.write(f". {deadline} {out}\n".encode())
    await stdin.drain()
    line = await asyncio.wait_for(readers.stdout.readline(), deadline + 60)
    if line.strip() != b"done":
        raise RuntimeError(f"live_readers.py ({mode.name}) ended a batch with {line!r}")
    wall_s = time.monotonic() - started
    cpu_worker = cpu_seconds(worker_pid) - cpu_worker
    cpu_server = cpu_seconds(server_pid) - cpu_server
    server_profile = top(requests_before, await frontend_requests(b.metrics_url), wall_s)
    report = json.loads(out.read_text())
    out.unlink()

    requests: dict[str, list[RecordedRequest]] = {}
    for record in b.sim.requests[first_request:]:
        requests.setdefault(prompt_of(record), []).append(record)
    lag: list[float] = []
    ttfc_request: list[float] = []
    ttfc_submit: list[float] = []
    for reader in report["readers"]:
        key, received = reader["key"], [tuple(r) for r in reader["received"]]
        attempts = requests.get(prompts.get(key, ""), [])
        if not attempts or not received:
            continue
        request = attempts[-1]  # the one whose answer is the result
        lag += lags(request.token_sent_at, received)
        ttfc_request.append((received[0][0] - attempts[0].received_at) * 1000)
        ttfc_submit.append((received[0][0] - submitted.get(key, reader["started"])) * 1000)
    now = time.monotonic()
    overlap = max_overlap(
        [(r.received_at, r.ended_at or now) for rs in requests.values() for r in rs]
    )

    errors = [r["error"] for r in report["readers"] if r["error"]]
    summary: dict[str, Any] = {
        "readers": len(report["readers"]),
        "live_supported": report["live_supported"],
        "lag_p50": pct(lag, 0.5) if lag else float("nan"),
        "lag_p95": pct(lag, 0.95) if lag else float("nan"),
        "ttfc_request_p50": pct(ttfc_request, 0.5) if ttfc_request else float("nan"),
        "ttfc_submit_p50": pct(ttfc_submit, 0.5) if ttfc_submit else float("nan"),
        "reader_cpu_s": report["cpu_s"],
        "server_cpu_s": cpu_server,
        "submit_s": submit_s,
        "wall_s": wall_s,
        "max_concurrent_streams": overlap,
        "provider_requests": sum(len(rs) for rs in requests.values()),
        "reader_errors": len(errors),
        "server_profile": server_profile,
        "first_error": errors[0] if errors else None,
    }
    if mode.worker is None:
        summary["mismatches"] = sum(
            1 for r in report["readers"] if r["error"] or len(r["text"].split()) != case.tokens
        ) + (case.tasks * case.readers_per_task - len(report["readers"]))
        return summary

    ids = list(submitted)
    results_client = TaskClient(b.client)
    gate = asyncio.Semaphore(SUBMIT_PARALLEL)

    async def final(task_id: str) -> str | None:
        async with gate:
            result = await results_client.get_result(task_id, timeout=60)
        return result.output if result.status == TaskStatus.COMPLETED else None

    finals = dict(zip(ids, await asyncio.gather(*(final(i) for i in ids)), strict=True))
    mismatches = sum(
        1 for r in report["readers"] if r["error"] or finals.get(r["key"]) != r["text"]
    ) + (len(ids) * case.readers_per_task - len(report["readers"]))
    histories = await history_scan(b.client, ids)
    summary.update(
        worker_cpu_s=cpu_worker,
        events_p50=statistics.median(h["events"] for h in histories),
        events_max=max(h["events"] for h in histories),
        bytes_p50=statistics.median(h["bytes"] for h in histories),
        **timeout_totals(histories),
        tasks_not_completed=sum(1 for v in finals.values() if v is None),
        mismatches=mismatches,
    )
    return summary


# -- the scenario ----------------------------------------------------------------------

METRICS: tuple[tuple[str, str, str, str], ...] = (
    # (summary key, metric, unit, target)
    ("lag_p50", "chunk lag p50", "ms", ""),
    ("lag_p95", "chunk lag p95", "ms", ""),
    ("ttfc_request_p50", "TTFC p50, request", "ms", ""),
    ("ttfc_submit_p50", "TTFC p50, submit", "ms", ""),
    ("worker_cpu_s", "worker CPU", "s", ""),
    ("server_cpu_s", "Temporal server CPU", "s", ""),
    ("reader_cpu_s", "reader process CPU", "s", ""),
    ("events_p50", "events/task p50", "count", ""),
    ("workflow_task_timeouts", "WFT timeouts", "count", "0"),
    ("sticky_schedule_to_start", "of which sticky queue", "count", ""),
    ("mismatches", "text mismatches", "count", "0"),
    ("max_concurrent_streams", "max streams open", "count", ""),
)
LONG_METRICS = ("lag_p50", "lag_p95", "worker_cpu_s", "events_p50", "mismatches")


def _rows(rows: dict[str, Row], case: Case, live_is_polling: bool) -> list[tuple[str, Row]]:
    prefix = "polled: " if live_is_polling else "live: "
    found = []
    for key, metric, unit, target in METRICS:
        if case.key == "long" and key not in LONG_METRICS:
            continue
        if case.key == "long" and key == "events_p50":
            metric, target = "history events", "<= 100"
        if key == "max_concurrent_streams":
            target = str(case.tasks) if case.tasks > 1 else ""
        row_key = f"live/{case.key}/{key}"
        rows.setdefault(row_key, Row(prefix + case.label, metric, unit, target=target))
        found.append((key, rows[row_key]))
    return found


async def live_streams(b: Bench, rows: dict[str, Row]) -> dict[str, Any]:
    """Every case in every mode; adds its rows (ours: live) to ``rows``; the raw figures."""
    sizes = sizes_from_env(SMOKE if b.smoke else FULL)
    cases = sizes.cases()
    if os.environ.get("BENCH_LIVE_STREAMS_ONLY"):
        cases = [c for c in cases if c.key.startswith("n")]
    all_modes = modes()
    print(
        "live sizes: "
        + "; ".join(
            f"{c.label} ({c.answer_s:g} s answers, {c.tasks * c.readers_per_task} readers)"
            for c in cases
        )
        + f"; modes: {', '.join(m.name for m in all_modes)}"
        + ("" if LIVE_SUPPORTED else " (no TaskClient(live=) yet: 'live' runs polling)"),
        file=sys.stderr,
    )
    saved = b.sim.tokens_per_second, b.sim.default_tokens
    raw: dict[str, Any] = {"sizes": [c.__dict__ for c in cases], "cases": {}}
    try:
        for mode in all_modes:
            if mode.worker_env is not None:
                mode.queue = f"live-{mode.name}-{uuid.uuid4().hex[:6]}"

        async def start(mode: Mode) -> None:
            if mode.worker_env is not None:
                mode.worker = await b.spawn_ready(mode.queue, **mode.worker_env)
            mode.readers = await _readers(b, mode)

        await asyncio.gather(*(start(m) for m in all_modes))
        with tempfile.TemporaryDirectory(prefix="bench-live-") as tmp:
            for mode in all_modes:  # first workflows, first connections: not measured
                await run_case(b, mode, WARM_UP, Path(tmp))
        with tempfile.TemporaryDirectory(prefix="bench-live-") as tmp:
            for case in cases:
                raw["cases"][case.key] = figures = {}
                floor = None
                if case.key.startswith("n") and case.tasks > 1:
                    try:
                        floor = await bare_start_floor(b, case.tasks, SUBMIT_PARALLEL)
                    except Exception as exc:  # a baseline that fails must not sink the case
                        print(
                            f"live {case.label}: bare start floor FAILED: {exc!r}", file=sys.stderr
                        )
                    raw.setdefault("bare_start_floor_ms", {})[case.key] = floor
                if floor is not None:
                    print(
                        f"live {case.label}: {case.tasks} bare workflows submitted the same way "
                        f"reach the provider {floor['p50']:.0f} ms (p50) after submit",
                        file=sys.stderr,
                    )
                for mode in all_modes:
                    if case.tasks >= BIG and mode.name == "polling":
                        # Measured at 300 streams (README): polling lags by minutes and
                        # times out workflow tasks; at 1000 it only fills the deadline.
                        continue
                    try:
                        figures[mode.name] = await run_case(b, mode, case, Path(tmp))
                    except (TimeoutError, asyncio.TimeoutError, RuntimeError) as exc:
                        # A case the machine cannot carry says so; the others still print.
                        print(f"live {case.label} [{mode.name}]: FAILED: {exc!r}", file=sys.stderr)
                        raw["cases"][case.key][mode.name] = {"error": repr(exc)}
                        figures.pop(mode.name, None)
                        continue
                    f = figures[mode.name]
                    print(
                        f"live {case.label} [{mode.name}]: submitted in {f['submit_s']:.1f}s, "
                        f"done in {f['wall_s']:.1f}s, max {f['max_concurrent_streams']} "
                        f"concurrent streams, {f['reader_errors']} reader errors"
                        + (f" (e.g. {f['first_error']})" if f["first_error"] else ""),
                        file=sys.stderr,
                    )
                    print(
                        f"live {case.label} [{mode.name}]: server requests: "
                        + describe(f["server_profile"]),
                        file=sys.stderr,
                    )
                    woke = {k[14:]: v for k, v in f.items() if k.startswith("timeout after ")}
                    if woke:
                        print(
                            f"live {case.label} [{mode.name}]: timed-out workflow tasks were "
                            f"for: {woke}",
                            file=sys.stderr,
                        )
                if not figures:
                    continue
                ours = "live" if "live" in figures else next(iter(figures))
                live_is_polling = not figures[ours]["live_supported"] or ours != "live"
                for key, row in _rows(rows, case, live_is_polling):
                    others = {
                        name: value[key]
                        for name, value in figures.items()
                        if name != ours and key in value
                    }
                    if key == "ttfc_submit_p50" and floor is not None:
                        others["bare start"] = floor["p50"]
                    row.add(figures[ours][key], **others)
    finally:
        b.sim.tokens_per_second, b.sim.default_tokens = saved
        for mode in all_modes:
            for proc in (mode.readers, mode.worker):
                if proc is not None:
                    await stop(proc)
            mode.worker = mode.readers = None
    return raw
