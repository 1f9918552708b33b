"""Claude Code sessions: the real ``claude`` CLI, driven by the provider, against the simulator.

No mock of the CLI: the provider starts the installed binary with
``ANTHROPIC_BASE_URL`` pointing at the simulator's Anthropic endpoint, which
answers ``SIMULATOR: write file PATH with TEXT`` with a ``Write`` tool call. The
CLI is found like the worker finds it (``AI_ORCHESTRATOR_CLAUDE_BIN`` or
``claude`` on PATH; ``CLAUDE_CODE_BIN`` too, as the simulator's own test uses);
without it these tests are skipped, and only then.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from ai_orchestrator import Platform, Task
from ai_orchestrator.providers import FINISH_LENGTH, FINISH_STOP
from ai_orchestrator.providers.claude_code import (
    ClaudeCodeError,
    ClaudeCodeProvider,
    ClaudeCodeStream,
    find_claude_binary,
)
from ai_orchestrator.simulator import Fault, Simulator

from ..conftest import unique

BINARY = find_claude_binary() or find_claude_binary(os.environ.get("CLAUDE_CODE_BIN"))
if BINARY is None:
    pytest.skip(
        "the claude CLI (npm @anthropic-ai/claude-code) is not installed", allow_module_level=True
    )

KEY = "sk-ant-sim-0123456789claudecode"
MODEL = "claude-sonnet-4-6"


@pytest.fixture
def sim_options() -> dict[str, Any]:
    return {"tokens_per_second": 0, "default_tokens": 12}


@pytest.fixture
def provider(sim: Simulator, tmp_path: Path) -> ClaudeCodeProvider:
    home = tmp_path / "home"  # the CLI's config and sessions, away from the user's own
    home.mkdir()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(home),
        "ANTHROPIC_API_KEY": KEY,
        "ANTHROPIC_BASE_URL": sim.url,
    }
    return ClaudeCodeProvider(tmp_path / "work", binary=BINARY, env=env, grace=2.0)


def _task(prompt: str, **fields: object) -> Task:
    return Task(prompt=prompt, platform_hint=Platform.CLAUDE_CODE, task_id=unique("cc"), **fields)


async def _run(stream: ClaudeCodeStream) -> str:
    async with stream:
        return "".join([delta async for delta in stream])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _texts(messages: list[dict[str, object]]) -> str:
    return json.dumps(messages)


async def test_a_session_streams_writes_a_file_and_resumes(
    provider: ClaudeCodeProvider, sim: Simulator, tmp_path: Path
) -> None:
    spec = tmp_path / "spec.md"
    spec.write_text("greet")
    task = _task("Write the greeting.", files=[str(spec)])
    workdir = provider.workdir(task)
    target = workdir / "out.txt"
    task = task.model_copy(
        update={"prompt": f"Write the greeting.\nSIMULATOR: write file {target} with hello there"}
    )

    stream = provider.stream(task, MODEL)
    text = await _run(stream)

    assert target.read_text() == "hello there"
    assert stream.files_created == [str(target)]
    assert text.startswith("[simulated]") and stream.chunks > 1  # real partial deltas
    assert stream.finish_reason == FINISH_STOP and stream.vendor_finish_reason == "end_turn"
    assert stream.session_id and stream.tool_uses == 1 and stream.num_turns == 2
    assert stream.cost_usd is not None and stream.cost_usd > 0
    assert stream.usage is not None and stream.usage.completion_tokens > 0
    assert stream.model == MODEL and stream.result_text == text
    assert stream.returncode == 0
    assert [r.model for r in sim.requests] == [MODEL, MODEL]
    assert all(r.api_key == KEY for r in sim.requests)
    assert f"Files:\\n- {spec}" in json.dumps(sim.requests[0].system)  # listed, left in place

    # The next attempt (a retry after a dead worker) resumes the same session.
    first = stream.session_id
    sim.reset()
    again = provider.stream(task, MODEL, resume_session=first)
    more = await _run(again)
    assert again.resumed and again.session_id == first
    assert again.finish_reason == FINISH_STOP and more.startswith("[simulated]")
    [request] = sim.requests
    sent = _texts(request.messages)
    assert "Write the greeting." in sent and "toolu_sim_0" in sent  # the earlier conversation
    assert "was interrupted" in sent  # and the resume prompt after it
    assert again.files_created == []  # nothing written by this attempt


async def test_a_session_the_cli_no_longer_has_starts_afresh(
    provider: ClaudeCodeProvider, sim: Simulator
) -> None:
    stream = provider.stream(
        _task("Say something."), MODEL, resume_session="2e80f15f-a67d-4be0-aa4a-5405cfdb08f6"
    )
    text = await _run(stream)
    assert text.startswith("[simulated]") and stream.finish_reason == FINISH_STOP
    assert not stream.resumed and stream.session_id != "2e80f15f-a67d-4be0-aa4a-5405cfdb08f6"
    [request] = sim.requests
    assert "Say something." in _texts(request.messages)


async def test_max_turns_is_a_length_stop(provider: ClaudeCodeProvider, sim: Simulator) -> None:
    task = _task("x", metadata={"max_turns": 1})
    target = provider.workdir(task) / "a.txt"
    task = task.model_copy(update={"prompt": f"SIMULATOR: write file {target} with x"})
    stream = provider.stream(task, MODEL)
    assert await _run(stream) == ""
    assert stream.finish_reason == FINISH_LENGTH
    assert stream.vendor_finish_reason == "error_max_turns"
    assert stream.files_created == [str(target)]


async def test_api_errors_are_classified(provider: ClaudeCodeProvider, sim: Simulator) -> None:
    sim.script(Fault.overloaded())
    stream = provider.stream(_task("hello"), MODEL)
    with pytest.raises(ClaudeCodeError) as caught:
        await _run(stream)
    assert caught.value.retryable and caught.value.status == 529
    assert len(sim.requests) == 1  # the CLI's own retries are off: Temporal retries

    sim.script(Fault.status(401))
    stream = provider.stream(_task("hello"), MODEL)
    with pytest.raises(ClaudeCodeError) as caught:
        await _run(stream)
    assert not caught.value.retryable and caught.value.status == 401
    assert "Invalid API key" in str(caught.value)
    assert stream.chars == 0  # the CLI's synthetic error text is not the answer


async def test_close_mid_run_stops_the_process(
    provider: ClaudeCodeProvider, sim: Simulator
) -> None:
    sim.script(Fault.stall(after_tokens=3, seconds=60))
    sim.tokens_per_second = 50
    stream = provider.stream(_task("Take your time."), MODEL)
    got: list[str] = []

    async def read() -> None:
        async with stream:
            async for delta in stream:
                got.append(delta)

    reader = asyncio.create_task(read())
    await sim.wait_for_tokens_sent(0, 3, timeout=60)
    await asyncio.sleep(0.5)  # the three tokens reach the CLI and come out as deltas
    assert stream._process is not None
    pid = stream._process.pid
    reader.cancel()  # what an activity cancel does: __aexit__ calls close()
    with pytest.raises(asyncio.CancelledError):
        await reader
    # SIGINT was enough, the ladder's first rung: the CLI aborted its request and
    # exited by itself (0; 130 or -SIGINT would do too). Had it needed SIGTERM it
    # would end 143, SIGKILL -9.
    assert stream.returncode in (0, 128 + signal.SIGINT, -signal.SIGINT), stream.returncode
    assert not _alive(pid) and stream.returncode is not None
    await sim.wait_until(lambda: sim.requests[0].disconnected, timeout=5)  # billing stopped
    assert not sim.requests[0].finished
    assert "".join(got).startswith("[simulated]")  # what it printed before is kept
    assert stream.session_id is not None
