"""What the Claude Code CLI sends, and (when the CLI is installed) the CLI itself.

The request shape below was captured from ``claude -p --output-format
stream-json`` 2.1.197 pointed at the simulator with ``ANTHROPIC_BASE_URL``:
``HEAD /`` first, then ``POST /v1/messages?beta=true`` with ``x-api-key``,
``anthropic-version: 2023-06-01``, a long ``anthropic-beta`` list, system
blocks with ``cache_control``, a mid-conversation ``"system"`` message,
``thinking``, ``context_management``, ``output_config`` and ~25 tools.

The end-to-end test runs only where the CLI is installed (``claude`` on the
PATH, ``AI_ORCHESTRATOR_CLAUDE_BIN`` as workers find it, or ``CLAUDE_CODE_BIN``).
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import aiohttp
import pytest

from ai_orchestrator.simulator import Simulator

#: These tests start a real subprocess (see tests/conftest.py for the lanes).
pytestmark = pytest.mark.integration

CLAUDE_CODE_HEADERS = {
    "x-api-key": "sk-ant-sim-0123456789",
    "anthropic-version": "2023-06-01",
    "anthropic-beta": "claude-code-20250219,interleaved-thinking-2025-05-14,"
    "context-management-2025-06-27,mid-conversation-system-2026-04-07",
    "anthropic-dangerous-direct-browser-access": "true",
    "x-app": "cli",
    "User-Agent": "claude-cli/2.1.197 (external, sdk-cli)",
}


def _claude_code_body(path: Path, tool_result_for: str | None = None) -> dict[str, object]:
    ask = {
        "role": "user",
        "content": [
            {"type": "text", "text": "<system-reminder>\ncontext\n</system-reminder>\n"},
            {
                "type": "text",
                "text": f"Please.\nSIMULATOR: write file {path} with hello from the simulator",
                "cache_control": {"type": "ephemeral"},
            },
        ],
    }
    messages: list[dict[str, object]] = [
        ask,
        {"role": "system", "content": "Available agent types for the Agent tool: ..."},
    ]
    if tool_result_for is not None:
        call = {"type": "tool_use", "id": tool_result_for, "name": "Write", "input": {}}
        result = {"type": "tool_result", "tool_use_id": tool_result_for, "content": "File created"}
        messages += [
            {"role": "assistant", "content": [call]},
            {"role": "user", "content": [result]},
        ]
    return {
        "model": "claude-opus-4-8",
        "messages": messages,
        "system": [
            {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.197;"},
            {
                "type": "text",
                "text": "You are Claude Code.",
                "cache_control": {"type": "ephemeral"},
            },
        ],
        "tools": [
            {"name": name, "description": name, "input_schema": {"type": "object"}}
            for name in ("Bash", "Edit", "Read", "Write")
        ],
        "metadata": {"user_id": '{"device_id":"abc","session_id":"s"}'},
        "max_tokens": 64000,
        "thinking": {"type": "adaptive"},
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        "output_config": {"effort": "high"},
        "stream": True,
    }


def _events(raw: str) -> list[tuple[str, dict[str, object]]]:
    events = []
    for block in raw.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((lines["event"], json.loads(lines["data"])))
    return events


@pytest.mark.asyncio
async def test_claude_code_shaped_requests(sim: Simulator, tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    async with aiohttp.ClientSession(base_url=sim.url, headers=CLAUDE_CODE_HEADERS) as http:
        async with http.head("/") as resp:
            assert resp.status == 200
        async with http.post("/v1/messages?beta=true", json=_claude_code_body(target)) as resp:
            assert resp.status == 200 and resp.headers["request-id"] == "req_sim_0"
            events = _events(await resp.text())
        names = [name for name, _ in events]
        assert names[:2] == ["message_start", "content_block_start"] and names[-1] == "message_stop"
        block = events[1][1]["content_block"]
        assert block == {"type": "tool_use", "id": "toolu_sim_0", "name": "Write", "input": {}}
        [partial] = [d["delta"]["partial_json"] for n, d in events if n == "content_block_delta"]
        assert json.loads(partial) == {
            "file_path": str(target),
            "content": "hello from the simulator",
        }
        assert events[-2][1]["delta"]["stop_reason"] == "tool_use"

        body = _claude_code_body(target, tool_result_for="toolu_sim_0")
        async with http.post("/v1/messages?beta=true", json=body) as resp:
            events = _events(await resp.text())
        assert events[1][1]["content_block"]["type"] == "text"
        assert events[-2][1]["delta"]["stop_reason"] == "end_turn"
    assert [(r.api, r.api_key, r.status) for r in sim.requests] == [
        ("anthropic", "sk-ant-sim-0123456789", 200)
    ] * 2


def _claude_binary() -> str | None:
    from ai_orchestrator.providers.claude_code import find_claude_binary

    return find_claude_binary() or os.environ.get("CLAUDE_CODE_BIN")


@pytest.mark.skipif(_claude_binary() is None, reason="the Claude Code CLI is not installed")
@pytest.mark.asyncio
async def test_claude_code_cli_writes_a_file_through_the_simulator(tmp_path: Path) -> None:
    binary = _claude_binary()
    assert binary is not None
    target = tmp_path / "work" / "out.txt"
    target.parent.mkdir()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path / "home"),  # keep the user's real config out of it
        "ANTHROPIC_API_KEY": "sk-ant-sim-0123456789",
        "DISABLE_AUTOUPDATER": "1",
        "DISABLE_TELEMETRY": "1",
    }
    prompt = f"Please do this.\nSIMULATOR: write file {target} with hello from the simulator"
    async with Simulator(tokens_per_second=0, default_tokens=12) as sim:
        env["ANTHROPIC_BASE_URL"] = sim.url
        process = await asyncio.create_subprocess_exec(
            binary,
            "-p",
            prompt,
            "--output-format",
            "stream-json",
            "--verbose",
            "--permission-mode",
            "acceptEdits",
            cwd=target.parent,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=90)
        except asyncio.TimeoutError:
            process.kill()
            await process.wait()
            raise
    assert process.returncode == 0, stderr.decode(errors="replace")[-2000:]
    assert target.read_text() == "hello from the simulator"
    result = json.loads(stdout.decode().strip().splitlines()[-1])
    assert result["type"] == "result" and not result["is_error"]
    assert result["result"].startswith("[simulated]")
    assert {r.api for r in sim.requests} == {"anthropic"}
    assert any(r.fault is None and r.stream for r in sim.requests)
