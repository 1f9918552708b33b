"""The Responses API stream's pure parts: tokens, boundaries, finish reasons, errors,
the API setting, and the chat continuation request (no network)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest
from openai.types.responses import (
    Response,
    ResponseCompletedEvent,
    ResponseCreatedEvent,
    ResponseErrorEvent,
    ResponseFailedEvent,
    ResponseIncompleteEvent,
    ResponseTextDeltaEvent,
)

from ai_orchestrator.config import ENV_OPENAI_API, ConfigError, ProviderSettings, openai_api
from ai_orchestrator.core import Task, TaskConstraints
from ai_orchestrator.errors import (
    CONTENT_FILTERED,
    INCOMPLETE_STREAM,
    PROVIDER_REJECTED,
    PROVIDER_UNAVAILABLE,
    RATE_LIMITED,
    ContinuationLost,
    IncompleteStreamError,
    classify,
)
from ai_orchestrator.providers import FINISH_FILTERED, FINISH_LENGTH, FINISH_STOP
from ai_orchestrator.providers._tls import openai_http_client
from ai_orchestrator.providers.openai import OpenAIProvider
from ai_orchestrator.providers.openai_chat import (
    ChatStream,
    chat_continuation_params,
    parse_chat_token,
)
from ai_orchestrator.providers.openai_responses import (
    Continuation,
    ResponsesStream,
    finish_reason,
    request_params,
)

CLIENT = openai.AsyncOpenAI(
    api_key="x", base_url="http://provider.test/v1", max_retries=0, http_client=openai_http_client()
)
RID = "resp_0123abcd"


def response(status: str = "in_progress", **fields: Any) -> Response:
    return Response.model_construct(id=RID, model="gpt-test", status=status, **fields)


def created(seq: int = 0, status: str = "queued") -> ResponseCreatedEvent:
    return ResponseCreatedEvent(
        type="response.created", sequence_number=seq, response=response(status)
    )


def delta(text: str, seq: int) -> ResponseTextDeltaEvent:
    return ResponseTextDeltaEvent(
        type="response.output_text.delta",
        delta=text,
        sequence_number=seq,
        item_id="msg_1",
        output_index=0,
        content_index=0,
        logprobs=[],
    )


def completed(seq: int, *, usage: dict[str, int] | None = None) -> ResponseCompletedEvent:
    used = usage or {"input_tokens": 7, "output_tokens": 5, "total_tokens": 12}
    return ResponseCompletedEvent.model_construct(
        type="response.completed",
        sequence_number=seq,
        response=response("completed", usage=_Usage(**used), incomplete_details=None),
    )


class _Usage:
    def __init__(self, input_tokens: int, output_tokens: int, total_tokens: int) -> None:
        self.input_tokens, self.output_tokens = input_tokens, output_tokens
        self.total_tokens = total_tokens


class _Details:
    def __init__(self, reason: str | None) -> None:
        self.reason = reason


def incomplete(seq: int, reason: str | None) -> ResponseIncompleteEvent:
    return ResponseIncompleteEvent.model_construct(
        type="response.incomplete",
        sequence_number=seq,
        response=response("incomplete", usage=None, incomplete_details=_Details(reason)),
    )


async def _events(events: list[Any]) -> AsyncIterator[Any]:
    for event in events:
        yield event


async def drain(stream: ResponsesStream, events: list[Any]) -> list[str]:
    """Iterate ``stream`` over ``events`` as if ``open()`` had returned them."""
    stream._stream = _events(events)
    return [text async for text in stream]


def fresh() -> ResponsesStream:
    return ResponsesStream(CLIENT, {"model": "gpt-test", "input": "hi"})


ANSWER = [created(0), delta("Hel", 3), delta("lo, ", 4), delta("world", 6)]


# --- tokens and boundaries ------------------------------------------------------


def test_token_round_trip_holds_ids_and_counters_only() -> None:
    token = Continuation(RID, 17, 42).token
    assert token == f"responses:{RID}:17:42"
    assert Continuation.parse(token) == Continuation(RID, 17, 42)


@pytest.mark.parametrize(
    "token", ["", "chat:12", f"responses:{RID}:x:1", "responses::1:2", f"responses:{RID}:1"]
)
def test_foreign_or_malformed_tokens_are_lost_continuations(token: str) -> None:
    with pytest.raises(ContinuationLost):
        Continuation.parse(token)


async def test_continuation_exists_only_at_delta_boundaries() -> None:
    stream = fresh()
    assert stream.continuation(0) is None  # no response id yet
    assert await drain(stream, [*ANSWER, completed(7)]) == ["Hel", "lo, ", "world"]
    assert stream.response_id == RID
    assert stream.continuation(0) == f"responses:{RID}:0:0"
    assert stream.continuation(3) == f"responses:{RID}:3:3"
    assert stream.continuation(7) == f"responses:{RID}:4:7"
    assert stream.continuation(12) == f"responses:{RID}:6:12"
    for inside in (1, 5, 11, 13):
        assert stream.continuation(inside) is None
    assert (stream.chars, stream.chunks) == (12, 3)


async def test_continued_stream_counts_its_own_text_and_tokens_stay_absolute() -> None:
    stream = ResponsesStream(
        CLIENT, {"model": "gpt-test", "input": "hi"}, continue_from=f"responses:{RID}:4:7"
    )
    # What open() sets after a successful retrieve (tested over HTTP in integration).
    stream._response_id, stream._base_chars, stream._last_sequence = RID, 7, 4
    stream._boundaries[0] = 4
    # A server that replays from the start: events up to 4 are skipped.
    texts = await drain(stream, [*ANSWER, delta("!", 8), completed(9)])
    assert texts == ["world", "!"]
    assert (stream.chars, stream.chunks) == (6, 2)
    assert stream.continuation(0) == f"responses:{RID}:4:7"
    assert stream.continuation(5) == f"responses:{RID}:6:12"
    assert stream.continuation(6) == f"responses:{RID}:8:13"


async def test_no_continuation_once_the_response_failed() -> None:
    stream = fresh()
    failed = ResponseFailedEvent.model_construct(
        type="response.failed", sequence_number=5, response=response("failed", error=None)
    )
    with pytest.raises(openai.APIError):
        await drain(stream, [*ANSWER[:2], failed])
    assert stream.continuation(3) is None


async def test_continue_from_a_foreign_token_fails_open_before_any_request() -> None:
    stream = ResponsesStream(CLIENT, {"model": "m", "input": "hi"}, continue_from="chat:3")
    with pytest.raises(ContinuationLost):
        await stream.open()


# --- finish reasons and usage ---------------------------------------------------


async def test_completed_gives_stop_and_usage() -> None:
    stream = fresh()
    await drain(stream, [*ANSWER, completed(7)])
    assert (stream.finish_reason, stream.vendor_finish_reason) == (FINISH_STOP, "completed")
    usage = stream.final_usage()
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (7, 5, 12)
    assert not usage.estimated


@pytest.mark.parametrize(
    ("reason", "ours"),
    [("max_output_tokens", FINISH_LENGTH), ("content_filter", FINISH_FILTERED), (None, "length")],
)
async def test_incomplete_maps_its_reason(reason: str | None, ours: str) -> None:
    stream = fresh()
    await drain(stream, [*ANSWER, incomplete(7, reason)])
    assert stream.finish_reason == ours
    assert stream.vendor_finish_reason == (reason or "incomplete")


def test_finish_reason_table() -> None:
    assert finish_reason("completed", None) == (FINISH_STOP, "completed")
    assert finish_reason("incomplete", "max_output_tokens") == (FINISH_LENGTH, "max_output_tokens")
    assert finish_reason("incomplete", "content_filter") == (FINISH_FILTERED, "content_filter")


async def test_a_stream_without_a_terminal_event_is_incomplete() -> None:
    stream = fresh()
    with pytest.raises(IncompleteStreamError):
        await drain(stream, ANSWER)
    assert stream.chars == 12  # what it did yield stays counted


# --- errors ---------------------------------------------------------------------


def _failed(code: str | None) -> ResponseFailedEvent:
    error = None
    if code is not None:
        from openai.types.responses.response_error import ResponseError

        error = ResponseError.model_construct(code=code, message=f"it went {code}", type=None)
    return ResponseFailedEvent.model_construct(
        type="response.failed", sequence_number=9, response=response("failed", error=error)
    )


@pytest.mark.parametrize(
    ("code", "error_type", "retryable"),
    [
        ("server_error", PROVIDER_UNAVAILABLE, True),
        ("rate_limit_exceeded", RATE_LIMITED, True),
        ("vector_store_timeout", PROVIDER_UNAVAILABLE, True),
        ("invalid_prompt", PROVIDER_REJECTED, False),
        ("invalid_image_url", PROVIDER_REJECTED, False),
        ("data_residency_mismatch", PROVIDER_REJECTED, False),
        ("bio_policy", CONTENT_FILTERED, False),
        (None, INCOMPLETE_STREAM, True),
    ],
)
async def test_response_failed_is_classified_by_its_code(
    code: str | None, error_type: str, retryable: bool
) -> None:
    with pytest.raises(openai.APIError) as caught:
        await drain(fresh(), [created(0), _failed(code)])
    verdict = classify(caught.value)
    assert (verdict.error_type, verdict.retryable) == (error_type, retryable)
    if code:
        assert f"it went {code}" in verdict.message


async def test_error_event_is_classified_by_its_code() -> None:
    event = ResponseErrorEvent(
        type="error", sequence_number=2, code="server_error", message="overloaded", param=None
    )
    with pytest.raises(openai.APIError) as caught:
        await drain(fresh(), [created(0), delta("a", 1), event])
    verdict = classify(caught.value)
    assert verdict.retryable and verdict.error_type == PROVIDER_UNAVAILABLE
    assert "overloaded" in verdict.message


# --- the request, the setting, the choice of stream -----------------------------


def test_request_maps_prompt_context_and_constraints() -> None:
    task = Task(
        prompt="Say hi",
        context={"tone": "dry"},
        constraints=TaskConstraints(max_tokens=50, temperature=0.3),
    )
    params = request_params(task, "gpt-test")
    assert params == {
        "model": "gpt-test",
        "input": "Say hi",
        "instructions": "Context:\ntone: dry",
        "max_output_tokens": 50,
        "temperature": 0.3,
    }
    assert request_params(Task(prompt="x"), "m") == {"model": "m", "input": "x"}


@pytest.mark.parametrize(
    ("raw", "value"), [(None, "chat"), ("", "chat"), ("responses", "responses"), ("Chat", "chat")]
)
def test_api_setting(raw: str | None, value: str) -> None:
    assert openai_api({} if raw is None else {ENV_OPENAI_API: raw}) == value


def test_bad_api_setting_names_the_variable_and_the_choices() -> None:
    with pytest.raises(ConfigError, match=rf"{ENV_OPENAI_API}.*chat, responses.*'completions'"):
        openai_api({ENV_OPENAI_API: "completions"})
    with pytest.raises(ConfigError, match=ENV_OPENAI_API):
        ProviderSettings.from_env({ENV_OPENAI_API: "completions"})
    assert ProviderSettings.from_env({ENV_OPENAI_API: "responses"}).openai_api == "responses"
    assert ProviderSettings.from_env({}).openai_api == "chat"


def test_provider_picks_the_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_OPENAI_API, raising=False)
    chat_worker = OpenAIProvider(CLIENT)
    plain = Task(prompt="x")
    wants_responses = Task(prompt="x", constraints=TaskConstraints(openai_api="responses"))
    assert type(chat_worker.stream(plain, "m")) is ChatStream
    assert type(chat_worker.stream(wants_responses, "m")) is ResponsesStream
    token = f"responses:{RID}:3:3"
    assert type(chat_worker.stream(plain, "m", continue_from=token)) is ResponsesStream

    monkeypatch.setenv(ENV_OPENAI_API, "responses")
    responses_worker = OpenAIProvider(CLIENT)
    wants_chat = Task(prompt="x", constraints=TaskConstraints(openai_api="chat"))
    assert type(responses_worker.stream(plain, "m")) is ResponsesStream
    assert type(responses_worker.stream(wants_chat, "m")) is ChatStream

    monkeypatch.setenv(ENV_OPENAI_API, "bogus")
    with pytest.raises(ConfigError, match=ENV_OPENAI_API):
        OpenAIProvider(CLIENT)


def test_task_constraints_refuse_unknown_apis() -> None:
    with pytest.raises(ValueError):
        TaskConstraints(openai_api="completions")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        TaskConstraints(chat_resume="rewind")  # type: ignore[arg-type]


# --- chat continuation ----------------------------------------------------------


def test_chat_continuation_request_in_each_vendors_form() -> None:
    params = {"model": "m", "messages": [{"role": "user", "content": "Count"}], "max_tokens": 9}
    vllm = chat_continuation_params(params, "1, 2,", "continue_final_message")
    assert vllm["messages"][-1] == {"role": "assistant", "content": "1, 2,"}
    assert vllm["extra_body"] == {"continue_final_message": True, "add_generation_prompt": False}
    deepseek = chat_continuation_params(params, "1, 2,", "prefix")
    assert deepseek["messages"][-1] == {"role": "assistant", "content": "1, 2,", "prefix": True}
    assert "extra_body" not in deepseek
    assert params["messages"] == [{"role": "user", "content": "Count"}]  # not mutated
    assert parse_chat_token("chat:12") == 12
    with pytest.raises(ContinuationLost):
        parse_chat_token(f"responses:{RID}:1:1")


async def test_chat_continuation_needs_opt_in_and_the_exact_prefix() -> None:
    params = {"model": "m", "messages": [{"role": "user", "content": "Count"}]}
    for kwargs in (
        {"resume_mode": None, "prefix": "abc"},  # the task did not opt in
        {"resume_mode": "prefix", "prefix": "ab"},  # not the text the token counts
        {"resume_mode": "prefix", "prefix": None},
    ):
        stream = ChatStream(CLIENT, params, continue_from="chat:3", **kwargs)  # type: ignore[arg-type]
        with pytest.raises(ContinuationLost):
            await stream.open()


async def test_chat_stream_offers_tokens_only_when_opted_in() -> None:
    assert ChatStream(CLIENT, {"model": "m", "messages": []}).continuation(0) is None
    opted = ChatStream(CLIENT, {"model": "m", "messages": []}, resume_mode="prefix")
    opted._position = 0
    opted._boundaries.update({3, 7})
    assert opted.continuation(0) is None  # nothing to continue from
    assert opted.continuation(3) == "chat:3"
    assert opted.continuation(5) is None
