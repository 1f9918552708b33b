"""The Temporal server itself killed mid-task and restarted on the same SQLite file."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from temporalio.client import Client
from temporalio.service import RetryConfig

from ai_orchestrator import Task, TaskClient, TaskStatus, TemporalUnavailableError
from ai_orchestrator.local.devserver import DevServer
from ai_orchestrator.payloads.converter import data_converter
from ai_orchestrator.simulator import Simulator

from ..conftest import FAST_RETRY, running_worker, unique


async def test_server_sigkill_and_restart_loses_nothing(tmp_path: Path, sim: Simulator) -> None:
    db = tmp_path / "temporal.db"
    server = await DevServer(db_file=db).start()
    port = server.port
    try:
        client = await Client.connect(
            server.target,
            data_converter=data_converter(),
            # Fail fast during the outage so the test sees the error promptly.
            retry_config=RetryConfig(initial_interval_millis=100, max_retries=2),
        )
        queue = unique("tq")
        tasks = TaskClient(client, task_queue=queue, retry=FAST_RETRY)
        sim.tokens_per_second = 10
        sim.default_tokens = 40
        async with running_worker(client, queue, sim):
            task_id = await tasks.submit_task(
                Task(prompt="outlive the server", task_id=unique("srv"))
            )
            await sim.wait_for_tokens_sent(0, 10, timeout=30)
            server.kill()
            with pytest.raises(TemporalUnavailableError, match=r"unavailable.*the task is safe"):
                await tasks.get_status(task_id)
            await asyncio.sleep(1)
            server = await DevServer(db_file=db, port=port).start()
            result = await tasks.get_result(task_id, timeout=90)
            assert await tasks.get_status(task_id) == TaskStatus.COMPLETED
    finally:
        await server.stop()
    assert result.status == TaskStatus.COMPLETED
    assert len(result.output.split()) == 40
