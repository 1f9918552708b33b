"""A task waiting for its provider's quota says so: in ``describe_task`` and ``status``.

The simulator enforces a tokens-per-minute quota and the worker's limiter knows
it; a first task takes most of the minute's tokens, so a second one waits for
the refill before it may call the provider. While it waits, its status detail
says so (model, expected seconds); once the limiter lets it through, the detail
clears while it still streams, and it completes.
"""

from __future__ import annotations

import asyncio
import json

from temporalio.client import Client

from ai_orchestrator import (
    CapacityWait,
    Task,
    TaskClient,
    TaskConstraints,
    TaskDescription,
    TaskStatus,
)
from ai_orchestrator.limits import LocalLimiter
from ai_orchestrator.local.devserver import DevServer
from ai_orchestrator.simulator import Quotas, Simulator

from ..conftest import FAST_RETRY, running_worker, unique
from ..support.cli_inprocess import invoke

MODEL = "gpt-4o-mini"
TPM = 600  # 10 tokens a second
#: Each call reserves its prompt (a token or two) plus ``max_tokens``: the first
#: leaves about 218 of the 600, the second needs about 305, so it waits for
#: about 9 s of refill.
FIRST_MAX_TOKENS, SECOND_MAX_TOKENS = 380, 300
#: Answers stream 30 tokens at 10 a second: the second task is still streaming
#: well after its wait ends, so the cleared detail is seen before it completes.
ANSWER_TOKENS, TOKENS_PER_SECOND = 30, 10.0
#: Bound on every wait below (the task's own time is far shorter).
PATIENCE = 60.0


async def _until(tasks: TaskClient, task_id: str, done: object, what: str) -> TaskDescription:
    """Describe ``task_id`` until ``done(description)``; fails once the task has
    ended without it, or after PATIENCE seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + PATIENCE
    while True:
        described = await tasks.describe_task(task_id)
        if done(described):  # type: ignore[operator]
            return described
        assert not described.status.is_terminal, f"{what}: {described}"
        assert loop.time() < deadline, f"{what}: still {described}"
        await asyncio.sleep(0.05)


async def _cli_until_waiting(task_id: str, *extra: str, target: str, queue: str) -> str:
    """``status`` until it reports the wait (the wait lasts seconds; this bounds it)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + PATIENCE
    while True:
        code, out, err = await invoke("status", task_id, *extra, target=target, queue=queue)
        assert code == 5, f"status never said it waits while the task ran: {out!r} {err}"
        if "waiting_for_capacity" in out or "waiting for capacity" in out:
            return out
        assert loop.time() < deadline, f"status never said it waits: {out!r}"
        await asyncio.sleep(0.05)


async def test_a_task_waiting_for_capacity_says_so_until_its_turn(
    temporal: DevServer, client: Client, queue: str, sim: Simulator
) -> None:
    sim.tokens_per_second, sim.default_tokens = TOKENS_PER_SECOND, ANSWER_TOKENS
    sim.quotas = Quotas(tpm=TPM)
    tasks = TaskClient(client, task_queue=queue, retry=FAST_RETRY)
    limiter = LocalLimiter({MODEL: (TPM, None)})
    first = Task(
        prompt="first",
        task_id=unique("cap"),
        constraints=TaskConstraints(model=MODEL, max_tokens=FIRST_MAX_TOKENS, timeout_seconds=120),
    )
    second = Task(
        prompt="second",
        task_id=unique("cap"),
        constraints=TaskConstraints(model=MODEL, max_tokens=SECOND_MAX_TOKENS, timeout_seconds=120),
    )
    at = {"target": temporal.target, "queue": queue}
    async with running_worker(client, queue, sim, limiter=limiter):
        await tasks.submit_task(first)
        assert first.task_id and second.task_id
        # The first has its tokens once the provider has its request.
        await _until(tasks, first.task_id, lambda _: len(sim.requests) >= 1, "first call")
        await tasks.submit_task(second)

        waiting = await _until(
            tasks,
            second.task_id,
            lambda d: d.waiting_for_capacity is not None,
            "the second task never said it waits for capacity",
        )
        assert waiting.status == TaskStatus.RUNNING
        wait = waiting.waiting_for_capacity
        assert isinstance(wait, CapacityWait) and wait.model == MODEL
        assert wait.seconds is not None and wait.seconds > 0  # the limiter's estimate
        assert len(sim.requests) == 1  # the provider has not heard of it

        line = await _cli_until_waiting(second.task_id, **at)
        assert line.startswith(f"running  waiting for capacity on {MODEL} (about ")
        out = await _cli_until_waiting(second.task_id, "--json", **at)
        shown = json.loads(out)
        assert shown["status"] == "running" and shown["waiting_for_capacity"]["model"] == MODEL

        cleared = await _until(
            tasks,
            second.task_id,
            lambda d: d.waiting_for_capacity is None,
            "the wait never cleared",
        )
        # Cleared by the attempt's own heartbeat, not by the task ending.
        assert cleared.status == TaskStatus.RUNNING, f"the wait was shown to the end: {cleared}"

        for task_id in (first.task_id, second.task_id):
            result = await tasks.get_result(task_id, timeout=PATIENCE)
            assert result.status == TaskStatus.COMPLETED, result.error

        code, out, err = await invoke("status", second.task_id, **at)
        assert (code, out.strip()) == (0, "completed"), err
        assert await tasks.describe_task(second.task_id) == TaskDescription(
            second.task_id, TaskStatus.COMPLETED
        )
