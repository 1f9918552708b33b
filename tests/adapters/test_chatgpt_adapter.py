"""Plan 04-02: AsyncChatGPTAdapter, over real HTTP against the simulator (no mocks)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from ai_orchestrator.adapters import AsyncChatGPTAdapter
from ai_orchestrator.core import Task, TaskConstraints, TaskStatus, TaskType
from ai_orchestrator.pricing import allow_list
from ai_orchestrator.simulator import Fault, Simulator

KEY = "sk-test-adapter-0123456789SECRET"


@pytest.fixture
async def adapter(sim: Simulator) -> AsyncIterator[AsyncChatGPTAdapter]:
    async with AsyncChatGPTAdapter(api_key=KEY, base_url=sim.base_url, timeout=5.0) as a:
        yield a


@pytest.fixture
def sample_task() -> Task:
    return Task(type=TaskType.CODE_GENERATION, prompt="Write a hello world function in Python")


def test_init_with_api_key() -> None:
    adapter = AsyncChatGPTAdapter(api_key="test-key")
    assert adapter.is_implemented is True
    assert adapter.implementation_status == "working"


def test_init_without_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    adapter = AsyncChatGPTAdapter(api_key=None)
    assert adapter.implementation_status == "unavailable" and not adapter.is_implemented


def test_get_adapter_status() -> None:
    status = AsyncChatGPTAdapter(api_key="test-key").get_adapter_status()
    assert status["name"] == "ChatGPT (Async)"
    assert "Streaming responses" in status["capabilities"]
    assert status["model"] == "gpt-4o-mini"
    assert "test-key" not in str(status)


async def test_context_manager_raises_without_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ValueError, match="OPENAI_API_KEY"):
        async with AsyncChatGPTAdapter(api_key=None):
            pass


async def test_context_manager_opens_and_closes_client(sim: Simulator) -> None:
    adapter = AsyncChatGPTAdapter(api_key=KEY, base_url=sim.base_url)
    async with adapter:
        assert adapter._client is not None
    assert adapter._client is None


async def test_submit_and_get_result(
    adapter: AsyncChatGPTAdapter, sim: Simulator, sample_task: Task
) -> None:
    task_id = await adapter.submit_task(sample_task)
    assert task_id.startswith("chatgpt_") and sample_task.task_id == task_id
    result = await adapter.get_result(task_id, timeout=10)
    assert result.success and result.status == TaskStatus.COMPLETED
    assert result.output.startswith("[simulated]") and len(result.output.split()) == 24
    assert result.metadata["output_tokens"] == 24 and result.metadata["input_tokens"] > 0
    assert result.tokens_used == result.metadata["input_tokens"] + 24
    assert result.cost > 0
    request = sim.requests[0]
    assert request.stream and request.include_usage and request.model == "gpt-4o-mini"
    assert request.authorization == f"Bearer {KEY}"


async def test_constraints_and_context_reach_the_server(
    adapter: AsyncChatGPTAdapter, sim: Simulator
) -> None:
    task = Task(
        prompt="Test",
        context={"previous": "step one"},
        constraints=TaskConstraints(max_tokens=7, temperature=0.5, model="gpt-4o"),
    )
    result = await adapter.get_result(await adapter.submit_task(task), timeout=10)
    request = sim.requests[0]
    assert (request.model, request.max_tokens, request.temperature) == ("gpt-4o", 7, 0.5)
    assert (
        request.messages[0]["role"] == "system"
        and "previous: step one" in request.messages[0]["content"]
    )
    assert request.messages[-1] == {"role": "user", "content": "Test"}
    assert result.metadata["finish_reason"] == "length"


async def test_get_status_running_then_cancel(
    adapter: AsyncChatGPTAdapter, sim: Simulator, sample_task: Task
) -> None:
    sim.tokens_per_second = 10
    task_id = await adapter.submit_task(sample_task)
    await sim.wait_for_tokens_sent(0, 2)
    assert await adapter.get_status(task_id) == TaskStatus.RUNNING
    assert await adapter.cancel_task(task_id) is True
    assert await adapter.get_status(task_id) == TaskStatus.CANCELLED
    result = await adapter.get_result(task_id)
    assert result.status == TaskStatus.CANCELLED and result.partial_output
    await sim.wait_until(lambda: sim.requests[0].disconnected, timeout=2)
    assert await adapter.cancel_task(task_id) is False


async def test_get_result_timeout_leaves_task_running(
    adapter: AsyncChatGPTAdapter, sim: Simulator, sample_task: Task
) -> None:
    sim.tokens_per_second = 20
    task_id = await adapter.submit_task(sample_task)
    result = await adapter.get_result(task_id, timeout=0.1)
    assert not result.success and "timed out" in (result.error or "")
    assert (await adapter.get_result(task_id, timeout=10)).status == TaskStatus.COMPLETED


async def test_rate_limit_is_retried_after_retry_after(
    adapter: AsyncChatGPTAdapter, sim: Simulator, sample_task: Task
) -> None:
    sim.script(Fault.rate_limit(retry_after=0.5))
    result = await adapter.get_result(await adapter.submit_task(sample_task), timeout=20)
    assert result.status == TaskStatus.COMPLETED
    assert len(sim.requests) == 2
    assert sim.requests[1].received_at - sim.requests[0].received_at >= 0.5


async def test_auth_error_is_not_retried_and_hides_key(
    adapter: AsyncChatGPTAdapter, sim: Simulator, sample_task: Task
) -> None:
    sim.script(Fault.status(401))
    result = await adapter.get_result(await adapter.submit_task(sample_task), timeout=10)
    assert result.status == TaskStatus.FAILED and len(sim.requests) == 1
    assert "HTTP 401" in (result.error or "") and KEY not in (result.error or "")


async def test_cut_stream_is_not_taken_for_an_answer(
    adapter: AsyncChatGPTAdapter, sim: Simulator, sample_task: Task
) -> None:
    sim.script(Fault.no_finish(after_tokens=5))
    result = await adapter.get_result(await adapter.submit_task(sample_task), timeout=20)
    assert result.status == TaskStatus.COMPLETED and len(sim.requests) == 2
    assert len(result.output.split()) == 24


async def test_execute_streaming_yields_live_chunks(
    adapter: AsyncChatGPTAdapter, sim: Simulator, sample_task: Task
) -> None:
    chunks = [c async for c in adapter.execute_streaming(sample_task)]
    assert len(chunks) == 24
    full = await adapter.get_result(await adapter.submit_task(sample_task.model_copy()), timeout=10)
    assert "".join(chunks) == full.output


async def test_stream_result_of_submitted_task(
    adapter: AsyncChatGPTAdapter, sim: Simulator, sample_task: Task
) -> None:
    sim.tokens_per_second = 50
    task_id = await adapter.submit_task(sample_task)
    seen: list[str] = []
    statuses: list[TaskStatus] = []
    async for chunk in adapter.stream_result(task_id):
        seen.append(chunk)
        statuses.append(await adapter.get_status(task_id))
    assert TaskStatus.RUNNING in statuses  # chunks arrived before completion
    assert "".join(seen) == (await adapter.get_result(task_id)).output


async def test_allow_list_rejects_unknown_model_before_any_request(sim: Simulator) -> None:
    async with AsyncChatGPTAdapter(
        api_key=KEY, base_url=sim.base_url, pricing=allow_list(["gpt-4o-mini"])
    ) as a:
        with pytest.raises(ValueError, match="not in the configured pricing table"):
            await a.submit_task(Task(prompt="x", constraints=TaskConstraints(model="gpt-9")))
    assert sim.requests == []


async def test_unknown_task() -> None:
    adapter = AsyncChatGPTAdapter(api_key="test-key")
    assert await adapter.get_status("nonexistent-task-id") == TaskStatus.UNKNOWN
    result = await adapter.get_result("nonexistent-task-id")
    assert result.success is False and result.status == TaskStatus.UNKNOWN


async def test_client_required_outside_context(sample_task: Task) -> None:
    adapter = AsyncChatGPTAdapter(api_key="test-key")
    with pytest.raises(RuntimeError, match="async with"):
        async for _ in adapter.execute_streaming(sample_task):
            pass
    await asyncio.sleep(0)
