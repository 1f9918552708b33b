"""Provider batch adapters, offline: requests built, vendor shapes read, states normalised.

Vendor objects are built from dicts in the vendors' own shapes with the SDKs'
own types; the round trips through a server are in tests/providers.
"""

from __future__ import annotations

import json
from typing import Any

import anthropic
import openai
import pytest
from anthropic.types.messages import MessageBatch, MessageBatchIndividualResponse
from openai.types import Batch

from ai_orchestrator.core import Task, TaskConstraints
from ai_orchestrator.errors import PROVIDER_REJECTED, QUOTA_EXHAUSTED, RATE_LIMITED
from ai_orchestrator.providers import (
    AnthropicBatches,
    BatchItem,
    ItemResult,
    OpenAIBatches,
    ProviderBatchState,
    batch_anthropic,
    batch_openai,
    openai_chat,
)
from ai_orchestrator.providers import anthropic as anthropic_provider
from ai_orchestrator.providers._batch_types import check_items, check_tag
from ai_orchestrator.providers.batch_anthropic import result_from_response
from ai_orchestrator.providers.batch_openai import result_from_line

KEY = "sk-test-0123456789abcdefSECRETxyz"
#: Nothing listens here: a test that reaches the network fails instead of passing.
NOWHERE = "http://127.0.0.1:9"

TASK = Task(
    prompt="Summarise the river report",
    context={"region": "north", "limits": [1, 2]},
    constraints=TaskConstraints(max_tokens=64, temperature=1.4),
)


def item(custom_id: str = "a-1", model: str = "gpt-4o-mini", task: Task = TASK) -> BatchItem:
    return BatchItem(custom_id=custom_id, task=task, model=model)


# -- items, ids and tags --------------------------------------------------------------------


@pytest.mark.parametrize("custom_id", ["", "a" * 65, "has space", "dot.ted", "slash/", "ü"])
def test_custom_ids_anthropic_refuses_are_refused_with_the_pattern(custom_id: str) -> None:
    with pytest.raises(ValueError, match=r"1-64 characters from a-z, A-Z, 0-9"):
        item(custom_id)


@pytest.mark.parametrize("custom_id", ["a", "A_9-z", "x" * 64])
def test_custom_ids_anthropic_accepts_are_accepted(custom_id: str) -> None:
    assert item(custom_id).custom_id == custom_id


def test_an_item_needs_a_model() -> None:
    with pytest.raises(ValueError, match="needs a model"):
        item(model=" ")


@pytest.mark.parametrize("tag", ["", "t" * 65, "line\nbreak"])
def test_tags_must_be_short_and_printable(tag: str) -> None:
    with pytest.raises(ValueError, match="1-64 printable"):
        check_tag(tag)


def test_anthropic_ids_carry_the_tags_mark_and_lose_it_in_results() -> None:
    marks = {batch_anthropic.mark(tag) for tag in ("wf-1", "wf-2", "x" * 64, "wf 1/ü")}
    assert len(marks) == 4
    for prefix in marks:
        assert len(prefix) == batch_anthropic.MARK_CHARS
        sent = prefix + "m" * batch_anthropic.MAX_CUSTOM_ID_CHARS
        assert item(sent).custom_id == sent  # still within Anthropic's pattern
        assert batch_anthropic.unmarked(prefix + "m000001") == "m000001"
    assert batch_anthropic.unmarked("m000001") == "m000001"  # not made by us: left alone
    assert batch_anthropic.unmarked("0123456789ab-x") == "0123456789ab-x"


def test_check_items_refuses_empty_repeated_and_too_many() -> None:
    with pytest.raises(ValueError, match="at least one"):
        check_items([], 10, "X")
    with pytest.raises(ValueError, match="'a-1' appears twice"):
        check_items([item(), item()], 10, "X")
    with pytest.raises(ValueError, match="X takes at most 2"):
        check_items([item("a"), item("b"), item("c")], 2, "X")
    assert [i.custom_id for i in check_items((item("a"), item("b")), 2, "X")] == ["a", "b"]


# -- requests ---------------------------------------------------------------------------------


def test_openai_line_is_the_live_request_without_streaming() -> None:
    line = batch_openai.request_line(item())
    assert line["custom_id"] == "a-1" and line["method"] == "POST"
    assert line["url"] == "/v1/chat/completions"
    assert line["body"] == openai_chat.request_params(TASK, "gpt-4o-mini")
    assert line["body"]["max_tokens"] == 64 and line["body"]["temperature"] == 1.4
    assert line["body"]["messages"][0]["role"] == "system"
    assert "stream" not in line["body"] and "stream_options" not in line["body"]


def test_openai_line_runs_the_items_model() -> None:
    task = TASK.model_copy(update={"constraints": TaskConstraints(model="gpt-4.1")})
    assert batch_openai.request_line(item(model="gpt-4o", task=task))["body"]["model"] == "gpt-4o"


def test_openai_input_is_one_json_line_per_item() -> None:
    content = batch_openai.encode_input([item("a"), item("b")])
    lines = content.decode().splitlines()
    assert content.endswith(b"\n") and [json.loads(x)["custom_id"] for x in lines] == ["a", "b"]


def test_openai_input_file_names_are_one_per_tag() -> None:
    names = {batch_openai.input_file_name(t) for t in ("wf/1", "wf_1", "wf-1", "wf 1")}
    assert len(names) == 4
    assert all(n.endswith(".jsonl") and "/" not in n and " " not in n for n in names)


def test_anthropic_request_is_the_live_params_with_the_body_folded_in() -> None:
    entry = batch_anthropic.request(item(model="claude-haiku-4-5"), "wf-1")
    live = anthropic_provider.request_params(TASK, "claude-haiku-4-5")
    extra = live.pop("extra_body")
    custom_id = batch_anthropic.mark("wf-1") + "a-1"
    assert entry == {"custom_id": custom_id, "params": {**live, **extra}}
    params = entry["params"]
    assert params["temperature"] == 1.0 and params["max_tokens"] == 64
    assert "north" in params["system"] and params["messages"][0]["role"] == "user"
    assert "stream" not in params and "extra_body" not in params


def test_anthropic_request_without_constraints_gets_the_default_max_tokens() -> None:
    params = batch_anthropic.request(item(task=Task(prompt="hi"), model="claude-x"), "t")["params"]
    assert params == {
        "model": "claude-x",
        "max_tokens": anthropic_provider.DEFAULT_MAX_TOKENS,
        "messages": [{"role": "user", "content": "hi"}],
    }


# -- clients and what is refused before any request ---------------------------------------


def test_clients_with_sdk_retries_are_refused() -> None:
    with pytest.raises(ValueError, match="max_retries=0"):
        OpenAIBatches(openai.AsyncOpenAI(api_key=KEY, base_url=NOWHERE, max_retries=2))
    with pytest.raises(ValueError, match="max_retries=0"):
        AnthropicBatches(anthropic.AsyncAnthropic(api_key=KEY, base_url=NOWHERE, max_retries=1))


async def test_bad_batches_are_refused_before_any_request() -> None:
    oai = OpenAIBatches(openai.AsyncOpenAI(api_key=KEY, base_url=NOWHERE, max_retries=0))
    ant = AnthropicBatches(anthropic.AsyncAnthropic(api_key=KEY, base_url=NOWHERE, max_retries=0))
    with pytest.raises(ValueError, match="one model"):
        await oai.submit([item("a", "gpt-4o"), item("b", "gpt-4o-mini")], "tag")
    for provider in (oai, ant):
        with pytest.raises(ValueError, match="appears twice"):
            await provider.submit([item(), item()], "tag")
        with pytest.raises(ValueError, match="printable"):
            await provider.submit([item()], "")
    with pytest.raises(ValueError, match="over 51 characters"):
        await ant.submit([item("m" * 52)], "tag")
    await oai.aclose()
    await ant.aclose()


# -- states -----------------------------------------------------------------------------------


def openai_batch(status: str, **fields: Any) -> Batch:
    data = {
        "id": "batch_1",
        "object": "batch",
        "endpoint": "/v1/chat/completions",
        "input_file_id": "file-1",
        "completion_window": "24h",
        "status": status,
        "created_at": 1_700_000_000,
        "request_counts": {"total": 10, "completed": 6, "failed": 1},
        **fields,
    }
    return Batch.model_validate(data)


@pytest.mark.parametrize(
    ("vendor", "status", "outcome"),
    [
        ("validating", "validating", None),
        ("in_progress", "in_progress", None),
        ("finalizing", "finalizing", None),
        ("cancelling", "cancelling", None),
        ("completed", "ended", "completed"),
        ("failed", "ended", "failed"),
        ("expired", "ended", "expired"),
        ("cancelled", "ended", "cancelled"),
    ],
)
def test_openai_states_are_normalised(vendor: str, status: str, outcome: str | None) -> None:
    state = batch_openai.batch_state(openai_batch(vendor))
    assert (state.status, state.outcome, state.vendor_status) == (status, outcome, vendor)
    assert (state.total, state.succeeded, state.errored) == (10, 6, 1)
    assert state.processing == (0 if status == "ended" else 3)
    assert state.ended == (status == "ended") and state.created_at == 1_700_000_000.0


def test_openai_whole_batch_failure_says_why_without_the_key() -> None:
    errors = [
        {"code": "invalid_json_line", "message": f"bad line near {KEY}", "line": 3},
        {"code": "mismatched_model", "message": "two models", "line": 4},
        {"code": "c3", "message": "m3"},
        {"code": "c4", "message": "m4"},
    ]
    batch = openai_batch("failed", errors={"object": "list", "data": errors})
    state = batch_openai.batch_state(batch, KEY)
    assert state.outcome == "failed" and state.error is not None
    assert state.error.startswith("invalid_json_line: bad line near [redacted] (line 3)")
    assert "mismatched_model: two models (line 4)" in state.error
    assert state.error.endswith("and 1 more") and "SECRET" not in state.error


def test_openai_state_without_counts_reports_zero() -> None:
    state = batch_openai.batch_state(openai_batch("validating", request_counts=None))
    assert (state.total, state.processing) == (0, 0)


def anthropic_batch(status: str, cancel: bool = False, **counts: int) -> MessageBatch:
    base = {"processing": 0, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
    return MessageBatch.model_validate(
        {
            "id": "msgbatch_1",
            "type": "message_batch",
            "processing_status": status,
            "request_counts": {**base, **counts},
            "created_at": "2024-01-01T00:00:00Z",
            "expires_at": "2024-01-02T00:00:00Z",
            "cancel_initiated_at": "2024-01-01T00:01:00Z" if cancel else None,
        }
    )


@pytest.mark.parametrize(
    ("batch", "status", "outcome"),
    [
        (anthropic_batch("in_progress", processing=5), "in_progress", None),
        (anthropic_batch("canceling", True, processing=5), "cancelling", None),
        (anthropic_batch("ended", succeeded=4, errored=1), "ended", "completed"),
        (anthropic_batch("ended", errored=5), "ended", "completed"),
        (anthropic_batch("ended", succeeded=3, expired=2), "ended", "expired"),
        (anthropic_batch("ended", True, succeeded=2, canceled=3), "ended", "cancelled"),
    ],
)
def test_anthropic_states_are_normalised(
    batch: MessageBatch, status: str, outcome: str | None
) -> None:
    state = batch_anthropic.batch_state(batch)
    assert (state.status, state.outcome, state.vendor_status) == (
        status,
        outcome,
        batch.processing_status,
    )
    c = batch.request_counts
    assert state.total == 5
    assert (state.succeeded, state.errored, state.processing) == (
        c.succeeded,
        c.errored,
        c.processing,
    )
    assert (state.expired, state.cancelled) == (c.expired, c.canceled)
    assert state.created_at == 1_704_067_200.0 and state.error is None
    assert isinstance(state, ProviderBatchState)


# -- OpenAI result lines -------------------------------------------------------------------


def openai_line(status: int | None, body: Any = None, error: Any = None) -> dict[str, Any]:
    response = None
    if status is not None:
        response = {"status_code": status, "request_id": "req_7", "body": body}
    return {"id": "batch_req_1", "custom_id": "c-1", "response": response, "error": error}


def test_openai_succeeded_line() -> None:
    body = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hi."},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15},
    }
    result = result_from_line(openai_line(200, body))
    assert result == ItemResult(
        custom_id="c-1",
        kind="succeeded",
        text="Hi.",
        usage=result.usage,
        finish_reason="stop",
        vendor_finish_reason="stop",
        model="gpt-4o-mini-2024-07-18",
    )
    assert result.usage is not None
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (12, 3)
    assert result.usage.total_tokens == 15


def test_openai_line_without_usage_or_content() -> None:
    body = {"choices": [{"index": 0, "message": {"content": None}, "finish_reason": "length"}]}
    result = result_from_line(openai_line(200, body))
    assert (result.kind, result.text, result.usage, result.finish_reason) == (
        "succeeded",
        "",
        None,
        "length",
    )


def error_body(message: str, type_: str, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


@pytest.mark.parametrize(
    ("status", "body", "retryable", "error_type"),
    [
        (400, error_body("bad model", "invalid_request_error", "model_not_found"), False, None),
        (500, error_body("oops", "server_error"), True, None),
        (429, error_body("slow down", "requests", "rate_limit_exceeded"), True, RATE_LIMITED),
        (429, error_body("pay up", "insufficient_quota", "insufficient_quota"), False, None),
    ],
)
def test_openai_errored_lines_are_judged_as_live_calls(
    status: int, body: dict[str, Any], retryable: bool, error_type: str | None
) -> None:
    result = result_from_line(openai_line(status, body))
    assert result.kind == "errored" and result.retryable is retryable
    assert result.error is not None and f"HTTP {status}" in result.error
    assert "req_7" in result.error and body["error"]["message"] in result.error
    if error_type:
        assert result.error_type == error_type
    if status == 400:
        assert result.error_type == PROVIDER_REJECTED
    if body["error"]["code"] == "insufficient_quota":
        assert result.error_type == QUOTA_EXHAUSTED


def test_openai_errors_lose_keys() -> None:
    body = error_body(f"Incorrect API key provided: {KEY}", "invalid_request_error")
    result = result_from_line(openai_line(401, body), KEY)
    assert (
        result.error is not None and "SECRET" not in result.error and "[redacted]" in result.error
    )


@pytest.mark.parametrize(
    ("code", "kind", "retryable"),
    [("batch_expired", "expired", True), ("batch_cancelled", "cancelled", False)],
)
def test_openai_requests_never_run(code: str, kind: str, retryable: bool) -> None:
    result = result_from_line(openai_line(None, error={"code": code, "message": "not run"}))
    assert (result.kind, result.retryable) == (kind, retryable)
    assert result.error == f"{code}: not run"


def test_openai_unknown_error_without_response_is_judged_by_its_code() -> None:
    line = openai_line(None, error={"code": "server_error", "message": "try later"})
    assert result_from_line(line).retryable
    line = openai_line(None, error={"code": "invalid_value", "message": "no"})
    result = result_from_line(line)
    assert not result.retryable and result.error == "invalid_value: no"


# -- Anthropic results -----------------------------------------------------------------------


def anthropic_line(result: dict[str, Any]) -> MessageBatchIndividualResponse:
    custom_id = batch_anthropic.mark("wf-1") + "c-2"
    return MessageBatchIndividualResponse.model_validate({"custom_id": custom_id, "result": result})


def test_anthropic_succeeded_result() -> None:
    message = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-haiku-4-5",
        "content": [
            {"type": "text", "text": "Rivers "},
            {"type": "tool_use", "id": "t", "name": "x", "input": {}},
            {"type": "text", "text": "flow."},
        ],
        "stop_reason": "max_tokens",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 10,
            "output_tokens": 4,
            "cache_creation_input_tokens": 2,
            "cache_read_input_tokens": 3,
        },
    }
    result = result_from_response(anthropic_line({"type": "succeeded", "message": message}))
    assert (result.custom_id, result.kind, result.text) == ("c-2", "succeeded", "Rivers flow.")
    assert (result.finish_reason, result.vendor_finish_reason) == ("length", "max_tokens")
    assert result.usage is not None and result.model == "claude-haiku-4-5"
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (15, 4)
    assert result.usage.total_tokens == 19


@pytest.mark.parametrize(
    ("type_", "retryable", "error_type"),
    [
        ("invalid_request_error", False, PROVIDER_REJECTED),
        ("not_found_error", False, PROVIDER_REJECTED),
        ("overloaded_error", True, None),
        ("api_error", True, None),
        ("rate_limit_error", True, RATE_LIMITED),
    ],
)
def test_anthropic_errored_results_are_judged_as_live_calls(
    type_: str, retryable: bool, error_type: str | None
) -> None:
    error = {"type": "error", "error": {"type": type_, "message": f"boom {KEY}"}}
    result = result_from_response(anthropic_line({"type": "errored", "error": error}), KEY)
    assert result.kind == "errored" and result.retryable is retryable
    assert result.error is not None and "boom [redacted]" in result.error
    assert type_ in result.error and "SECRET" not in result.error
    if error_type:
        assert result.error_type == error_type


@pytest.mark.parametrize(
    ("type_", "kind", "retryable"),
    [("expired", "expired", True), ("canceled", "cancelled", False)],
)
def test_anthropic_requests_never_run(type_: str, kind: str, retryable: bool) -> None:
    result = result_from_response(anthropic_line({"type": type_}))
    assert (result.custom_id, result.kind, result.retryable) == ("c-2", kind, retryable)
    assert result.error
