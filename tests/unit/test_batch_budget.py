"""The batch cost cap's arithmetic, and its admission rules against a fake client."""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path

import pytest

from ai_orchestrator.batch import (
    CAP_CANCELLED,
    CAP_NOT_SUBMITTED,
    BatchInputError,
    _budget,
    read_results,
    reservation,
    run_batch,
)
from ai_orchestrator.batch._budget import Purse
from ai_orchestrator.core import Result, Task, TaskConstraints, TaskStatus
from ai_orchestrator.limits import DEFAULT_MAX_TOKENS
from ai_orchestrator.pricing import ModelPrice, PricingTable

TABLE = PricingTable()
GPT_4O = TABLE.lookup("gpt-4o")
assert GPT_4O is not None


def task(prompt: str = "x" * 400, task_id: str = "t", **constraints: object) -> Task:
    return Task(prompt=prompt, task_id=task_id, constraints=TaskConstraints(**constraints))  # type: ignore[arg-type]


def test_a_reservation_is_the_prompt_and_max_tokens_at_the_models_price() -> None:
    # 400 characters are 100 tokens, as the worker counts a prompt before the provider does.
    assert reservation(task(model="gpt-4o", max_tokens=50), TABLE, "gpt-4o-mini") == (
        pytest.approx(GPT_4O.cost(100, 50))
    )
    assert reservation(task(prompt="abcde", model="gpt-4o", max_tokens=1), TABLE, "x") == (
        pytest.approx(GPT_4O.cost(2, 1))  # rounded up
    )


def test_without_max_tokens_the_worker_default_is_reserved_on_the_default_model() -> None:
    mini = TABLE.lookup("gpt-4o-mini")
    assert mini is not None
    assert reservation(task(), TABLE, "gpt-4o-mini") == pytest.approx(
        mini.cost(100, DEFAULT_MAX_TOKENS)
    )


def test_context_is_part_of_the_prompt() -> None:
    plain = reservation(task(model="gpt-4o", max_tokens=1), TABLE, "m")
    with_context = Task(
        prompt="x" * 400,
        context={"doc": "y" * 4000},
        constraints=TaskConstraints(model="gpt-4o", max_tokens=1),
    )
    assert reservation(with_context, TABLE, "m") > plain + GPT_4O.cost(1000, 0) * 0.99


def test_the_tasks_own_cap_bounds_its_reservation() -> None:
    assert reservation(task(model="gpt-4o", max_cost_usd=0.0001), TABLE, "m") == 0.0001
    dear = reservation(task(model="gpt-4o", max_tokens=10), TABLE, "m")
    assert reservation(task(model="gpt-4o", max_tokens=10, max_cost_usd=1.0), TABLE, "m") == dear


def test_the_dearest_model_a_task_may_fall_back_to_is_reserved() -> None:
    t = task(model="gpt-4o-mini", max_tokens=10, fallback_models=["gpt-4o"])
    assert reservation(t, TABLE, "m") == pytest.approx(GPT_4O.cost(100, 10))


@pytest.mark.parametrize(
    "constraints",
    [{"model": "my-own-llm"}, {"model": "gpt-4o", "fallback_models": ["my-own-llm"]}],
)
def test_a_model_without_a_price_is_refused_by_name(constraints: dict[str, object]) -> None:
    with pytest.raises(BatchInputError, match=r"task 't': model 'my-own-llm' has no price"):
        reservation(task(**constraints), TABLE, "gpt-4o-mini")
    priced = TABLE.with_prices(
        {"my-own-llm": ModelPrice(input_per_million=1, output_per_million=1)}
    )
    assert reservation(task(**constraints), priced, "gpt-4o-mini") > 0


def test_the_purse_counts_settled_spend_and_the_larger_of_reserved_and_spent() -> None:
    purse = Purse(1.0, settled=0.25)
    purse.hold("a", 0.25)
    purse.hold("b", 0.25)
    assert purse.committed() == 0.75 and purse.fits(0.25) and not purse.fits(0.2500001)
    purse.see("a", 0.1)  # under its reservation: the reservation still counts
    assert purse.committed() == 0.75
    purse.see("a", 0.5)  # a retry cost more than reserved
    purse.see("a", 0.3)  # spend seen never goes down
    assert purse.committed() == 1.0 and not purse.crossed() and not purse.fits(0.01)
    purse.see("b", 0.26)
    assert purse.crossed()
    purse.settle("a", 0.2)  # its true cost replaces what was seen
    assert purse.committed() == pytest.approx(0.71) and not purse.crossed()
    purse.see("a", 5.0)  # ignored once settled
    assert purse.committed() == pytest.approx(0.71)


@pytest.mark.parametrize("cap", [0.0, -1.0, math.nan, math.inf])
def test_a_cap_must_be_a_number_above_zero(cap: float) -> None:
    with pytest.raises(ValueError, match="max_cost_usd must be a number above 0"):
        Purse(cap)


class CapClient:
    """A TaskClient stand-in: every task costs ``cost``; records what it was asked."""

    pricing = None
    default_model = "gpt-4o"

    def __init__(self, cost: float, known: dict[str, TaskStatus] | None = None) -> None:
        self.cost = cost
        self.known = dict(known or {})
        self.submitted: list[str] = []
        self.reran: list[str] = []

    async def submit_task(self, task: Task) -> str:
        assert task.task_id is not None
        self.submitted.append(task.task_id)
        self.known.setdefault(task.task_id, TaskStatus.COMPLETED)  # an old run is attached
        return task.task_id

    async def rerun_task(self, task_id: str) -> str:
        self.reran.append(task_id)
        self.known[task_id] = TaskStatus.COMPLETED
        return task_id

    async def get_status(self, task_id: str) -> TaskStatus:
        return self.known.get(task_id, TaskStatus.UNKNOWN)

    async def get_result(self, task_id: str, timeout: float | None = 300) -> Result:
        await asyncio.sleep(0.001)
        status = self.known[task_id]
        return Result(
            task=Task(prompt="p", task_id=task_id),
            status=status,
            success=status == TaskStatus.COMPLETED,
            cost=self.cost,
        )


@pytest.fixture(autouse=True)
def _no_spend_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    async def nothing(*_: object) -> None:
        return None

    monkeypatch.setattr(_budget, "spend_so_far", nothing)


async def test_tasks_the_cap_cannot_afford_are_not_submitted_in_input_order(
    tmp_path: Path,
) -> None:
    tasks = [task(prompt=f"p{i}" * 200, task_id=f"t{i}", max_tokens=100) for i in range(8)]
    each = reservation(tasks[0], TABLE, "gpt-4o")
    out = tmp_path / "r.jsonl"
    client = CapClient(cost=each * 0.9)
    # Cap: 3.5 reservations. Task k runs if the k settled before it plus its own
    # reservation fit: 0.9k + 1 <= 3.5, so tasks 0-2 run.
    report = await run_batch(
        client,  # type: ignore[arg-type]
        tasks,
        batch_id="b",
        concurrency=3,
        results_path=out,
        max_cost_usd=each * 3.5,
    )
    assert client.submitted == ["t0", "t1", "t2"]
    s = report.summary
    assert (s.completed, s.failed, s.not_submitted, s.stopped_by_cap) == (3, 0, 5, True)
    assert s.max_cost_usd == each * 3.5 and s.cost_usd <= each * 3.5
    skipped = report.results[3:]
    assert all(r.status == TaskStatus.FAILED for r in skipped)
    assert all((r.error or "").startswith(CAP_NOT_SUBMITTED) for r in skipped)
    records = read_results(out)
    assert [records[f"t{i}"]["status"] for i in range(8)] == ["completed"] * 3 + ["failed"] * 5

    client.submitted.clear()
    again = await run_batch(
        client,  # type: ignore[arg-type]
        tasks,
        batch_id="b",
        concurrency=3,
        results_path=out,
        max_cost_usd=each * 100,
    )
    assert client.submitted == [f"t{i}" for i in range(3, 8)]  # the rest, once
    assert again.summary.ok and not again.summary.stopped_by_cap


async def test_a_task_an_earlier_run_submitted_is_followed_not_reported_unsubmitted() -> None:
    tasks = [task(task_id=f"t{i}", model="gpt-4o", max_tokens=10) for i in range(2)]
    each = reservation(tasks[0], TABLE, "gpt-4o")
    client = CapClient(cost=each, known={"t1": TaskStatus.COMPLETED})
    report = await run_batch(client, tasks, batch_id="b", max_cost_usd=each * 1.5)  # type: ignore[arg-type]
    assert client.submitted == ["t0"]
    assert [r.status for r in report.results] == [TaskStatus.COMPLETED] * 2
    assert report.summary.not_submitted == 0


async def test_tasks_the_cap_cancelled_are_run_again_by_a_rerun(tmp_path: Path) -> None:
    tasks = [task(task_id=f"t{i}", model="gpt-4o", max_tokens=10) for i in range(3)]
    out = tmp_path / "r.jsonl"
    client = CapClient(cost=0.001, known={"t1": TaskStatus.CANCELLED})
    first = await run_batch(client, tasks, batch_id="b", results_path=out)  # type: ignore[arg-type]
    assert first.results[1].status == TaskStatus.CANCELLED
    client.submitted.clear()
    again = await run_batch(client, tasks, batch_id="b", results_path=out)  # type: ignore[arg-type]
    assert client.submitted == ["t1"] and client.reran == []  # a user's cancel stays
    assert again.results[1].status == TaskStatus.CANCELLED

    records = [json.loads(line) for line in out.read_text().splitlines()]
    records[1]["error"] = f"{CAP_CANCELLED} ($1.000000) would have been crossed"
    out.write_text("".join(json.dumps(r) + "\n" for r in records))
    client.submitted.clear()
    last = await run_batch(client, tasks, batch_id="b", results_path=out)  # type: ignore[arg-type]
    assert client.reran == ["t1"] and client.submitted == []
    assert last.summary.ok
