"""Gemini's batch adapter, offline: requests built, answers matched and read, states normalised.

Vendor objects are built from dicts in google-genai's own types; the wire form
is the SDK's own converter's. The round trips through a server are in
tests/providers/test_provider_batches_gemini.py.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

import pytest
from google import genai
from google.genai import batches as genai_batches
from google.genai import types

from ai_orchestrator.core import Task, TaskConstraints
from ai_orchestrator.errors import (
    INCOMPLETE_STREAM,
    PROVIDER_REJECTED,
    PROVIDER_UNAVAILABLE,
    RATE_LIMITED,
)
from ai_orchestrator.providers import BatchItem, GeminiBatches, batch_gemini
from ai_orchestrator.providers._tls import genai_http_options
from ai_orchestrator.providers.batch_gemini import (
    MAX_INLINE_BYTES,
    batch_state,
    custom_ids,
    encoded_size,
    inlined_request,
    result_from_response,
)
from ai_orchestrator.providers.gemini import request_config

KEY = "AIzaTEST-0123456789abcdefSECRETxyz"
#: Nothing listens here: a test that reaches the network fails instead of passing.
NOWHERE = "http://127.0.0.1:9"
MODEL = "gemini-2.5-flash"

TASK = Task(
    prompt="Summarise the river report",
    context={"region": "north", "limits": [1, 2]},
    constraints=TaskConstraints(max_tokens=64, temperature=1.4),
)


def item(custom_id: str = "a-1", model: str = MODEL, task: Task = TASK) -> BatchItem:
    return BatchItem(custom_id=custom_id, task=task, model=model)


def client(attempts: int | None = 1, **kwargs: Any) -> genai.Client:
    retry = types.HttpRetryOptions(attempts=attempts) if attempts is not None else None
    options = genai_http_options(base_url=NOWHERE, retry_options=retry)
    return genai.Client(api_key=KEY, http_options=options, **kwargs)


def wire(requests: list[types.InlinedRequest], tag: str = "tag") -> dict[str, Any]:
    """The body google-genai sends for ``batches.create`` (its own converter)."""
    params = types._CreateBatchJobParameters(
        model=MODEL, src=requests, config=types.CreateBatchJobConfig(display_name=tag)
    )
    body = genai_batches._CreateBatchJobParameters_to_mldev(client()._api_client, params)
    body.pop("_url", None)
    return body


# -- requests ---------------------------------------------------------------------------------


def test_a_request_is_the_live_call_keyed_by_its_custom_id() -> None:
    request = inlined_request(item())
    contents, config = request_config(TASK)
    assert request.metadata == {"key": "a-1"} and request.config == config
    assert request.contents == types.InlinedRequest(contents=contents).contents
    (sent,) = wire([request])["batch"]["inputConfig"]["requests"]["requests"]
    assert sent["metadata"] == {"key": "a-1"}
    body = sent["request"]
    assert body["generationConfig"] == {"maxOutputTokens": 64, "temperature": 1.4}
    assert "north" in body["systemInstruction"]["parts"][0]["text"]
    assert body["contents"] == [{"role": "user", "parts": [{"text": TASK.prompt}]}]


def test_the_tag_is_the_display_name() -> None:
    assert wire([inlined_request(item())], "wf-7")["batch"]["displayName"] == "wf-7"


@pytest.mark.parametrize("prompt", ["short", 'ü€ quoted "x" and \n' * 50, "x" * 5000])
def test_the_size_is_never_under_what_the_sdk_sends(prompt: str) -> None:
    task = Task(prompt=prompt, context={"k": prompt}, constraints=TaskConstraints(max_tokens=9))
    requests = [inlined_request(item(f"c{i}", task=task)) for i in range(20)]
    sent = len(json.dumps(wire(requests)).encode("utf-8"))
    assert sent <= encoded_size(requests, "tag") <= sent * 1.3 + 3000


async def test_a_batch_over_20_mb_is_refused_before_any_request() -> None:
    big = Task(prompt="y" * 1_000_000)
    provider = GeminiBatches(client())
    with pytest.raises(ValueError, match=r"at most 20 MB \(20,971,520 bytes\)"):
        await provider.submit([item(f"c{i}", task=big) for i in range(21)], "tag")
    assert MAX_INLINE_BYTES == 20 * 1024 * 1024


async def test_bad_batches_are_refused_before_any_request() -> None:
    provider = GeminiBatches(client())
    with pytest.raises(ValueError, match="one model"):
        await provider.submit([item("a"), item("b", "gemini-2.5-pro")], "tag")
    with pytest.raises(ValueError, match="appears twice"):
        await provider.submit([item(), item()], "tag")
    with pytest.raises(ValueError, match="printable"):
        await provider.submit([item()], "")
    await provider.aclose()


def test_clients_that_retry_or_speak_vertex_are_refused() -> None:
    with pytest.raises(ValueError, match="Temporal is the only retry layer"):
        GeminiBatches(client(attempts=3))
    GeminiBatches(client(attempts=None))  # the SDK's default: one attempt
    vertex = genai.Client(vertexai=True, project="p", location="us-central1")
    with pytest.raises(ValueError, match="not Vertex"):
        GeminiBatches(vertex)


# -- states -----------------------------------------------------------------------------------


def job(state: str, responses: list[dict[str, Any]] | None = None, **fields: Any) -> Any:
    """A batch as google-genai reads it from the Gemini API's Operation (its own converter)."""
    metadata: dict[str, Any] = {
        "displayName": fields.pop("display_name", "tag"),
        "state": state,
        "createTime": "2024-01-01T00:00:00Z",
    }
    if responses is not None:
        metadata["output"] = {"inlinedResponses": {"inlinedResponses": responses}}
    operation = {"name": fields.pop("name", "batches/b1"), "metadata": metadata}
    parsed = genai_batches._BatchJob_from_mldev(operation)
    return types.BatchJob._from_response(response=parsed, kwargs={}).model_copy(update=fields)


def answer(key: str | None = "c-1", text: str = "Hi.", finish: str = "STOP") -> dict[str, Any]:
    """An inlined response on the wire (camelCase)."""
    candidate = {"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": finish}
    response = {
        "candidates": [candidate],
        "usageMetadata": {"promptTokenCount": 12, "candidatesTokenCount": 3},
        "modelVersion": MODEL,
    }
    return {"response": response, **({"metadata": {"key": key}} if key else {})}


def failure(code: int, message: str = "boom", key: str | None = "c-1") -> dict[str, Any]:
    error = {"code": code, "message": message, "status": "WHATEVER"}
    return {"error": error, **({"metadata": {"key": key}} if key else {})}


@pytest.mark.parametrize(
    ("vendor", "status", "outcome"),
    [
        ("JOB_STATE_QUEUED", "validating", None),
        ("BATCH_STATE_PENDING", "validating", None),
        ("BATCH_STATE_RUNNING", "in_progress", None),
        ("JOB_STATE_PAUSED", "in_progress", None),
        ("JOB_STATE_CANCELLING", "cancelling", None),
        ("BATCH_STATE_SUCCEEDED", "ended", "completed"),
        ("JOB_STATE_PARTIALLY_SUCCEEDED", "ended", "completed"),
        ("BATCH_STATE_FAILED", "ended", "failed"),
        ("BATCH_STATE_CANCELLED", "ended", "cancelled"),
        ("BATCH_STATE_EXPIRED", "ended", "expired"),
    ],
)
def test_states_are_normalised(vendor: str, status: str, outcome: str | None) -> None:
    state = batch_state(job(vendor))
    assert (state.status, state.outcome) == (status, outcome)
    assert state.vendor_status == vendor.replace("BATCH_STATE_", "JOB_STATE_")
    assert (state.id, state.created_at) == ("batches/b1", 1_704_067_200.0)
    assert (state.total, state.processing) == (0, 0)
    assert state.ended == (status == "ended") and (state.error is None) == (outcome != "failed")


def test_a_state_the_sdk_does_not_know_is_in_progress() -> None:
    with pytest.warns(UserWarning, match="BATCH_STATE_SOMETHING_NEW"):
        state = batch_state(job("BATCH_STATE_SOMETHING_NEW"))
    assert (state.status, state.vendor_status) == ("in_progress", "JOB_STATE_SOMETHING_NEW")


def test_an_ended_batch_is_counted_from_its_answers() -> None:
    answers = [answer("a"), failure(500, key="b"), failure(499, key="c"), failure(504, key="d")]
    state = batch_state(job("BATCH_STATE_CANCELLED", answers))
    assert (state.total, state.succeeded, state.errored, state.cancelled) == (4, 1, 2, 1)
    expired = batch_state(job("BATCH_STATE_EXPIRED", answers))
    assert (expired.errored, expired.cancelled, expired.expired) == (1, 1, 1)
    running = batch_state(job("BATCH_STATE_RUNNING", answers))  # counted only once ended
    assert (running.total, running.succeeded) == (0, 0)


def test_a_failed_batch_says_so_and_why_when_told_without_the_key() -> None:
    assert "failed" in (batch_state(job("BATCH_STATE_FAILED")).error or "")
    told = job("BATCH_STATE_FAILED", error=types.JobError(code=13, message=f"bad key {KEY}"))
    error = batch_state(told, KEY).error or ""
    assert "bad key [redacted]" in error and "SECRET" not in error


# -- matching answers to items ---------------------------------------------------------------


def responses(*entries: dict[str, Any]) -> list[types.InlinedResponse]:
    """Inlined responses as google-genai reads them off the wire."""
    read = (genai_batches._InlinedResponse_from_mldev(e) for e in entries)
    return [types.InlinedResponse._from_response(response=r, kwargs={}) for r in read]


def test_answers_are_matched_by_key_then_by_position_else_to_nobody() -> None:
    keyed = responses(answer("x"), answer("y"))
    assert custom_ids(keyed) == ["x", "y"]
    assert custom_ids(keyed, ["p", "q"]) == ["x", "y"]  # the key wins
    bare = responses(answer(None), answer("y"), answer(None))
    assert custom_ids(bare, ["p", "q", "r"]) == ["p", "y", "r"]
    assert custom_ids(bare) == ["", "y", ""]
    assert custom_ids(bare, ["p", "q"]) == ["", "y", ""]  # counts differ: position unsafe


# -- results ----------------------------------------------------------------------------------


def read(entry: dict[str, Any], outcome: str | None = "completed", *secrets: str) -> Any:
    (inlined,) = responses(entry)
    return result_from_response("c-1", inlined, outcome, *secrets)


def test_a_succeeded_answer() -> None:
    entry = answer(text="Rivers flow.", finish="MAX_TOKENS")
    parts = entry["response"]["candidates"][0]["content"]["parts"]
    parts.insert(0, {"text": "thinking...", "thought": True})
    entry["response"]["usageMetadata"]["thoughtsTokenCount"] = 5
    result = read(entry)
    assert (result.custom_id, result.kind, result.text) == ("c-1", "succeeded", "Rivers flow.")
    assert (result.finish_reason, result.vendor_finish_reason) == ("length", "MAX_TOKENS")
    assert result.model == MODEL
    assert result.usage is not None and result.usage.estimated is False
    usage = result.usage
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (12, 8, 20)


def test_a_filtered_answer_says_so() -> None:
    result = read(answer(text="", finish="SAFETY"))
    assert (result.kind, result.finish_reason) == ("succeeded", "content_filter")
    assert result.vendor_finish_reason == "SAFETY"


def test_an_answer_without_a_finish_reason_is_incomplete_as_live() -> None:
    blocked = {"response": {"promptFeedback": {"blockReason": "SAFETY"}}}
    result = read(blocked)
    assert (result.kind, result.retryable, result.error_type) == (
        "errored",
        True,
        INCOMPLETE_STREAM,
    )
    assert "prompt blocked: SAFETY" in (result.error or "")
    assert read({}).kind == "errored"


@pytest.mark.parametrize(
    ("code", "retryable", "error_type", "status"),
    [
        (400, False, PROVIDER_REJECTED, 400),
        (3, False, PROVIDER_REJECTED, 400),  # google.rpc.Code INVALID_ARGUMENT
        (500, True, PROVIDER_UNAVAILABLE, 500),
        (14, True, PROVIDER_UNAVAILABLE, 503),  # UNAVAILABLE
        (429, True, RATE_LIMITED, 429),
        (8, True, RATE_LIMITED, 429),  # RESOURCE_EXHAUSTED
        (504, True, PROVIDER_UNAVAILABLE, 504),  # a deadline in a batch that did not expire
    ],
)
def test_errored_answers_are_judged_as_live_calls(
    code: int, retryable: bool, error_type: str, status: int
) -> None:
    result = read(failure(code, f"boom {KEY}"), "completed", KEY)
    assert (result.kind, result.retryable, result.error_type) == ("errored", retryable, error_type)
    assert f"HTTP {status}" in (result.error or "") and "boom [redacted]" in (result.error or "")
    assert "SECRET" not in (result.error or "")


@pytest.mark.parametrize(
    ("code", "outcome", "kind", "retryable"),
    [
        (499, "cancelled", "cancelled", False),
        (1, "cancelled", "cancelled", False),  # google.rpc.Code CANCELLED
        (504, "expired", "expired", True),
        (4, "expired", "expired", True),  # DEADLINE_EXCEEDED
    ],
)
def test_requests_never_run(code: int, outcome: str, kind: str, retryable: bool) -> None:
    result = read(failure(code), outcome)
    assert (result.kind, result.retryable) == (kind, retryable) and result.error


# -- results() over a client that answers from memory ----------------------------------------


class _Pager:
    def __init__(self, jobs: list[types.BatchJob]) -> None:
        self._jobs = iter(jobs)

    def __aiter__(self) -> _Pager:
        return self

    async def __anext__(self) -> types.BatchJob:
        try:
            return next(self._jobs)
        except StopIteration:
            raise StopAsyncIteration from None


class _Batches:
    """``client.aio.batches`` whose batches answer without their metadata."""

    def __init__(self) -> None:
        self.jobs: dict[str, types.BatchJob] = {}

    async def create(self, *, model: str, src: Any, config: Any) -> types.BatchJob:
        name = f"batches/b{len(self.jobs)}"
        entries = [answer(None, text=f"answer {i}") for i in range(len(src))]
        tag = config.display_name
        self.jobs[name] = job("BATCH_STATE_SUCCEEDED", entries, name=name, display_name=tag)
        return self.jobs[name]

    async def list(self, *, config: Any) -> _Pager:
        return _Pager(list(self.jobs.values()))

    async def get(self, *, name: str) -> types.BatchJob:
        return self.jobs[name]


def _offline(fake: _Batches) -> GeminiBatches:
    real = client()
    provider = GeminiBatches(real)
    provider._client = type("C", (), {"aio": type("A", (), {"batches": fake})()})()  # type: ignore[assignment]
    return provider


async def test_answers_without_keys_go_by_position_only_to_the_sender() -> None:
    fake = _Batches()
    sender, other = _offline(fake), _offline(fake)
    items = [item("a"), item("b"), item("c")]
    name = await sender.submit(items, "wf-1")
    read_back = [r async for r in sender.results(name)]
    assert [(r.custom_id, r.text) for r in read_back] == [
        ("a", "answer 0"),
        ("b", "answer 1"),
        ("c", "answer 2"),
    ]
    assert [r.custom_id async for r in sender.results(name, skip=2)] == ["c"]
    # Another process cannot tell whose they are: nobody's, so no task takes a stranger's.
    assert await other.submit(items, "wf-1") == name  # found again, not created again
    assert [r.custom_id async for r in other.results(name)] == ["", "", ""]
    assert batch_gemini.KEY == "key"


async def test_find_takes_the_newest_of_a_tag_in_any_list_order() -> None:
    """The API does not document its list order: the whole list is read, never cut short."""
    fake = _Batches()
    provider = _offline(fake)
    created = {"batches/old": 1_000.0, "batches/x": 1_500.0, "batches/new": 2_000.0}
    for name, at in created.items():
        tag = "other" if name == "batches/x" else "wf-1"
        when = datetime.fromtimestamp(at, timezone.utc)
        fake.jobs[name] = job("BATCH_STATE_RUNNING", name=name, display_name=tag, create_time=when)
    assert await provider.find("wf-1") == "batches/new"  # listed oldest first here
    assert await provider.find("wf-1", since=1_000.0 + 61) == "batches/new"
    assert await provider.find("wf-1", since=2_000.0 + 61) is None
    fake.jobs["batches/new"] = job("BATCH_STATE_FAILED", name="batches/new", display_name="wf-1")
    assert await provider.find("wf-1") == "batches/old"
