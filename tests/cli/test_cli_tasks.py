"""Every task command end to end, as scripts use them, --json parsed back.

The commands run in-process (exit codes, stdout and error lines are the CLI's
own); ``dev`` runs as real processes, the smoke test that the entry point works.
"""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

from temporalio.client import Client

from ai_orchestrator.local.devserver import DevServer, free_port, port_open
from ai_orchestrator.local.session import worker_polling
from ai_orchestrator.simulator import Simulator

from ..conftest import running_worker, unique
from ..support.cli_inprocess import invoke
from ..support.processes import run_cli, spawn, stop, worker_env
from .test_cli import assert_one_line_error


async def _cli(*args: str, target: str, queue: str, **env: str) -> tuple[int, str, str]:
    return await invoke(*args, target=target, queue=queue, **env)


async def test_submit_status_stream_result_list_cancel(
    temporal: DevServer, client: Client, queue: str, sim: Simulator
) -> None:
    at = {"target": temporal.target, "queue": queue}
    async with running_worker(client, queue, sim):
        code, out, err = await _cli(
            "submit", "count to ten", "--model", "gpt-4o", "--max-tokens", "12", "--json", **at
        )
        assert code == 0, err
        task_id = json.loads(out)["task_id"]

        code, out, _ = await _cli("stream", task_id, "--json", **at)
        events = [json.loads(line) for line in out.splitlines()]
        assert code == 0 and events[-1]["type"] == "finished"
        text = "".join(e["text"] for e in events if e["type"] == "delta")
        assert text == events[-1]["result"]["output"] and len(text.split()) == 12

        code, out, _ = await _cli("status", task_id, "--json", **at)
        assert code == 0 and json.loads(out) == {"task_id": task_id, "status": "completed"}

        code, out, err = await _cli("result", task_id, "--json", **at)
        result = json.loads(out)
        assert code == 0 and result["status"] == "completed" and result["output"] == text
        assert result["cost"] > 0 and result["metadata"]["model"] == "gpt-4o"

        code, out, _ = await _cli("result", task_id, **at)  # human-readable
        assert code == 0 and out.strip() == text

        query = f"TaskQueue = '{queue}' AND AiModel = 'gpt-4o'"
        for _ in range(25):  # visibility is eventually consistent
            code, out, _ = await _cli("list", "--query", query, "--json", **at)
            rows = json.loads(out)
            if rows and rows[0]["tokens"]:
                break
            await asyncio.sleep(0.2)
        assert code == 0 and [r["task_id"] for r in rows] == [task_id]
        assert rows[0]["status"] == "completed" and rows[0]["cost_usd"] == result["cost"]
        code, out, _ = await _cli("list", "--query", query, **at)
        assert task_id in out and "gpt-4o" in out

        sim.tokens_per_second, sim.default_tokens = 10, 300
        code, out, _ = await _cli("submit", "a long one", "--json", **at)
        long_id = json.loads(out)["task_id"]
        await sim.wait_until(lambda: len(sim.requests) == 2 and sim.requests[1].tokens_sent >= 3)
        code, out, _ = await _cli("cancel", long_id, "--json", **at)
        assert code == 0 and json.loads(out)["cancelled"] is True
        code, out, _ = await _cli("result", long_id, "--json", **at)
        cancelled = json.loads(out)
        assert code == 1 and cancelled["status"] == "cancelled" and cancelled["partial_output"]
        code, out, _ = await _cli("cancel", long_id, "--json", **at)
        assert code == 1 and json.loads(out)["cancelled"] is False


async def test_errors_are_one_line_with_meaningful_exit_codes(
    temporal: DevServer, queue: str
) -> None:
    at = {"target": temporal.target, "queue": queue}
    missing = unique("nope")
    for args, code, needle in [
        (["status", missing], 3, None),
        (["result", missing], 3, "no task"),
        (["cancel", missing], 3, "no task"),
        (["stream", missing], 3, "no task"),
        (["list", "--query", "AiModel = = 'x'"], 2, "invalid query"),
        (["submit", "x", "--priority", "9"], 2, "priority"),
    ]:
        got, out, err = await _cli(*args, **at)
        if needle is None:
            assert got == code and out.strip() == "unknown", (args, out, err)
        else:
            assert got == code and "Traceback" not in err, (args, err)
            assert err.strip().startswith("error: ") and needle in err, (args, err)
    got, _, err = await _cli("status", "x", target=f"127.0.0.1:{free_port()}", queue=queue)
    assert_one_line_error(got, err, "cannot reach Temporal", code=4)


async def test_setup_config_and_encryption_key(temporal: DevServer, queue: str) -> None:
    at = {"target": temporal.target, "queue": queue, "OPENAI_API_KEY": "sk-config-secret-123456"}
    code, out, _ = await _cli("setup", "--json", **at)
    setup = json.loads(out)
    assert code == 0 and "AiCostUsd" in setup["search_attributes"] and setup["added"] == []
    code, out, _ = await _cli("config", **at)
    config = json.loads(out)
    assert code == 0 and config["provider"]["api_key"] == "set" and "sk-config" not in out
    assert config["task_queue"] == queue
    assert config["platforms"]["chatgpt"] == "configured"
    assert config["platforms"]["claude"] == "not configured"  # worker_env clears ANTHROPIC_*
    code, out, _ = await _cli("encryption-key", "k7", **at)
    assert code == 0 and out.startswith("k7:") and len(out.strip()) > 40


async def wait_listening(procs: list[asyncio.subprocess.Process], ports: dict[str, int]) -> None:
    """Until every port accepts connections; on failure say which, and what exited said."""
    for _ in range(300):  # 60 s: a fresh clone starts interpreters without bytecode
        closed = [name for name, p in ports.items() if not port_open("127.0.0.1", p)]
        if not closed or any(proc.returncode is not None for proc in procs):
            break
        await asyncio.sleep(0.2)
    if closed:
        details = [
            (await proc.stderr.read()).decode()[-2000:]
            for proc in procs
            if proc.returncode is not None and proc.stderr is not None
        ]
        raise AssertionError(f"not listening: {closed}; exited processes said: {details}")


async def wait_polled(target: str, queue: str) -> None:
    """Until a worker polls ``queue``: a port that answers is not yet a worker that polls."""
    client = await Client.connect(target)
    for _ in range(300):  # 60 s
        if await worker_polling(client, queue):
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"no worker polls {queue!r}")


async def test_dev_simulator_and_codec_server_start_and_stop(tmp_path: Path) -> None:
    port, ui_port = free_port(), free_port()
    queue = unique("devq")
    env = worker_env(f"127.0.0.1:{port}", queue, None, None)
    env["AI_ORCHESTRATOR_HOME"] = str(tmp_path)
    env["AI_ORCHESTRATOR_ENCRYPTION_KEYS"] = "k1:" + "A" * 43 + "="
    procs = [
        await spawn(
            "-m", "ai_orchestrator", "dev", "--port", str(port), "--ui-port", str(ui_port), env=env
        )
    ]
    try:
        # The dev server binds random ports of its own (HTTP API, metrics): pick the
        # others only once it is up, so they cannot collide.
        await wait_listening(procs, {"dev": port, "ui": ui_port})
        sim_port, codec_port = free_port(), free_port()
        procs += [
            await spawn("-m", "ai_orchestrator", "simulator", "--port", str(sim_port), env=env),
            await spawn(
                "-m", "ai_orchestrator", "codec-server", "--port", str(codec_port), env=env
            ),
        ]
        await wait_listening(procs, {"simulator": sim_port, "codec-server": codec_port})
        await wait_polled(f"127.0.0.1:{port}", queue)  # else `run` starts a worker of its own
        code, out, err = await run_cli("run", "hello dev", "--json", env=env)
        assert code == 0, err
        assert json.loads(out)["status"] == "completed" and "running worker" in err
        procs[0].send_signal(signal.SIGINT)
        _, dev_err = await asyncio.wait_for(procs[0].communicate(), 30)
        assert procs[0].returncode == 0, dev_err.decode()
        assert "SIMULATOR" in dev_err.decode() and "Web UI" in dev_err.decode()
        assert (tmp_path / "temporal.db").exists()
    finally:
        for proc in procs:
            await stop(proc)


async def test_rerun_command(
    temporal: DevServer, client: Client, queue: str, sim: Simulator
) -> None:
    """Promise: a failed/cancelled task can be re-run on purpose from the CLI; exit codes."""
    from ai_orchestrator import Task, TaskClient

    at = {"target": temporal.target, "queue": queue}
    task_id = unique("cli-rerun")
    await TaskClient(client, task_queue=queue).submit_task(Task(prompt="again", task_id=task_id))
    code, out, _ = await _cli("rerun", task_id, "--json", **at)
    assert code == 5 and json.loads(out)["rerun"] is False  # still pending: left alone
    await client.get_workflow_handle(task_id).terminate("stopped by an operator")
    code, out, err = await _cli("rerun", task_id, "--json", **at)
    assert code == 0, err
    assert json.loads(out) == {"task_id": task_id, "rerun": True, "status_before": "failed"}
    async with running_worker(client, queue, sim):
        code, out, _ = await _cli("result", task_id, "--json", **at)
    assert code == 0 and json.loads(out)["status"] == "completed" and len(sim.requests) == 1
    code, _, err = await _cli("rerun", task_id, **at)
    assert code == 2 and err.startswith("error: ") and "already completed" in err
    code, _, err = await _cli("rerun", unique("nope"), **at)
    assert code == 3 and "no task" in err
