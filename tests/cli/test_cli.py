"""The command line as a user runs it: real processes, real server, one-line errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from temporalio.client import Client

from ai_orchestrator.local.devserver import DevServer, free_port
from ai_orchestrator.simulator import Simulator

from ..conftest import SECRET_KEY, running_worker
from ..support.processes import ROOT, run_cli, spawn, worker_env


def assert_one_line_error(got: int, err: str, needle: str, code: int = 2) -> None:
    assert got == code, err
    assert "Traceback" not in err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], err


async def test_run_starts_embedded_stack_with_loud_simulator(tmp_path: Path) -> None:
    env = worker_env(f"127.0.0.1:{free_port()}", "cli-embedded", None, None)
    env["AI_ORCHESTRATOR_HOME"] = str(tmp_path)
    code, out, err = await run_cli("run", "Write a haiku", "--max-tokens", "12", env=env)
    assert code == 0, err
    assert out.startswith("[simulated]") and len(out.split()) == 12
    assert "SIMULATOR" in err and "NOT from a model" in err
    assert "Started embedded Temporal" in err and "[completed]" in err
    assert (tmp_path / "temporal.db").stat().st_size > 0  # persistent SQLite


async def test_run_uses_existing_server_and_worker(
    temporal: DevServer, client: Client, queue: str, sim: Simulator
) -> None:
    async with running_worker(client, queue, sim):
        env = worker_env(temporal.target, queue, None, None)
        code, out, err = await run_cli("run", "hello", "--json", env=env)
    assert code == 0, err
    assert '"status": "completed"' in out and "[simulated]" in out
    assert "running worker" in err and "SIMULATOR" not in err
    assert len(sim.requests) == 1


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["run", "   "], "prompt must not be empty"),
        (["run", "x", "--temperature", "5"], "temperature"),
        (["run", "x", "--max-tokens", "0"], "max_tokens"),
        (["run", "x", "--max-tokens", "many"], "many"),
        (["frobnicate"], "No such command"),
    ],
)
async def test_bad_arguments_give_one_line(args: list[str], needle: str, tmp_path: Path) -> None:
    env = worker_env("127.0.0.1:1", "q", None, None)
    env["AI_ORCHESTRATOR_HOME"] = str(tmp_path)
    assert_one_line_error(*(await run_cli(*args, env=env))[::2], needle)


async def test_worker_without_api_key_is_a_clear_error(temporal: DevServer) -> None:
    env = worker_env(temporal.target, "q", None, None)
    code, _, err = await run_cli("worker", env=env)
    assert_one_line_error(code, err, "no provider is configured")
    proc = await spawn(str(ROOT / "worker.py"), env=env)  # the root entry point
    _, err_bytes = await proc.communicate()
    assert_one_line_error(proc.returncode or 0, err_bytes.decode(), "no provider is configured")


async def test_worker_without_temporal_is_a_clear_error() -> None:
    env = worker_env(f"127.0.0.1:{free_port()}", "q", None, SECRET_KEY)
    code, _, err = await run_cli("worker", env=env, timeout=60)
    assert_one_line_error(code, err, "cannot reach Temporal", code=4)
    assert SECRET_KEY not in err


async def test_help_lists_commands() -> None:
    code, out, _ = await run_cli("--help", env=dict(os.environ))
    assert code == 0
    for command in ("run", "dev", "worker", "simulator"):
        assert command in out
