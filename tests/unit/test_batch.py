"""Batch input, ids, results file, and the scheduler against a fake client."""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path
from typing import Any

import pytest

import ai_orchestrator.batch._results as batch_results
from ai_orchestrator.batch import (
    BatchInputError,
    BatchProgress,
    assign_task_ids,
    batch_id_for,
    read_tasks,
    run_batch,
    write_results,
)
from ai_orchestrator.cli._batch import ProgressPrinter, default_output, progress_line
from ai_orchestrator.client._identity import fingerprint
from ai_orchestrator.core import Result, Task, TaskStatus, TaskType
from ai_orchestrator.exceptions import TaskValidationError


def write(tmp_path: Path, *lines: str, name: str = "prompts.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


# -- read_tasks -------------------------------------------------------------------


def test_strings_and_objects_in_order_blank_lines_skipped(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '"first prompt"',
        "",
        "   ",
        json.dumps(
            {
                "prompt": "second",
                "constraints": {"max_tokens": 50},
                "type": "research",
                "task_id": "mine",
                "priority": 1,
            }
        ),
        '"third"',
    )
    tasks = read_tasks(path)
    assert [t.prompt for t in tasks] == ["first prompt", "second", "third"]
    assert tasks[0].task_id is None and tasks[0].type == TaskType.GENERAL
    second = tasks[1]
    assert second.task_id == "mine" and second.type == TaskType.RESEARCH
    assert second.constraints is not None and second.constraints.max_tokens == 50
    assert second.priority == 1


def test_bom_and_crlf_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_bytes(b'\xef\xbb\xbf"a"\r\n\r\n"b"\r\n')
    assert [t.prompt for t in read_tasks(path)] == ["a", "b"]


def test_invalid_json_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, '"ok"', "", '{"prompt": "x"', '"never read"')
    with pytest.raises(BatchInputError) as info:
        read_tasks(path)
    message = str(info.value)
    assert message.startswith(f"{path} line 3: invalid JSON")
    assert "\n" not in message and "Traceback" not in message


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        ('{"prompt": "x", "bogus": 1}', "bogus: Extra inputs are not permitted"),
        ('{"prompt": "   "}', "prompt"),
        ('{"prompt": "x", "constraints": {"max_tokens": 0}}', "constraints.max_tokens"),
        ('{"prompt": "x", "type": "poetry"}', "type"),
        ('{"constraints": {}}', "prompt: Field required"),
        ('""', "prompt must not be empty"),
        ("[1, 2]", "expected a JSON string"),
        ("42", "got int"),
    ],
)
def test_validation_error_names_line(tmp_path: Path, line: str, needle: str) -> None:
    path = write(tmp_path, '"ok"', line)
    with pytest.raises(BatchInputError) as info:
        read_tasks(path)
    message = str(info.value)
    assert message.startswith(f"{path} line 2: ") and needle in message, message
    assert "\n" not in message


def test_empty_file(tmp_path: Path) -> None:
    for content in ("", "\n\n  \n"):
        path = tmp_path / "empty.jsonl"
        path.write_text(content)
        with pytest.raises(BatchInputError, match="no tasks"):
            read_tasks(path)


def test_missing_file_and_bad_encoding(tmp_path: Path) -> None:
    with pytest.raises(BatchInputError, match="cannot read"):
        read_tasks(tmp_path / "missing.jsonl")
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(b'"ok"\n"caf\xe9"\n')
    with pytest.raises(BatchInputError, match="line 2: not valid UTF-8"):
        read_tasks(path)


def test_duplicate_explicit_task_ids_are_refused(tmp_path: Path) -> None:
    path = write(
        tmp_path, '{"prompt": "a", "task_id": "t"}', '"b"', '{"prompt": "c", "task_id": "t"}'
    )
    with pytest.raises(BatchInputError, match=r"line 3: duplicate task_id 't' \(first on line 1\)"):
        read_tasks(path)


# -- ids --------------------------------------------------------------------------


def test_batch_id_is_content_hash(tmp_path: Path) -> None:
    a = write(tmp_path, '"x"', '"y"', name="a.jsonl")
    b = write(tmp_path, '"x"', '"y"', name="b.jsonl")
    c = write(tmp_path, '"x"', '"z"', name="c.jsonl")
    assert batch_id_for(a) == batch_id_for(b) == batch_id_for(a)
    assert batch_id_for(a) != batch_id_for(c)
    assert batch_id_for(a).startswith("batch-") and len(batch_id_for(a)) == len("batch-") + 12


def test_task_ids_deterministic_and_explicit_ids_kept(tmp_path: Path) -> None:
    path = write(tmp_path, '"a"', '{"prompt": "b", "task_id": "keep-me"}', "", '"c"')
    batch_id = batch_id_for(path)
    first = assign_task_ids(read_tasks(path), batch_id)
    second = assign_task_ids(read_tasks(path), batch_id)
    ids = [t.task_id for t in first]
    assert ids == [f"{batch_id}-00000", "keep-me", f"{batch_id}-00002"]  # input index
    assert ids == [t.task_id for t in second]
    assert [t.task_id for t in assign_task_ids(first, "other")] == ids  # idempotent
    override = assign_task_ids(read_tasks(path), "nightly-7")
    assert [t.task_id for t in override] == ["nightly-7-00000", "keep-me", "nightly-7-00002"]


def test_bad_batch_id_and_collisions() -> None:
    for bad in ("", "  ", "a\nb", "x" * 201):
        with pytest.raises(BatchInputError, match="batch id"):
            assign_task_ids([Task(prompt="p")], bad)
    with pytest.raises(BatchInputError, match="same task_id 'b-00001'"):
        assign_task_ids([Task(prompt="p", task_id="b-00001"), Task(prompt="q")], "b")


# -- write_results ----------------------------------------------------------------


def result(task_id: str, status: TaskStatus, **fields: Any) -> Result:
    return Result(task=Task(prompt="p", task_id=task_id), status=status, **fields)


def test_write_results_in_given_order(tmp_path: Path) -> None:
    results = [
        result(
            "b-00000",
            TaskStatus.COMPLETED,
            success=True,
            output="answer",
            tokens_used=12,
            cost=0.5,
            metadata={"model": "gpt-4o-mini"},
        ),
        result("b-00001", TaskStatus.FAILED, error="boom", partial_output="half"),
        result("b-00002", TaskStatus.CANCELLED, error="cancelled"),
    ]
    out = tmp_path / "out.jsonl"
    write_results(out, results)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert lines == [
        {
            "index": 0,
            "task_id": "b-00000",
            "status": "completed",
            "output": "answer",
            "error": None,
            "tokens": 12,
            "cost_usd": 0.5,
            "model": "gpt-4o-mini",
            "fingerprint": fingerprint(Task(prompt="p")),
        },
        {
            "index": 1,
            "task_id": "b-00001",
            "status": "failed",
            "output": "half",
            "error": "boom",
            "tokens": 0,
            "cost_usd": 0.0,
            "model": None,
            "fingerprint": fingerprint(Task(prompt="p")),
        },
        {
            "index": 2,
            "task_id": "b-00002",
            "status": "cancelled",
            "output": "",
            "error": "cancelled",
            "tokens": 0,
            "cost_usd": 0.0,
            "model": None,
            "fingerprint": fingerprint(Task(prompt="p")),
        },
    ]
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]  # no temp file left


def test_write_results_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out.jsonl"
    out.write_text("previous\n")

    class Boom(Exception):
        pass

    real = batch_results.result_record

    def fail_on_second(index: int, res: Result) -> dict[str, Any]:
        if index == 1:
            raise Boom  # a crash mid-write
        return real(index, res)

    monkeypatch.setattr(batch_results, "result_record", fail_on_second)
    with pytest.raises(Boom):
        write_results(out, [result("a", TaskStatus.COMPLETED), result("b", TaskStatus.COMPLETED)])
    assert out.read_text() == "previous\n"  # the old file, whole
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]  # temp file removed


# -- run_batch against a fake client -----------------------------------------------


class FakeClient:
    """Records open tasks; finishes each after a short random delay."""

    def __init__(
        self, fail: frozenset[str] = frozenset(), refuse: frozenset[str] = frozenset()
    ) -> None:
        self.fail, self.refuse = fail, refuse
        self.open: set[str] = set()
        self.max_open = 0
        self.submitted: list[str] = []
        self.finished: set[str] = set()

    async def submit_task(self, task: Task) -> str:
        assert task.task_id is not None
        if task.task_id in self.refuse:
            raise TaskValidationError("model 'nope' is not allowed")
        self.submitted.append(task.task_id)
        if task.task_id not in self.finished:
            self.open.add(task.task_id)
            self.max_open = max(self.max_open, len(self.open))
        return task.task_id

    async def get_result(self, task_id: str, timeout: float | None = 300) -> Result:
        assert timeout is None
        if task_id not in self.finished:
            await asyncio.sleep(random.uniform(0, 0.01))
        self.open.discard(task_id)
        self.finished.add(task_id)
        if task_id in self.fail:
            return result(task_id, TaskStatus.FAILED, error="provider error")
        return result(
            task_id, TaskStatus.COMPLETED, success=True, output=task_id, tokens_used=3, cost=0.25
        )


async def test_run_batch_bounds_concurrency_and_keeps_input_order() -> None:
    client = FakeClient(fail=frozenset({"b-00004"}), refuse=frozenset({"b-00007"}))
    tasks = [Task(prompt=f"p{i}") for i in range(30)]
    seen: list[BatchProgress] = []
    report = await run_batch(client, tasks, batch_id="b", concurrency=4, on_progress=seen.append)  # type: ignore[arg-type]
    assert client.max_open == 4
    assert [r.task.task_id for r in report.results] == [f"b-{i:05d}" for i in range(30)]
    assert report.results[4].status == TaskStatus.FAILED
    assert report.results[7].status == TaskStatus.FAILED and "not allowed" in (
        report.results[7].error or ""
    )
    s = report.summary
    assert (s.batch_id, s.total, s.completed, s.failed, s.cancelled) == ("b", 30, 28, 2, 0)
    assert s.tokens == 28 * 3 and s.cost_usd == pytest.approx(28 * 0.25) and not s.ok
    assert seen[0] == BatchProgress(total=30)
    assert seen[-1] == BatchProgress(total=30, submitted=29, running=0, completed=28, failed=2)
    assert all(p.running <= 4 for p in seen)
    assert [p.done for p in seen] == sorted(p.done for p in seen)
    # Every change is reported: 29 submissions + 30 ends + the initial snapshot.
    assert len(seen) == 1 + 29 + 30


async def test_run_batch_rerun_submits_same_ids() -> None:
    client = FakeClient()
    tasks = [Task(prompt=f"p{i}") for i in range(5)]
    await run_batch(client, tasks, batch_id="b", concurrency=2)  # type: ignore[arg-type]
    first = list(client.submitted)
    report = await run_batch(client, tasks, batch_id="b", concurrency=2)  # type: ignore[arg-type]
    assert client.submitted == first + first and report.summary.ok


async def test_run_batch_rejects_bad_concurrency() -> None:
    with pytest.raises(ValueError, match="concurrency must be at least 1"):
        await run_batch(FakeClient(), [Task(prompt="p")], batch_id="b", concurrency=0)  # type: ignore[arg-type]


async def test_run_batch_error_aborts_and_cancels_slots() -> None:
    class Down(FakeClient):
        async def get_result(self, task_id: str, timeout: float | None = 300) -> Result:
            if task_id == "b-00002":
                raise ConnectionError("Temporal is unavailable")
            await asyncio.sleep(10)
            raise AssertionError("not cancelled")

    with pytest.raises(ConnectionError):
        await asyncio.wait_for(
            run_batch(Down(), [Task(prompt="p")] * 5, batch_id="b", concurrency=3),  # type: ignore[arg-type]
            5,
        )


# -- CLI helpers --------------------------------------------------------------------


def test_default_output_and_progress_line() -> None:
    assert default_output(Path("d/prompts.jsonl")) == Path("d/prompts.results.jsonl")
    assert default_output(Path("prompts")) == Path("prompts.results.jsonl")
    line = progress_line(BatchProgress(total=50, submitted=41, running=10, completed=29, failed=2))
    assert line == "[############........] 31/50 done, 2 failed, 10 running"


def test_plain_progress_is_throttled_and_ends_with_final_state() -> None:
    import io

    stream = io.StringIO()
    printer = ProgressPrinter(stream)
    assert not printer.tty
    for done in range(10):
        printer(BatchProgress(total=10, submitted=10, completed=done))
    printer(BatchProgress(total=10, submitted=10, completed=10))
    printer.close()
    lines = stream.getvalue().splitlines()
    assert lines == [
        "[....................] 0/10 done, 0 failed, 0 running",
        "[####################] 10/10 done, 0 failed, 0 running",
    ]
