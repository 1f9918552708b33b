"""What every scenario gets: the server, the simulator, clients, and process helpers."""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from openai import AsyncOpenAI
from temporalio.client import Client

from ai_orchestrator import TaskClient
from ai_orchestrator.local.devserver import DevServer
from ai_orchestrator.simulator import RecordedRequest, Simulator

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Bench:
    server: DevServer
    client: Client
    sim: Simulator
    openai: AsyncOpenAI
    tasks: TaskClient
    queue: str
    base_queue: str
    smoke: bool
    _drains: list[asyncio.Task[None]] = field(default_factory=list)
    #: The dev server's Prometheus endpoint (see :mod:`.server_profile`).
    metrics_url: str | None = None

    def env(self, queue: str, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "TEMPORAL_"))}
        env.update(
            TEMPORAL_ADDRESS=self.server.target,
            OPENAI_BASE_URL=self.sim.base_url,
            OPENAI_API_KEY="sk-bench",
            AI_ORCHESTRATOR_TASK_QUEUE=queue,
            PYTHONPATH=str(ROOT),
            **extra,
        )
        return env

    async def spawn_ready(
        self, queue: str, timeout: float = 60, **extra: str
    ) -> asyncio.subprocess.Process:
        """An ``ai-orchestrator worker`` process, returned once it says it is listening;
        ``extra`` is added to its environment."""
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "ai_orchestrator",
            "worker",
            env=self.env(queue, **extra),
            cwd=ROOT,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        assert proc.stderr is not None

        async def listening() -> None:
            assert proc.stderr is not None
            while b"worker listening" not in await proc.stderr.readline():
                if proc.returncode is not None:
                    raise RuntimeError("worker exited before it was ready")

        await asyncio.wait_for(listening(), timeout)
        # Keep draining, or a chatty worker would block on a full pipe.
        self._drains.append(asyncio.create_task(_drain(proc.stderr)))
        return proc

    async def spawn(self, module: str, *args: str, queue: str) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            module,
            *args,
            env=self.env(queue),
            cwd=ROOT,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )


async def _drain(stream: asyncio.StreamReader) -> None:
    while await stream.readline():
        pass


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident memory (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.kill()
        await proc.wait()


def prompt_of(record: RecordedRequest) -> str:
    """The user prompt of a request the simulator recorded (how scenarios find their own)."""
    for message in reversed(record.messages):
        if message.get("role") == "user" and isinstance(message.get("content"), str):
            return str(message["content"])
    return ""
