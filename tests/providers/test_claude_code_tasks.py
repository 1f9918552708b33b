"""Claude Code sessions as durable tasks: the real CLI, run by workers, against the simulator.

A task routed to ``claude_code`` runs the installed ``claude`` CLI headless in
a per-task folder; its text streams like any task's, its cost is the CLI's,
the files it writes are in the result, a cancel stops it, and a retry after
its worker died resumes the session instead of starting over. Skipped only
when the CLI is not installed (.ci/run installs it from the npm registry).
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest
from temporalio.client import Client

from ai_orchestrator import Platform, Task, TaskClient, TaskConstraints, TaskStatus
from ai_orchestrator.local.devserver import DevServer
from ai_orchestrator.providers.claude_code import BINARY_ENV, ClaudeCodeProvider, find_claude_binary
from ai_orchestrator.simulator import Simulator

from ..conftest import FAST_RETRY, running_worker, unique
from ..support.helpers import raw_history
from ..support.processes import spawn_ready_worker, stop, worker_env

BINARY = find_claude_binary()
if BINARY is None:
    pytest.skip(
        "the claude CLI (npm @anthropic-ai/claude-code) is not installed", allow_module_level=True
    )

KEY = "sk-ant-sim-0123456789durableclaude"


def _env(sim: Simulator, home: Path) -> dict[str, str]:
    home.mkdir(exist_ok=True)  # the CLI's config and sessions, away from the user's own
    return {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(home),
        "ANTHROPIC_API_KEY": KEY,
        "ANTHROPIC_BASE_URL": sim.url,
    }


def _task(prompt: str) -> Task:
    return Task(
        prompt=prompt,
        platform_hint=Platform.CLAUDE_CODE,
        task_id=unique("cct"),
        constraints=TaskConstraints(model="claude-sonnet-4-6", timeout_seconds=120),
    )


async def test_a_session_streams_reports_cost_and_files(
    client: Client, queue: str, sim: Simulator, tasks: TaskClient, tmp_path: Path
) -> None:
    sim.tokens_per_second, sim.default_tokens = 100, 12
    target = tmp_path / "out" / "hello.txt"
    target.parent.mkdir()
    provider = ClaudeCodeProvider(
        tmp_path / "work", binary=BINARY, env=_env(sim, tmp_path / "home"), add_dirs=[target.parent]
    )
    async with running_worker(client, queue, sim, providers={Platform.CLAUDE_CODE: provider}):
        result = await tasks.execute(
            _task(f"make the file\nSIMULATOR: write file {target} with durable hello")
        )
    assert result.status == TaskStatus.COMPLETED, result.error
    assert result.platform == Platform.CLAUDE_CODE
    assert result.output.startswith("[simulated]")
    assert result.cost > 0 and result.metadata["session_id"]
    assert target.read_text().strip() == "durable hello"
    assert str(target) in result.files_created
    assert {r.api for r in sim.requests} == {"anthropic"}
    assert KEY in str(sim.requests[-1].api_key or sim.requests[-1].authorization)  # really used
    assert KEY.encode() not in await raw_history(client, result.task.task_id or "")


async def test_cancel_stops_the_session_and_keeps_its_text(
    client: Client, queue: str, sim: Simulator, tasks: TaskClient, tmp_path: Path
) -> None:
    sim.tokens_per_second, sim.default_tokens = 10, 300  # 30 s if left alone
    provider = ClaudeCodeProvider(
        tmp_path / "work", binary=BINARY, env=_env(sim, tmp_path / "home"), grace=2.0
    )
    async with running_worker(client, queue, sim, providers={Platform.CLAUDE_CODE: provider}):
        task_id = await tasks.submit_task(_task("a long agentic answer"))
        main = lambda: [r for r in sim.requests if r.stream]  # noqa: E731  (the title call is not)
        await sim.wait_until(lambda: bool(main()) and main()[-1].tokens_sent >= 10, timeout=60)
        assert await tasks.cancel_task(task_id)
        result = await tasks.get_result(task_id, timeout=30)
    assert result.status == TaskStatus.CANCELLED
    assert (result.partial_output or "").startswith("[simulated]")
    await sim.wait_until(lambda: main()[-1].disconnected, timeout=10)  # the CLI was stopped


async def test_a_retry_after_a_dead_worker_resumes_the_session(
    temporal: DevServer, queue: str, sim: Simulator, tasks: TaskClient, tmp_path: Path
) -> None:
    """Two worker processes on one host share the task folder and the CLI's sessions."""
    sim.tokens_per_second, sim.default_tokens = 10, 80
    env = worker_env(temporal.target, queue, None, None)
    env.update(_env(sim, tmp_path / "home"))
    env.update({BINARY_ENV: BINARY or "", "AI_ORCHESTRATOR_HOME": str(tmp_path / "data")})
    workers = [await spawn_ready_worker(env), await spawn_ready_worker(env)]
    try:
        task_id = await tasks.submit_task(_task("survive a crash mid-session"))
        streamed = lambda: [r for r in sim.requests if r.stream]  # noqa: E731
        await sim.wait_until(lambda: any(r.tokens_sent >= 15 for r in streamed()), timeout=60)
        await asyncio.sleep(FAST_RETRY.heartbeat_timeout_seconds)  # a heartbeat named the session
        desc = await tasks.client.get_workflow_handle(task_id).describe()
        holder = desc.raw_description.pending_activities[0].last_worker_identity
        victim = next(w for w in workers if holder.startswith(f"{w.pid}@"))
        victim.send_signal(signal.SIGKILL)
        await victim.wait()
        result = await tasks.get_result(task_id, timeout=90)
    finally:
        for worker in workers:
            await stop(worker)
    assert result.status == TaskStatus.COMPLETED, result.error
    assert result.metadata["attempts"] == 2
    # The retry resumed: its request carried the first attempt's conversation.
    last = streamed()[-1]
    assert len(last.messages) > 1, "the retry started a new session instead of resuming"
