"""The sync adapter and Orchestrator, and the plans' verification commands as written."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from ai_orchestrator import ChatGPTAdapter, Orchestrator, Platform, Task, TaskStatus
from ai_orchestrator.simulator import Fault, Simulator

#: These tests start a real subprocess (see tests/conftest.py for the lanes).
pytestmark = pytest.mark.integration

PLAN_COMMANDS = [
    # plan 04-01 verification 1
    "from ai_orchestrator.core import Task, Result, TaskStatus, TaskConstraints\n"
    "from ai_orchestrator.adapters import AsyncBasePlatformAdapter, BasePlatformAdapter\n"
    "from ai_orchestrator.streaming import StreamingResult, collect_stream\n"
    "print('All imports successful')",
    # plan 04-01 verification 3
    "from ai_orchestrator import Orchestrator\n"
    "o = Orchestrator()\nstatus = o.validate_environment()\n"
    "print(f'Adapters: {list(status.keys())}')",
    # plan 04-02 verifications
    "from ai_orchestrator.retry import retry_on_rate_limit\n"
    "from ai_orchestrator.adapters import AsyncChatGPTAdapter\n"
    "print('All ChatGPT modules import successfully')",
    "from ai_orchestrator.adapters import AsyncChatGPTAdapter\n"
    "adapter = AsyncChatGPTAdapter(api_key='test')\nprint(adapter.get_adapter_status())",
]


@pytest.mark.parametrize("code", PLAN_COMMANDS)
def test_plan_verification_commands_run(code: str) -> None:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()


# The simulator serves from this test's event loop, so blocking calls run in a thread.


async def test_sync_adapter_executes(sim: Simulator) -> None:
    sim.tokens_per_second = 0
    adapter = ChatGPTAdapter(api_key="sk-sync-test", base_url=sim.base_url)
    result = await asyncio.to_thread(adapter.execute, Task(prompt="hello"))
    assert result.status == TaskStatus.COMPLETED and result.output.startswith("[simulated]")
    assert result.metadata["output_tokens"] == 24 and result.cost > 0


async def test_sync_adapter_reports_failure_as_result(sim: Simulator) -> None:
    sim.tokens_per_second = 0
    sim.script(Fault.status(403))
    adapter = ChatGPTAdapter(api_key="sk-sync-test", base_url=sim.base_url)
    result = await asyncio.to_thread(adapter.execute, Task(prompt="x"))
    assert result.status == TaskStatus.FAILED and "HTTP 403" in (result.error or "")
    assert len(sim.requests) == 1


async def test_orchestrator_routes_and_refuses_unknown_platforms(sim: Simulator) -> None:
    sim.tokens_per_second = 0
    orch = Orchestrator({Platform.CHATGPT: ChatGPTAdapter(api_key="k", base_url=sim.base_url)})
    assert orch.validate_environment()["chatgpt"]["status"] == "working"
    assert (await asyncio.to_thread(orch.execute, Task(prompt="hi"))).success
    with pytest.raises(ValueError, match="no adapter for platform 'gemini'"):
        orch.execute(Task(prompt="hi", platform_hint=Platform.GEMINI))
