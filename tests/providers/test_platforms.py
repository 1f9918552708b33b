"""Claude and Gemini tasks through the durable path: the real vendor SDKs over HTTP.

The worker serves each platform with its vendor's own SDK, retries off; the
simulator speaks both APIs. Temporal stays the only retry layer: one request
per attempt, Retry-After honoured, non-retryable errors after one request.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anthropic
from google import genai
from google.genai import types
from temporalio.client import Client
from temporalio.worker import Worker

from ai_orchestrator import Platform, Task, TaskClient, TaskConstraints, TaskStatus
from ai_orchestrator.providers._tls import anthropic_http_client, genai_http_options
from ai_orchestrator.providers.anthropic import AnthropicProvider
from ai_orchestrator.providers.gemini import GeminiProvider
from ai_orchestrator.search import PLATFORM
from ai_orchestrator.simulator import Fault, Simulator

from ..conftest import running_worker, unique
from ..support.helpers import raw_history

CLAUDE_KEY = "sk-ant-test-0123456789SECRETclaude"
GEMINI_KEY = "AIzaTEST0123456789SECRETgemini"


@asynccontextmanager
async def vendor_worker(client: Client, queue: str, sim: Simulator) -> AsyncIterator[Worker]:
    claude = anthropic.AsyncAnthropic(
        api_key=CLAUDE_KEY, base_url=sim.url, max_retries=0, http_client=anthropic_http_client()
    )
    gemini = genai.Client(
        api_key=GEMINI_KEY,
        http_options=genai_http_options(
            base_url=sim.url, retry_options=types.HttpRetryOptions(attempts=1)
        ),
    )
    providers = {
        Platform.CLAUDE: AnthropicProvider(claude),
        Platform.GEMINI: GeminiProvider(gemini),
    }
    async with running_worker(
        client,
        queue,
        sim,
        providers=providers,
        extra_secrets=[CLAUDE_KEY, GEMINI_KEY],
        checkpoint_interval=0.1,
    ) as worker:
        yield worker
    for provider in providers.values():
        await provider.aclose()


def _task(model: str, prefix: str, **constraints: object) -> Task:
    return Task(
        prompt=f"say something about {model}",
        context={"tone": "friendly"},
        task_id=unique(prefix),
        constraints=TaskConstraints(model=model, **constraints),  # type: ignore[arg-type]
    )


async def test_claude_and_gemini_tasks_stream_and_report_cost(
    client: Client, queue: str, sim: Simulator, tasks: TaskClient
) -> None:
    sim.tokens_per_second, sim.default_tokens = 60, 30
    async with vendor_worker(client, queue, sim):
        claude = await tasks.execute(_task("claude-sonnet-4-6", "claude"))
        gemini = await tasks.execute(_task("gemini-2.5-flash", "gemini"))
    for result, platform in ((claude, Platform.CLAUDE), (gemini, Platform.GEMINI)):
        assert result.status == TaskStatus.COMPLETED, result.error
        assert result.platform == platform
        assert result.output.startswith("[simulated]") and len(result.output.split()) == 30
        assert result.metadata["output_tokens"] == 30 and result.tokens_used > 30
        assert result.cost > 0 and not result.metadata["usage_estimated"]
        assert result.metadata["signals"] >= 1  # it really streamed through the chunk channel
    assert [r.api for r in sim.requests] == ["anthropic", "gemini"]
    assert CLAUDE_KEY in str(sim.requests[0].authorization)  # the key was really used
    for result in (claude, gemini):
        stored = await raw_history(client, result.task.task_id or "")
        assert CLAUDE_KEY.encode() not in stored and GEMINI_KEY.encode() not in stored
    attrs = (
        await client.get_workflow_handle(claude.task.task_id or "").describe()
    ).typed_search_attributes
    assert attrs.get(PLATFORM) == Platform.CLAUDE.value


async def test_vendor_rate_limits_and_overload_are_retried_by_temporal_only(
    client: Client, queue: str, sim: Simulator, tasks: TaskClient
) -> None:
    """429 with retry-after, 529 overloaded and 503: one request per Temporal attempt."""
    sim.tokens_per_second = 200
    sim.script(Fault.rate_limit(retry_after=1), Fault.overloaded())
    async with vendor_worker(client, queue, sim):
        claude = await tasks.execute(_task("claude-haiku-4-5", "c429"))
        assert claude.status == TaskStatus.COMPLETED and len(sim.requests) == 3
        assert sim.requests[1].received_at - sim.requests[0].received_at >= 1.0
        sim.script(Fault.status(503), Fault.rate_limit(retry_after=1))
        gemini = await tasks.execute(_task("gemini-2.5-flash", "g503"))
    assert gemini.status == TaskStatus.COMPLETED and len(sim.requests) == 6
    assert sim.requests[5].received_at - sim.requests[4].received_at >= 1.0


async def test_vendor_auth_errors_fail_after_one_request(
    client: Client, queue: str, sim: Simulator, tasks: TaskClient
) -> None:
    sim.script(Fault.status(401))
    async with vendor_worker(client, queue, sim):
        claude = await tasks.execute(_task("claude-sonnet-4-6", "c401"))
        assert claude.status == TaskStatus.FAILED and len(sim.requests) == 1
        assert "HTTP 401" in (claude.error or "") and CLAUDE_KEY not in (claude.error or "")
        sim.script(Fault.status(401))
        gemini = await tasks.execute(_task("gemini-2.5-pro", "g401"))
    assert gemini.status == TaskStatus.FAILED and len(sim.requests) == 2
    assert "HTTP 401" in (gemini.error or "") and GEMINI_KEY not in (gemini.error or "")


async def test_in_stream_errors_and_refusals_are_classified(
    client: Client, queue: str, sim: Simulator, tasks: TaskClient
) -> None:
    sim.tokens_per_second = 200
    sim.script(Fault.stream_error(after_tokens=4, error_type="overloaded_error"))
    async with vendor_worker(client, queue, sim):
        overloaded = await tasks.execute(_task("claude-sonnet-4-6", "cse"))
        assert overloaded.status == TaskStatus.COMPLETED and len(sim.requests) == 2
        sim.script(Fault.stream_error(after_tokens=4, error_type="invalid_request_error"))
        rejected = await tasks.execute(_task("claude-sonnet-4-6", "cbad"))
        assert rejected.status == TaskStatus.FAILED and len(sim.requests) == 3
        sim.script(Fault.refusal(after_tokens=5))
        refused = await tasks.execute(_task("claude-sonnet-4-6", "cref"))
        assert refused.status == TaskStatus.FAILED and "refusal" in (refused.error or "")
        assert len((refused.partial_output or "").split()) == 5
        sim.script(Fault.recitation(after_tokens=5))
        recited = await tasks.execute(_task("gemini-2.5-flash", "grec"))
    assert recited.status == TaskStatus.FAILED and "RECITATION" in (recited.error or "")
    assert len(sim.requests) == 5


async def test_max_tokens_is_a_completed_truncated_answer(
    client: Client, queue: str, sim: Simulator, tasks: TaskClient
) -> None:
    sim.tokens_per_second, sim.default_tokens = 200, 40
    async with vendor_worker(client, queue, sim):
        result = await tasks.execute(_task("claude-haiku-4-5", "cmax", max_tokens=10))
    assert result.status == TaskStatus.COMPLETED and len(result.output.split()) == 10
    assert result.metadata["truncated"] and result.metadata["vendor_finish_reason"] == "max_tokens"


async def test_a_platform_the_worker_does_not_serve_fails_at_once(
    client: Client, queue: str, sim: Simulator, tasks: TaskClient
) -> None:
    async with running_worker(client, queue, sim, providers={}):
        result = await tasks.execute(_task("gemini-2.5-flash", "nogem"))
    assert result.status == TaskStatus.FAILED and not sim.requests
    assert "gemini is not configured on this worker" in (result.error or "")
    assert "GEMINI_API_KEY" in (result.error or "")


async def test_broken_vendor_streams_are_retried_not_taken_for_answers(
    client: Client, queue: str, sim: Simulator, tasks: TaskClient
) -> None:
    """Each SDK breaks differently (httpx2, aiohttp, unparseable chunks); all are retried."""
    sim.tokens_per_second, sim.default_tokens = 200, 20
    async with vendor_worker(client, queue, sim):
        for model, prefix in (("claude-haiku-4-5", "cbrk"), ("gemini-2.5-flash", "gbrk")):
            sim.script(
                Fault.disconnect(after_tokens=5),
                Fault.malformed(after_tokens=5),
                Fault.no_finish(after_tokens=5),
            )
            before = len(sim.requests)
            result = await tasks.execute(_task(model, prefix, temperature=0.2))
            assert result.status == TaskStatus.COMPLETED, result.error
            assert len(sim.requests) - before == 4 and len(result.output.split()) == 20
            assert [b["outcome"] for b in result.metadata["billing"]] == ["failed"] * 3 + [
                "completed"
            ]


async def test_a_claude_spend_limit_fails_fast_and_platforms_are_listed(
    client: Client, queue: str, sim: Simulator, tasks: TaskClient
) -> None:
    """A 429 without retry-after saying the spend limit is reached will not heal by waiting."""
    sim.tokens_per_second = 200
    sim.script(Fault.rate_limit(quota_exhausted=True))
    async with vendor_worker(client, queue, sim):
        broke = await tasks.execute(_task("claude-haiku-4-5", "cspend"))
        gemini = await tasks.execute(_task("gemini-2.5-flash", "glist"))
    assert broke.status == TaskStatus.FAILED and "QuotaExhausted" in (broke.error or "")
    assert len([r for r in sim.requests if r.api == "anthropic"]) == 1
    wanted = {broke.task.task_id: "claude", gemini.task.task_id: "gemini"}
    query = "WorkflowId IN ({})".format(", ".join(f"'{i}'" for i in wanted))
    for _ in range(100):  # visibility is eventually consistent
        rows = {r.task_id: r.platform for r in await tasks.list_tasks(query)}
        if len(rows) == len(wanted):
            break
        await asyncio.sleep(0.1)
    assert rows == wanted
