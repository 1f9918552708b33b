"""``TaskClient.connect()`` finds the server and task queue the workers use.

A client that submitted to ``localhost:7233`` and the default queue while the
workers followed ``TEMPORAL_ADDRESS`` and ``AI_ORCHESTRATOR_TASK_QUEUE`` left
every task waiting for a worker that never polls its queue.
"""

from __future__ import annotations

import pytest

from ai_orchestrator import Task, TaskClient, TaskStatus
from ai_orchestrator.local.devserver import DevServer
from ai_orchestrator.simulator import Simulator

from ..conftest import running_worker, unique


async def test_connect_reads_the_workers_environment(
    temporal: DevServer, sim: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    queue = unique("tq-env")
    monkeypatch.setenv("TEMPORAL_ADDRESS", temporal.target)
    monkeypatch.setenv("AI_ORCHESTRATOR_TASK_QUEUE", queue)
    async with await TaskClient.connect() as tasks:
        assert tasks.task_queue == queue
        async with running_worker(tasks.client, queue, sim):
            result = await tasks.execute(Task(prompt="from the environment", task_id=unique("e")))
    assert result.status == TaskStatus.COMPLETED, result.error


async def test_arguments_win_over_the_environment(
    temporal: DevServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEMPORAL_ADDRESS", "127.0.0.1:1")  # nothing listens there
    monkeypatch.setenv("AI_ORCHESTRATOR_TASK_QUEUE", "from-env")
    async with await TaskClient.connect(temporal.target, task_queue="given") as tasks:
        assert tasks.task_queue == "given"
        assert tasks.client.service_client.config.target_host == temporal.target
