"""The results file as a checkpoint: completed records are not paid for again."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from ai_orchestrator.batch import read_results, run_batch, write_results
from ai_orchestrator.client._identity import fingerprint
from ai_orchestrator.core import Result, Task, TaskStatus


class Recorder:
    """Submissions and waits, as a TaskClient would see them; ``hold`` never finishes."""

    def __init__(self, hold: frozenset[str] = frozenset()) -> None:
        self.hold = hold
        self.submitted: list[str] = []

    async def submit_task(self, task: Task) -> str:
        assert task.task_id is not None
        self.submitted.append(task.task_id)
        return task.task_id

    async def get_result(self, task_id: str, timeout: float | None = 300) -> Result:
        if task_id in self.hold:
            await asyncio.Event().wait()
        return Result(
            task=Task(prompt="whatever the run says", task_id=task_id),
            status=TaskStatus.COMPLETED,
            success=True,
            output=f"answer {task_id}",
            tokens_used=3,
            cost=0.5,
        )


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


async def test_completed_records_of_the_same_task_are_not_submitted(tmp_path: Path) -> None:
    """Promise: batches never re-pay after the namespace's retention."""
    tasks = [Task(prompt=f"p{i}") for i in range(4)] + [Task(prompt="mine", task_id="own")]
    out = tmp_path / "r.jsonl"
    first = Recorder()
    await run_batch(first, tasks, batch_id="b", results_path=out)  # type: ignore[arg-type]
    assert len(first.submitted) == 5
    records = lines(out)
    assert [r["fingerprint"] for r in records] == [fingerprint(t) for t in tasks]
    # Damage the checkpoint in every way that must lead to a (free, idempotent) resubmit.
    records[1]["status"] = "failed"
    records[2]["fingerprint"] = "sha256:something-else"
    del records[3]
    out.write_text("".join(json.dumps(r) + "\n" for r in records) + "not json\n")
    edited = [*tasks[:4], Task(prompt="mine, edited", task_id="own")]  # same id, new task

    second = Recorder()
    report = await run_batch(second, edited, batch_id="b", results_path=out)  # type: ignore[arg-type]
    assert second.submitted == ["b-00001", "b-00002", "b-00003", "own"]
    assert report.summary.ok and report.results[0].output == "answer b-00000"
    assert report.results[0].metadata["from_results_file"] is True
    assert [r["index"] for r in lines(out)] == [0, 1, 2, 3, 4]

    third = Recorder()
    report = await run_batch(third, edited, batch_id="b", results_path=out)  # type: ignore[arg-type]
    assert third.submitted == [] and report.summary.completed == 5
    assert report.summary.cost_usd == 5 * 0.5  # what the batch cost, as recorded


async def test_results_are_written_while_the_batch_runs_and_when_interrupted(
    tmp_path: Path,
) -> None:
    """Promise: a batch that died halfway keeps what finished."""
    out = tmp_path / "r.jsonl"
    client = Recorder(hold=frozenset({"b-00002"}))
    run = asyncio.ensure_future(
        run_batch(
            client,  # type: ignore[arg-type]
            [Task(prompt=f"p{i}") for i in range(5)],
            batch_id="b",
            concurrency=2,
            results_path=out,
            write_interval=0.05,
        )
    )
    for _ in range(100):
        if out.exists() and len(lines(out)) == 4:
            break
        await asyncio.sleep(0.02)
    assert not run.done()
    assert [r["task_id"] for r in lines(out)] == ["b-00000", "b-00001", "b-00003", "b-00004"]
    run.cancel()
    await asyncio.gather(run, return_exceptions=True)
    assert len(read_results(out)) == 4 and names(tmp_path) == ["r.jsonl"]


def test_read_results_of_a_missing_file_is_empty(tmp_path: Path) -> None:
    assert read_results(tmp_path / "none.jsonl") == {}
    write_results(tmp_path / "r.jsonl", [])
    assert read_results(tmp_path / "r.jsonl") == {}
