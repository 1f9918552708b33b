"""The simulator's OpenAI Files + Batch APIs, driven by the real openai SDK over real HTTP.

What is asserted is what a batch client will see: the SDK's parsed objects,
the JSONL it downloads, and its exception classes; the simulator's own
records only for what a provider would bill.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import aiohttp
import openai
import pytest
from openai.types import Batch
from openai.types.chat import ChatCompletion
from openai.types.responses import Response

from ai_orchestrator.simulator import BatchBehaviour, Simulator
from ai_orchestrator.simulator._text import simulated_tokens

from ..support.helpers import wait_until

MODEL = "gpt-4o-mini"
CHAT = "/v1/chat/completions"


def _messages(custom_id: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": f"Tell me about rivers, item {custom_id}"}]


def _line(custom_id: str, **overrides: Any) -> dict[str, Any]:
    line = {
        "custom_id": custom_id,
        "method": "POST",
        "url": CHAT,
        "body": {"model": MODEL, "messages": _messages(custom_id)},
    }
    return {**line, **overrides}


def _jsonl(lines: list[Any]) -> bytes:
    return "\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines).encode()


async def _submit(
    client: openai.AsyncOpenAI,
    lines: list[Any],
    endpoint: str = CHAT,
    metadata: dict[str, str] | None = None,
) -> Batch:
    upload = await client.files.create(file=("requests.jsonl", _jsonl(lines)), purpose="batch")
    return await client.batches.create(
        input_file_id=upload.id,
        endpoint=endpoint,  # type: ignore[arg-type]
        completion_window="24h",
        metadata=metadata,
    )


async def _until(
    client: openai.AsyncOpenAI, batch_id: str, done: Callable[[Batch], bool], timeout: float = 30
) -> tuple[Batch, list[str]]:
    """Poll until ``done``; also returns every status seen, in order, without repeats."""
    seen: list[str] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        batch = await client.batches.retrieve(batch_id)
        if not seen or seen[-1] != batch.status:
            seen.append(batch.status)
        if done(batch):
            return batch, seen
        assert loop.time() < deadline, f"batch stuck at {batch.status}: {batch.request_counts}"
        await asyncio.sleep(0.01)


def _ended(batch: Batch) -> bool:
    return batch.status in ("completed", "failed", "expired", "cancelled")


async def _lines(client: openai.AsyncOpenAI, file_id: str | None) -> dict[str, dict[str, Any]]:
    if file_id is None:
        return {}
    content = await client.files.content(file_id)
    return {line["custom_id"]: line for line in map(json.loads, content.text.splitlines())}


async def test_a_batch_answers_like_the_live_api(
    sim: Simulator, openai_client: openai.AsyncOpenAI
) -> None:
    sim.batch_behaviour = BatchBehaviour(turnaround=1.5)  # long enough to see it run
    ids = ["a", "b", "c"]
    created = await _submit(openai_client, [_line(i) for i in ids], metadata={"run": "r1"})
    assert created.status == "validating"
    assert created.request_counts is not None and created.request_counts.total == 3
    assert created.metadata == {"run": "r1"} and created.model == MODEL

    batch, seen = await _until(openai_client, created.id, _ended)
    order = ["validating", "in_progress", "finalizing", "completed"]
    assert "in_progress" in seen and seen == sorted(seen, key=order.index)
    assert batch.request_counts is not None
    assert (batch.request_counts.completed, batch.request_counts.failed) == (3, 0)
    assert batch.error_file_id is None and batch.output_file_id is not None
    assert batch.in_progress_at is not None and batch.completed_at is not None
    assert batch.created_at <= batch.in_progress_at <= batch.completed_at

    out = await _lines(openai_client, batch.output_file_id)
    live = await openai_client.chat.completions.create(model=MODEL, messages=_messages("b"))
    for custom_id in ids:
        line = out[custom_id]
        assert line["error"] is None and line["response"]["status_code"] == 200
        answer = ChatCompletion.model_validate(line["response"]["body"])
        expected = "".join(simulated_tokens(_messages(custom_id), MODEL, 16))
        assert answer.choices[0].message.content == expected
        assert answer.usage is not None and answer.usage.completion_tokens == 16
    assert ChatCompletion.model_validate(out["b"]["response"]["body"]).choices[
        0
    ].message.content == (live.choices[0].message.content)
    assert batch.usage is not None and batch.usage.output_tokens == 3 * 16

    record = sim.batches[batch.id]
    assert record.api == "openai" and record.api_key == openai_client.api_key
    assert [item.status for item in record.items] == ["succeeded"] * 3
    assert sim.generated_tokens == 4 * 16  # the batch's three answers and the live one
    assert len(sim.requests) == 1  # batch traffic is not a generation request


async def test_responses_lines_get_responses(
    sim: Simulator, openai_client: openai.AsyncOpenAI
) -> None:
    sim.batch_behaviour = BatchBehaviour(turnaround=0)
    body = {"model": MODEL, "input": "Say something about lakes", "max_output_tokens": 5}
    line = {"custom_id": "r1", "method": "POST", "url": "/v1/responses", "body": body}
    batch = await _submit(openai_client, [line], endpoint="/v1/responses")
    assert batch.status == "completed"  # turnaround 0: ended as it was created
    answer = Response.model_validate(
        (await _lines(openai_client, batch.output_file_id))["r1"]["response"]["body"]
    )
    messages = [{"role": "user", "content": "Say something about lakes"}]
    assert answer.output_text == "".join(simulated_tokens(messages, MODEL, 5))
    assert answer.status == "incomplete" and answer.usage is not None
    assert answer.usage.output_tokens == 5


async def test_failing_items_go_to_the_error_file(
    sim: Simulator, openai_client: openai.AsyncOpenAI
) -> None:
    sim.batch_behaviour = BatchBehaviour(turnaround=0.2, error_ids={"b"}, error_status=500)
    no_messages = _line("c", body={"model": MODEL})
    created = await _submit(openai_client, [_line("a"), _line("b"), no_messages, _line("d")])
    batch, _ = await _until(openai_client, created.id, _ended)
    assert batch.status == "completed"
    assert batch.request_counts is not None
    assert (batch.request_counts.completed, batch.request_counts.failed) == (2, 2)
    assert set(await _lines(openai_client, batch.output_file_id)) == {"a", "d"}
    errors = await _lines(openai_client, batch.error_file_id)
    assert errors["b"]["response"]["status_code"] == 500
    assert errors["b"]["response"]["body"]["error"]["type"] == "server_error"
    assert errors["c"]["response"]["status_code"] == 400
    assert errors["c"]["response"]["body"]["error"]["param"] == "messages"
    assert all(line["error"] is None for line in errors.values())


async def test_an_error_rate_fails_the_same_items_every_time(
    sim: Simulator, openai_client: openai.AsyncOpenAI
) -> None:
    sim.batch_behaviour = BatchBehaviour(turnaround=0, error_rate=0.5)
    lines = [_line(f"item-{i}") for i in range(40)]
    failed = []
    for _ in range(2):
        batch = await _submit(openai_client, lines)
        failed.append(set(await _lines(openai_client, batch.error_file_id)))
    assert failed[0] == failed[1] and 8 <= len(failed[0]) <= 32


async def test_a_bad_file_fails_validation(
    sim: Simulator, openai_client: openai.AsyncOpenAI
) -> None:
    sim.batch_behaviour = BatchBehaviour(turnaround=2.0)  # validating: 0.2 s
    lines: list[Any] = [
        _line("a"),
        '{"custom_id": "b", "method": "POST", ',
        _line("a"),
        _line("d", url="/v1/embeddings"),
        _line("e", method="GET"),
        _line("f", body={"model": "gpt-4o", "messages": _messages("f")}),
        _line("g", body={"messages": _messages("g")}),
    ]
    created = await _submit(openai_client, lines)
    assert created.status == "validating"
    batch, seen = await _until(openai_client, created.id, _ended)
    # A poll on a busy machine may miss the short "validating".
    assert seen[-1] == "failed" and set(seen) <= {"validating", "failed"}
    assert batch.failed_at is not None and batch.output_file_id is None
    assert batch.request_counts is not None and batch.request_counts.total == 0
    assert batch.errors is not None and batch.errors.data is not None
    found = [(e.code, e.line) for e in batch.errors.data]
    assert found == [
        ("invalid_json_line", 2),
        ("duplicate_custom_id", 3),
        ("invalid_url", 4),
        ("invalid_method", 5),
        ("mismatched_model", 6),
        ("missing_required_parameter", 7),
    ]
    assert sim.generated_tokens == 0


async def test_bad_requests_are_the_providers_errors(
    sim: Simulator, openai_client: openai.AsyncOpenAI
) -> None:
    with pytest.raises(openai.BadRequestError, match=r"Must be \.jsonl"):
        await openai_client.files.create(file=("requests.txt", b"{}"), purpose="batch")
    with pytest.raises(openai.NotFoundError):
        await openai_client.batches.create(
            input_file_id="file-missing", endpoint=CHAT, completion_window="24h"
        )
    upload = await openai_client.files.create(
        file=("r.jsonl", _jsonl([_line("a")])), purpose="batch"
    )
    with pytest.raises(openai.BadRequestError) as bad:
        await openai_client.batches.create(
            input_file_id=upload.id,
            endpoint=CHAT,
            completion_window="1h",  # type: ignore[arg-type]
        )
    assert bad.value.param == "completion_window"  # type: ignore[attr-defined]
    with pytest.raises(openai.NotFoundError):
        await openai_client.batches.retrieve("batch_missing")
    empty = await _submit(openai_client, [])
    batch, _ = await _until(openai_client, empty.id, _ended)
    assert batch.errors is not None and batch.errors.data is not None
    assert batch.errors.data[0].code == "empty_file"


async def test_an_expiring_batch_keeps_what_it_answered(
    sim: Simulator, openai_client: openai.AsyncOpenAI
) -> None:
    sim.batch_behaviour = BatchBehaviour(turnaround=0.2, outcome="expired", stall_after=1)
    created = await _submit(openai_client, [_line("a"), _line("b"), _line("c")])
    assert created.expires_at is not None and created.expires_at - created.created_at <= 1
    batch, _ = await _until(openai_client, created.id, _ended)
    assert batch.status == "expired" and batch.expired_at is not None
    assert batch.request_counts is not None
    assert (batch.request_counts.completed, batch.request_counts.failed) == (1, 2)
    assert set(await _lines(openai_client, batch.output_file_id)) == {"a"}
    errors = await _lines(openai_client, batch.error_file_id)
    assert {e["error"]["code"] for e in errors.values()} == {"batch_expired"}
    assert set(errors) == {"b", "c"} and errors["b"]["response"] is None


async def test_cancel_stops_what_is_not_answered(
    sim: Simulator, openai_client: openai.AsyncOpenAI
) -> None:
    sim.batch_behaviour = BatchBehaviour(turnaround=0.2, stall_after=1, cancel_latency=0.1)
    created = await _submit(openai_client, [_line("a"), _line("b"), _line("c")])

    def one_answered(batch: Batch) -> bool:
        return batch.request_counts is not None and batch.request_counts.completed == 1

    await _until(openai_client, created.id, one_answered)
    cancelling = await openai_client.batches.cancel(created.id)
    assert cancelling.status == "cancelling" and cancelling.cancelling_at is not None
    again = await openai_client.batches.cancel(created.id)  # idempotent
    assert again.status == "cancelling"
    batch, seen = await _until(openai_client, created.id, _ended)
    assert seen[-2:] == ["cancelling", "cancelled"] and batch.cancelled_at is not None
    assert set(await _lines(openai_client, batch.output_file_id)) == {"a"}
    errors = await _lines(openai_client, batch.error_file_id)
    assert {e["error"]["code"] for e in errors.values()} == {"batch_cancelled"}
    assert set(errors) == {"b", "c"}

    record = sim.batches[batch.id]
    assert record.cancel_requested
    assert [i.status for i in record.items] == ["succeeded", "canceled", "canceled"]
    assert sim.generated_tokens == 16


async def test_an_ignored_cancel_still_answers_everything(
    sim: Simulator, openai_client: openai.AsyncOpenAI
) -> None:
    sim.batch_behaviour = BatchBehaviour(turnaround=0.3, honour_cancel=False)
    created = await _submit(openai_client, [_line("a"), _line("b")])
    assert (await openai_client.batches.cancel(created.id)).status == "cancelling"
    batch, _ = await _until(openai_client, created.id, _ended)
    assert batch.status == "cancelled" and batch.error_file_id is None
    assert set(await _lines(openai_client, batch.output_file_id)) == {"a", "b"}
    sim.batch_behaviour = BatchBehaviour(turnaround=0)
    done = await _submit(openai_client, [_line("a")])
    with pytest.raises(openai.BadRequestError, match="status 'completed'"):
        await openai_client.batches.cancel(done.id)


async def test_a_slow_provider_holds_each_request_for_the_state_and_counts_it(
    sim: Simulator, openai_client: openai.AsyncOpenAI
) -> None:
    """``status_latency``: the batch's state comes that much later, and the record counts
    the requests held meanwhile (how a test kills a worker while it waits on one)."""
    sim.batch_behaviour = BatchBehaviour(turnaround=0, status_latency=0.5)
    created = await _submit(openai_client, [_line("a")])
    record = sim.batches[created.id]
    asking = asyncio.create_task(openai_client.batches.retrieve(created.id))
    await wait_until(lambda: record.status_requests_held == 1, 10, "the request to be held")
    assert not asking.done()
    assert (await asking).status == "completed"
    assert record.status_requests_held == 0


async def test_a_failed_batch_says_why(sim: Simulator, openai_client: openai.AsyncOpenAI) -> None:
    sim.batch_behaviour = BatchBehaviour(turnaround=0.1, outcome="failed")
    created = await _submit(openai_client, [_line("a")])
    batch, _ = await _until(openai_client, created.id, _ended)
    assert batch.status == "failed" and batch.errors is not None and batch.errors.data
    assert batch.errors.data[0].code == "token_limit_exceeded"


async def test_a_client_finds_its_batch_by_metadata(
    sim: Simulator, openai_client: openai.AsyncOpenAI
) -> None:
    """After a crash, listing newest first with ``after`` finds the batch it submitted."""
    sim.batch_behaviour = BatchBehaviour(turnaround=60)
    created = [
        await _submit(openai_client, [_line("a")], metadata={"run": str(i)}) for i in range(5)
    ]
    first = await openai_client.batches.list(limit=2)
    assert [b.id for b in first.data] == [created[4].id, created[3].id] and first.has_more
    every = [b async for b in openai_client.batches.list(limit=2)]  # the SDK pages with `after`
    assert [b.id for b in every] == [b.id for b in reversed(created)]
    found = [b for b in every if b.metadata == {"run": "2"}]
    assert [b.id for b in found] == [created[2].id]
    last = await openai_client.batches.list(limit=10, after=created[1].id)
    assert [b.id for b in last.data] == [created[0].id] and not last.has_more


async def test_reset_forgets_batches_and_files(
    sim: Simulator, openai_client: openai.AsyncOpenAI
) -> None:
    batch = await _submit(openai_client, [_line("a")])
    assert len(sim.batches) == 1
    sim.reset()
    assert sim.batches == {}
    with pytest.raises(openai.NotFoundError):
        await openai_client.batches.retrieve(batch.id)
    with pytest.raises(openai.NotFoundError):
        await openai_client.files.retrieve(batch.input_file_id)


async def test_the_admin_api_scripts_batches(
    sim: Simulator, openai_client: openai.AsyncOpenAI
) -> None:
    async with aiohttp.ClientSession() as http:
        behaviour = {"turnaround": 0, "error_ids": ["b"], "error_status": 400}
        async with http.post(f"{sim.url}/_simulator/batches/behaviour", json=behaviour) as resp:
            assert resp.status == 200
        async with http.post(f"{sim.url}/_simulator/batches/behaviour", json={"nope": 1}) as resp:
            assert resp.status == 400
        assert sim.batch_behaviour == BatchBehaviour(
            turnaround=0, error_ids={"b"}, error_status=400
        )
        await _submit(openai_client, [_line("a"), _line("b")])
        async with http.get(f"{sim.url}/_simulator/batches") as resp:
            report = await resp.json()
    [batch] = report["batches"]
    assert batch["status"] == "completed"
    assert [i["status"] for i in batch["items"]] == ["succeeded", "errored"]


def test_behaviour_is_checked() -> None:
    for bad in (
        {"turnaround": -1},
        {"error_rate": 2},
        {"error_status": 200},
        {"outcome": "exploded"},
        {"stall_after": -1},
        {"error_ids": "abc"},
        {"status_latency": -1},
    ):
        with pytest.raises(ValueError):
            BatchBehaviour(**bad)
