"""The worker's Prometheus endpoint: Temporal's metrics and ours, moving."""

from __future__ import annotations

import asyncio
import re
import urllib.request

from temporalio.client import Client

from ai_orchestrator import Task, TaskClient
from ai_orchestrator.local.devserver import DevServer, free_port
from ai_orchestrator.metrics import prometheus_runtime
from ai_orchestrator.payloads.converter import data_converter
from ai_orchestrator.simulator import Fault, Simulator

from ..conftest import FAST_RETRY, running_worker, unique


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return response.read().decode()


def value(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        match = re.match(rf"^{name}\{{(.*)\}} (\S+)$", line)
        if match and all(f'{k}="{v}"' in match.group(1) for k, v in labels.items()):
            total += float(match.group(2))
    return total


async def test_counters_move(temporal: DevServer, sim: Simulator) -> None:
    port = free_port()
    client = await Client.connect(
        temporal.target,
        data_converter=data_converter(),
        runtime=prometheus_runtime(f"127.0.0.1:{port}"),
    )
    queue = unique("metrics")
    tasks = TaskClient(client, task_queue=queue, retry=FAST_RETRY)
    sim.script(Fault.rate_limit(retry_after=0.2), Fault.ok(), Fault.status(400))
    async with running_worker(client, queue, sim):
        before = await asyncio.to_thread(scrape, port)
        ok = await tasks.execute(Task(prompt="count me", task_id=unique("m")))
        await tasks.execute(Task(prompt="fail me", task_id=unique("m")))
        after = await asyncio.to_thread(scrape, port)
    assert (
        value(after, "ai_orchestrator_tasks", status="completed")
        == value(before, "ai_orchestrator_tasks", status="completed") + 1
    )
    assert value(after, "ai_orchestrator_tasks", status="failed") >= 1
    assert value(after, "ai_orchestrator_tokens", direction="output") >= 24
    assert value(after, "ai_orchestrator_tokens", direction="input") >= 1
    assert value(after, "ai_orchestrator_cost_microusd") == round(ok.cost * 1_000_000)
    assert value(after, "ai_orchestrator_rate_limited", model="gpt-4o-mini") == 1
    assert value(after, "ai_orchestrator_time_to_first_chunk_count") >= 1
    assert value(after, "temporal_workflow_completed", workflow_type="AiTask") >= 1  # the SDK's own
