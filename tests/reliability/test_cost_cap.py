"""``max_cost_usd``: a cap held while the answer streams, over attempts and models.

The simulator's answers are priced from the table (gpt-4o: $2.50 in, $10 out per
million tokens, so one chunk is $0.00001); the cap is checked before each call
and after each chunk, and the stream is stopped at the provider when the next
chunk would cross it.
"""

from __future__ import annotations

import pytest
from temporalio.client import Client

from ai_orchestrator import Task, TaskClient, TaskConstraints, TaskStatus
from ai_orchestrator.errors import BUDGET_EXCEEDED
from ai_orchestrator.pricing import PricingTable
from ai_orchestrator.simulator import Fault, Simulator

from ..conftest import FAST_RETRY, running_worker, unique

CHUNK = PricingTable().cost("gpt-4o", 0, 1) or 0.0
CAP = 0.0005  # the prompt and about 49 chunks of gpt-4o


def _capped(prompt: str, cap: float = CAP, **constraints: object) -> Task:
    options: dict[str, object] = {"model": "gpt-4o", "max_cost_usd": cap, **constraints}
    return Task(prompt=prompt, task_id=unique("cap"), constraints=TaskConstraints(**options))


def _assert_stopped_by_the_cap(result: object, cap: float = CAP) -> None:
    from ai_orchestrator import Result

    assert isinstance(result, Result)
    assert result.status == TaskStatus.FAILED, result.error
    assert "max_cost_usd" in (result.error or "")
    billing = result.metadata["billing"]
    assert [b["error_type"] for b in billing].count(BUDGET_EXCEEDED) == 1
    # The true cost, every attempt's bill, within the cap and one chunk.
    assert result.cost == pytest.approx(sum(b["cost"] for b in billing))
    assert 0 < result.cost <= cap + CHUNK + 1e-12


async def test_a_stream_is_stopped_when_the_next_chunk_would_cross_the_cap(
    client: Client, queue: str, sim: Simulator, tasks: TaskClient
) -> None:
    sim.tokens_per_second, sim.default_tokens = 100, 300
    async with running_worker(client, queue, sim):
        result = await tasks.execute(_capped("count for a long while"))
    _assert_stopped_by_the_cap(result)
    kept = len(result.partial_output.split())
    assert 30 < kept < 50  # what was paid for is kept
    # Stopped at the provider, not left to generate the rest of its 300 tokens.
    (request,) = sim.requests
    assert kept <= request.tokens_sent < 300


async def test_earlier_attempts_count_against_the_cap(
    client: Client, queue: str, sim: Simulator, tasks: TaskClient
) -> None:
    """A broken first stream was billed: the retry may spend only what is left."""
    sim.tokens_per_second, sim.default_tokens = 100, 300
    sim.script(Fault.disconnect(after_tokens=30))
    async with running_worker(client, queue, sim):
        result = await tasks.execute(_capped("count, break, count again"))
    _assert_stopped_by_the_cap(result)
    first, second = sim.requests
    assert first.tokens_sent == 30 and second.tokens_sent < 30  # 30 + ~19 fit the cap
    assert [b["outcome"] for b in result.metadata["billing"]] == ["failed", "failed"]


async def test_a_call_the_cap_cannot_afford_is_never_made(
    client: Client, queue: str, sim: Simulator, tasks: TaskClient
) -> None:
    async with running_worker(client, queue, sim):
        result = await tasks.execute(_capped("too dear", cap=0.000001))
    assert result.status == TaskStatus.FAILED
    assert "before calling the provider" in (result.error or "")
    assert sim.requests == [] and result.cost == 0


async def test_a_cap_on_an_unpriced_model_is_refused_before_any_call(
    client: Client, queue: str, sim: Simulator, tasks: TaskClient
) -> None:
    async with running_worker(client, queue, sim):
        result = await tasks.execute(_capped("unknown price", model="gpt-unpriced-test"))
    assert result.status == TaskStatus.FAILED
    assert "has no price" in (result.error or "") and sim.requests == []


async def test_a_background_response_over_the_cap_is_cancelled_at_the_provider(
    client: Client, queue: str, sim: Simulator, tasks: TaskClient
) -> None:
    sim.tokens_per_second, sim.default_tokens = 100, 300
    async with running_worker(client, queue, sim):
        result = await tasks.execute(_capped("respond at length", openai_api="responses"))
    _assert_stopped_by_the_cap(result)
    (response,) = sim.responses.values()
    await sim.wait_until(lambda: response.status == "cancelled", timeout=10)
    assert response.generated_tokens < 300


async def test_a_fallback_model_spends_only_what_the_first_left(
    client: Client, queue: str, sim: Simulator
) -> None:
    """gpt-4o breaks twice (its attempts billed), then gpt-4o-mini may spend the rest:
    about 400 of its cheaper words. Were the first model's spend forgotten, its 600
    words would fit the cap and the task would complete."""
    retry = FAST_RETRY.model_copy(update={"max_attempts": 2})
    tasks = TaskClient(client, task_queue=queue, retry=retry)
    sim.tokens_per_second, sim.default_tokens = 400, 600
    sim.script(Fault.disconnect(after_tokens=10), Fault.disconnect(after_tokens=10))
    task = _capped("fall back within the cap", fallback_models=["gpt-4o-mini"])
    async with running_worker(client, queue, sim):
        result = await tasks.execute(task)
    _assert_stopped_by_the_cap(result)
    assert [r.model for r in sim.requests] == ["gpt-4o", "gpt-4o", "gpt-4o-mini"]
    assert 150 < sim.requests[-1].tokens_sent < 600
    models = {b["model"] for b in result.metadata["billing"]}
    assert models == {"gpt-4o", "gpt-4o-mini"}  # every model's attempts in the one bill


async def test_a_new_call_made_when_a_reattach_fails_counts_its_prompt(
    client: Client, queue: str, sim: Simulator, tasks: TaskClient
) -> None:
    """The first answer breaks and is gone by the retry: the retry's new call is billed
    its prompt again (about 62 chunks' worth here), which the cap must count."""
    sim.tokens_per_second, sim.default_tokens = 100, 300
    sim.script(Fault.drop_stream(after_events=30), Fault.expire())
    cap = 0.002  # both prompts (about $0.00063 each) and about 75 chunks
    task = _capped("words " * 167, cap=cap, openai_api="responses")  # ~250 tokens
    async with running_worker(client, queue, sim, checkpoint_interval=0.2):
        result = await tasks.execute(task)
    kinds = [str(r.kind) for r in sim.requests]
    assert kinds.count("create") == 2, kinds
    _assert_stopped_by_the_cap(result, cap)
