"""Operators find tasks by model, status and cost through registered search attributes."""

from __future__ import annotations

import asyncio

from temporalio.client import Client

from ai_orchestrator import Task, TaskClient, TaskConstraints, TaskStatus
from ai_orchestrator.local.devserver import DevServer
from ai_orchestrator.payloads.converter import data_converter
from ai_orchestrator.simulator import Fault, Simulator

from ..conftest import running_worker, unique


async def eventually(check, timeout: float = 10.0):  # type: ignore[no-untyped-def]
    """Visibility is eventually consistent: poll briefly."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await check()
        if result or asyncio.get_running_loop().time() > deadline:
            return result
        await asyncio.sleep(0.2)


async def test_filter_by_model_cost_and_status(
    client: Client, queue: str, sim: Simulator, tasks: TaskClient
) -> None:
    sim.default_tokens = 200
    big = Task(
        prompt="expensive one", task_id=unique("sa-4o"), constraints=TaskConstraints(model="gpt-4o")
    )
    small = Task(prompt="cheap one", task_id=unique("sa-mini"))
    bad = Task(prompt="rejected one", task_id=unique("sa-bad"))
    sim.script(Fault.status(400))
    async with running_worker(client, queue, sim):
        assert (await tasks.execute(bad)).status == TaskStatus.FAILED
        big_result = await tasks.execute(big)
        await tasks.execute(small)
    assert big_result.cost > 0.001  # 200 tokens of gpt-4o

    scoped = f"TaskQueue = '{queue}'"

    async def expensive() -> list[str]:
        rows = await tasks.list_tasks(f"{scoped} AND AiModel = 'gpt-4o' AND AiCostUsd > 0.001")
        return [r.task_id for r in rows]

    assert await eventually(expensive) == [big.task_id]
    failed = await eventually(lambda: tasks.list_tasks(f"{scoped} AND AiStatus = 'failed'"))
    assert [r.task_id for r in failed] == [bad.task_id]
    row = next(r for r in await tasks.list_tasks(scoped) if r.task_id == big.task_id)
    assert (row.model, row.task_type, row.priority, row.status) == (
        "gpt-4o",
        "general",
        3,
        "completed",
    )
    assert row.tokens == big_result.tokens_used and row.cost_usd == big_result.cost
    # Prompts never go into search attributes.
    desc = await client.get_workflow_handle(big.task_id or "").describe()
    values = [str(pair.value) for pair in desc.typed_search_attributes]
    assert values and not any("expensive one" in v for v in values)


async def test_tasks_run_on_a_namespace_without_the_attributes(sim: Simulator) -> None:
    async with DevServer(search_attributes=False) as bare_server:
        client = await Client.connect(bare_server.target, data_converter=data_converter())
        queue = unique("nosa")
        tasks = TaskClient(client, task_queue=queue)
        async with running_worker(client, queue, sim):
            result = await tasks.execute(Task(prompt="still works", task_id=unique("nosa")))
        assert result.status == TaskStatus.COMPLETED
        from ai_orchestrator.search import missing, register

        assert await missing(client)
        assert await register(client) and not await missing(client)  # what `setup` does
        assert await register(client) == []  # idempotent
