"""Named budgets: many tasks spending one team's money, never past it.

The issue's target: 20 tasks at once against a budget that fits about 10 answers.
What was spent is read from the simulator's own usage (what a provider would
bill), priced, never from our bills: it must stay within the budget plus one
chunk per running task; about 10 tasks complete, the others fail with the
budget's clear error, and none is left running.

Each task asks for ``MAX_TOKENS`` and the simulator answers exactly that many,
so a call's share (its prompt, about four characters a token, and
``MAX_TOKENS``) is a little more than its answer costs. The budget fits 10.5
shares: ten tasks are granted theirs at once, the others wait for those to
settle (room held is not room spent), then what is left of the day goes to the
next in turn, stopped as its share runs out (the stream's count of a chunk is more
cautious than the bill it settles with, so a few get a last share), and the rest
are refused.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError

from ai_orchestrator import Result, Task, TaskClient, TaskConstraints, TaskStatus
from ai_orchestrator.budgets import Budgets, Decision, LocalStore
from ai_orchestrator.budgets._redis import RedisStore
from ai_orchestrator.errors import NAMED_BUDGET_EXCEEDED
from ai_orchestrator.local.devserver import DevServer
from ai_orchestrator.pricing import PricingTable
from ai_orchestrator.simulator import Simulator

from ..conftest import FAST_RETRY, SECRET_KEY, running_worker, unique
from ..support.helpers import history_events
from ..support.processes import spawn_ready_worker, stop, worker_env

MODEL = "gpt-4o"  # $2.50 in, $10 out per million tokens
PRICE = PricingTable().lookup(MODEL)
assert PRICE is not None
CHUNK = PRICE.cost(0, 1)
TASKS, MAX_TOKENS = 20, 40
PROMPT = "budgeted task {:02d}"  # 16 characters: 4 tokens reserved, 3 words billed
SHARE = PRICE.cost(4, MAX_TOKENS)
BUDGET = round(10.5 * SHARE, 9)


def _billed(sim: Simulator) -> float:
    """What the provider would bill: its own prompt and output counts, priced."""
    return sum(PRICE.cost(r.prompt_tokens, r.tokens_sent) for r in sim.requests if r.status == 200)


async def _failure_type(client: Client, task_id: str) -> str | None:
    try:
        await client.get_workflow_handle(task_id).result()
    except WorkflowFailureError as exc:
        cause = exc.cause
        return cause.type if isinstance(cause, ApplicationError) else None
    return None


async def _burst(client: Client, queue: str, budget: str) -> list[tuple[str, Result]]:
    tasks = TaskClient(client, task_queue=queue, retry=FAST_RETRY)
    constraints = TaskConstraints(
        model=MODEL, max_tokens=MAX_TOKENS, budget=budget, timeout_seconds=120
    )
    ids = [
        await tasks.submit_task(
            Task(prompt=PROMPT.format(i), task_id=unique("nb"), constraints=constraints)
        )
        for i in range(TASKS)
    ]
    results = await asyncio.gather(*(tasks.get_result(i, timeout=150) for i in ids))
    return list(zip(ids, results, strict=True))


async def _assert_held_to_the_budget(
    client: Client, sim: Simulator, budget: str, outcomes: list[tuple[str, Result]]
) -> None:
    billed = _billed(sim)
    completed = [r for _, r in outcomes if r.status == TaskStatus.COMPLETED]
    failed = [(i, r) for i, r in outcomes if r.status != TaskStatus.COMPLETED]
    stopped = [r for _, r in failed if "ran out during this call" in (r.error or "")]
    refused = [r for _, r in failed if "is spent for today" in (r.error or "")]
    print(
        f"budget ${BUDGET:.7f}; billed ${billed:.7f} ({(billed - BUDGET) / CHUNK:+.2f} chunks); "
        f"{len(completed)} completed, {len(stopped)} stopped, {len(refused)} refused"
    )
    assert billed <= BUDGET + TASKS * CHUNK  # the bound: a chunk per running task
    # Only a stream stopped by its share can run over it, by the chunk in flight.
    assert billed <= BUDGET + len(stopped) * CHUNK
    assert 9 <= len(completed) <= 11
    assert all(len(r.output.split()) == MAX_TOKENS for r in completed)  # whole answers
    assert len(stopped) + len(refused) == len(failed)
    for task_id, result in failed:  # nothing stuck: every task ended, clearly
        assert result.status == TaskStatus.FAILED, result.status
        assert f"named budget {budget!r}" in (result.error or ""), result.error
        assert await _failure_type(client, task_id) == NAMED_BUDGET_EXCEEDED
    assert all(r.partial_output for r in stopped)  # what was paid for is kept
    for result in refused:  # refused when spent, not while others held it
        spent = float(re.search(r"\$([0-9.]+) of its", result.error or "")[1])  # type: ignore[index]
        assert spent > BUDGET - 2 * CHUNK, result.error
    assert len(sim.requests) == len(completed) + len(stopped)  # a refused call is never made


async def test_twenty_tasks_against_a_budget_for_ten(
    client: Client, queue: str, sim: Simulator
) -> None:
    sim.tokens_per_second, sim.default_tokens = 100, MAX_TOKENS
    name = unique("team")
    budgets = Budgets({name: BUDGET})
    async with running_worker(client, queue, sim, budgets=budgets):
        outcomes = await _burst(client, queue, name)
        spent, held = await budgets.store.standing(name)
    await _assert_held_to_the_budget(client, sim, name, outcomes)
    # The budget's own record: every share settled, nothing left held.
    assert held == 0 and spent <= BUDGET + CHUNK


async def test_a_budget_the_worker_does_not_know_fails_the_task_at_once(
    client: Client, queue: str, sim: Simulator, tasks: TaskClient
) -> None:
    task = Task(prompt="spend", constraints=TaskConstraints(model=MODEL, budget="team-x"))
    async with running_worker(client, queue, sim, budgets=Budgets({"team-a": 1.0})):
        result = await tasks.execute(task)
    assert result.status == TaskStatus.FAILED
    assert "named budget 'team-x' is not configured on this worker" in (result.error or "")
    assert sim.requests == []


async def test_two_worker_processes_share_one_budget_in_redis(
    temporal: DevServer, client: Client, sim: Simulator, redis_url: str
) -> None:
    """The same burst on two worker processes keeping the budget in one Redis: still
    one budget, not one per process."""
    sim.tokens_per_second, sim.default_tokens = 100, MAX_TOKENS
    name, queue = unique("tenant"), unique("tq-nb")
    env: dict[str, Any] = worker_env(temporal.target, queue, sim.base_url, SECRET_KEY)
    env.update(
        AI_ORCHESTRATOR_BUDGETS=f"{name}:usd_per_day={BUDGET!r}",
        AI_ORCHESTRATOR_BUDGETS_STORE=redis_url,
    )
    procs = [await spawn_ready_worker(env) for _ in range(2)]
    try:
        outcomes = await _burst(client, queue, name)
    finally:
        for proc in procs:
            await stop(proc)
    await _assert_held_to_the_budget(client, sim, name, outcomes)
    callers = {
        e.activity_task_started_event_attributes.identity
        for task_id, _ in outcomes
        for e in await history_events(client, task_id)
        if e.HasField("activity_task_started_event_attributes")
    }
    assert len(callers) == 2  # both processes took calls from the one budget
    store = RedisStore(redis_url)
    spent, held = await store.standing(name)
    await store.aclose()
    assert held == 0 and spent <= BUDGET + CHUNK


class _SilentSettle(LocalStore):
    """A store that grants shares but never answers a settlement (Redis stalled)."""

    def __init__(self) -> None:
        super().__init__()
        self.asked = asyncio.Event()

    async def settle(self, decision: Decision, cost: float) -> None:
        self.asked.set()
        await asyncio.Event().wait()


async def test_a_settlement_the_store_never_answers_keeps_the_paid_answer(
    client: Client, queue: str, sim: Simulator, tasks: TaskClient
) -> None:
    """The answer is returned, paid once; the share is left to its lease."""
    sim.tokens_per_second, sim.default_tokens = 100, 10
    name = unique("team")
    constraints = TaskConstraints(model=MODEL, max_tokens=10, budget=name, timeout_seconds=60)
    store = _SilentSettle()
    async with running_worker(client, queue, sim, budgets=Budgets({name: 1.0}, store)):
        result = await tasks.execute(Task(prompt="settle me", constraints=constraints))
    assert result.status == TaskStatus.COMPLETED, result.error
    assert store.asked.is_set()  # the settlement was asked, and never answered
    assert len(sim.requests) == 1  # paid once


class _BrokenLimiter:
    """A quota limiter failing in a way nobody planned for (a bug, a library error)."""

    async def acquire(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the limiter broke")


async def test_a_share_whose_call_never_started_goes_back(
    client: Client, queue: str, sim: Simulator
) -> None:
    """Whatever stops a call before it starts, its share of the budget is returned
    (it used to renew for as long as the worker lived)."""
    budgets = Budgets({"team-b": 1.0}, LocalStore())
    tasks = TaskClient(client, task_queue=queue, retry=FAST_RETRY)
    constraints = TaskConstraints(budget="team-b", max_tokens=20, timeout_seconds=4)
    async with running_worker(client, queue, sim, budgets=budgets, limiter=_BrokenLimiter()):
        result = await tasks.execute(
            Task(prompt="never called", task_id=unique("nb"), constraints=constraints)
        )
        assert result.status == TaskStatus.FAILED
        # Not a provider fault: retried until the deadline, which then ends it. The error
        # is the last attempt's, or Temporal's when the next retry would not fit in time
        # (a loaded machine's timing).
        error = result.error or ""
        assert "the limiter broke" in error or "before activity ScheduleToClose" in error, error
        assert await budgets.store.standing("team-b") == (0, 0)  # nothing held, nothing spent
    assert not sim.requests
