"""Real worker and CLI processes, for tests where a process must die or be a user's."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time

from temporalio.client import Client

from .forked import ROOT, fork, forked_processes

#: A process of ours starts with none of the caller's provider or Temporal settings.
_PROVIDER_AND_TEMPORAL_VARS = ("OPENAI_", "TEMPORAL_", "ANTHROPIC_", "GEMINI_", "GOOGLE_")


def worker_env(
    target: str, queue: str, base_url: str | None, api_key: str | None
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_PROVIDER_AND_TEMPORAL_VARS)}
    env.update(TEMPORAL_ADDRESS=target, AI_ORCHESTRATOR_TASK_QUEUE=queue, PYTHONUNBUFFERED="1")
    if base_url:
        env["OPENAI_BASE_URL"] = base_url
    if api_key:
        env["OPENAI_API_KEY"] = api_key
    return env


async def spawn(*args: str, env: dict[str, str], fresh: bool = False) -> asyncio.subprocess.Process:
    """A process of ours (``-m ai_orchestrator ...``: forked, see :mod:`.forkserver`,
    unless ``fresh``) or any other Python command, with stdout and stderr piped."""
    if args[:2] == ("-m", "ai_orchestrator") and forked_processes() and not fresh:
        return await fork(*args[2:], env=env, cwd=ROOT)  # type: ignore[return-value]
    return await asyncio.create_subprocess_exec(
        sys.executable,
        *args,
        env=env,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def run_cli(*args: str, env: dict[str, str], timeout: float = 90) -> tuple[int, str, str]:
    proc = await spawn("-m", "ai_orchestrator", *args, env=env)
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    return proc.returncode or 0, out.decode(), err.decode()


async def stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.kill()
        await proc.wait()


async def spawn_ready_worker(
    env: dict[str, str], timeout: float = 60, *, fresh: bool = False
) -> asyncio.subprocess.Process:
    """A ``worker`` process, returned once it logs that it is polling; stderr keeps draining.
    ``fresh``: a new interpreter, as a user starts it, instead of a fork."""
    proc = await spawn("-m", "ai_orchestrator", "worker", env=env, fresh=fresh)
    assert proc.stderr is not None

    async def listening() -> None:
        assert proc.stderr is not None
        while b"worker listening" not in (line := await proc.stderr.readline()):
            if not line:  # its stderr closed: it is gone
                raise RuntimeError(f"worker exited ({await proc.wait()}) before it was ready")

    await asyncio.wait_for(listening(), timeout)
    _DRAINS.add(asyncio.create_task(_drain(proc.stderr)))
    return proc


_DRAINS: set[asyncio.Task[None]] = set()


async def _drain(stream: asyncio.StreamReader) -> None:
    while await stream.readline():
        pass


async def sigkill_holder(
    client: Client, task_id: str, workers: list[asyncio.subprocess.Process]
) -> float:
    """SIGKILL the worker process running the task's attempt; when it died (monotonic)."""
    desc = await client.get_workflow_handle(task_id).describe()
    holder = desc.raw_description.pending_activities[0].last_worker_identity
    victim = next(w for w in workers if holder.startswith(f"{w.pid}@"))
    victim.send_signal(signal.SIGKILL)
    await victim.wait()
    return time.monotonic()
