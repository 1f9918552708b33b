"""Claude Code runs contained: what the CLI sees, what survives a dead worker, where reruns work.

Real worker processes (a SIGKILL is involved), the real Temporal dev server,
and the real ``claude`` CLI against the simulator; only the environment test
uses a small script in the CLI's place, which records what it was given (the
worker's code path, settings and all, is the real one).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import stat
from pathlib import Path

import pytest

from ai_orchestrator import Platform, Task, TaskClient, TaskConstraints, TaskStatus
from ai_orchestrator.local.devserver import DevServer
from ai_orchestrator.providers.claude_code import BINARY_ENV, find_claude_binary
from ai_orchestrator.simulator import Fault, Simulator

from ..conftest import unique
from ..support.processes import sigkill_holder, spawn_ready_worker, stop, worker_env

BINARY = find_claude_binary()
needs_cli = pytest.mark.skipif(
    BINARY is None, reason="the claude CLI (npm @anthropic-ai/claude-code) is not installed"
)
KEY = "sk-ant-sim-0123456789containedclaude"
#: What the user found the agent could read; none of it is the CLI's business.
WORKER_SECRETS = {
    "OPENAI_API_KEY": "sk-openai-SECRET-for-the-worker-only",
    "AWS_SECRET_ACCESS_KEY": "aws-SECRET-for-the-worker-only",
    "DATABASE_URL": "postgres://app:SECRET@db/app",
    "SOME_OTHER_TOKEN": "SECRET-other",
}


def _task(prompt: str) -> Task:
    return Task(
        prompt=prompt,
        platform_hint=Platform.CLAUDE_CODE,
        task_id=unique("ccr"),
        constraints=TaskConstraints(model="claude-sonnet-4-6", timeout_seconds=120),
    )


def _worker_env(temporal: DevServer, queue: str, sim: Simulator, data: Path) -> dict[str, str]:
    env = worker_env(temporal.target, queue, sim.base_url, "sk-sim-openai")
    env.update(
        {
            "ANTHROPIC_API_KEY": KEY,
            "ANTHROPIC_BASE_URL": sim.url,
            "AI_ORCHESTRATOR_HOME": str(data),
            BINARY_ENV: BINARY or "",
        }
    )
    return env


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[-1].split()[0] not in (b"Z", b"X")
    except OSError:
        return False


def _parent(pid: int) -> int:
    with open(f"/proc/{pid}/stat", "rb") as fh:
        return int(fh.read().rsplit(b")", 1)[-1].split()[1])


def _working_in(folder: Path) -> list[int]:
    """Processes whose working directory is inside ``folder``."""
    found = []
    root = os.path.realpath(folder)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cwd = os.readlink(entry / "cwd")
            except OSError:
                continue
            if cwd == root or cwd.startswith(root + os.sep):
                found.append(int(entry.name))
    return found


def _files(folder: str) -> set[str]:
    return set(os.listdir(folder))


def _cwd_of(request_texts: str) -> str:
    """The working directory the CLI announced to the model in its system prompt."""
    match = re.search(r"[Ww]orking directory: ([^\s\\\"]+)", request_texts)
    assert match, "the CLI did not say its working directory"
    return match.group(1)


async def test_the_cli_gets_an_allow_list_environment(
    temporal: DevServer, queue: str, sim: Simulator, tasks: TaskClient, tmp_path: Path
) -> None:
    record = tmp_path / "env.record"
    fake = tmp_path / "claude"
    fake.write_text(
        "#!/bin/sh\n"
        f"env -0 > '{record}'\n"
        "cat > /dev/null\n"
        'echo \'{"type":"system","subtype":"init","session_id":"s-env"}\'\n'
        'echo \'{"type":"result","subtype":"success","is_error":false,"result":"ok",'
        '"stop_reason":"end_turn","session_id":"s-env","total_cost_usd":0.001,"num_turns":1,'
        '"usage":{"input_tokens":3,"output_tokens":1}}\'\n'
    )
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    env = _worker_env(temporal, queue, sim, tmp_path / "data")
    env.update(WORKER_SECRETS)
    env.update(
        {
            BINARY_ENV: str(fake),
            "HOME": str(tmp_path / "worker-home"),
            "LC_ALL": "C.UTF-8",
            "NODE_EXTRA_CA_CERTS": "/etc/ssl/certs/ca-certificates.crt",
            "HTTPS_PROXY": "http://proxy.invalid:3128",
            "MY_TOOL_TOKEN": "operator-granted",
            "AI_ORCHESTRATOR_CLAUDE_ENV": "MY_TOOL_TOKEN, NOT_SET_ANYWHERE",
        }
    )
    worker = await spawn_ready_worker(env)
    try:
        result = await tasks.execute(_task("what do you see?"))
    finally:
        await stop(worker)
    assert result.status == TaskStatus.COMPLETED, result.error
    seen = dict(item.split("=", 1) for item in record.read_text().split("\0") if "=" in item)
    assert not set(WORKER_SECRETS) & set(seen)
    assert not [name for name in seen if name.startswith(("TEMPORAL_", "AI_ORCHESTRATOR_"))]
    secrets = [*WORKER_SECRETS.values(), env["TEMPORAL_ADDRESS"]]
    assert not [value for value in secrets if value in seen.values()]
    # What it needs to run and to reach Anthropic, and what the operator added.
    assert seen["PATH"] == env["PATH"] and seen["LC_ALL"] == "C.UTF-8"
    assert seen["NODE_EXTRA_CA_CERTS"] == env["NODE_EXTRA_CA_CERTS"]
    assert seen["HTTPS_PROXY"] == env["HTTPS_PROXY"]
    assert seen["ANTHROPIC_API_KEY"] == KEY and seen["ANTHROPIC_BASE_URL"] == sim.url
    assert seen["MY_TOOL_TOKEN"] == "operator-granted" and seen["CLAUDE_CODE_MAX_RETRIES"] == "0"
    # Its HOME is its own, not the worker's.
    assert seen["HOME"] != env["HOME"] and seen["CLAUDE_CONFIG_DIR"].startswith(seen["HOME"])


@needs_cli
async def test_a_dead_workers_cli_dies_with_it_and_the_retry_ends_its_tools(
    temporal: DevServer, queue: str, sim: Simulator, tasks: TaskClient, tmp_path: Path
) -> None:
    sim.tokens_per_second, sim.default_tokens = 20, 40
    sim.script(Fault.stall(after_tokens=5, seconds=90))  # the first attempt hangs mid-answer
    data = tmp_path / "data"
    env = _worker_env(temporal, queue, sim, data)
    workers = [await spawn_ready_worker(env), await spawn_ready_worker(env)]
    survivor: asyncio.subprocess.Process | None = None
    try:
        task_id = await tasks.submit_task(_task("work on it, slowly"))
        streamed = lambda: [r for r in sim.requests if r.stream]  # noqa: E731
        await sim.wait_until(lambda: any(r.tokens_sent >= 5 for r in streamed()), timeout=60)
        [cli] = [p for p in _working_in(data) if _parent(p) in {w.pid for w in workers}]
        cwd = os.readlink(f"/proc/{cli}/cwd")
        # A tool the agent started (a dev server, a watcher), in the task's folder.
        survivor = await asyncio.create_subprocess_exec(
            "sleep", "600", cwd=cwd, start_new_session=True
        )
        await asyncio.sleep(2.5)  # a heartbeat named the session: the retry resumes it
        await sigkill_holder(tasks.client, task_id, workers)
        # The CLI dies with its worker, before any retry could have ended it.
        for _ in range(600):  # polled: a dead CLI makes no request the simulator would see
            if not _alive(cli) or len(streamed()) > 1:
                break
            await asyncio.sleep(0.05)
        assert not _alive(cli), "the CLI outlived its SIGKILLed worker"
        assert len(streamed()) == 1
        result = await tasks.get_result(task_id, timeout=90)
        assert result.status == TaskStatus.COMPLETED, result.error
        assert result.metadata["attempts"] == 2
        # The retry ended the orphaned tool before resuming in the same folder.
        assert await asyncio.wait_for(survivor.wait(), 10) == -signal.SIGKILL
        assert len(streamed()[-1].messages) > 1  # and it did resume the session
    finally:
        for worker in workers:
            await stop(worker)
        if survivor is not None and survivor.returncode is None:
            survivor.kill()
            await survivor.wait()


@needs_cli
async def test_a_rerun_starts_in_a_clean_folder(
    temporal: DevServer, queue: str, sim: Simulator, tasks: TaskClient, tmp_path: Path
) -> None:
    sim.script(Fault.status(401))  # the first run fails for good, in its folder
    env = _worker_env(temporal, queue, sim, tmp_path / "data")
    worker = await spawn_ready_worker(env)
    try:
        task = _task("start the work")
        first = await tasks.execute(task)
        assert first.status == TaskStatus.FAILED
        first_cwd = _cwd_of(json.dumps([(r.system, r.messages) for r in sim.requests]))
        # What the first run's agent left behind.
        (Path(first_cwd) / "half-done.txt").write_text("from the failed run")
        sim.reset()
        await tasks.rerun_task(task.task_id or "")
        second = await tasks.get_result(task.task_id or "", timeout=90)
    finally:
        await stop(worker)
    assert second.status == TaskStatus.COMPLETED, second.error
    second_cwd = _cwd_of(json.dumps([(r.system, r.messages) for r in sim.requests]))
    assert second_cwd != first_cwd
    assert "half-done.txt" not in _files(second_cwd)
    assert "half-done.txt" in _files(first_cwd)  # the old run's files stay its own
