"""Self-regulating under a provider's quota: reserve before the call, not 429 after it.

The simulator enforces a tokens-per-minute quota the way providers do (prompt plus
``max_tokens`` counted when a request arrives, refilled over the minute, 429 with
Retry-After when it does not fit). The same burst of tasks runs with and without
the worker's limiter.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from temporalio.client import Client

from ai_orchestrator import Task, TaskClient, TaskConstraints, TaskStatus
from ai_orchestrator.limits import Lease, LocalLimiter
from ai_orchestrator.simulator import Fault, Quotas, Simulator

from ..conftest import FAST_RETRY, running_worker, unique

TPM = 1200  # 20 tokens a second
TASKS, MAX_TOKENS = 22, 58  # 60 tokens each: 1,320 in all, 120 more than a minute's worth


async def _burst(client: Client, queue: str, sim: Simulator, limiter: LocalLimiter | None) -> int:
    """Run the burst; the 429s the provider answered."""
    sim.reset()
    sim.tokens_per_second, sim.default_tokens = 200, 20
    sim.quotas = Quotas(tpm=TPM)
    tasks = TaskClient(client, task_queue=queue, retry=FAST_RETRY)
    constraints = TaskConstraints(max_tokens=MAX_TOKENS, timeout_seconds=120)
    async with running_worker(client, queue, sim, limiter=limiter):
        results = await asyncio.gather(
            *(
                tasks.execute(Task(prompt="a burst", task_id=unique("q"), constraints=constraints))
                for _ in range(TASKS)
            )
        )
    assert [r.status for r in results] == [TaskStatus.COMPLETED] * TASKS
    return sim.rate_limited


async def test_a_burst_waits_its_turn_instead_of_drawing_429s(
    client: Client, queue: str, sim: Simulator
) -> None:
    """Configured limits keep the burst within the quota; with nothing configured one
    call goes first and its answer's headers say where the key stands."""
    without = await _burst(client, unique("tq"), sim, None)
    configured = await _burst(client, queue, sim, LocalLimiter({"gpt-4o-mini": (TPM, None)}))
    learned = await _burst(client, unique("tq"), sim, LocalLimiter())
    # The burst does press on the quota: refused once its 21st call comes within 6 s of
    # the first (the quota then refills a call every 3 s).
    assert without >= 1
    assert configured == 0  # the calls waited their turn instead
    assert learned == 0  # the burst waited for the first answer's headers


class _Counting(LocalLimiter):
    """The worker's own limiter, counting the calls it reserved for."""

    def __init__(self) -> None:
        super().__init__()
        self.reserved = 0

    async def acquire(self, *args: Any, **kwargs: Any) -> Lease:
        self.reserved += 1
        return await super().acquire(*args, **kwargs)


@pytest.mark.parametrize("expire", [False, True])
async def test_every_request_the_provider_counts_is_reserved_and_no_other(
    client: Client, queue: str, sim: Simulator, expire: bool
) -> None:
    """A re-attach to a background response costs no quota and reserves none; when
    the response is gone, the new request made instead is reserved like the first."""
    sim.tokens_per_second, sim.default_tokens = 60, 60
    sim.script(Fault.drop_stream(after_events=30), *([Fault.expire()] if expire else []))
    limiter = _Counting()
    # A busy machine can stall the worker past FAST_RETRY's 2 s heartbeat timeout; the
    # attempt then times out and its answer is rightly made anew (seen once, profiled).
    retry = FAST_RETRY.model_copy(update={"heartbeat_timeout_seconds": 20.0})
    tasks = TaskClient(client, task_queue=queue, retry=retry)
    constraints = TaskConstraints(openai_api="responses", timeout_seconds=120)
    async with running_worker(client, queue, sim, limiter=limiter, checkpoint_interval=0.2):
        result = await tasks.execute(
            Task(prompt="count me", task_id=unique("reserve"), constraints=constraints)
        )
    assert result.status == TaskStatus.COMPLETED, result.error
    kinds = [str(r.kind) for r in sim.requests if r.api == "responses"]
    assert kinds.count("create") == (2 if expire else 1), kinds
    assert "retrieve_stream" in kinds or expire, kinds
    assert limiter.reserved == kinds.count("create")
