"""Provider batch adapters against the simulator, through the vendors' real SDKs over HTTP.

Each test submits, polls until the batch ends and reads its results as a
workflow will; the simulator's clock (``BatchBehaviour``) scripts turnaround,
failing items, expiry and cancel. A worker killed after the vendor's create
returned is simulated by calling ``submit()`` again with the same tag.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import openai
import pytest

from ai_orchestrator.core import Task, TaskConstraints
from ai_orchestrator.errors import PROVIDER_REJECTED, classify
from ai_orchestrator.providers import (
    AnthropicBatches,
    BatchItem,
    BatchLookupPending,
    BatchNotEnded,
    BatchProvider,
    ItemResult,
    OpenAIBatches,
    ProviderBatchState,
)
from ai_orchestrator.providers._tls import anthropic_http_client, openai_http_client
from ai_orchestrator.providers.batch_anthropic import mark
from ai_orchestrator.providers.batch_openai import encode_input, input_file_name
from ai_orchestrator.simulator import BatchBehaviour, Simulator

KEY = "sk-test-batches-0123456789abcdef"
MODELS = {"openai": "gpt-4o-mini", "anthropic": "claude-haiku-4-5"}
API = {"openai": "openai", "anthropic": "anthropic"}


@pytest.fixture
def sim_options() -> dict[str, Any]:
    return {
        "tokens_per_second": 0,
        "default_tokens": 8,
        "batch_behaviour": BatchBehaviour(turnaround=0.4),
    }


@pytest.fixture
async def openai_client(sim: Simulator) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        base_url=sim.base_url, api_key=KEY, max_retries=0, http_client=openai_http_client()
    ) as client:
        yield client


@pytest.fixture(params=["openai", "anthropic"])
def vendor(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def batches(vendor: str, sim: Simulator) -> AsyncIterator[BatchProvider]:
    provider: BatchProvider
    if vendor == "openai":
        client = openai.AsyncOpenAI(
            base_url=sim.base_url, api_key=KEY, max_retries=0, http_client=openai_http_client()
        )
        provider = OpenAIBatches(client)
    else:
        provider = AnthropicBatches(
            anthropic.AsyncAnthropic(
                base_url=sim.url, api_key=KEY, max_retries=0, http_client=anthropic_http_client()
            )
        )
    yield provider
    await provider.aclose()


def make_items(vendor: str, n: int, prefix: str = "m") -> list[BatchItem]:
    return [
        BatchItem(
            custom_id=f"{prefix}{i:06d}",
            task=Task(
                prompt=f"Tell me about river number {i}",
                context={"basin": "north"},
                constraints=TaskConstraints(max_tokens=6 + i, temperature=0.2),
            ),
            model=MODELS[vendor],
        )
        for i in range(n)
    ]


def sent_id(vendor: str, tag: str, custom_id: str) -> str:
    """The custom_id the vendor sees (Anthropic's carries the tag's mark)."""
    return mark(tag) + custom_id if vendor == "anthropic" else custom_id


def vendor_batches(sim: Simulator, vendor: str) -> list[str]:
    return [b.id for b in sim.batches.values() if b.api == API[vendor]]


async def until_ended(provider: BatchProvider, batch_id: str) -> ProviderBatchState:
    deadline = time.monotonic() + 15
    while True:
        state = await provider.state(batch_id)
        if state.ended:
            return state
        assert time.monotonic() < deadline, state
        await asyncio.sleep(0.05)


async def all_results(provider: BatchProvider, batch_id: str, skip: int = 0) -> list[ItemResult]:
    return [result async for result in provider.results(batch_id, skip=skip)]


async def test_submit_poll_and_read_every_answer(
    batches: BatchProvider, vendor: str, sim: Simulator
) -> None:
    items = make_items(vendor, 5)
    batch_id = await batches.submit(items, "wf-happy")
    first = await batches.state(batch_id)
    assert not first.ended and first.status in ("validating", "in_progress")
    with pytest.raises(BatchNotEnded):
        await all_results(batches, batch_id)

    state = await until_ended(batches, batch_id)
    assert (state.outcome, state.succeeded, state.errored, state.total) == ("completed", 5, 0, 5)

    results = await all_results(batches, batch_id)
    assert sorted(r.custom_id for r in results) == [i.custom_id for i in items]
    record = sim.batches[batch_id]
    sent = {item.custom_id: item for item in record.items}
    for result in results:
        assert result.kind == "succeeded" and result.text and result.model == MODELS[vendor]
        assert result.finish_reason in ("stop", "length") and result.usage is not None
        answered = sent[sent_id(vendor, "wf-happy", result.custom_id)]
        assert result.usage.prompt_tokens == answered.prompt_tokens
        assert result.usage.completion_tokens == answered.output_tokens
    # Requests are built as live calls build them: max_tokens reached the vendor.
    assert {r.custom_id: r.usage.completion_tokens for r in results if r.usage} == {
        i.custom_id: 8 if 6 + n > 8 else 6 + n for n, i in enumerate(items)
    }
    # A retried reader resumes by position.
    assert await all_results(batches, batch_id, skip=3) == results[3:]
    assert await all_results(batches, batch_id, skip=5) == []
    await batches.cancel(batch_id)  # too late to cancel: nothing to do, no error
    assert (await batches.state(batch_id)).outcome == "completed"


async def test_a_retried_openai_submit_finds_its_batch_and_file(
    sim: Simulator, openai_client: openai.AsyncOpenAI
) -> None:
    provider = OpenAIBatches(openai_client)
    items = make_items("openai", 3)
    batch_id = await provider.submit(items, "wf-crash")
    # The worker died before recording the id: the retry must not create another.
    assert await provider.submit(items, "wf-crash") == batch_id
    assert await provider.submit(items, "wf-crash", since=time.time() - 5) == batch_id
    assert vendor_batches(sim, "openai") == [batch_id]
    files = [f async for f in openai_client.files.list(purpose="batch")]
    assert [f.filename for f in files] == [input_file_name("wf-crash")]
    # Another tag is another batch.
    other = await provider.submit(items, "wf-other")
    assert other != batch_id and len(vendor_batches(sim, "openai")) == 2


async def test_an_upload_whose_batch_was_never_created_is_reused(
    sim: Simulator, openai_client: openai.AsyncOpenAI
) -> None:
    items = make_items("openai", 2)
    uploaded = await openai_client.files.create(
        file=(input_file_name("wf-upload"), encode_input(items)), purpose="batch"
    )
    batch_id = await OpenAIBatches(openai_client).submit(items, "wf-upload")
    assert sim.batches[batch_id].input_file_id == uploaded.id
    assert len([f async for f in openai_client.files.list(purpose="batch")]) == 1


async def test_a_retried_anthropic_submit_finds_its_batch_once_it_can_tell(
    sim: Simulator,
) -> None:
    sim.batch_behaviour = BatchBehaviour(turnaround=1.0)
    client = anthropic.AsyncAnthropic(
        base_url=sim.url, api_key=KEY, max_retries=0, http_client=anthropic_http_client()
    )
    provider = AnthropicBatches(client)
    items = make_items("anthropic", 3)
    since = time.time()
    batch_id = await provider.submit(items, "wf-crash", since=since)
    # While it runs, Anthropic shows nothing that says whose it is: no guess, no second batch.
    with pytest.raises(BatchLookupPending) as pending:
        await provider.submit(items, "wf-crash", since=since)
    assert pending.value.candidates == (batch_id,) and pending.value.retry_after > 0
    assert vendor_batches(sim, "anthropic") == [batch_id]
    await until_ended(provider, batch_id)
    assert await provider.submit(items, "wf-crash", since=since) == batch_id
    assert await provider.submit(items, "wf-crash") == batch_id  # ended: proven without since
    assert vendor_batches(sim, "anthropic") == [batch_id]
    await provider.aclose()


async def test_anthropic_lookup_adopts_only_a_batch_that_proves_ours(sim: Simulator) -> None:
    client = anthropic.AsyncAnthropic(
        base_url=sim.url, api_key=KEY, max_retries=0, http_client=anthropic_http_client()
    )
    provider = AnthropicBatches(client)
    items = make_items("anthropic", 3)
    since = time.time()
    ours = await provider.submit(items, "wf-a")
    await until_ended(provider, ours)
    # A stranger of the same size and the same custom_ids, ended: not adopted.
    assert await provider.find("wf-b", since=since, items=items) is None
    stranger = await provider.submit(items, "wf-b", since=since)
    assert stranger != ours
    await until_ended(provider, stranger)
    assert await provider.find("wf-a", since=since, items=items) == ours
    assert await provider.find("wf-b", since=since, items=items) == stranger
    # Out of the window, or of another size: not looked at.
    assert await provider.find("wf-a", since=time.time() + 3600, items=items) is None
    assert await provider.find("wf-a", since=since, items=items[:2]) is None
    # A running batch of that size could be anyone's: with since, wait; without, pass it by.
    sim.batch_behaviour = BatchBehaviour(turnaround=30)
    running = await provider.submit(items, "wf-c")
    with pytest.raises(BatchLookupPending) as pending:
        await provider.find("wf-d", since=since, items=items)
    assert pending.value.candidates == (running,)
    assert await provider.find("wf-d", items=items) is None
    assert await provider.find("wf-a", since=since, items=items) == ours  # proven beats pending
    await provider.cancel(running)
    await provider.aclose()


async def test_openai_find_by_tag(sim: Simulator, openai_client: openai.AsyncOpenAI) -> None:
    provider = OpenAIBatches(openai_client)
    since = time.time()
    first = await provider.submit(make_items("openai", 2), "wf-1")
    second = await provider.submit(make_items("openai", 2), "wf-2")
    assert await provider.find("wf-1") == first
    assert await provider.find("wf-2", since=since) == second
    assert await provider.find("wf-3") is None
    assert await provider.find("wf-1", since=time.time() + 3600) is None


@pytest.mark.parametrize(("status", "retryable"), [(500, True), (400, False), (429, True)])
async def test_errored_items(
    batches: BatchProvider, vendor: str, sim: Simulator, status: int, retryable: bool
) -> None:
    items = make_items(vendor, 3)
    failing = sent_id(vendor, "wf-err", items[1].custom_id)
    sim.batch_behaviour = BatchBehaviour(
        turnaround=0.3, error_ids=frozenset({failing}), error_status=status
    )
    batch_id = await batches.submit(items, "wf-err")
    state = await until_ended(batches, batch_id)
    assert (state.outcome, state.succeeded, state.errored) == ("completed", 2, 1)
    results = {r.custom_id: r for r in await all_results(batches, batch_id)}
    bad = results[items[1].custom_id]
    assert bad.kind == "errored" and bad.retryable is retryable and not bad.text
    assert bad.error and bad.error_type and KEY not in bad.error
    if status == 400:
        assert bad.error_type == PROVIDER_REJECTED
    assert [results[i.custom_id].kind for i in (items[0], items[2])] == ["succeeded"] * 2


async def test_cancel(batches: BatchProvider, vendor: str, sim: Simulator) -> None:
    sim.batch_behaviour = BatchBehaviour(turnaround=30, cancel_latency=0.2)
    items = make_items(vendor, 4)
    batch_id = await batches.submit(items, "wf-cancel")
    await batches.cancel(batch_id)
    assert (await batches.state(batch_id)).status == "cancelling"
    await batches.cancel(batch_id)  # again while cancelling
    state = await until_ended(batches, batch_id)
    assert state.outcome == "cancelled"
    await batches.cancel(batch_id)  # and once it has ended: nothing to do, no error
    results = await all_results(batches, batch_id)
    assert sorted(r.custom_id for r in results) == [i.custom_id for i in items]
    assert {(r.kind, r.retryable) for r in results} == {("cancelled", False)}


async def test_expired_items_are_worth_another_try(
    batches: BatchProvider, vendor: str, sim: Simulator
) -> None:
    sim.batch_behaviour = BatchBehaviour(turnaround=0.3, outcome="expired", stall_after=1)
    items = make_items(vendor, 3)
    batch_id = await batches.submit(items, "wf-expire")
    state = await until_ended(batches, batch_id)
    assert state.outcome == "expired" and state.succeeded == 1
    kinds = sorted((r.kind, r.retryable) for r in await all_results(batches, batch_id))
    assert kinds == [("expired", True), ("expired", True), ("succeeded", False)]


async def test_a_batch_openai_fails_says_why_and_a_new_submit_runs_again(
    sim: Simulator, openai_client: openai.AsyncOpenAI
) -> None:
    provider = OpenAIBatches(openai_client)
    sim.batch_behaviour = BatchBehaviour(turnaround=0.2, outcome="failed")
    items = make_items("openai", 2)
    failed = await provider.submit(items, "wf-fail")
    state = await until_ended(provider, failed)
    assert state.outcome == "failed" and state.error and "token_limit_exceeded" in state.error
    assert await all_results(provider, failed) == []
    # A failed batch ran nothing: the same tag submits afresh (reusing the uploaded file).
    sim.batch_behaviour = BatchBehaviour(turnaround=0.2)
    again = await provider.submit(items, "wf-fail")
    assert again != failed and (await until_ended(provider, again)).outcome == "completed"
    assert sim.batches[again].input_file_id == sim.batches[failed].input_file_id


async def test_vendor_errors_are_the_sdks_for_our_classifier(
    batches: BatchProvider, vendor: str
) -> None:
    with pytest.raises((openai.NotFoundError, anthropic.NotFoundError)) as raised:
        await batches.state("batch_nonexistent")
    verdict = classify(raised.value)
    assert not verdict.retryable and verdict.error_type == PROVIDER_REJECTED
    assert verdict.status_code == 404 and KEY not in verdict.message
