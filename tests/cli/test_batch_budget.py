"""A batch's cost cap (``run_batch(max_cost_usd=...)``, ``batch --max-cost-usd``), end to end.

A real worker streams from the test's simulator over HTTP, so the simulator's
request log is the bill: every answer is gpt-4o (one output token $0.00001), and
what each request cost is its prompt and the tokens it sent at that price.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections import Counter
from pathlib import Path

import pytest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from ai_orchestrator import Task, TaskClient, TaskConstraints, TaskStatus
from ai_orchestrator.batch import CAP_CANCELLED, CAP_NOT_SUBMITTED, reservation, run_batch
from ai_orchestrator.local.devserver import DevServer, free_port
from ai_orchestrator.local.session import worker_polling
from ai_orchestrator.pricing import PricingTable
from ai_orchestrator.simulator import Fault, Simulator

from ..conftest import running_worker, unique
from ..support.cli_inprocess import invoke
from ..support.processes import run_cli, worker_env
from .test_cli import assert_one_line_error

PRICE = PricingTable().lookup("gpt-4o")
assert PRICE is not None


def billed(sim: Simulator) -> float:
    """What the provider would charge for every request it saw."""
    return sum(PRICE.cost(r.prompt_tokens, r.tokens_sent) for r in sim.requests)


def prompts_seen(sim: Simulator) -> Counter[str]:
    return Counter(r.messages[-1]["content"] for r in sim.requests)


def capped_tasks(tag: str, count: int, max_tokens: int) -> list[Task]:
    options = TaskConstraints(model="gpt-4o", max_tokens=max_tokens)
    return [Task(prompt=f"{tag} #{i}", constraints=options) for i in range(count)]


async def cli_batch(client: Client, queue: str, target: str, *args: str) -> tuple[int, str, str]:
    """``ai-orchestrator batch ARGS`` in-process, on the test's worker (not one of its own)."""
    for _ in range(100):
        if await worker_polling(client, queue):
            break
        await asyncio.sleep(0.1)
    code, out, err = await invoke("batch", *args, target=target, queue=queue)
    assert "running worker" in err, err
    return code, out, err


async def never_started(client: Client, task_ids: list[str]) -> None:
    for task_id in task_ids:
        with pytest.raises(RPCError) as info:
            await client.get_workflow_handle(task_id).describe()
        assert info.value.status == RPCStatusCode.NOT_FOUND


async def test_a_capped_batch_runs_what_fits_and_a_rerun_with_more_runs_only_the_rest(
    client: Client, queue: str, sim: Simulator, tasks: TaskClient, tmp_path: Path
) -> None:
    sim.tokens_per_second, sim.default_tokens = 400, 40  # every answer is its max_tokens
    batch = capped_tasks(unique("fits"), 10, max_tokens=40)
    each = reservation(batch[0], PricingTable(), tasks.default_model)
    cap = 5.5 * each
    out = tmp_path / "r.jsonl"
    async with running_worker(client, queue, sim):
        report = await run_batch(
            tasks, batch, batch_id=unique("b"), concurrency=3, results_path=out, max_cost_usd=cap
        )
        s = report.summary
        # Task k is submitted once the k before it settled (at their true cost c)
        # leave room for its whole reservation: k * c + each <= cap.
        cost = report.results[0].cost
        assert 0 < cost <= each
        fits = math.floor((cap - each) / cost) + 1
        assert 3 <= fits <= 6  # about half
        statuses = [r.status for r in report.results]
        assert statuses == [TaskStatus.COMPLETED] * fits + [TaskStatus.FAILED] * (10 - fits)
        assert (s.completed, s.failed, s.cancelled, s.not_submitted) == (fits, 0, 0, 10 - fits)
        assert s.stopped_by_cap and s.max_cost_usd == cap and not s.ok
        # The provider's own bill stays within the cap, and is what the batch reports.
        assert billed(sim) <= cap
        assert s.cost_usd == pytest.approx(billed(sim))
        skipped = report.results[fits:]
        assert all((r.error or "").startswith(CAP_NOT_SUBMITTED) for r in skipped)
        assert len(sim.requests) == fits  # the rest never reached the provider ...
        await never_started(client, [r.task.task_id or "" for r in skipped])  # ... nor Temporal
        records = [json.loads(line) for line in out.read_text().splitlines()]
        assert [r["status"] for r in records] == [status.value for status in statuses]

        again = await run_batch(
            tasks,
            batch,
            batch_id=report.summary.batch_id,
            concurrency=3,
            results_path=out,
            max_cost_usd=100 * each,
        )
    assert again.summary.ok and not again.summary.stopped_by_cap
    assert again.summary.not_submitted == 0
    # Every prompt was paid for exactly once, across both runs.
    assert len(sim.requests) == 10 and set(prompts_seen(sim).values()) == {1}
    assert again.summary.cost_usd == pytest.approx(billed(sim))
    assert [r["status"] for r in map(json.loads, out.read_text().splitlines())] == [
        "completed"
    ] * 10


async def test_running_tasks_are_cancelled_once_their_retries_would_cross_the_cap(
    client: Client, queue: str, sim: Simulator, tasks: TaskClient, tmp_path: Path
) -> None:
    """Each attempt breaks after 80 of 100 tokens and is retried: a task soon costs
    more than it reserved. The batch must notice while the tasks run (not when they
    end, four broken attempts later) and cancel them."""
    sim.tokens_per_second, sim.default_tokens = 25, 100
    sim.script(Fault.disconnect(after_tokens=80, times=16))
    batch = capped_tasks(unique("cross"), 6, max_tokens=100)
    each = reservation(batch[0], PricingTable(), tasks.default_model)
    cap = 2.2 * each  # room for the first two tasks' reservations
    out = tmp_path / "r.jsonl"
    batch_id = unique("b")
    async with running_worker(client, queue, sim, max_cached_workflows=0):
        report = await run_batch(
            tasks, batch, batch_id=batch_id, concurrency=2, results_path=out, max_cost_usd=cap
        )
        s = report.summary
        assert (s.completed, s.failed, s.cancelled, s.not_submitted) == (0, 0, 2, 4)
        assert s.stopped_by_cap
        for result in report.results[:2]:
            assert result.status == TaskStatus.CANCELLED
            assert (result.error or "").startswith(CAP_CANCELLED)
            assert result.partial_output and result.cost > 0
        assert sum(r.cost for r in report.results[:2]) > each * 2  # more than reserved
        # The cap was crossed by no more than what was in flight when it was noticed:
        # the attempts running then, each at most one reservation.
        assert billed(sim) <= cap + 2 * each
        seen = prompts_seen(sim)
        assert set(seen) == {t.prompt for t in batch[:2]}  # the others never ran
        assert all(n < 4 for n in seen.values())  # stopped before its attempts ran out
        records = [json.loads(line) for line in out.read_text().splitlines()]
        assert [r["status"] for r in records] == ["cancelled"] * 2 + ["failed"] * 4

        # A re-run with room to spare runs the cancelled tasks again, and the rest.
        sim.reset()
        sim.tokens_per_second = 400
        again = await run_batch(
            tasks, batch, batch_id=batch_id, concurrency=2, results_path=out, max_cost_usd=1.0
        )
    assert again.summary.ok and again.summary.completed == 6
    assert set(prompts_seen(sim).values()) == {1} and len(sim.requests) == 6


@pytest.mark.parametrize("value", ["0", "-2", "ten", "nan"])
async def test_a_bad_cap_is_one_line_and_exit_2(value: str, tmp_path: Path) -> None:
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('"hello"\n')
    env = worker_env(f"127.0.0.1:{free_port()}", "q", None, None)  # never reached
    env["AI_ORCHESTRATOR_HOME"] = str(tmp_path)
    code, out, err = await run_cli("batch", str(prompts), "--max-cost-usd", value, env=env)
    assert_one_line_error(code, err, "--max-cost-usd")
    assert f"{value!r} is not an amount of dollars above 0" in err and out == ""
    assert not (tmp_path / "temporal.db").exists()  # nothing was started


async def test_cli_cap_on_an_unpriced_model_is_refused_before_submitting(
    temporal: DevServer, client: Client, queue: str, sim: Simulator, tmp_path: Path
) -> None:
    prompts = tmp_path / "p.jsonl"
    lines = [{"prompt": "priced", "constraints": {"model": "gpt-4o"}}]
    lines.append({"prompt": "unpriced", "constraints": {"model": "house-llm-7b"}})
    prompts.write_text("".join(json.dumps(line) + "\n" for line in lines))
    async with running_worker(client, queue, sim):
        code, out, err = await cli_batch(
            client, queue, temporal.target, str(prompts), "--max-cost-usd", "5"
        )
    assert code == 2, err
    assert "error: task " in err and "model 'house-llm-7b' has no price" in err
    assert out == "" and sim.requests == []  # nothing was submitted, let alone paid
    assert not (tmp_path / "p.results.jsonl").exists()


async def test_cli_says_when_the_cap_stopped_the_batch_and_exits_1(
    temporal: DevServer, client: Client, queue: str, sim: Simulator, tmp_path: Path
) -> None:
    sim.tokens_per_second, sim.default_tokens = 400, 20
    tag = unique("cli")
    batch = capped_tasks(tag, 4, max_tokens=20)
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(
        "".join(t.model_dump_json(include={"prompt", "constraints"}) + "\n" for t in batch)
    )
    each = reservation(batch[0], PricingTable(), "gpt-4o")
    cap = f"{2.5 * each:.9f}"
    async with running_worker(client, queue, sim):
        code, out, err = await cli_batch(
            client, queue, temporal.target, str(prompts), "--json", "--max-cost-usd", cap
        )
        assert code == 1, err
        summary = json.loads(out)
        assert summary["stopped_by_cap"] is True
        assert summary["max_cost_usd"] == pytest.approx(2.5 * each, rel=1e-6)
        assert (summary["completed"], summary["not_submitted"]) == (2, 2)
        assert "batch stopped by its cost cap" in err and "higher --max-cost-usd" in err
        assert "2 not submitted" in err and "Traceback" not in err

        code, out, err = await cli_batch(
            client, queue, temporal.target, str(prompts), "--max-cost-usd", "$1"
        )
    assert code == 0, err
    assert "4/4 completed" in err and "stopped by its cost cap" not in err
    assert len(sim.requests) == 4, err  # the first two were not paid for again
