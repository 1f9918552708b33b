"""Claude Code's stream-json, as recorded from the real CLI, mapped by the provider.

The lines below were recorded from ``claude -p ... --output-format stream-json
--verbose`` 2.1.197 against the simulator (``basic`` without, ``partial`` with
``--include-partial-messages``; ``maxturns`` with ``--max-turns 1``; ``auth``
and ``overloaded`` with a scripted 401 and 529; ``unknown`` resuming a session
that does not exist), trimmed of fields the provider does not read. They are
replayed through a real subprocess, a two-line shell script standing in for the
CLI, so opening, reading, exit codes and stopping are exercised too; the real
CLI is driven in tests/integration/test_claude_code.py.
"""

# ruff: noqa: E501 - recorded lines are kept whole

from __future__ import annotations

import asyncio
import json
import os
import signal
import stat
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from ai_orchestrator import Platform, Task, TaskConstraints
from ai_orchestrator.errors import (
    CONNECTION_FAILED,
    INCOMPLETE_STREAM,
    PROVIDER_REJECTED,
    PROVIDER_UNAVAILABLE,
    QUOTA_EXHAUSTED,
    RATE_LIMITED,
    IncompleteStreamError,
    classify,
)
from ai_orchestrator.providers import FINISH_LENGTH, FINISH_STOP
from ai_orchestrator.providers.claude_code import (
    QUIET_ENV,
    ClaudeCodeError,
    ClaudeCodeNotFoundError,
    ClaudeCodeProvider,
    ClaudeCodeStream,
    RetryableClaudeCodeError,
    _result_error,
    workdir_name,
)

#: These tests start a real subprocess (see tests/conftest.py for the lanes).
pytestmark = pytest.mark.integration

RECORDED = {
    "basic": r"""
{"type":"system","subtype":"init","cwd":"/w","session_id":"2e80f15f-a67d-4be0-aa4a-5405cfdb08f6","model":"claude-opus-4-8[1m]","permissionMode":"acceptEdits","apiKeySource":"ANTHROPIC_API_KEY","claude_code_version":"2.1.197","analytics_disabled":true,"product_feedback_disabled":true}
{"type":"assistant","message":{"id":"msg_sim_0","type":"message","role":"assistant","model":"claude-opus-4-8","content":[{"type":"tool_use","id":"toolu_sim_0","name":"Write","input":{"file_path":"/w/out.txt","content":"hello from the simulator"}}],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":1830,"output_tokens":1,"cache_creation_input_tokens":0,"cache_read_input_tokens":0}},"parent_tool_use_id":null,"session_id":"2e80f15f-a67d-4be0-aa4a-5405cfdb08f6","request_id":"req_sim_0"}
{"type":"user","message":{"role":"user","content":[{"tool_use_id":"toolu_sim_0","type":"tool_result","content":"File created successfully at: /w/out.txt (file state is current in your context — no need to Read it back)"}]},"parent_tool_use_id":null,"session_id":"2e80f15f-a67d-4be0-aa4a-5405cfdb08f6","tool_use_result":{"type":"create","filePath":"/w/out.txt","content":"hello from the simulator","structuredPatch":[],"originalFile":null,"userModified":false}}
{"type":"assistant","message":{"id":"msg_sim_1","type":"message","role":"assistant","model":"claude-opus-4-8","content":[{"type":"text","text":"[simulated] linen rain basil reed dune tide field harbor willow valley brick"}],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":1830,"output_tokens":1,"cache_creation_input_tokens":0,"cache_read_input_tokens":0}},"parent_tool_use_id":null,"session_id":"2e80f15f-a67d-4be0-aa4a-5405cfdb08f6","request_id":"req_sim_1"}
{"type":"result","subtype":"success","is_error":false,"api_error_status":null,"duration_ms":185,"num_turns":2,"result":"[simulated] linen rain basil reed dune tide field harbor willow valley brick","stop_reason":"end_turn","session_id":"2e80f15f-a67d-4be0-aa4a-5405cfdb08f6","total_cost_usd":0.018725,"usage":{"input_tokens":3660,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":17},"terminal_reason":"completed"}
""",
    "partial": r"""
{"type":"system","subtype":"init","cwd":"/w","session_id":"b325c976-c76a-454d-992d-f694edd8c846","model":"claude-sonnet-4-6","permissionMode":"acceptEdits","apiKeySource":"ANTHROPIC_API_KEY","claude_code_version":"2.1.197","analytics_disabled":true,"product_feedback_disabled":true}
{"type":"stream_event","event":{"type":"message_start","message":{"id":"msg_sim_0","type":"message","role":"assistant","model":"claude-sonnet-4-6","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":5128,"output_tokens":1,"cache_creation_input_tokens":0,"cache_read_input_tokens":0}}},"session_id":"b325c976-c76a-454d-992d-f694edd8c846","parent_tool_use_id":null}
{"type":"stream_event","event":{"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"toolu_sim_0","name":"Write","input":{}}},"session_id":"b325c976-c76a-454d-992d-f694edd8c846","parent_tool_use_id":null}
{"type":"stream_event","event":{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"{\"file_path\": \"/w/out.txt\", \"content\": \"hello from the simulator\"}"}},"session_id":"b325c976-c76a-454d-992d-f694edd8c846","parent_tool_use_id":null}
{"type":"assistant","message":{"id":"msg_sim_0","type":"message","role":"assistant","model":"claude-sonnet-4-6","content":[{"type":"tool_use","id":"toolu_sim_0","name":"Write","input":{"file_path":"/w/out.txt","content":"hello from the simulator"}}],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":5128,"output_tokens":1,"cache_creation_input_tokens":0,"cache_read_input_tokens":0}},"parent_tool_use_id":null,"session_id":"b325c976-c76a-454d-992d-f694edd8c846","request_id":"req_sim_0"}
{"type":"stream_event","event":{"type":"content_block_stop","index":0},"session_id":"b325c976-c76a-454d-992d-f694edd8c846","parent_tool_use_id":null}
{"type":"stream_event","event":{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":5}},"session_id":"b325c976-c76a-454d-992d-f694edd8c846","parent_tool_use_id":null}
{"type":"stream_event","event":{"type":"message_stop"},"session_id":"b325c976-c76a-454d-992d-f694edd8c846","parent_tool_use_id":null}
{"type":"user","message":{"role":"user","content":[{"tool_use_id":"toolu_sim_0","type":"tool_result","content":"File created successfully at: /w/out.txt (file state is current in your context — no need to Read it back)"}]},"parent_tool_use_id":null,"session_id":"b325c976-c76a-454d-992d-f694edd8c846","tool_use_result":{"type":"create","filePath":"/w/out.txt","content":"hello from the simulator","structuredPatch":[],"originalFile":null,"userModified":false}}
{"type":"stream_event","event":{"type":"message_start","message":{"id":"msg_sim_1","type":"message","role":"assistant","model":"claude-sonnet-4-6","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":5128,"output_tokens":1,"cache_creation_input_tokens":0,"cache_read_input_tokens":0}}},"session_id":"b325c976-c76a-454d-992d-f694edd8c846","parent_tool_use_id":null}
{"type":"stream_event","event":{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}},"session_id":"b325c976-c76a-454d-992d-f694edd8c846","parent_tool_use_id":null}
{"type":"stream_event","event":{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"[simulated]"}},"session_id":"b325c976-c76a-454d-992d-f694edd8c846","parent_tool_use_id":null}
{"type":"stream_event","event":{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" oak"}},"session_id":"b325c976-c76a-454d-992d-f694edd8c846","parent_tool_use_id":null}
{"type":"stream_event","event":{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" quartz"}},"session_id":"b325c976-c76a-454d-992d-f694edd8c846","parent_tool_use_id":null}
{"type":"stream_event","event":{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" cedar"}},"session_id":"b325c976-c76a-454d-992d-f694edd8c846","parent_tool_use_id":null}
{"type":"stream_event","event":{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" sand"}},"session_id":"b325c976-c76a-454d-992d-f694edd8c846","parent_tool_use_id":null}
{"type":"stream_event","event":{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" harbor"}},"session_id":"b325c976-c76a-454d-992d-f694edd8c846","parent_tool_use_id":null}
{"type":"stream_event","event":{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" green"}},"session_id":"b325c976-c76a-454d-992d-f694edd8c846","parent_tool_use_id":null}
{"type":"stream_event","event":{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" apple"}},"session_id":"b325c976-c76a-454d-992d-f694edd8c846","parent_tool_use_id":null}
{"type":"stream_event","event":{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" quartz"}},"session_id":"b325c976-c76a-454d-992d-f694edd8c846","parent_tool_use_id":null}
{"type":"stream_event","event":{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" cable"}},"session_id":"b325c976-c76a-454d-992d-f694edd8c846","parent_tool_use_id":null}
{"type":"stream_event","event":{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" storm"}},"session_id":"b325c976-c76a-454d-992d-f694edd8c846","parent_tool_use_id":null}
{"type":"stream_event","event":{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" delta"}},"session_id":"b325c976-c76a-454d-992d-f694edd8c846","parent_tool_use_id":null}
{"type":"assistant","message":{"id":"msg_sim_1","type":"message","role":"assistant","model":"claude-sonnet-4-6","content":[{"type":"text","text":"[simulated] oak quartz cedar sand harbor green apple quartz cable storm delta"}],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":5128,"output_tokens":1,"cache_creation_input_tokens":0,"cache_read_input_tokens":0}},"parent_tool_use_id":null,"session_id":"b325c976-c76a-454d-992d-f694edd8c846","request_id":"req_sim_1"}
{"type":"stream_event","event":{"type":"content_block_stop","index":0},"session_id":"b325c976-c76a-454d-992d-f694edd8c846","parent_tool_use_id":null}
{"type":"stream_event","event":{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":12}},"session_id":"b325c976-c76a-454d-992d-f694edd8c846","parent_tool_use_id":null}
{"type":"stream_event","event":{"type":"message_stop"},"session_id":"b325c976-c76a-454d-992d-f694edd8c846","parent_tool_use_id":null}
{"type":"result","subtype":"success","is_error":false,"api_error_status":null,"duration_ms":259,"num_turns":2,"result":"[simulated] oak quartz cedar sand harbor green apple quartz cable storm delta","stop_reason":"end_turn","session_id":"b325c976-c76a-454d-992d-f694edd8c846","total_cost_usd":0.031022999999999995,"usage":{"input_tokens":10256,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":17},"terminal_reason":"completed"}
""",
    "maxturns": r"""
{"type":"system","subtype":"init","cwd":"/w","session_id":"6b4fa275-0240-491f-b7a3-50b01f14bbd6","model":"claude-opus-4-8[1m]","permissionMode":"acceptEdits","apiKeySource":"ANTHROPIC_API_KEY","claude_code_version":"2.1.197","analytics_disabled":true,"product_feedback_disabled":true}
{"type":"assistant","message":{"id":"msg_sim_0","type":"message","role":"assistant","model":"claude-opus-4-8","content":[{"type":"tool_use","id":"toolu_sim_0","name":"Write","input":{"file_path":"/w/a.txt","content":"x"}}],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":1824,"output_tokens":1,"cache_creation_input_tokens":0,"cache_read_input_tokens":0}},"parent_tool_use_id":null,"session_id":"6b4fa275-0240-491f-b7a3-50b01f14bbd6","request_id":"req_sim_0"}
{"type":"user","message":{"role":"user","content":[{"tool_use_id":"toolu_sim_0","type":"tool_result","content":"File created successfully at: /w/a.txt (file state is current in your context — no need to Read it back)"}]},"parent_tool_use_id":null,"session_id":"6b4fa275-0240-491f-b7a3-50b01f14bbd6","tool_use_result":{"type":"create","filePath":"/w/a.txt","content":"x","structuredPatch":[],"originalFile":null,"userModified":false}}
{"type":"result","subtype":"error_max_turns","duration_ms":144,"is_error":true,"num_turns":2,"stop_reason":"tool_use","session_id":"6b4fa275-0240-491f-b7a3-50b01f14bbd6","total_cost_usd":0.00917,"usage":{"input_tokens":1824,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":2},"terminal_reason":"max_turns","errors":["Reached maximum number of turns (1)"]}
""",
    "auth": r"""
{"type":"system","subtype":"init","cwd":"/w","session_id":"6b0f8562-c23f-42b9-b682-e6f7645cc737","model":"claude-opus-4-8[1m]","permissionMode":"acceptEdits","apiKeySource":"ANTHROPIC_API_KEY","claude_code_version":"2.1.197","analytics_disabled":true,"product_feedback_disabled":true}
{"type":"assistant","message":{"id":"e0138502-90ba-46d1-ab30-8f7aa9c094da","model":"<synthetic>","role":"assistant","stop_reason":"stop_sequence","stop_sequence":"","type":"message","usage":{"input_tokens":0,"output_tokens":0,"cache_creation_input_tokens":0,"cache_read_input_tokens":0},"content":[{"type":"text","text":"Invalid API key · Fix external API key"}]},"parent_tool_use_id":null,"session_id":"6b0f8562-c23f-42b9-b682-e6f7645cc737","error":"authentication_failed","request_id":"req_sim_0"}
{"type":"result","subtype":"success","is_error":true,"api_error_status":401,"duration_ms":111,"num_turns":1,"result":"Invalid API key · Fix external API key","stop_reason":"stop_sequence","session_id":"6b0f8562-c23f-42b9-b682-e6f7645cc737","total_cost_usd":0,"usage":{"input_tokens":0,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":0},"terminal_reason":"completed"}
""",
    "overloaded": r"""
{"type":"system","subtype":"init","cwd":"/w","session_id":"678479e4-8124-4282-a773-884a8efe0582","model":"claude-opus-4-8[1m]","permissionMode":"acceptEdits","apiKeySource":"ANTHROPIC_API_KEY","claude_code_version":"2.1.197","analytics_disabled":true,"product_feedback_disabled":true}
{"type":"assistant","message":{"id":"de9ac5ff-37f9-4c4a-8732-ce17e90dd5e6","model":"<synthetic>","role":"assistant","stop_reason":"stop_sequence","stop_sequence":"","type":"message","usage":{"input_tokens":0,"output_tokens":0,"cache_creation_input_tokens":0,"cache_read_input_tokens":0},"content":[{"type":"text","text":"API Error: 529 Overloaded. This is a server-side issue, usually temporary — try again in a moment. If it persists, check your inference gateway (127.0.0.1:43009)."}]},"parent_tool_use_id":null,"session_id":"678479e4-8124-4282-a773-884a8efe0582","error":"server_error","request_id":"req_sim_0"}
{"type":"result","subtype":"success","is_error":true,"api_error_status":529,"duration_ms":123,"num_turns":1,"result":"API Error: 529 Overloaded. This is a server-side issue, usually temporary — try again in a moment. If it persists, check your inference gateway (127.0.0.1:43009).","stop_reason":"stop_sequence","session_id":"678479e4-8124-4282-a773-884a8efe0582","total_cost_usd":0,"usage":{"input_tokens":0,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":0},"terminal_reason":"completed"}
""",
    "unknown": r"""
{"type":"result","subtype":"error_during_execution","duration_ms":0,"is_error":true,"num_turns":0,"stop_reason":null,"session_id":"2e80f15f-a67d-4be0-aa4a-5405cfdb08f6","total_cost_usd":0,"usage":{"input_tokens":0,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":0},"errors":["No conversation found with session ID: 2e80f15f-a67d-4be0-aa4a-5405cfdb08f6"]}
""",
}

#: Stands in for the CLI: prints a recording (another one when asked to
#: resume), some stderr, and exits with the code it is given.
FAKE_CLI = """#!/bin/sh
[ -n "$PROMPT_FILE" ] && cat > "$PROMPT_FILE"
for arg in "$@"; do
    if [ "$arg" = "--resume" ] && [ -n "$RESUME_RECORDING" ]; then cat "$RESUME_RECORDING"; exit 1; fi
done
cat "$RECORDING"
[ -n "$STDERR_TEXT" ] && echo "$STDERR_TEXT" >&2
exit "${EXIT_CODE:-0}"
"""

#: Ignores SIGINT and SIGTERM and has a child: only SIGKILL to the group ends both.
STUBBORN_CLI = """#!/bin/sh
trap '' INT TERM
echo '{"type":"system","subtype":"init","session_id":"s-1"}'
sleep 300 &
echo "$!" > "$CHILD_PID_FILE"
while :; do sleep 1; done
"""


def _script(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def _stream(
    tmp_path: Path,
    recording: str | None = None,
    *,
    binary: str | None = None,
    resume_session: str | None = None,
    resume_recording: str | None = None,
    grace: float = 1.0,
    **env: str,
) -> ClaudeCodeStream:
    variables = {"PATH": os.environ.get("PATH", ""), **env}
    for key, name in (("RECORDING", recording), ("RESUME_RECORDING", resume_recording)):
        if name is not None:
            path = tmp_path / f"{name}.jsonl"
            path.write_text(RECORDED[name].strip() + "\n")
            variables[key] = str(path)
    return ClaudeCodeStream(
        binary=binary or _script(tmp_path, "fake-claude", FAKE_CLI),
        args=["--output-format", "stream-json", "--verbose"],
        prompt="do it",
        resume_prompt="go on",
        workdir=tmp_path / "work",
        env=variables,
        model="claude-sonnet-4-6",
        resume_session=resume_session,
        grace=grace,
    )


async def _read(stream: ClaudeCodeStream) -> list[str]:
    async with stream:
        return [delta async for delta in stream]


async def test_whole_assistant_texts_tool_uses_cost_and_usage(tmp_path: Path) -> None:
    stream = _stream(tmp_path, "basic", PROMPT_FILE=str(tmp_path / "prompt.txt"))
    deltas = await _read(stream)
    assert (tmp_path / "prompt.txt").read_text() == "do it"  # on stdin, not in argv
    assert deltas == [
        "[simulated] linen rain basil reed dune tide field harbor willow valley brick"
    ]
    assert stream.session_id == "2e80f15f-a67d-4be0-aa4a-5405cfdb08f6"
    assert stream.tool_uses == 1 and stream.num_turns == 2
    assert stream.cost_usd == pytest.approx(0.018725)
    assert stream.usage is not None
    assert (stream.usage.prompt_tokens, stream.usage.completion_tokens) == (3660, 17)
    assert stream.finish_reason == FINISH_STOP and stream.vendor_finish_reason == "end_turn"
    assert stream.model == "claude-opus-4-8"  # the API's name, not the CLI's "[1m]" alias
    assert stream.result_text == deltas[0]
    assert stream.files_created == []  # /w/out.txt was never really written
    assert stream.returncode == 0


async def test_partial_messages_stream_each_delta_once(tmp_path: Path) -> None:
    stream = _stream(tmp_path, "partial")
    deltas = await _read(stream)
    assert deltas[:3] == ["[simulated]", " oak", " quartz"] and len(deltas) == 12
    assert "".join(deltas) == stream.result_text  # the whole assistant message is not repeated
    assert stream.tool_uses == 1 and stream.finish_reason == FINISH_STOP
    assert stream.model == "claude-sonnet-4-6"


async def test_the_session_id_is_known_before_the_result(tmp_path: Path) -> None:
    stream = _stream(tmp_path, "partial")
    async with stream:
        async for _ in stream:
            assert stream.session_id == "b325c976-c76a-454d-992d-f694edd8c846"
            assert stream.cost_usd is None  # the result has not come yet
            break


async def test_max_turns_is_a_length_stop(tmp_path: Path) -> None:
    stream = _stream(tmp_path, "maxturns", EXIT_CODE="1")
    assert await _read(stream) == []
    assert stream.finish_reason == FINISH_LENGTH
    assert stream.vendor_finish_reason == "error_max_turns"
    assert stream.cost_usd == pytest.approx(0.00917) and stream.tool_uses == 1


async def test_an_auth_error_is_not_retryable(tmp_path: Path) -> None:
    stream = _stream(tmp_path, "auth", EXIT_CODE="1")
    with pytest.raises(ClaudeCodeError) as caught:
        await _read(stream)
    error = caught.value
    assert not error.retryable and error.status == 401 and error.error_type == PROVIDER_REJECTED
    assert "Invalid API key" in str(error) and error.session_id
    assert stream.chars == 0  # the CLI's "<synthetic>" error message is not the answer
    assert not classify(error).retryable


async def test_an_overloaded_api_is_retryable(tmp_path: Path) -> None:
    stream = _stream(tmp_path, "overloaded", EXIT_CODE="1")
    with pytest.raises(RetryableClaudeCodeError) as caught:
        await _read(stream)
    error = caught.value
    assert error.retryable and error.status == 529 and error.error_type == PROVIDER_UNAVAILABLE
    assert isinstance(error, IncompleteStreamError) and classify(error).retryable


async def test_a_lost_session_starts_afresh(tmp_path: Path) -> None:
    stream = _stream(
        tmp_path,
        "basic",
        resume_session="2e80f15f-a67d-4be0-aa4a-5405cfdb08f6",
        resume_recording="unknown",
    )
    deltas = await _read(stream)
    assert deltas and stream.finish_reason == FINISH_STOP and not stream.resumed
    assert stream.prompt(None) == "do it" and stream.prompt("abc") == "go on"
    assert "--resume" not in stream.command(None) and stream.command("abc")[-2:] == [
        "--resume",
        "abc",
    ]


async def test_no_result_and_exit_zero_is_incomplete(tmp_path: Path) -> None:
    stream = _stream(tmp_path, "maxturns")
    stream_lines = RECORDED["maxturns"].strip().splitlines()[:-1]  # drop the result
    (tmp_path / "cut.jsonl").write_text("\n".join(stream_lines) + "\n")
    stream._env["RECORDING"] = str(tmp_path / "cut.jsonl")
    with pytest.raises(IncompleteStreamError, match="without saying it was finished"):
        await _read(stream)


async def test_a_crash_mid_session_is_retryable_with_the_stderr_tail(tmp_path: Path) -> None:
    stream = _stream(tmp_path, "maxturns", EXIT_CODE="3", STDERR_TEXT="boom: out of memory")
    lines = RECORDED["maxturns"].strip().splitlines()[:-1]
    (tmp_path / "cut.jsonl").write_text("\n".join(lines) + "\n")
    stream._env["RECORDING"] = str(tmp_path / "cut.jsonl")
    with pytest.raises(RetryableClaudeCodeError, match=r"exited 3 .*boom: out of memory") as caught:
        await _read(stream)
    assert caught.value.error_type == INCOMPLETE_STREAM and classify(caught.value).retryable


async def test_a_failure_to_start_is_not_retryable(tmp_path: Path) -> None:
    (tmp_path / "empty.jsonl").write_text("")
    stream = _stream(tmp_path, EXIT_CODE="2", STDERR_TEXT="error: unknown option '--bogus'")
    stream._env["RECORDING"] = str(tmp_path / "empty.jsonl")
    with pytest.raises(ClaudeCodeError, match="unknown option") as caught:
        await _read(stream)
    assert not caught.value.retryable


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def _eventually(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    for _ in range(int(timeout / 0.05)):
        if condition():
            return True
        await asyncio.sleep(0.05)
    return condition()


async def test_close_escalates_to_sigkill_and_leaves_no_process(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    binary = _script(tmp_path, "stubborn", STUBBORN_CLI)
    stream = _stream(tmp_path, binary=binary, grace=0.3, CHILD_PID_FILE=str(pid_file))
    await stream.open()
    assert await _eventually(lambda: pid_file.exists() and pid_file.read_text().strip() != "")
    child = int(pid_file.read_text())
    assert stream._process is not None
    pid = stream._process.pid
    started = time.monotonic()
    await stream.close()
    assert time.monotonic() - started >= 0.6  # SIGINT, then SIGTERM, each given its grace
    assert stream.returncode == -signal.SIGKILL and not _alive(pid)
    assert await _eventually(lambda: not _alive(child))  # reaped by init once killed


def _assistant(message_id: str, text: str, parent: str | None = None) -> dict[str, object]:
    message = {
        "id": message_id,
        "model": "claude-sonnet-4-6",
        "content": [{"type": "text", "text": text}],
    }
    return {
        "type": "assistant",
        "message": message,
        "parent_tool_use_id": parent,
        "session_id": "s",
    }


def test_messages_are_separated_and_sub_agents_are_not_output(tmp_path: Path) -> None:
    stream = _stream(tmp_path)
    assert stream.handle(_assistant("m1", "I will look.")) == ["I will look."]
    assert stream.handle(_assistant("m1", " More.")) == [" More."]  # same message, no gap
    assert stream.handle(_assistant("m2", "Sub-agent notes", parent="toolu_1")) == []
    assert stream.handle(_assistant("m3", "Done.")) == ["\n\nDone."]
    assert stream.session_id == "s"


def test_files_written_outside_the_workdir_are_reported(tmp_path: Path) -> None:
    stream = _stream(tmp_path)
    stream.workdir.mkdir()
    outside, refused = tmp_path / "elsewhere.txt", tmp_path / "hosts"
    outside.write_text("x")
    refused.write_text("untouched")
    inside = stream.workdir / "new.txt"
    for n, path in enumerate((str(outside), "new.txt", str(refused))):
        block = {"type": "tool_use", "id": f"t{n}", "name": "Write", "input": {"file_path": path}}
        stream.handle({"type": "assistant", "message": {"id": "m", "content": [block]}})
        result = {"type": "tool_result", "tool_use_id": f"t{n}", "content": "ok"}
        if path == str(refused):
            result = {**result, "content": "Claude requested permissions...", "is_error": True}
        stream.handle({"type": "user", "message": {"role": "user", "content": [result]}})
    inside.write_text("y")
    assert stream._changed_files() == sorted([str(outside), str(inside)])
    assert stream.tool_uses == 3


@pytest.mark.parametrize(
    ("status", "detail", "retryable", "error_type"),
    [
        (429, "Rate limited", True, RATE_LIMITED),
        (429, "Your credit balance is too low", False, QUOTA_EXHAUSTED),
        (500, "Internal server error", True, PROVIDER_UNAVAILABLE),
        (400, "prompt is too long", False, PROVIDER_REJECTED),
        (None, "API Error: Unable to connect to API (ConnectionRefused)", True, CONNECTION_FAILED),
        (None, "Not logged in · Please run /login", False, PROVIDER_REJECTED),
    ],
)
def test_result_errors_are_classified(
    status: int | None, detail: str, retryable: bool, error_type: str
) -> None:
    event = {"type": "result", "subtype": "success", "is_error": True}
    error = _result_error({**event, "api_error_status": status, "result": detail}, "s")
    assert (error.retryable, error.error_type) == (retryable, error_type)
    assert classify(error).retryable is retryable


def test_the_provider_builds_a_safe_headless_command(tmp_path: Path) -> None:
    binary = _script(tmp_path, "claude", "#!/bin/sh\n")
    provider = ClaudeCodeProvider(tmp_path / "base", binary=binary, env={"ANTHROPIC_API_KEY": "k"})
    task = Task(
        prompt="Fix it.",
        platform_hint=Platform.CLAUDE_CODE,
        task_id="../etc/passwd",
        files=["/src/app.py", str(tmp_path), "notes.md", "/src/*.py"],
        metadata={"max_turns": 7},
    )
    stream = provider.stream(task, "claude-sonnet-4-6", resume_session="sess-1")
    argv = stream.command("sess-1")
    assert argv[:2] == [binary, "-p"] and stream.prompt("sess-1") == provider.resume_prompt
    flags = " ".join(argv[2:])
    assert "--output-format stream-json --verbose --include-partial-messages" in flags
    assert "--permission-mode acceptEdits --max-turns 7 --model claude-sonnet-4-6" in flags
    assert "--resume sess-1" in flags and "--dangerously" not in flags
    listed = argv[argv.index("--append-system-prompt") + 1]
    assert listed == f"Files:\n- /src/app.py\n- {tmp_path}\n- notes.md\n- /src/*.py"
    settings = json.loads(argv[argv.index("--settings") + 1])
    # Read-only, exactly the named files (a directory's contents); globs are not granted.
    assert settings == {"permissions": {"allow": ["Read(//src/app.py)", f"Read(/{tmp_path}/**)"]}}
    assert stream.prompt(None) == "Fix it." and "Fix it." not in stream.command(None)
    assert stream.workdir.is_relative_to(tmp_path / "base")  # the id cannot climb out
    assert "--setting-sources user --strict-mcp-config" in flags  # no settings it wrote
    assert stream._env == {"ANTHROPIC_API_KEY": "k", **QUIET_ENV}
    plain = provider.arguments(Task(prompt="x"), "")
    assert "--model" not in plain and plain[plain.index("--max-turns") + 1] == "50"
    assert "--max-budget-usd" not in plain
    capped = provider.arguments(
        Task(prompt="x", constraints=TaskConstraints(max_cost_usd=0.25)), ""
    )
    assert capped[capped.index("--max-budget-usd") + 1] == "0.250000"  # the CLI holds the cap


def test_workdir_names_are_safe_and_distinct() -> None:
    assert workdir_name("task-1.a_b") == "task-1.a_b"
    assert "/" not in workdir_name("a/b") and workdir_name("a/b") != workdir_name("a_b")
    assert workdir_name("..") not in ("..", ".") and workdir_name(None) != workdir_name(None)


def test_a_missing_cli_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ClaudeCodeNotFoundError, match="npm install -g @anthropic-ai/claude-code"):
        ClaudeCodeProvider(tmp_path, binary=str(tmp_path / "no-such-claude"))
