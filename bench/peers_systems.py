"""The systems of the peers scenario (:mod:`bench.peers`): each one's worker process, task
queue and client, how it runs a task, and how its live stream is read."""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from temporalio.client import Client

from ai_orchestrator import RetrySettings, Task, TaskClient, TaskConstraints

from .context import ROOT, Bench

SYSTEMS = ("ours", "pydantic_ai", "openai_agents", "bare")
PEERS = ("pydantic_ai", "openai_agents", "bare")
#: Ours, and its variants for the profile (:mod:`bench.peers_profile`): ``..._handle`` waits
#: for the result with a plain workflow handle instead of ``TaskClient.get_result`` (which
#: also follows the history, to tell a jammed run); ``ours_passthrough...`` has a worker that
#: does not re-import the workflow module per run (:mod:`bench.peers_workers`).
OURS = ("ours", "ours_handle", "ours_passthrough", "ours_passthrough_handle")
#: The bare workflow whose activity streams the answer (with usage) as ours does, on the
#: bare worker: the floor for a short task that streams (the profile's ``bare_streamed``).
BARE = ("bare", "bare_streamed")
#: The OpenAI Agents integration's short task streamed live, as ours always is (its Workflow
#: Stream, as in the live-lag case), for the profile: a short task at equal features.
#: (pydantic-ai's streamed run waits for a reader's acknowledgement before it closes, so
#: without readers it measures that wait, not the system.)
STREAMED = ("openai_agents_streamed",)
#: Every name a system can be started under.
KNOWN = tuple(dict.fromkeys((*SYSTEMS, *OURS, *BARE, *STREAMED)))


def check_names(names: tuple[str, ...]) -> None:
    """Refuse a name no worker serves, before any process starts (it would wait forever
    on a workflow type nobody registered)."""
    unknown = [n for n in names if n not in KNOWN]
    if unknown:
        raise ValueError(f"unknown system {', '.join(unknown)}; known: {', '.join(KNOWN)}")


@dataclass
class System:
    """One system's worker process, queue and client, with its way to run a task."""

    name: str
    queue: str
    client: Client
    proc: asyncio.subprocess.Process
    log: deque[str] = field(default_factory=lambda: deque(maxlen=40))
    tasks: TaskClient | None = None
    plain_result: bool = False

    async def start(self, prompt: str, *, stream: bool = False) -> str:
        """Starts a task; its workflow id."""
        if self.tasks is not None:
            task = Task(prompt=prompt, constraints=TaskConstraints(timeout_seconds=300))
            return await self.tasks.submit_task(task)
        workflow_id = f"peers-{self.name}-{uuid.uuid4().hex[:12]}"
        await self.client.start_workflow(
            _workflow_type(self.name, stream), prompt, id=workflow_id, task_queue=self.queue
        )
        return workflow_id

    async def result(self, workflow_id: str) -> str:
        if self.tasks is not None and not self.plain_result:
            result = await self.tasks.get_result(workflow_id, timeout=None)
            if not result.success:
                raise RuntimeError(f"ours: task {workflow_id} failed: {result.error}")
            return result.output
        return str(await self.client.get_workflow_handle(workflow_id).result())

    async def run(self, prompt: str) -> str:
        """A short task, start to result; its workflow id."""
        workflow_id = await self.start(prompt)
        if not await self.result(workflow_id):
            raise RuntimeError(f"{self.name}: empty answer for {workflow_id}")
        return workflow_id


def _workflow_type(system: str, stream: bool) -> str:
    from . import peers_workers as w

    if system in STREAMED:
        system, stream = system.removesuffix("_streamed"), True

    if system == "bare":
        return "BenchBare"
    if system == "bare_streamed":
        return "BenchBareStreamed"
    if system == "pydantic_ai":
        return w.PYDANTIC_STREAM if stream else w.PYDANTIC_SHORT
    return w.AGENTS_STREAM if stream else w.AGENTS_SHORT


async def spawn(b: Bench, system: str, queue: str, log: deque[str]) -> asyncio.subprocess.Process:
    """The system's worker process, once it says it polls; its stderr goes on into ``log``."""
    worker = "bare" if system in BARE else system.removesuffix("_handle").removesuffix("_streamed")
    command = (
        ["-m", "ai_orchestrator", "worker"]
        if worker == "ours"
        else ["-m", "bench.peers_workers", worker]
    )
    hb = RetrySettings().heartbeat_timeout_seconds
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *command,
        env=b.env(queue, PEERS_HEARTBEAT_SECONDS=str(hb), OPENAI_AGENTS_DISABLE_TRACING="1"),
        cwd=ROOT,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    stderr = proc.stderr

    async def listening() -> None:
        while b"worker listening" not in (line := await stderr.readline()):
            if not line:
                raise RuntimeError(f"{system} worker exited before it was ready:\n{''.join(log)}")
            log.append(line.decode(errors="replace"))

    await asyncio.wait_for(listening(), 90)

    async def drain() -> None:
        while line := await stderr.readline():
            log.append(line.decode(errors="replace"))

    b._drains.append(asyncio.create_task(drain()))
    return proc


async def _client(b: Bench, system: str) -> Client:
    if system in (*OURS, *BARE):
        return b.client
    from . import peers_workers as w

    plugin = (
        w.pydantic_plugin()
        if system == "pydantic_ai"
        else w.agents_plugin(b.sim.base_url, "sk-bench")
    )
    return await Client.connect(b.server.target, plugins=[plugin])


@asynccontextmanager
async def systems(b: Bench, names: tuple[str, ...] = SYSTEMS) -> AsyncIterator[dict[str, System]]:
    """Every system's worker started (in parallel) and warmed up; all stopped on exit."""
    check_names(names)
    tag = uuid.uuid4().hex[:6]
    started: dict[str, System] = {}

    async def one(name: str) -> None:
        queue, log = f"peers-{name}-{tag}", deque[str](maxlen=40)
        proc = await spawn(b, name, queue, log)
        system = System(name, queue, await _client(b, name), proc, log)
        if name in OURS:
            system.tasks = TaskClient(b.client, task_queue=queue)
            system.plain_result = name.endswith("_handle")
        started[name] = system

    try:
        results = await asyncio.gather(*(one(n) for n in names), return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            raise failed[0]
        for system in started.values():  # first workflows, first connections: not measured
            for i in range(2):
                await system.run(f"peers warm-up {i}")
        yield {n: started[n] for n in names}
    finally:
        for system in started.values():
            if system.proc.returncode is None:
                system.proc.kill()
                await system.proc.wait()
            if system.tasks is not None:
                await system.tasks.close()


Reader = Callable[[System, str, list[tuple[float, int]]], Awaitable[None]]


async def _read_ours(system: System, workflow_id: str, got: list[tuple[float, int]]) -> None:
    assert system.tasks is not None
    text = ""
    async for chunk in system.tasks.stream_result(workflow_id):
        text += chunk
        got.append((time.monotonic(), len(text.split())))


async def _read_pydantic(system: System, workflow_id: str, got: list[tuple[float, int]]) -> None:
    from pydantic_ai.durable_exec.temporal import stream_agent_events
    from pydantic_ai.messages import PartDeltaEvent, PartStartEvent, TextPart, TextPartDelta

    from .peers_workers import TOPIC

    handle = system.client.get_workflow_handle(workflow_id)
    text = ""
    async with stream_agent_events(system.client, handle, TOPIC) as events:
        async for event in events:
            piece = ""
            if isinstance(event, PartStartEvent) and isinstance(event.part, TextPart):
                piece = event.part.content
            elif isinstance(event, PartDeltaEvent) and isinstance(event.delta, TextPartDelta):
                piece = event.delta.content_delta
            if piece:
                text += piece
                got.append((time.monotonic(), len(text.split())))


async def _read_agents(system: System, workflow_id: str, got: list[tuple[float, int]]) -> None:
    from temporalio.contrib.workflow_streams import WorkflowStreamClient

    from .peers_workers import TOPIC

    text = ""
    subscriber = WorkflowStreamClient.create(system.client, workflow_id)
    async for item in subscriber.subscribe(TOPIC):
        kind = item.data.get("type") if isinstance(item.data, dict) else None
        if kind == "response.output_text.delta":
            text += item.data.get("delta", "")
            got.append((time.monotonic(), len(text.split())))
        elif kind == "response.completed":
            break


READERS: dict[str, Reader] = {
    "ours": _read_ours,
    "pydantic_ai": _read_pydantic,
    "openai_agents": _read_agents,
}
