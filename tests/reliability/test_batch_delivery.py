"""Batch delivery: tasks answered through the providers' batch APIs, durably.

Real workers, a real Temporal server, the real openai and anthropic SDKs over
HTTP against the simulator's batch APIs. The simulator's own records are the
bill: how many provider batches were created, what each held, and whether any
task was also asked in real time.
"""

from __future__ import annotations

import asyncio

import pytest
from anthropic import AsyncAnthropic
from google import genai
from google.genai import types
from temporalio.client import Client

from ai_orchestrator import Task, TaskClient, TaskConstraints, TaskStatus
from ai_orchestrator.core import Platform
from ai_orchestrator.pricing import PricingTable
from ai_orchestrator.providers import Provider
from ai_orchestrator.providers._tls import anthropic_http_client, genai_http_options
from ai_orchestrator.providers.anthropic import AnthropicProvider
from ai_orchestrator.providers.gemini import GeminiProvider
from ai_orchestrator.simulator import BatchBehaviour, Simulator

from ..conftest import FAST_RETRY, SECRET_KEY, running_worker, unique
from ..support.helpers import wait_until

BATCH = TaskConstraints(delivery="batch", max_tokens=30, timeout_seconds=120)


@pytest.fixture(autouse=True)
def _quick_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AI_ORCHESTRATOR_BATCH_WINDOW_SECONDS", "1")
    monkeypatch.setenv("AI_ORCHESTRATOR_BATCH_POLL_SECONDS", "0.5")
    monkeypatch.setenv("AI_ORCHESTRATOR_BATCH_POLL_MAX_SECONDS", "1")


def _tasks(client: Client, queue: str) -> TaskClient:
    return TaskClient(client, task_queue=queue, retry=FAST_RETRY)


def _vendors(sim: Simulator) -> dict[Platform, Provider]:
    """Claude and Gemini over their real SDKs, pointed at the simulator."""
    claude = AsyncAnthropic(
        base_url=sim.url, api_key=SECRET_KEY, max_retries=0, http_client=anthropic_http_client()
    )
    options = genai_http_options(base_url=sim.url, retry_options=types.HttpRetryOptions(attempts=1))
    gemini = genai.Client(api_key=SECRET_KEY, http_options=options)
    return {Platform.CLAUDE: AnthropicProvider(claude), Platform.GEMINI: GeminiProvider(gemini)}


@pytest.mark.parametrize("model", ["gpt-4o-mini", "claude-haiku-4-5", "gemini-2.5-flash"])
async def test_tasks_of_one_model_go_as_one_provider_batch_at_half_price(
    client: Client, queue: str, sim: Simulator, model: str
) -> None:
    sim.batch_behaviour = BatchBehaviour(turnaround=0.5)
    tasks = _tasks(client, queue)
    constraints = BATCH.model_copy(update={"model": model})
    prompts = [f"batch question {i}" for i in range(12)]
    async with running_worker(client, queue, sim, providers=_vendors(sim)):
        results = await asyncio.gather(
            *(
                tasks.execute(Task(prompt=p, task_id=unique("bd"), constraints=constraints))
                for p in prompts
            )
        )
        # The same question in real time, for the answer and the price.
        live = await tasks.execute(
            Task(
                prompt=prompts[0],
                task_id=unique("rt"),
                constraints=constraints.model_copy(update={"delivery": "realtime"}),
            )
        )
    assert [r.status for r in results] == [TaskStatus.COMPLETED] * 12, results[0].error
    (batch,) = sim.batches.values()  # one provider batch for the twelve
    assert len(batch.items) == 12
    assert len(sim.requests) == 1  # and nothing asked in real time but the comparison
    assert results[0].output == live.output
    price = PricingTable().lookup(model)
    assert price is not None
    for result in results:
        (bill,) = result.metadata["billing"]
        assert bill["delivery"] == "batch" and bill["outcome"] == "completed"
        full = price.cost(bill["prompt_tokens"], bill["completion_tokens"])
        assert result.cost == pytest.approx(full / 2, rel=1e-9) and result.cost > 0
    assert results[0].cost == pytest.approx(live.cost / 2, rel=1e-9)


async def test_a_task_cancelled_before_its_batch_is_sent_is_left_out(
    client: Client, queue: str, sim: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AI_ORCHESTRATOR_BATCH_WINDOW_SECONDS", "3")
    sim.batch_behaviour = BatchBehaviour(turnaround=0.2)
    tasks = _tasks(client, queue)
    async with running_worker(client, queue, sim):
        ids = [
            await tasks.submit_task(Task(prompt=f"q{i}", task_id=unique("bc"), constraints=BATCH))
            for i in range(3)
        ]
        assert await tasks.cancel_task(ids[0])
        results = [await tasks.get_result(i, timeout=60) for i in ids]
    assert [r.status for r in results] == [TaskStatus.CANCELLED, *[TaskStatus.COMPLETED] * 2]
    (batch,) = sim.batches.values()
    assert len(batch.items) == 2  # the cancelled task was never sent, so never paid for
    assert results[0].cost == 0
    assert not sim.requests  # nor asked in real time instead


async def test_cancelled_after_sending_ends_at_once_and_a_batch_nobody_wants_is_cancelled(
    client: Client, queue: str, sim: Simulator
) -> None:
    sim.batch_behaviour = BatchBehaviour(turnaround=30)
    tasks = _tasks(client, queue)
    async with running_worker(client, queue, sim):
        ids = [
            await tasks.submit_task(Task(prompt=f"q{i}", task_id=unique("ba"), constraints=BATCH))
            for i in range(2)
        ]
        await wait_until(lambda: bool(sim.batches), 30, "the provider batch")
        for task_id in ids:
            assert await tasks.cancel_task(task_id)
        results = [await tasks.get_result(i, timeout=20) for i in ids]
        (batch,) = sim.batches.values()
        await wait_until(lambda: batch.cancel_requested, 30, "the batch's cancel")
    assert [r.status for r in results] == [TaskStatus.CANCELLED] * 2
    assert not sim.requests  # nothing asked in real time instead


@pytest.mark.parametrize(
    ("behaviour", "realtime"),
    [
        (BatchBehaviour(turnaround=0.2, error_rate=1.0), True),  # items fail with 500s
        (BatchBehaviour(turnaround=0.2, outcome="expired", stall_after=0), True),
        (BatchBehaviour(turnaround=0.2, outcome="failed"), True),
        (BatchBehaviour(turnaround=0.2, error_rate=1.0, error_status=400), False),
    ],
    ids=["item-errors", "expired", "failed", "refused"],
)
async def test_what_the_batch_cannot_answer_goes_to_real_time_or_fails_clearly(
    client: Client, queue: str, sim: Simulator, behaviour: BatchBehaviour, realtime: bool
) -> None:
    sim.batch_behaviour = behaviour
    tasks = _tasks(client, queue)
    async with running_worker(client, queue, sim):
        results = await asyncio.gather(
            *(
                tasks.execute(Task(prompt=f"q{i}", task_id=unique("be"), constraints=BATCH))
                for i in range(3)
            )
        )
    assert len(sim.batches) == 1
    if realtime:
        assert [r.status for r in results] == [TaskStatus.COMPLETED] * 3, results[0].error
        assert len(sim.requests) == 3  # each answered once, in real time
        for result in results:
            assert [b.get("delivery") for b in result.metadata["billing"]] == [None]
    else:
        assert [r.status for r in results] == [TaskStatus.FAILED] * 3
        assert "batch refused this task" in (results[0].error or "")
        assert not sim.requests


async def test_a_batch_the_provider_forgot_sends_its_tasks_to_real_time(
    client: Client, queue: str, sim: Simulator
) -> None:
    """The provider answers 404 for the batch (deleted, or a key that no longer sees
    it): its tasks are told at once and answered in real time, not left waiting."""
    sim.batch_behaviour = BatchBehaviour(turnaround=60)
    tasks = _tasks(client, queue)
    async with running_worker(client, queue, sim):
        ids = [
            await tasks.submit_task(Task(prompt=f"q{i}", task_id=unique("bf"), constraints=BATCH))
            for i in range(2)
        ]
        await wait_until(lambda: bool(sim.batches), 30, "the provider batch")
        assert not sim.requests
        sim.reset()  # the provider no longer knows the batch (no API does this)
        results = [await tasks.get_result(i, timeout=60) for i in ids]
    assert [r.status for r in results] == [TaskStatus.COMPLETED] * 2, results[0].error
    assert len(sim.requests) == 2  # answered in real time
