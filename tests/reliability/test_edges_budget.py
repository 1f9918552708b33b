"""The retry budget and the bill: what counts against a task, and what it reports it paid."""

from __future__ import annotations

from temporalio.client import Client

from ai_orchestrator import RetrySettings, Task, TaskClient, TaskStatus
from ai_orchestrator.errors import PROVIDER_FAULTS_EXHAUSTED
from ai_orchestrator.search import COST_USD, STATUS, TOKENS
from ai_orchestrator.simulator import Fault, Simulator

from ..conftest import FAST_RETRY, running_worker, unique


def _retry(**changes: object) -> RetrySettings:
    return FAST_RETRY.model_copy(update=changes)


async def test_rate_limit_waits_never_use_up_the_provider_fault_budget(
    client: Client, queue: str, sim: Simulator
) -> None:
    """With no provider fault allowed at all, three 429s are still waited out."""
    tasks = TaskClient(client, task_queue=queue, retry=_retry(max_attempts=1))
    sim.script(Fault.rate_limit(retry_after=1, times=3))
    async with running_worker(client, queue, sim):
        result = await tasks.execute(Task(prompt="patient", task_id=unique("429s")))
    assert result.status == TaskStatus.COMPLETED
    assert len(sim.requests) == 4


async def test_provider_faults_have_their_own_bound(
    client: Client, queue: str, sim: Simulator
) -> None:
    """Two broken streams exhaust max_attempts=2 even with a rate limit between them."""
    tasks = TaskClient(client, task_queue=queue, retry=_retry(max_attempts=2))
    sim.tokens_per_second = 100
    sim.script(
        Fault.disconnect(after_tokens=5), Fault.rate_limit(retry_after=1), Fault.disconnect(5)
    )
    async with running_worker(client, queue, sim):
        result = await tasks.execute(Task(prompt="fragile", task_id=unique("faults")))
    assert result.status == TaskStatus.FAILED
    assert len(sim.requests) == 3
    assert "gave up after 2 provider faults" in (result.error or "")
    # Both broken streams were billed, and the failed task says so.
    assert result.tokens_used > 0
    billing = result.metadata.get("billing") or []
    assert [b["outcome"] for b in billing] == ["failed", "failed"]
    assert all(b["estimated"] and b["completion_tokens"] == 5 for b in billing)
    assert billing[-1]["error_type"] in (PROVIDER_FAULTS_EXHAUSTED, "ConnectionFailed")


async def test_short_heartbeat_timeout_makes_no_zombie_attempts(
    client: Client, queue: str, sim: Simulator
) -> None:
    """The smallest allowed heartbeat timeout (1 s) over a 3 s answer: one provider stream."""
    tasks = TaskClient(client, task_queue=queue, retry=_retry(heartbeat_timeout_seconds=1.0))
    sim.tokens_per_second, sim.default_tokens = 20, 60
    async with running_worker(client, queue, sim):
        result = await tasks.execute(Task(prompt="steady", task_id=unique("hb")))
    assert result.status == TaskStatus.COMPLETED
    assert len(sim.requests) == 1 and result.metadata["attempts"] == 1


async def test_every_billed_attempt_is_reported_and_searchable(
    client: Client, queue: str, sim: Simulator, tasks: TaskClient
) -> None:
    """A cut stream then a success: the result, its billing and AiTokens/AiCostUsd agree."""
    sim.tokens_per_second = 100
    sim.script(Fault.disconnect(after_tokens=12))
    async with running_worker(client, queue, sim):
        result = await tasks.execute(Task(prompt="pay twice", task_id=unique("bill")))
    assert result.status == TaskStatus.COMPLETED and len(sim.requests) == 2
    billing = result.metadata["billing"]
    assert [b["outcome"] for b in billing] == ["failed", "completed"]
    assert billing[0]["estimated"] and billing[0]["completion_tokens"] == 12
    assert not billing[1]["estimated"]
    assert billing[1]["completion_tokens"] == sim.requests[1].tokens_sent
    assert result.tokens_used == sum(b["prompt_tokens"] + b["completion_tokens"] for b in billing)
    assert result.tokens_used > result.metadata["answer_usage"]["total_tokens"]
    assert abs(result.cost - sum(b["cost"] for b in billing)) < 1e-12 and result.cost > 0
    attrs = (
        await client.get_workflow_handle(result.task.task_id or "").describe()
    ).typed_search_attributes
    assert attrs.get(TOKENS) == result.tokens_used
    assert abs((attrs.get(COST_USD) or 0) - result.cost) < 1e-12


async def test_search_attributes_are_right_when_cancelled_before_start(
    client: Client, queue: str, sim: Simulator, tasks: TaskClient
) -> None:
    """Cancelled before any worker picked it up: AiStatus says cancelled, not running."""
    task_id = await tasks.submit_task(Task(prompt="never started", task_id=unique("early")))
    assert await tasks.cancel_task(task_id) is True
    async with running_worker(client, queue, sim):
        result = await tasks.get_result(task_id, timeout=30)
    assert result.status == TaskStatus.CANCELLED and not sim.requests
    attrs = (await client.get_workflow_handle(task_id).describe()).typed_search_attributes
    assert attrs.get(STATUS) == TaskStatus.CANCELLED.value
    assert attrs.get(TOKENS) == 0


async def test_search_attributes_of_a_failed_task_carry_its_bill(
    client: Client, queue: str, sim: Simulator
) -> None:
    tasks = TaskClient(client, task_queue=queue, retry=_retry(max_attempts=1))
    sim.tokens_per_second = 100
    sim.script(Fault.no_finish(after_tokens=8))
    async with running_worker(client, queue, sim):
        result = await tasks.execute(Task(prompt="one shot", task_id=unique("failsa")))
    assert result.status == TaskStatus.FAILED
    attrs = (
        await client.get_workflow_handle(result.task.task_id or "").describe()
    ).typed_search_attributes
    assert attrs.get(STATUS) == TaskStatus.FAILED.value
    assert (attrs.get(TOKENS) or 0) >= 8 and result.tokens_used == attrs.get(TOKENS)
