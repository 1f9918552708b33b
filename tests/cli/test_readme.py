"""The README's Python example, run as a user runs it: so the README cannot drift.

The code block under "Using it from Python" is taken from README.md as it is
and run in a fresh interpreter against what ``ai-orchestrator dev`` runs (a dev
server, a worker, the built-in simulator), with only its address changed. The
script's exit code also catches an interpreter that aborts at exit (134).
"""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

import pytest
from temporalio.client import Client

from ai_orchestrator import Task, TaskClient
from ai_orchestrator.local.devserver import free_port
from ai_orchestrator.local.session import LocalStack
from ai_orchestrator.simulator import Simulator

from ..conftest import running_worker, unique
from ..support.processes import ROOT, worker_env

README_ADDRESS = '"localhost:7233"'


def readme_example() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Using it from Python", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "README.md has no Python example under 'Using it from Python'"
    return match.group(1)


@pytest.fixture
def dev_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """The environment of a new user: no provider, no Temporal settings, no keys."""
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "ANTHROPIC_API_KEY", "GEMINI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    for name in ("GOOGLE_API_KEY", "TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("AI_ORCHESTRATOR_TASK_QUEUE", raising=False)
    monkeypatch.delenv("AI_ORCHESTRATOR_ENCRYPTION_KEYS", raising=False)
    monkeypatch.setenv("AI_ORCHESTRATOR_HOME", str(tmp_path))
    return tmp_path


async def test_readme_python_example_runs_as_written(dev_environment: Path) -> None:
    code = readme_example()
    assert code.count(README_ADDRESS) == 1
    # Its own server: the example uses the default task queue, which no other test may.
    async with LocalStack(
        data_dir=dev_environment, port=free_port(), ui_port=None, force_server=True
    ) as stack:
        assert stack.simulator is not None  # what a new user without a key gets
        script = dev_environment / "example.py"
        script.write_text(code.replace(README_ADDRESS, f'"{stack.target}"'))
        env = worker_env(stack.target, "unused", None, None)
        # The stack's worker polls the default queue, and the example connects where
        # the workers do: nothing in its environment may point it elsewhere.
        env.pop("AI_ORCHESTRATOR_TASK_QUEUE")
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(script),
            env=env,
            cwd=dev_environment,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()
    lines = out.decode().splitlines()
    assert lines[0].startswith("[simulated]")
    assert re.fullmatch(r"completed: \d+ tokens, \$\d+\.\d{6}", lines[1]), lines
    assert lines[2].startswith("[simulated]")  # the cancelled essay's partial output
    assert len(lines[2].split()) < len(lines[0].split())  # cut short by the cancel


async def test_leaving_the_client_closes_a_stream_broken_out_of(
    client: Client, queue: str, sim: Simulator
) -> None:
    """A stream left open keeps Temporal calls in flight into interpreter shutdown."""
    sim.tokens_per_second, sim.default_tokens = 20, 200
    async with running_worker(client, queue, sim):
        async with TaskClient(client, task_queue=queue) as tasks:
            task_id = await tasks.submit_task(Task(prompt="essay", task_id=unique("close")))
            stream = tasks.stream_result(task_id)
            async for _ in stream:
                break
            assert stream.ag_frame is not None  # suspended, its calls still open
            await tasks.cancel_task(task_id)
        assert stream.ag_frame is None  # closed on the way out, while the loop runs
        assert tasks.live_subscribers is None  # the channels it opened are closed
