"""The local stack of ``run``/``dev`` among other servers and dead workers.

A busy Web UI port, a ``dev`` killed with SIGKILL, a worker that died but is
still listed as polling: each must end in a working stack or a clear line,
never in a failed start, an orphaned server, or a silent wait.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from pathlib import Path

import pytest

from ai_orchestrator import Task
from ai_orchestrator.local.devserver import DevServer, free_port, port_open
from ai_orchestrator.local.session import LocalStack
from ai_orchestrator.simulator import Simulator

from ..conftest import SECRET_KEY, unique
from ..support.processes import spawn, spawn_ready_worker, stop, worker_env
from .test_cli_tasks import wait_listening, wait_polled


@pytest.fixture
def user_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No provider (the simulator answers), and a data directory of the test's own."""
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "ANTHROPIC_API_KEY", "GEMINI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    for name in ("GOOGLE_API_KEY", "TEMPORAL_NAMESPACE", "AI_ORCHESTRATOR_ENCRYPTION_KEYS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AI_ORCHESTRATOR_HOME", str(tmp_path))
    return tmp_path


async def test_busy_ui_port_gives_a_free_one_and_says_so(
    user_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    queue = unique("uiq")
    monkeypatch.setenv("AI_ORCHESTRATOR_TASK_QUEUE", queue)
    with socket.socket() as taken:  # another dev server's UI, a second `run`
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        busy = taken.getsockname()[1]
        async with LocalStack(data_dir=user_env, port=free_port(), ui_port=busy) as stack:
            assert stack.server is not None and stack.server.ui_port not in (None, busy)
            assert stack.ui_url == f"http://127.0.0.1:{stack.server.ui_port}"
            assert port_open("127.0.0.1", stack.server.ui_port)
            assert any(
                f"port {busy} is in use" in note and str(stack.server.ui_port) in note
                for note in stack.notes
            ), stack.notes


async def test_run_starts_a_worker_when_the_listed_one_is_dead(
    temporal: DevServer, sim: Simulator, user_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server lists a SIGKILLed worker's pollers for minutes: they are not a worker."""
    queue = unique("deadq")
    dead = await spawn_ready_worker(worker_env(temporal.target, queue, sim.base_url, SECRET_KEY))
    await wait_polled(temporal.target, queue)
    dead.send_signal(signal.SIGKILL)
    await dead.wait()
    monkeypatch.setenv("TEMPORAL_ADDRESS", temporal.target)
    monkeypatch.setenv("AI_ORCHESTRATOR_TASK_QUEUE", queue)
    async with LocalStack(data_dir=user_env) as stack:
        assert stack.server is None and stack.worker is not None, stack.notes
        assert any(f"{dead.pid}@" in note and "no live worker" in note for note in stack.notes)
        result = await stack.task_client().execute(Task(prompt="hi", task_id=unique("dead")))
    assert result.output.startswith("[simulated]")


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def alive(pid: int) -> bool:
    return os.path.exists(f"/proc/{pid}")


@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="needs Linux /proc")
async def test_dev_server_dies_with_a_killed_dev(tmp_path: Path) -> None:
    port = free_port()
    env = worker_env(f"127.0.0.1:{port}", unique("devq"), None, None)
    env["AI_ORCHESTRATOR_HOME"] = str(tmp_path)
    dev = await spawn(
        "-m", "ai_orchestrator", "dev", "--port", str(port), "--ui-port", "0", env=env
    )
    server_pids: list[int] = []
    try:
        await wait_listening([dev], {"dev": port})
        server_pids = children(dev.pid)
        assert server_pids
        dev.send_signal(signal.SIGKILL)
        await dev.wait()
        for _ in range(150):  # 30 s
            if not any(map(alive, server_pids)):
                break
            await asyncio.sleep(0.2)
        assert not port_open("127.0.0.1", port), "the dev server outlived its parent"
    finally:
        await stop(dev)
        for pid in server_pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
