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

The scenario runs twice with the same seed and sizes: on the chat path
(Chat Completions: a retry asks for a new answer) and on the Responses path
(workers with ``AI_ORCHESTRATOR_OPENAI_API=responses``: a retry re-attaches
to the background response it already started). For the Responses path the
tokens generated are the simulator's per-response counts, each response
counted once however often it is re-read.

Usage: ``python bench/chaos.py [--tasks N] [--tokens N] [--rate TOK_PER_S]
[--api chat|responses|both] [--out FILE]``
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
from functools import cache, partial
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
from ai_orchestrator.local.devserver import DevServer
from ai_orchestrator.payloads.converter import data_converter
from ai_orchestrator.simulator import RecordedRequest, ResponseRecord, Simulator
from ai_orchestrator.simulator._text import simulated_tokens

ROOT = Path(__file__).resolve().parents[1]
FIRST_TOKEN = "[simulated]"
T = TypeVar("T")
APIS = ("chat", "responses")


def prompt_of(i: int) -> str:
    return f"chaos task {i}"


def _env(server: DevServer, sim: Simulator, queue: str, openai_api: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "TEMPORAL_"))}
    env.update(
        AI_ORCHESTRATOR_OPENAI_API=openai_api,
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

    def __init__(self, proc: asyncio.subprocess.Process, log_file: Path | None = None) -> None:
        self.proc = proc
        self.log: deque[str] = deque(maxlen=200)
        self._drain: asyncio.Task[None] | None = None
        self._file = log_file.open("a") if log_file is not None else None

    def _append(self, line: bytes) -> None:
        text = line.decode(errors="replace")
        self.log.append(text)
        if self._file is not None:
            self._file.write(f"{time.monotonic():.3f} {text}")
            self._file.flush()

    @classmethod
    async def start(
        cls, env: dict[str, str], timeout: float = 60, log_file: Path | None = None
    ) -> WorkerProcess:
        """Returned once the worker says it polls (before that, tasks would only queue).

        With ``log_file``, the whole log goes there too (at INFO level, each line
        prefixed with ``time.monotonic()``), for post-mortems beyond the tail.
        """
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "ai_orchestrator",
            *(["-v"] if log_file is not None else []),
            "worker",
            env=env,
            cwd=ROOT,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        worker = cls(proc, log_file)
        assert proc.stderr is not None
        stderr = proc.stderr

        async def listening() -> None:
            while True:
                line = await stderr.readline()
                if not line:
                    raise RuntimeError("worker exited before it was ready: " + "".join(worker.log))
                worker._append(line)
                if b"worker listening" in line:
                    return

        await asyncio.wait_for(listening(), timeout)
        # Keep draining, or a chatty worker would block on a full pipe.
        worker._drain = asyncio.create_task(worker._keep(stderr))
        return worker

    async def _keep(self, stderr: asyncio.StreamReader) -> None:
        while line := await stderr.readline():
            self._append(line)

    async def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        if self._drain is not None:
            await asyncio.gather(self._drain, return_exceptions=True)
        if self._file is not None:
            self._file.close()
            self._file = None


async def _through_outage(call: Callable[[], Awaitable[T]], outages: list[float]) -> T:
    """``call()``, retried while Temporal is unavailable (the server is being restarted)."""
    while True:
        try:
            return await call()
        except TemporalUnavailableError:
            outages.append(time.monotonic())
            await asyncio.sleep(1.0)


@cache
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
    openai_api: str = "chat",
    worker_log_dir: Path | None = None,
) -> dict[str, Any]:
    """One chaos run; every figure of the report, plus the failed tasks' errors and bills.

    ``openai_api`` is the workers' ``AI_ORCHESTRATOR_OPENAI_API``: ``"chat"`` or
    ``"responses"`` (background responses, re-attached on retry). With
    ``worker_log_dir``, each worker's whole INFO log is written there
    (``{api}-worker-{n}.log``) and, for the tasks that created more than one
    response, what each attempt inherited is read from their histories.

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
            env = _env(server, sim, queue, openai_api)
            logs = (
                [worker_log_dir / f"{openai_api}-worker-{n}.log" for n in range(2)]
                if worker_log_dir is not None
                else [None, None]
            )
            workers = list(
                await asyncio.gather(*(WorkerProcess.start(env, log_file=f) for f in logs))
            )
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
            events["t0_monotonic"] = t0
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
            kill_at: float | None = None
            if kill_worker:
                kill_at = time.monotonic()
                events["worker_killed_at_s"] = kill_at - t0
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
            # Let zombie attempts and background responses (if any) end before
            # counting what the provider generated.
            with contextlib.suppress(TimeoutError):
                await sim.wait_until(
                    lambda: (
                        all(r.ended_at is not None for r in sim.requests)
                        and all(
                            b.status not in ("queued", "in_progress")
                            for b in sim.responses.values()
                        )
                    ),
                    timeout=30,
                )
            attempts: dict[str, Any] = {}
            if worker_log_dir is not None:
                per_task = _per_task(sim.requests, len(ids))
                again = [ids[i] for i, reqs in enumerate(per_task) if _creates(reqs) > 1]
                attempts = await _through_outage(partial(_attempt_history, client, again), outages)
        finally:
            for worker in workers:
                await worker.kill()
            await sim.stop()
            await server.stop()
        report = _report(
            sim.requests, results, ids, tokens, retry, t0, openai_api=openai_api, sim=sim
        )
        report.update(_kill_recovery(sim.requests, ids, kill_at, t0, openai_api))
        if attempts:
            report["attempt_history"] = attempts
        report["heartbeat_timeout_s"] = retry.heartbeat_timeout_seconds
        if report["not_completed"] or report.get("extra_creates") or report["inexact_outputs"]:
            report["worker_logs"] = [list(w.log)[-60:] for w in workers]
    report.update(
        openai_api=openai_api,
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


def _prompt(r: RecordedRequest) -> str | None:
    return str(r.messages[-1].get("content")) if r.messages else None


def _per_task(requests: list[RecordedRequest], n: int) -> list[list[RecordedRequest]]:
    """Each task's requests; a Responses retrieve/cancel goes with its response's create."""
    index = {prompt_of(i): i for i in range(n)}
    by_response: dict[str, int] = {}
    per_task: list[list[RecordedRequest]] = [[] for _ in range(n)]
    for r in requests:
        i = index.get(str(_prompt(r)))
        if i is None and r.response_id is not None:
            i = by_response.get(r.response_id)
        if i is None:
            continue
        if r.response_id is not None:
            by_response[r.response_id] = i
        per_task[i].append(r)
    return per_task


def _creates(reqs: list[RecordedRequest]) -> int:
    return sum(1 for q in reqs if q.kind in ("create", None))


async def _attempt_history(client: Client, workflow_ids: list[str]) -> dict[str, Any]:
    """Per task: each attempt's start, the failure before it and the continuation it inherited.

    A retry's ``ActivityTaskStarted`` carries the previous attempt's failure;
    a heartbeat timeout's failure carries the last heartbeat details (the
    response id and the continuation token the retry had to go on).
    """
    from temporalio.api.enums.v1 import EventType

    out: dict[str, Any] = {}
    for wid in workflow_ids:
        lines = []
        history = await client.get_workflow_handle(wid).fetch_history()
        for e in history.events:
            if e.event_type != EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
                continue
            a = e.activity_task_started_event_attributes
            f = a.last_failure
            line: dict[str, Any] = {
                "attempt": a.attempt,
                "at": e.event_time.ToDatetime().isoformat(),
                "last_failure": f.message if f.ByteSize() else None,
            }
            details = None
            if f.HasField("timeout_failure_info"):
                details = f.timeout_failure_info.last_heartbeat_details
            elif f.HasField("application_failure_info"):
                details = f.application_failure_info.details
            if details is not None and details.payloads:
                try:
                    values = await client.data_converter.decode(details.payloads)
                    first = values[0] if values else None
                    if isinstance(first, dict):
                        line["inherited"] = {
                            k: first.get(k)
                            for k in ("response_id", "continuation", "continued_at", "generation")
                            if k in first
                        }
                except Exception as exc:  # a post-mortem: report what could not be read
                    line["inherited"] = f"unreadable: {exc}"
            lines.append(line)
        out[wid] = lines
    return out


def _expected_text(reqs: list[RecordedRequest], tokens: int, style: str) -> str | None:
    """The simulator's deterministic answer to the task's prompt (its first request's)."""
    first = next((q for q in reqs if q.messages), None)
    if first is None:
        return None
    return "".join(simulated_tokens(first.messages, first.model, tokens, style))


def _request_line(q: RecordedRequest, t0: float) -> tuple[Any, ...]:
    return (
        q.kind or q.api,
        q.response_id,
        _fault_kind(q),
        q.tokens_sent,
        round(q.received_at - t0, 2),
        round(q.ended_at - t0, 2) if q.ended_at is not None else None,
    )


def _why_another_create(
    previous: RecordedRequest, reqs: list[RecordedRequest], later: RecordedRequest
) -> str:
    """Why a task created a second response instead of re-attaching to its first."""
    if previous.response_id is None:
        return f"previous create refused ({_fault_kind(previous)}): no response to re-attach to"
    between = [
        q
        for q in reqs
        if q.response_id == previous.response_id
        and q.kind == "retrieve_stream"
        and q.received_at < later.received_at
    ]
    if between and between[-1].status == 404:
        return f"re-attach to {previous.response_id} answered 404 (expired)"
    if previous.tokens_sent == 0 and not between:
        return (
            f"create stream of {previous.response_id} broke ({_fault_kind(previous)}) "
            "before any text: the client may not have learned the response id"
        )
    return (
        f"response {previous.response_id} existed ({previous.tokens_sent} tokens read, "
        f"{len(between)} re-attaches, last {_fault_kind(between[-1]) if between else '-'}) "
        "but a new create was sent"
    )


def _report(
    requests: list[RecordedRequest],
    results: list[Result],
    ids: list[str],
    tokens: int,
    retry: RetrySettings,
    t0: float,
    *,
    openai_api: str = "chat",
    sim: Simulator | None = None,
) -> dict[str, Any]:
    responses_path = openai_api == "responses"
    per_task = _per_task(requests, len(ids))
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
    style = sim.text_style if sim is not None else "words"
    inexact_outputs = [
        r.task.task_id
        for i, r in enumerate(results)
        if r.status == TaskStatus.COMPLETED
        and r.output != _expected_text(per_task[i], tokens, style)
    ]
    records: dict[str, ResponseRecord] = dict(sim.responses) if sim is not None else {}

    def generated_for(reqs: list[RecordedRequest]) -> int:
        if not responses_path:
            return sum(q.tokens_sent for q in reqs)
        # Per response, once: re-reading it (re-attach) generates nothing.
        created = {q.response_id for q in reqs if q.kind == "create" and q.response_id}
        return sum(records[x].generated_tokens for x in created if x in records)

    generated = (
        sum(b.generated_tokens for b in records.values())
        if responses_path
        else sum(r.tokens_sent for r in requests)
    )
    bills = [b for r in results for b in r.metadata.get("billing", [])]
    # Per task: what the provider generated that no bill of ours reports (or the reverse).
    gaps = {}
    for i, r in enumerate(results):
        sent = generated_for(per_task[i])
        reported = sum(int(b["completion_tokens"]) for b in r.metadata.get("billing", []))
        if sent != reported:
            gaps[ids[i]] = {
                "generated": sent,
                "reported": reported,
                "requests": [_request_line(q, t0) for q in per_task[i]],
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
            "requests": [_request_line(q, t0) for q in per_task[ids.index(r.task.task_id)]],
            "billing": r.metadata.get("billing"),
        }
        for r in results
        if r.status != TaskStatus.COMPLETED
    ]
    report: dict[str, Any] = {
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
        "tokens_generated_all_apis": sim.generated_tokens if sim is not None else generated,
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
        "requests_by_kind": dict(Counter(r.kind or r.api for r in requests)),
        # Whole answers the provider streamed that no task used (attempts the server
        # gave up on while their worker still streamed: zombies).
        "unused_full_answers": sum(
            1 for reqs in per_task for q in reqs[:-1] if q.fault is None and q.tokens_sent == tokens
        )
        if not responses_path
        else sum(
            1
            for reqs in per_task
            for x in {q.response_id for q in reqs if q.kind == "create" and q.response_id}
            if x in records
            and records[x].generated_tokens == tokens
            and x != next((q.response_id for q in reversed(reqs) if q.response_id), None)
        ),
        "malformed_outputs": malformed_outputs,
        "inexact_outputs": inexact_outputs,
        # One line per request, for post-mortems: kind, response, fault, tokens, start, end (s).
        "request_log": [(str(_prompt(q) or ""), *_request_line(q, t0)) for q in requests],
        "billing_gaps": gaps,
        "not_completed": failed,
        "retry": retry.model_dump(),
    }
    if responses_path:
        creates = [[q for q in reqs if q.kind == "create"] for reqs in per_task]
        created = [[q for q in c if q.response_id] for c in creates]
        extra = {}
        for i, c in enumerate(creates):
            if len(c) > 1:
                extra[ids[i]] = {
                    "why": [
                        _why_another_create(c[k - 1], per_task[i], c[k]) for k in range(1, len(c))
                    ],
                    "requests": [_request_line(q, t0) for q in per_task[i]],
                }
        report.update(
            creates=sum(len(c) for c in creates),
            creates_per_task_max=max((len(c) for c in creates), default=0),
            creates_per_task_mean=statistics.fmean(len(c) for c in creates) if creates else 0.0,
            responses_created=sum(len(c) for c in created),
            responses_per_task_max=max((len(c) for c in created), default=0),
            tasks_with_extra_creates=len(extra),
            extra_creates=extra,
            reattaches=sum(1 for r in requests if r.kind == "retrieve_stream"),
            reattaches_per_task_max=max(
                (sum(1 for q in reqs if q.kind == "retrieve_stream") for reqs in per_task),
                default=0,
            ),
            reattaches_simulator=sum(b.reattaches for b in records.values()),
        )
    else:
        report.update(
            creates=len(requests),
            creates_per_task_max=max(counts, default=0),
            creates_per_task_mean=statistics.fmean(counts) if counts else 0.0,
            reattaches=0,
            reattaches_per_task_max=0,
            tasks_with_extra_creates=sum(1 for c in counts if c > 1),
        )
    return report


def _kill_recovery(
    requests: list[RecordedRequest],
    ids: list[str],
    kill_at: float | None,
    t0: float,
    openai_api: str,
) -> dict[str, Any]:
    """From the worker SIGKILL to text flowing again, for the tasks streaming on that worker.

    A task was streaming on the killed worker if one of its requests was open
    at the kill and its *client* went away within 2 s (the kernel closes a
    killed process's sockets; the simulator notices at its next write), with no
    fault of its own. Per such task: its first request received after the kill
    (a re-attach on Responses, a new request on chat) and its first token
    written after the kill, each minus the kill time.
    """
    if kill_at is None:
        return {}
    per_task = _per_task(requests, len(ids))
    first_request: dict[str, float] = {}
    first_token: dict[str, float] = {}
    cut: dict[str, int] = {}
    for i, reqs in enumerate(per_task):
        killed = [
            q
            for q in reqs
            if q.received_at < kill_at
            and q.disconnected
            and q.fault is None
            and q.ended_at is not None
            and kill_at <= q.ended_at <= kill_at + 2.0
        ]
        if not killed:
            continue
        cut[ids[i]] = killed[0].index
        after = [q for q in reqs if q.received_at > kill_at]
        if after:
            first_request[ids[i]] = min(q.received_at for q in after) - kill_at
        tokens_after = [t for q in after for t in q.token_sent_at if t > kill_at]
        if tokens_after:
            first_token[ids[i]] = min(tokens_after) - kill_at

    def spread(values: dict[str, float]) -> dict[str, float] | None:
        if not values:
            return None
        v = list(values.values())
        return {"min": min(v), "median": statistics.median(v), "max": max(v)}

    return {
        "killed_worker_tasks": len(cut),
        "kill_to_next_request_s": spread(first_request),
        "kill_to_text_s": spread(first_token),
        "kill_recovery_per_task": {
            t: (
                round(first_request.get(t, float("nan")), 2),
                round(first_token.get(t, float("nan")), 2),
            )
            for t in cut
        },
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
        f"chaos ({r.get('openai_api', 'chat')}): {r['n_tasks']} tasks x {r['tokens']} tokens "
        f"at {r['rate']:g} tok/s, "
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


async def chaos_both(
    n_tasks: int = 40,
    tokens: int = 60,
    rate: float = 10.0,
    fault_rate: float = 0.3,
    rpm_limit: int | None = None,
    seed: int = 7,
    kill_worker: bool = True,
    kill_server: bool = True,
    *,
    apis: tuple[str, ...] = APIS,
    **kwargs: Any,
) -> dict[str, dict[str, Any]]:
    """The same chaos run (same seed and sizes) once per API, one after the other."""
    return {
        api: await chaos_run(
            n_tasks,
            tokens,
            rate,
            fault_rate,
            rpm_limit,
            seed,
            kill_worker,
            kill_server,
            openai_api=api,
            **kwargs,
        )
        for api in apis
    }


def _fmt_spread(v: dict[str, float] | None) -> str:
    if not v:
        return "-"
    return f"{v['median']:.2f} [{v['min']:.2f}-{v['max']:.2f}]"


def _side_by_side_rows(r: dict[str, Any]) -> list[str]:
    """One report's cells, in the order of :data:`_SIDE_BY_SIDE`."""
    n = r["n_tasks"]
    return [
        f"{r['completed']}/{n} (failed {r['failed']}, unfinished {r['unfinished']})",
        f"{r['requests_per_task_max']} (mean {r['requests_per_task_mean']:.2f})",
        f"max {r['creates_per_task_max']}, mean {r['creates_per_task_mean']:.2f}; "
        f"{r['tasks_with_extra_creates']} tasks > 1",
        f"{r['reattaches']} (max {r['reattaches_per_task_max']}/task)",
        f"{r['tokens_generated']}/{r['tokens_delivered']} = {r['generated_per_delivered']:.3f}",
        f"{r['billed_completion_reported']}/{r['tokens_generated']} = "
        f"{r['reported_per_generated']:.3f}",
        f"{r['completed'] - len(r['inexact_outputs'])}/{r['completed']}",
        f"{r.get('killed_worker_tasks', 0)} tasks",
        _fmt_spread(r.get("kill_to_next_request_s")),
        _fmt_spread(r.get("kill_to_text_s")),
        f"{r['wall_s']:.1f}" + (" (BOUND HIT)" if r["bound_hit"] else ""),
    ]


_SIDE_BY_SIDE = (
    "tasks completed",
    "max provider requests per task",
    "creates per task",
    "re-attaches (GET ?stream=true)",
    "tokens generated / delivered",
    "billed reported / generated",
    "outputs == the prompt's deterministic answer",
    "streaming on the killed worker",
    "SIGKILL -> next request (s) med [min-max]",
    "SIGKILL -> text flowing (s) med [min-max]",
    "wall time (s)",
)


def render_both(reports: dict[str, dict[str, Any]]) -> str:
    """Both paths side by side, then each one's own detail and post-mortem lines."""
    apis = list(reports)
    cells = {api: _side_by_side_rows(r) for api, r in reports.items()}
    first = next(iter(reports.values()))
    hb = first["heartbeat_timeout_s"]
    width = max(28, *(len(c) for col in cells.values() for c in col))
    lines = [
        f"chaos, both paths: {first['n_tasks']} tasks x {first['tokens']} tokens at "
        f"{first['rate']:g} tok/s, fault_rate {first['fault_rate']:g} (seed {first['seed']}); "
        f"targets (responses): all complete, 1 create/task, generated/delivered <= 1.05, "
        f"SIGKILL -> text <= {hb + 1:g} s (heartbeat {hb:g} s + 1)",
        f"  {'':44} " + " ".join(f"{api:{width}}" for api in apis),
    ]
    for k, label in enumerate(_SIDE_BY_SIDE):
        lines.append(f"  {label:44} " + " ".join(f"{cells[api][k]:{width}}" for api in apis))
    for api, r in reports.items():
        lines.append("")
        lines.append(f"[{api}] " + render_report(r))
        for task, info in (r.get("extra_creates") or {}).items():
            lines.append(f"  MORE THAN ONE CREATE {task}: {'; '.join(info['why'])}")
            lines.append(f"    requests: {info['requests']}")
        if r["inexact_outputs"]:
            lines.append(f"  OUTPUT NOT THE PROMPT'S ANSWER: {r['inexact_outputs']}")
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
    parser.add_argument(
        "--api", choices=(*APIS, "both"), default="both", help="which path(s) to run"
    )
    parser.add_argument("--out", default=None, help="write the raw reports here (JSON)")
    parser.add_argument(
        "--worker-logs",
        default=None,
        help="directory for the workers' whole INFO logs (and attempt histories in the report)",
    )
    args = parser.parse_args()
    if args.worker_logs:
        Path(args.worker_logs).mkdir(parents=True, exist_ok=True)
    reports = asyncio.run(
        chaos_both(
            args.tasks,
            args.tokens,
            args.rate,
            args.fault_rate,
            args.rpm_limit,
            args.seed,
            not args.no_worker_kill,
            not args.no_server_kill,
            apis=APIS if args.api == "both" else (args.api,),
            worker_log_dir=Path(args.worker_logs) if args.worker_logs else None,
        )
    )
    print(render_both(reports))
    if args.out:
        Path(args.out).write_text(json.dumps(reports, indent=2))
