"""The worker's Prometheus endpoint: Temporal's metrics and ours, moving."""

from __future__ import annotations

import asyncio
import re
import urllib.request

from temporalio.client import Client

from ai_orchestrator import Task, TaskClient, TaskStatus
from ai_orchestrator.errors import CONNECTION_FAILED
from ai_orchestrator.local.devserver import DevServer, free_port
from ai_orchestrator.metrics import prometheus_runtime
from ai_orchestrator.payloads.converter import data_converter
from ai_orchestrator.simulator import Fault, Simulator

from ..conftest import FAST_RETRY, running_worker, unique

#: The labels every token and cost sample of these tasks carries.
LABELS = {"model": "gpt-4o-mini", "platform": "chatgpt"}


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
    """Promise: every task is counted under its outcome, and every attempt the
    provider billed (completed, failed or cancelled) is counted in tokens and cost."""
    port = free_port()
    client = await Client.connect(
        temporal.target,
        data_converter=data_converter(),
        runtime=prometheus_runtime(f"127.0.0.1:{port}"),
    )
    queue = unique("metrics")
    tasks = TaskClient(client, task_queue=queue, retry=FAST_RETRY)
    # Completed after a rate limit; failed after a stream cut (billed) and a 400 (not).
    sim.script(
        Fault.rate_limit(retry_after=0.2),
        Fault.ok(),
        Fault.disconnect(after_tokens=5),
        Fault.status(400),
    )
    async with running_worker(client, queue, sim):
        before = await asyncio.to_thread(scrape, port)
        ok = await tasks.execute(Task(prompt="count me", task_id=unique("m")))
        failed = await tasks.execute(Task(prompt="fail me", task_id=unique("m")))
        sim.tokens_per_second, sim.default_tokens = 10, 200  # 20 s: cancelled long before
        cancel_id = await tasks.submit_task(Task(prompt="cancel me", task_id=unique("m")))
        await sim.wait_for_tokens_sent(4, 5, timeout=30)
        assert await tasks.cancel_task(cancel_id) is True
        cancelled = await tasks.get_result(cancel_id, timeout=60)
        after = await asyncio.to_thread(scrape, port)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert ok.status == TaskStatus.COMPLETED
    assert failed.status == TaskStatus.FAILED and "HTTP 400" in (failed.error or "")
    assert cancelled.status == TaskStatus.CANCELLED
    # Each task under its outcome, once.
    for status in ("completed", "failed", "cancelled"):
        assert moved("ai_orchestrator_tasks", status=status) == 1, status
    # The failed and the cancelled task were billed for what they streamed.
    (cut,) = failed.metadata["billing"]  # the 400 was refused: not billed
    assert (cut["outcome"], cut["error_type"]) == ("failed", CONNECTION_FAILED)
    assert cut["completion_tokens"] == sim.requests[2].tokens_sent == 5
    (stopped,) = cancelled.metadata["billing"]
    assert stopped["outcome"] == "cancelled" and stopped["completion_tokens"] >= 5
    # Tokens and cost count every billed attempt of the three tasks, no more.
    bills = [b for r in (ok, failed, cancelled) for b in r.metadata["billing"]]
    assert [b["outcome"] for b in bills] == ["completed", "failed", "cancelled"]
    assert moved("ai_orchestrator_tokens", direction="output", **LABELS) == sum(
        b["completion_tokens"] for b in bills
    )
    assert moved("ai_orchestrator_tokens", direction="input", **LABELS) == sum(
        b["prompt_tokens"] for b in bills
    )
    assert moved("ai_orchestrator_cost_microusd", **LABELS) == sum(
        round(b["cost"] * 1_000_000) for b in bills
    )
    assert all(b["cost"] > 0 for b in bills), bills
    assert moved("ai_orchestrator_cost_microusd") == round(ok.cost * 1_000_000) + sum(
        round(b["cost"] * 1_000_000) for b in (cut, stopped)
    )
    assert moved("ai_orchestrator_rate_limited", model="gpt-4o-mini") == 1
    assert moved("ai_orchestrator_time_to_first_chunk_count") >= 1
    assert value(after, "temporal_workflow_completed", workflow_type="AiTask") >= 1  # the SDK's own


async def test_quota_and_budget_metrics_move(temporal: DevServer, sim: Simulator) -> None:
    """Promise: quota reservations, what calls used, time waited for capacity and
    budget refusals are visible on the worker's endpoint."""
    from ai_orchestrator import TaskConstraints
    from ai_orchestrator.limits import LocalLimiter

    port = free_port()
    client = await Client.connect(
        temporal.target,
        data_converter=data_converter(),
        runtime=prometheus_runtime(f"127.0.0.1:{port}"),
    )
    queue = unique("metrics")
    tasks = TaskClient(client, task_queue=queue, retry=FAST_RETRY)
    sim.tokens_per_second, sim.default_tokens = 200, 100
    limiter = LocalLimiter({"gpt-4o-mini": (6000.0, None)})
    async with running_worker(client, queue, sim, limiter=limiter):
        before = await asyncio.to_thread(scrape, port)
        plain = Task(
            prompt="reserve me", task_id=unique("m"), constraints=TaskConstraints(max_tokens=50)
        )
        ok = await tasks.execute(plain)
        capped = Task(
            prompt="cap me",
            task_id=unique("m"),
            constraints=TaskConstraints(model="gpt-4o", max_cost_usd=0.0002),
        )
        stopped = await tasks.execute(capped)
        after = await asyncio.to_thread(scrape, port)
    assert ok.status == TaskStatus.COMPLETED and stopped.status == TaskStatus.FAILED

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    mini = {"model": "gpt-4o-mini"}
    assert moved("ai_orchestrator_quota_tokens", kind="reserved", **mini) >= 50
    used = moved("ai_orchestrator_quota_tokens", kind="used", **mini)
    assert used == ok.tokens_used  # the provider's real count for the call
    assert moved("ai_orchestrator_capacity_wait_count", **mini) == 1
    assert moved("ai_orchestrator_budget_refusals", model="gpt-4o") == 1
