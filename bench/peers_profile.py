"""Where a short task's time goes: ours against the bare one-activity workflow and the peers.

Usage: ``python -m bench.peers_profile [--tasks 150] [--open 50] [--rounds 2]
[--systems ours,bare,openai_agents] [--tokens-per-second N] [--py-spy DIR]``

Systems: ``ours`` and its variants (:data:`bench.peers_systems.OURS`), ``bare``,
``bare_streamed``, ``pydantic_ai``, ``openai_agents``, and ``openai_agents_streamed`` (its
short task streamed live, as ours always is). ``--tokens-per-second`` paces the simulator's
16-token answers as a model would (by default they come at once, which makes every fixed
cost of a task count for the most). Set ``TMPDIR`` to a memory file system (``/dev/shm``)
to take the dev server's disk writes out of the figures: on a disk, throughput is bound by
the server's synchronous writes; in memory, by CPU.

Starts its own file-backed dev server and simulator (like ``bench/run.py``) and the systems'
worker processes (:mod:`bench.peers_systems`), then, round after round (the systems' order
rotating), runs :func:`bench.peers.throughput` for each system and reads every task's
history. It prints, per system: tasks/s and CPU per task (worker, dev server, this process);
the median of each phase of a short task, from the history's event times and the client's
own submit and result times (submit -> started, the first workflow task's queue wait and run,
the activity's queue wait and run, the second workflow task's, the close, the result's
delivery); and one task's history by event kind (count, bytes). With ``--py-spy DIR``
(``pip install py-spy``), each worker process is sampled while it serves its throughput run
and the hottest functions are printed (raw stacks stay in DIR).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import statistics
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from openai import AsyncOpenAI
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client

from ai_orchestrator import TaskClient
from ai_orchestrator.local.devserver import DevServer, free_port
from ai_orchestrator.payloads.converter import data_converter
from ai_orchestrator.simulator import Simulator
from bench import peers
from bench.context import Bench
from bench.peers_systems import System, check_names, systems

SPY_RATE = 250
PHASES = (
    "submit -> started",
    "1st workflow task: wait",
    "1st workflow task: run",
    "activity: wait",
    "activity: run",
    "2nd workflow task: wait",
    "2nd workflow task: run",
    "last task -> closed",
    "closed -> result at client",
    "submit -> result",
)


def _at(event: HistoryEvent) -> float:
    return event.event_time.ToMicroseconds() / 1e6


def _kind(event: HistoryEvent) -> str:
    return (event.WhichOneof("attributes") or "?").removesuffix("_event_attributes")


def phases(events: list[HistoryEvent], submitted: float, resulted: float) -> dict[str, float]:
    """A short task's phases in ms, from its history and the client's wall-clock times."""
    at: dict[str, list[float]] = {}
    for event in events:
        at.setdefault(_kind(event), []).append(_at(event))
    wft_s, wft_r, wft_d = (
        at["workflow_task_scheduled"],
        at["workflow_task_started"],
        at["workflow_task_completed"],
    )
    closed = at["workflow_execution_completed"][0]
    spans = (
        at["workflow_execution_started"][0] - submitted,
        wft_r[0] - wft_s[0],
        wft_d[0] - wft_r[0],
        at["activity_task_started"][0] - at["activity_task_scheduled"][0],
        at["activity_task_completed"][0] - at["activity_task_started"][0],
        wft_r[-1] - wft_s[-1],
        wft_d[-1] - wft_r[-1],
        closed - wft_d[-1],
        resulted - closed,
        resulted - submitted,
    )
    return {name: span * 1000 for name, span in zip(PHASES, spans, strict=True)}


async def _histories(client: Client, timings: list[peers.Timing]) -> list[dict[str, float]]:
    gate = asyncio.Semaphore(20)

    async def one(timing: peers.Timing) -> dict[str, float]:
        workflow_id, submitted, resulted = timing
        async with gate:
            history = await client.get_workflow_handle(workflow_id).fetch_history()
        found = phases(list(history.events), submitted, resulted)
        found["workflow tasks"] = sum(_kind(e) == "workflow_task_completed" for e in history.events)
        return found

    return list(await asyncio.gather(*(one(t) for t in timings)))


async def _py_spy(pid: int | None, out: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        "py-spy",
        "record",
        "--pid",
        str(pid),
        "--rate",
        str(SPY_RATE),
        "--nonblocking",
        "--format",
        "raw",
        "--output",
        str(out),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )


#: Frames whose inclusive samples say where a worker's CPU goes (py-spy's function names).
KEY_FRAMES = (
    ("workflow activations", "_WorkflowWorker._handle_activation"),
    (
        "  new run: sandbox instance (module import, exec)",
        "_WorkflowWorker._create_workflow_instance",
    ),
    ("    of which compiling source (no .pyc)", "SourceLoader.source_to_code"),
    ("activities", "_ActivityWorker._handle_start_activity_task"),
    ("  provider call", "AsyncCompletions.create"),
    ("activity heartbeats", "_ActivityWorker._heartbeat_async"),
    ("payload visitor (codec pass)", "PayloadVisitor.visit"),
    ("SDK executor threads", "Thread._bootstrap"),
    ("event loop select", "EpollSelector.select"),
)


def hot(raw: Path, tasks: int, rate: int, top: int = 12) -> list[str]:
    """Where a worker's sampled CPU went, in ms per task: by key frame (inclusive), by the
    hottest functions (self), and by our own functions (inclusive)."""
    self_time: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        samples += n
        frames = [f.split(" (")[0] for f in stack.split(";")]
        where = [f.rsplit(" (", 1)[-1].split(":")[0] for f in stack.split(";")]
        self_time[f"{frames[-1]} ({where[-1]})"] += n
        named = zip(frames, where, strict=True)
        for frame in {f"{f} ({w})" if "ai_orchestrator" in w else f for f, w in named}:
            total[frame] += n

    def ms(n: int) -> str:
        return f"{n * 1000 / rate / tasks:6.2f} ms/task {100 * n / max(samples, 1):5.1f}%"

    lines = [f"  {samples} samples at {rate} Hz over {tasks} tasks: {ms(samples)}"]
    lines += [f"    {ms(total[frame])}  {label}" for label, frame in KEY_FRAMES]
    lines.append("  hottest (self):")
    lines += [f"    {ms(n)}  {frame}" for frame, n in self_time.most_common(top)]
    lines.append("  ai_orchestrator functions (inclusive):")
    ours = [(f, n) for f, n in total.most_common() if "ai_orchestrator/" in f and "cli/" not in f]
    lines += [f"    {ms(n)}  {frame}" for frame, n in ours[:top] if "__main__" not in frame]
    return lines


async def profile(b: Bench, names: tuple[str, ...], args: argparse.Namespace) -> None:
    results: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    phase_rows: dict[str, list[dict[str, float]]] = {n: [] for n in names}
    spy_dir = Path(args.py_spy) if args.py_spy else None
    async with systems(b, names) as all_:
        for round_ in range(args.rounds):
            order = names[round_ % len(names) :] + names[: round_ % len(names)]
            for name in order:
                system: System = all_[name]
                timings: list[peers.Timing] = []
                spy = None
                if spy_dir is not None:
                    spy_dir.mkdir(parents=True, exist_ok=True)
                    spy = await _py_spy(system.proc.pid, spy_dir / f"{name}-{round_}.txt")
                    await asyncio.sleep(1.0)
                figures = await peers.throughput(
                    b, system, args.tasks, args.open, timings, args.tokens_per_second
                )
                if spy is not None:
                    spy.send_signal(signal.SIGINT)
                    await spy.wait()
                results[name].append(figures)
                phase_rows[name] += await _histories(b.client, timings)
                print(
                    f"round {round_ + 1} {name}: {figures['tasks_per_s']:.1f} tasks/s",
                    file=sys.stderr,
                )
        kinds = {
            n: await peers.history(b.client, await all_[n].run("profile history")) for n in names
        }
    print(report(names, results, phase_rows, kinds))
    if spy_dir is not None:
        for name in names:
            for raw in sorted(spy_dir.glob(f"{name}-*.txt")):
                print(f"\npy-spy, {name} worker ({raw.name}):")
                print("\n".join(hot(raw, args.tasks, SPY_RATE)))


def report(
    names: tuple[str, ...],
    results: dict[str, list[dict[str, Any]]],
    phase_rows: dict[str, list[dict[str, float]]],
    kinds: dict[str, dict[str, Any]],
) -> str:
    def cell(values: list[float]) -> str:
        return f"{statistics.median(values):8.1f} [{min(values):.1f}-{max(values):.1f}]"

    lines = [
        f"{'per system (median [min-max] over rounds)':42}" + "".join(f"{n:>26}" for n in names)
    ]
    for key in (
        "tasks_per_s",
        "worker_cpu_ms_per_task",
        "server_cpu_ms_per_task",
        "bench_cpu_ms_per_task",
    ):
        lines.append(
            f"{key:42}" + "".join(f"{cell([r[key] for r in results[n]]):>26}" for n in names)
        )
    lines += ["", f"{'server requests per task (median)':42}" + "".join(f"{n:>26}" for n in names)]
    operations: dict[str, None] = {}
    for name in names:
        for r in results[name]:
            operations.update(dict.fromkeys(r["server_requests_by_operation"]))
    for op in operations:
        by_op = [
            [r["server_requests_by_operation"].get(op, 0.0) for r in results[n]] for n in names
        ]
        lines.append(f"{op:42}" + "".join(f"{statistics.median(v):26.2f}" for v in by_op))
    lines += [
        "",
        f"{'phase, ms (median [p10-p90] over tasks)':42}" + "".join(f"{n:>26}" for n in names),
    ]
    for phase in (*PHASES, "workflow tasks"):
        row = f"{phase:42}"
        for name in names:
            values = sorted(p[phase] for p in phase_rows[name])
            p10, p90 = values[len(values) // 10], values[(9 * len(values)) // 10]
            row += f"{f'{statistics.median(values):.1f} [{p10:.1f}-{p90:.1f}]':>26}"
        lines.append(row)
    lines += ["", "one short task's history: event kind: count / bytes"]
    for name in names:
        h = kinds[name]
        parts = [f"{k} {h['kinds'][k]}/{h['kind_bytes'][k]}" for k in sorted(h["kinds"])]
        lines.append(f"  {name} ({h['events']} events, {h['bytes']} bytes): " + ", ".join(parts))
    return "\n".join(lines)


async def main(args: argparse.Namespace) -> None:
    names = tuple(args.systems.split(","))
    check_names(names)  # before the dev server starts
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        server = DevServer(
            db_file=Path(tmp) / "profile.db",
            log_file=Path(tmp) / "server.log",
            extra_args=("--metrics-port", str(port)),
        )
        async with server, Simulator(tokens_per_second=0, default_tokens=16) as sim:
            client = await Client.connect(server.target, data_converter=data_converter())
            openai_client = AsyncOpenAI(api_key="sk-bench", base_url=sim.base_url, max_retries=0)
            b = Bench(server, client, sim, openai_client, TaskClient(client), "-", "-", False)
            b.metrics_url = f"http://127.0.0.1:{port}/metrics"
            await profile(b, names, args)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", type=int, default=150)
    parser.add_argument("--open", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--systems", default="ours,bare,openai_agents")
    parser.add_argument(
        "--tokens-per-second",
        type=float,
        default=0,
        help="pace the simulator's 16-token answers like a model (0: answer at once)",
    )
    parser.add_argument("--py-spy", default="", help="sample each worker; raw stacks go here")
    asyncio.run(main(parser.parse_args()))
