"""Fallback between platforms: provider-side failures move a task on; bad requests don't."""

from __future__ import annotations

import functools

from temporalio.client import Client

from ai_orchestrator import (
    Platform,
    Restart,
    Task,
    TaskClient,
    TaskConstraints,
    TaskStatus,
    TaskValidationError,
    allow_list,
    apply_event,
)
from ai_orchestrator.simulator import Fault, Simulator

from ..conftest import FAST_RETRY, running_worker, unique
from .test_platforms import vendor_worker


def _task(prefix: str, model: str, *fallbacks: str) -> Task:
    return Task(
        prompt="answer from whoever can",
        task_id=unique(prefix),
        constraints=TaskConstraints(model=model, fallback_models=list(fallbacks)),
    )


async def test_openai_quota_failure_falls_back_to_claude(
    client: Client, queue: str, sim: Simulator, tasks: TaskClient
) -> None:
    sim.tokens_per_second, sim.default_tokens = 100, 20
    sim.script(Fault.rate_limit(quota_exhausted=True))
    async with vendor_worker(client, queue, sim):
        result = await tasks.execute(_task("fb", "gpt-4o-mini", "claude-sonnet-4-6"))
    assert result.status == TaskStatus.COMPLETED, result.error
    assert result.platform == Platform.CLAUDE
    assert [r.api for r in sim.requests] == ["openai", "anthropic"]
    route = result.metadata["route"]
    assert route[0] == {
        "model": "gpt-4o-mini",
        "platform": "chatgpt",
        "outcome": "failed",
        "error_type": "QuotaExhausted",
    }
    assert route[-1]["platform"] == "claude" and route[-1]["outcome"] == "completed"
    assert len(result.output.split()) == 20 and result.cost > 0


async def test_fallback_after_streamed_text_restarts_readers_and_sums_the_bill(
    client: Client, queue: str, sim: Simulator
) -> None:
    """The first model streams, then exhausts its provider-fault budget; Gemini answers."""
    tasks = TaskClient(
        client, task_queue=queue, retry=FAST_RETRY.model_copy(update={"max_attempts": 1})
    )
    sim.tokens_per_second, sim.default_tokens = 40, 30
    sim.script(Fault.disconnect(after_tokens=12))
    async with vendor_worker(client, queue, sim):
        task_id = await tasks.submit_task(_task("fbr", "gpt-4o-mini", "gemini-2.5-flash"))
        events = [e async for e in tasks.stream_events(task_id)]
        result = await tasks.get_result(task_id)
    assert result.status == TaskStatus.COMPLETED and result.platform == Platform.GEMINI
    assert any(isinstance(e, Restart) for e in events)  # the text changed provider
    assert functools.reduce(apply_event, events, "") == result.output  # type: ignore[arg-type]
    billing = result.metadata["billing"]
    assert [b["outcome"] for b in billing] == ["failed", "completed"]
    assert billing[0]["completion_tokens"] == 12 and billing[0]["model"] == "gpt-4o-mini"
    assert result.tokens_used == sum(b["prompt_tokens"] + b["completion_tokens"] for b in billing)


async def test_an_unconfigured_platform_falls_back_and_a_bad_request_does_not(
    client: Client, queue: str, sim: Simulator, tasks: TaskClient
) -> None:
    sim.tokens_per_second = 200
    async with running_worker(client, queue, sim, providers={}):  # OpenAI-compatible only
        moved = await tasks.execute(_task("fbu", "gemini-2.5-flash", "gpt-4o-mini"))
        assert moved.status == TaskStatus.COMPLETED and moved.platform == Platform.CHATGPT
        assert moved.metadata["route"][0]["error_type"] == "ProviderNotConfigured"
        sim.script(Fault.status(400))
        rejected = await tasks.execute(_task("fbb", "gpt-4o-mini", "gpt-4o"))
    assert rejected.status == TaskStatus.FAILED and "HTTP 400" in (rejected.error or "")
    assert [r.model for r in sim.requests] == ["gpt-4o-mini", "gpt-4o-mini"]


def test_fallback_models_are_validated() -> None:
    import pytest

    with pytest.raises(ValueError, match="blank"):
        TaskConstraints(fallback_models=[" "])
    with pytest.raises(ValueError):
        TaskConstraints(fallback_models=["a", "b", "c", "d", "e", "f"])


async def test_a_fallback_off_the_allow_list_is_refused_at_submit(
    client: Client, queue: str
) -> None:
    import pytest

    strict = TaskClient(client, task_queue=queue, pricing=allow_list(["gpt-4o-mini"]))
    with pytest.raises(TaskValidationError, match="gpt-4o"):
        await strict.submit_task(_task("fbx", "gpt-4o-mini", "gpt-4o"))
