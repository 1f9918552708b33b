"""The simulator's Anthropic Message Batches API, driven by the real anthropic SDK over HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import anthropic
import pytest
import pytest_asyncio
from anthropic.types.messages import MessageBatch, MessageBatchIndividualResponse

from ai_orchestrator.providers._tls import anthropic_http_client
from ai_orchestrator.simulator import BatchBehaviour, Simulator
from ai_orchestrator.simulator._text import simulated_tokens

API_KEY = "sk-ant-test-simulator-0123456789"
MODEL = "claude-haiku-4-5"
SYSTEM = "You are terse."


@pytest_asyncio.fixture
async def claude(sim: Simulator) -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with anthropic.AsyncAnthropic(
        base_url=sim.url, api_key=API_KEY, max_retries=0, http_client=anthropic_http_client()
    ) as c:
        yield c


def _messages(custom_id: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": f"Tell me about rivers, item {custom_id}"}]


def _request(custom_id: str, **params: Any) -> dict[str, Any]:
    base = {"model": MODEL, "max_tokens": 1024, "system": SYSTEM, "messages": _messages(custom_id)}
    return {"custom_id": custom_id, "params": {**base, **params}}


async def _until(
    claude: anthropic.AsyncAnthropic,
    batch_id: str,
    done: Callable[[MessageBatch], bool],
    timeout: float = 30,
) -> tuple[MessageBatch, list[str]]:
    seen: list[str] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        batch = await claude.messages.batches.retrieve(batch_id)
        if not seen or seen[-1] != batch.processing_status:
            seen.append(batch.processing_status)
        if done(batch):
            return batch, seen
        assert loop.time() < deadline, f"batch stuck at {batch.processing_status}"
        await asyncio.sleep(0.01)


def _ended(batch: MessageBatch) -> bool:
    return batch.processing_status == "ended"


async def _results(
    claude: anthropic.AsyncAnthropic, batch_id: str
) -> dict[str, MessageBatchIndividualResponse]:
    return {r.custom_id: r async for r in await claude.messages.batches.results(batch_id)}


async def test_a_batch_answers_like_the_live_api(
    sim: Simulator, claude: anthropic.AsyncAnthropic
) -> None:
    sim.batch_behaviour = BatchBehaviour(turnaround=0.3)
    ids = ["a", "b", "c"]
    created = await claude.messages.batches.create(requests=[_request(i) for i in ids])  # type: ignore[misc]
    assert created.processing_status == "in_progress" and created.results_url is None
    assert created.request_counts.processing == 3
    with pytest.raises(anthropic.AnthropicError, match="No `results_url`"):
        await claude.messages.batches.results(created.id)

    batch, seen = await _until(claude, created.id, _ended)
    assert seen[-1] == "ended" and set(seen) <= {"in_progress", "ended"}
    counts = batch.request_counts
    assert (counts.processing, counts.succeeded, counts.errored) == (0, 3, 0)
    assert batch.ended_at is not None and batch.ended_at > batch.created_at
    assert batch.results_url is not None and batch.results_url.endswith(f"{batch.id}/results")

    results = await _results(claude, batch.id)
    live = await claude.messages.create(
        model=MODEL,
        max_tokens=1024,
        system=SYSTEM,
        messages=_messages("b"),  # type: ignore[arg-type]
    )
    for custom_id in ids:
        result = results[custom_id].result
        assert result.type == "succeeded"
        seed = [{"role": "system", "content": SYSTEM}, *_messages(custom_id)]
        assert result.message.content[0].text == "".join(simulated_tokens(seed, MODEL, 16))  # type: ignore[union-attr]
        assert result.message.usage.output_tokens == 16
        assert result.message.stop_reason == "end_turn"
    assert results["b"].result.message.content == live.content  # type: ignore[union-attr]

    record = sim.batches[batch.id]
    assert record.api == "anthropic" and record.api_key == API_KEY
    assert sim.generated_tokens == 4 * 16


async def test_failing_items_are_errored_results(
    sim: Simulator, claude: anthropic.AsyncAnthropic
) -> None:
    sim.batch_behaviour = BatchBehaviour(turnaround=0.1, error_ids={"b"}, error_status=529)
    created = await claude.messages.batches.create(  # type: ignore[misc]
        requests=[_request("a"), _request("b"), _request("c", max_tokens=4)]
    )
    batch, _ = await _until(claude, created.id, _ended)
    counts = batch.request_counts
    assert (counts.succeeded, counts.errored) == (2, 1)
    results = await _results(claude, batch.id)
    errored = results["b"].result
    assert errored.type == "errored" and errored.error.error.type == "overloaded_error"
    cut = results["c"].result
    assert cut.type == "succeeded" and cut.message.stop_reason == "max_tokens"
    assert cut.message.usage.output_tokens == 4


async def test_an_expiring_batch_keeps_what_it_answered(
    sim: Simulator, claude: anthropic.AsyncAnthropic
) -> None:
    sim.batch_behaviour = BatchBehaviour(turnaround=0.2, outcome="expired", stall_after=1)
    created = await claude.messages.batches.create(  # type: ignore[misc]
        requests=[_request("a"), _request("b"), _request("c")]
    )
    assert (created.expires_at - created.created_at).total_seconds() <= 1
    batch, _ = await _until(claude, created.id, _ended)
    counts = batch.request_counts
    assert (counts.succeeded, counts.expired, counts.canceled) == (1, 2, 0)
    results = await _results(claude, batch.id)
    assert {k: r.result.type for k, r in results.items()} == {
        "a": "succeeded",
        "b": "expired",
        "c": "expired",
    }


async def test_cancel_stops_what_is_not_answered(
    sim: Simulator, claude: anthropic.AsyncAnthropic
) -> None:
    sim.batch_behaviour = BatchBehaviour(turnaround=0.2, stall_after=1, cancel_latency=0.1)
    created = await claude.messages.batches.create(  # type: ignore[misc]
        requests=[_request("a"), _request("b"), _request("c")]
    )
    await asyncio.sleep(0.1)  # item "a" is answered at 0.073 s, then the batch stalls
    canceling = await claude.messages.batches.cancel(created.id)
    assert canceling.processing_status == "canceling"
    assert canceling.cancel_initiated_at is not None and canceling.request_counts.processing == 3
    batch, seen = await _until(claude, created.id, _ended)
    assert seen[-1] == "ended" and set(seen) <= {"canceling", "ended"}  # may miss canceling
    counts = batch.request_counts
    assert (counts.succeeded, counts.canceled) == (1, 2)
    results = await _results(claude, batch.id)
    assert [results[k].result.type for k in "abc"] == ["succeeded", "canceled", "canceled"]
    assert sim.batches[batch.id].cancel_requested
    with pytest.raises(anthropic.BadRequestError, match="already ended"):
        await claude.messages.batches.cancel(batch.id)


async def test_a_failed_batch_errors_every_request(
    sim: Simulator, claude: anthropic.AsyncAnthropic
) -> None:
    sim.batch_behaviour = BatchBehaviour(turnaround=0, outcome="failed")
    batch = await claude.messages.batches.create(requests=[_request("a"), _request("b")])  # type: ignore[misc]
    assert batch.processing_status == "ended"
    assert (batch.request_counts.errored, batch.request_counts.succeeded) == (2, 0)
    results = await _results(claude, batch.id)
    assert all(r.result.error.error.type == "api_error" for r in results.values())  # type: ignore[union-attr]


async def test_listing_pages_newest_first(sim: Simulator, claude: anthropic.AsyncAnthropic) -> None:
    sim.batch_behaviour = BatchBehaviour(turnaround=60)
    created = [
        await claude.messages.batches.create(requests=[_request(f"r{i}")])  # type: ignore[misc]
        for i in range(5)
    ]
    newest = [b.id for b in reversed(created)]
    first = await claude.messages.batches.list(limit=2)
    assert [b.id for b in first.data] == newest[:2] and first.has_more
    assert first.last_id == newest[1]
    assert [b.id async for b in claude.messages.batches.list(limit=2)] == newest
    after = await claude.messages.batches.list(limit=10, after_id=newest[2])
    assert [b.id for b in after.data] == newest[3:] and not after.has_more
    before = await claude.messages.batches.list(limit=1, before_id=newest[2])
    assert [b.id for b in before.data] == [newest[1]] and before.has_more


@pytest.mark.parametrize(
    ("requests", "message"),
    [
        ([], "requests: List should have at least 1 item"),
        ([_request("a"), _request("a")], "requests.1.custom_id: Duplicate custom_id 'a'"),
        ([_request("a b")], "requests.0.custom_id: String should match pattern"),
        ([{"custom_id": "a", "params": {"model": MODEL}}], "requests.0.params.max_tokens"),
        ([_request("a", stream=True)], "requests.0.params.stream"),
    ],
)
async def test_bad_requests_are_rejected_whole(
    sim: Simulator, claude: anthropic.AsyncAnthropic, requests: list[Any], message: str
) -> None:
    with pytest.raises(anthropic.BadRequestError) as bad:
        await claude.messages.batches.create(requests=requests)
    assert message in bad.value.message
    assert bad.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    assert sim.batches == {}


async def test_delete_only_an_ended_batch(sim: Simulator, claude: anthropic.AsyncAnthropic) -> None:
    sim.batch_behaviour = BatchBehaviour(turnaround=0.1)
    created = await claude.messages.batches.create(requests=[_request("a")])  # type: ignore[misc]
    with pytest.raises(anthropic.BadRequestError, match="still processing"):
        await claude.messages.batches.delete(created.id)
    await _until(claude, created.id, _ended)
    deleted = await claude.messages.batches.delete(created.id)
    assert deleted.type == "message_batch_deleted"
    with pytest.raises(anthropic.NotFoundError):
        await claude.messages.batches.retrieve(created.id)
