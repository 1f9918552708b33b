"""Gemini's batch adapter against the simulator, through the real google-genai SDK over HTTP.

As tests/providers/test_provider_batches.py does for OpenAI and Anthropic:
submit, poll until the batch ends, read its results as a workflow will; the
simulator's clock (``BatchBehaviour``) scripts turnaround, failing items and
cancel. A worker killed after ``create`` returned is simulated by calling
``submit()`` again with the same tag (and by a second adapter, which has not
seen the first one's batch).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from google import genai
from google.genai import errors, types

from ai_orchestrator.core import Task, TaskConstraints
from ai_orchestrator.errors import PROVIDER_REJECTED, classify
from ai_orchestrator.providers import (
    BatchItem,
    BatchNotEnded,
    GeminiBatches,
    ItemResult,
    ProviderBatchState,
)
from ai_orchestrator.providers._tls import genai_http_options
from ai_orchestrator.providers.gemini import request_config
from ai_orchestrator.simulator import BatchBehaviour, Simulator

KEY = "AIzaTEST-batches-0123456789SECRET"
MODEL = "gemini-2.5-flash"


@pytest.fixture
def sim_options() -> dict[str, Any]:
    return {
        "tokens_per_second": 0,
        "default_tokens": 8,
        "batch_behaviour": BatchBehaviour(turnaround=0.4),
    }


def sdk(sim: Simulator) -> genai.Client:
    options = genai_http_options(base_url=sim.url, retry_options=types.HttpRetryOptions(attempts=1))
    return genai.Client(api_key=KEY, http_options=options)


@pytest.fixture
async def batches(sim: Simulator) -> AsyncIterator[GeminiBatches]:
    provider = GeminiBatches(sdk(sim))
    yield provider
    await provider.aclose()


def make_items(n: int, prefix: str = "m") -> list[BatchItem]:
    return [
        BatchItem(
            custom_id=f"{prefix}{i:06d}",
            task=Task(
                prompt=f"Tell me about river number {i}",
                context={"basin": "north"},
                constraints=TaskConstraints(max_tokens=6 + i, temperature=0.2),
            ),
            model=MODEL,
        )
        for i in range(n)
    ]


def gemini_batches(sim: Simulator) -> list[str]:
    return [f"batches/{b.id}" for b in sim.batches.values() if b.api == "gemini"]


def record(sim: Simulator, batch_id: str) -> Any:
    return sim.batches[batch_id.removeprefix("batches/")]


async def until_ended(provider: GeminiBatches, batch_id: str) -> ProviderBatchState:
    deadline = time.monotonic() + 15
    while True:
        state = await provider.state(batch_id)
        if state.ended:
            return state
        assert time.monotonic() < deadline, state
        await asyncio.sleep(0.05)


async def all_results(provider: GeminiBatches, batch_id: str, skip: int = 0) -> list[ItemResult]:
    return [result async for result in provider.results(batch_id, skip=skip)]


async def test_submit_poll_and_read_every_answer(batches: GeminiBatches, sim: Simulator) -> None:
    items = make_items(5)
    batch_id = await batches.submit(items, "wf-happy")
    assert batch_id.startswith("batches/") and gemini_batches(sim) == [batch_id]
    first = await batches.state(batch_id)
    assert not first.ended and first.status in ("validating", "in_progress")
    assert first.created_at == pytest.approx(time.time(), abs=5)
    with pytest.raises(BatchNotEnded):
        await all_results(batches, batch_id)

    state = await until_ended(batches, batch_id)
    assert (state.outcome, state.succeeded, state.errored, state.total) == ("completed", 5, 0, 5)
    assert state.vendor_status == "JOB_STATE_SUCCEEDED"

    results = await all_results(batches, batch_id)
    assert [r.custom_id for r in results] == [i.custom_id for i in items]  # request order
    sent = record(sim, batch_id)
    assert sent.metadata["displayName"] == "wf-happy"
    for result, answered in zip(results, sent.items, strict=True):
        assert result.kind == "succeeded" and result.text and result.model == MODEL
        assert result.finish_reason in ("stop", "length") and result.usage is not None
        assert result.usage.prompt_tokens == answered.prompt_tokens
        assert result.usage.completion_tokens == answered.output_tokens
    # Requests are built as live calls build them: max_output_tokens reached the vendor.
    assert [r.usage.completion_tokens for r in results if r.usage] == [6, 7, 8, 8, 8]
    assert {r.vendor_finish_reason for r in results} == {"STOP", "MAX_TOKENS"}
    # A retried reader resumes by position.
    assert await all_results(batches, batch_id, skip=3) == results[3:]
    assert await all_results(batches, batch_id, skip=5) == []
    await batches.cancel(batch_id)  # too late to cancel: nothing to do, no error
    assert (await batches.state(batch_id)).outcome == "completed"


async def test_the_answer_is_the_live_answer(batches: GeminiBatches, sim: Simulator) -> None:
    """The system instruction, contents and limits reach the model as a live call's do."""
    (item,) = make_items(1)
    batch_id = await batches.submit([item], "wf-live")
    await until_ended(batches, batch_id)
    (result,) = await all_results(batches, batch_id)
    client = sdk(sim)
    contents, config = request_config(item.task)
    live = await client.aio.models.generate_content(model=MODEL, contents=contents, config=config)
    assert result.text == live.text and result.usage is not None
    assert live.usage_metadata is not None
    assert result.usage.prompt_tokens == live.usage_metadata.prompt_token_count
    await client.aio.aclose()


async def test_submit_twice_with_one_tag_makes_one_batch(sim: Simulator) -> None:
    first, second = GeminiBatches(sdk(sim)), GeminiBatches(sdk(sim))
    items = make_items(3)
    since = time.time()
    batch_id = await first.submit(items, "wf-crash")
    # The worker died before recording the name: its retry (another process) must not
    # create another batch, with or without since.
    assert await second.submit(items, "wf-crash") == batch_id
    assert await second.submit(items, "wf-crash", since=since) == batch_id
    assert gemini_batches(sim) == [batch_id]
    # Another tag is another batch.
    other = await second.submit(items, "wf-other")
    assert other != batch_id and len(gemini_batches(sim)) == 2
    # The process that did not send it reads its answers by their metadata keys.
    await until_ended(second, batch_id)
    assert [r.custom_id for r in await all_results(second, batch_id)] == [
        i.custom_id for i in items
    ]
    await first.aclose()
    await second.aclose()


async def test_find_by_tag_pages_and_honours_since(batches: GeminiBatches, sim: Simulator) -> None:
    since = time.time()
    first = await batches.submit(make_items(1), "wf-1")
    second = await batches.submit(make_items(1), "wf-2")
    for i in range(120):  # more than one page of strangers, newer than ours
        await batches.submit(make_items(1), f"wf-noise-{i}")
    assert await batches.find("wf-1") == first
    assert await batches.find("wf-2", since=since) == second
    assert await batches.find("wf-3") is None
    assert await batches.find("wf-1", since=time.time() + 3600) is None
    # Two of one tag (never made by submit): the newest, as OpenAI's adapter finds.
    client = sdk(sim)
    src: Any = [{"contents": "hi"}]
    config = types.CreateBatchJobConfig(display_name="wf-1")
    await asyncio.sleep(0.01)
    newer = await client.aio.batches.create(model=MODEL, src=src, config=config)
    assert await batches.find("wf-1") == newer.name != first
    await client.aio.aclose()


async def test_a_failed_batch_is_passed_over_and_says_it_failed(
    batches: GeminiBatches, sim: Simulator
) -> None:
    sim.batch_behaviour = BatchBehaviour(turnaround=0.2, outcome="failed")
    items = make_items(2)
    failed = await batches.submit(items, "wf-fail")
    state = await until_ended(batches, failed)
    assert state.outcome == "failed" and state.error and "failed" in state.error
    assert await all_results(batches, failed) == []
    # A failed batch ran nothing: the same tag submits afresh.
    sim.batch_behaviour = BatchBehaviour(turnaround=0.2)
    assert await batches.find("wf-fail") is None
    again = await batches.submit(items, "wf-fail")
    assert again != failed and (await until_ended(batches, again)).outcome == "completed"


@pytest.mark.parametrize(("status", "retryable"), [(500, True), (400, False), (429, True)])
async def test_errored_items(
    batches: GeminiBatches, sim: Simulator, status: int, retryable: bool
) -> None:
    items = make_items(3)
    sim.batch_behaviour = BatchBehaviour(
        turnaround=0.3, error_ids=frozenset({items[1].custom_id}), error_status=status
    )
    batch_id = await batches.submit(items, "wf-err")
    state = await until_ended(batches, batch_id)
    assert (state.outcome, state.succeeded, state.errored) == ("completed", 2, 1)
    results = {r.custom_id: r for r in await all_results(batches, batch_id)}
    bad = results[items[1].custom_id]
    assert bad.kind == "errored" and bad.retryable is retryable and not bad.text
    assert bad.error and f"HTTP {status}" in bad.error and bad.error_type
    assert KEY not in bad.error
    if status == 400:
        assert bad.error_type == PROVIDER_REJECTED
    assert [results[i.custom_id].kind for i in (items[0], items[2])] == ["succeeded"] * 2


async def test_cancel(batches: GeminiBatches, sim: Simulator) -> None:
    sim.batch_behaviour = BatchBehaviour(turnaround=30, cancel_latency=0.2)
    items = make_items(4)
    batch_id = await batches.submit(items, "wf-cancel")
    await batches.cancel(batch_id)
    assert record(sim, batch_id).cancel_requested
    # Gemini has no cancelling state: the batch runs until the cancel lands.
    assert (await batches.state(batch_id)).status in ("in_progress", "cancelling")
    await batches.cancel(batch_id)  # again while it lands
    state = await until_ended(batches, batch_id)
    assert (state.outcome, state.cancelled, state.errored) == ("cancelled", 4, 0)
    await batches.cancel(batch_id)  # and once it has ended: nothing to do, no error
    results = await all_results(batches, batch_id)
    assert [r.custom_id for r in results] == [i.custom_id for i in items]
    assert {(r.kind, r.retryable) for r in results} == {("cancelled", False)}


async def test_expired_items_are_worth_another_try(batches: GeminiBatches, sim: Simulator) -> None:
    sim.batch_behaviour = BatchBehaviour(turnaround=0.3, outcome="expired", stall_after=1)
    batch_id = await batches.submit(make_items(3), "wf-expire")
    state = await until_ended(batches, batch_id)
    assert (state.outcome, state.succeeded, state.expired) == ("expired", 1, 2)
    kinds = sorted((r.kind, r.retryable) for r in await all_results(batches, batch_id))
    assert kinds == [("expired", True), ("expired", True), ("succeeded", False)]


async def test_vendor_errors_are_the_sdks_for_our_classifier(batches: GeminiBatches) -> None:
    with pytest.raises(errors.ClientError) as raised:
        await batches.state("batches/nonexistent")
    verdict = classify(raised.value)
    assert not verdict.retryable and verdict.error_type == PROVIDER_REJECTED
    assert verdict.status_code == 404 and KEY not in verdict.message
