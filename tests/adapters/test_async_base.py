"""Plan 04-01: the async base infrastructure (models, adapter ABC, streaming helpers)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

import pytest

from ai_orchestrator.adapters import AsyncBasePlatformAdapter, BasePlatformAdapter
from ai_orchestrator.core import Platform, Result, Task, TaskConstraints, TaskStatus, TaskType
from ai_orchestrator.streaming import StreamingResult, collect_stream


def test_task_status_enum_values() -> None:
    names = {s.name for s in TaskStatus}
    assert names == {"PENDING", "RUNNING", "COMPLETED", "FAILED", "CANCELLED", "UNKNOWN"}


def test_task_constraints_defaults() -> None:
    c = TaskConstraints()
    assert c.timeout_seconds == 300
    assert c.max_tokens is None and c.temperature is None and c.model is None


def test_task_enhanced_fields() -> None:
    task = Task(type=TaskType.CODE_GENERATION, prompt="Write hello world")
    assert task.context == {} and task.files == [] and task.constraints is None
    assert task.task_id is None
    assert task.priority and task.requires_gsd is False and task.metadata == {}
    assert task.created_at.tzinfo is not None


def test_result_enhanced_fields() -> None:
    result = Result(task=Task(prompt="x"), platform=Platform.CHATGPT, output="y", success=True)
    assert result.status == TaskStatus.COMPLETED
    assert result.files_created == [] and result.partial_output is None
    assert result.cost == 0.0 and result.tokens_used == 0 and result.error is None


def test_streaming_result_accumulation() -> None:
    sr = StreamingResult()
    for chunk in ["Hel", "lo", "!"]:
        sr.add_chunk(chunk)
    sr.complete(tokens=3)
    assert sr.get_content() == "Hello!" and sr.total_tokens == 3
    assert sr.completed_at is not None and sr.duration_seconds >= 0


async def _slow_stream() -> AsyncIterator[str]:
    yield "a"
    await asyncio.sleep(10)
    yield "b"


async def test_collect_stream_timeout() -> None:
    with pytest.raises(asyncio.TimeoutError):
        await collect_stream(_slow_stream(), timeout=0.1)


async def test_collect_stream_collects() -> None:
    async def gen() -> AsyncIterator[str]:
        for c in ["x", "y", "z"]:
            yield c

    result = await collect_stream(gen())
    assert result.get_content() == "xyz" and result.completed_at is not None


def test_async_base_adapter_abstract() -> None:
    with pytest.raises(TypeError):
        AsyncBasePlatformAdapter()  # type: ignore[abstract]
    with pytest.raises(TypeError):
        BasePlatformAdapter()  # type: ignore[abstract]


class _Minimal(AsyncBasePlatformAdapter):
    async def submit_task(self, task: Task) -> str:
        return self._generate_task_id(task)

    async def get_status(self, task_id: str) -> TaskStatus:
        return TaskStatus.UNKNOWN

    async def get_result(self, task_id: str, timeout: float | None = 300) -> Result:
        raise NotImplementedError

    async def stream_result(self, task_id: str) -> AsyncIterator[str]:
        yield ""

    async def cancel_task(self, task_id: str) -> bool:
        return False


async def test_generate_task_id_format() -> None:
    adapter = _Minimal()
    task_id = await adapter.submit_task(Task(prompt="x"))
    assert re.fullmatch(r"chatgpt_\d{8}T\d{12}Z_[0-9a-f]{8}", task_id)
    assert task_id != await adapter.submit_task(Task(prompt="x"))


async def test_adapter_is_async_context_manager_with_status() -> None:
    async with _Minimal() as adapter:
        assert adapter.is_implemented and adapter.implementation_status == "working"
        assert adapter.get_adapter_status()["name"] == "_Minimal"


async def test_wait_with_timeout_does_not_cancel_the_work() -> None:
    adapter = _Minimal()
    work = asyncio.ensure_future(asyncio.sleep(0.2, result="done"))
    with pytest.raises(asyncio.TimeoutError):
        await adapter._wait_with_timeout(work, 0.01)
    assert await adapter._wait_with_timeout(work, 1) == "done"
