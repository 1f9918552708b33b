"""The retry verdict for every kind of provider failure (pure function)."""

from __future__ import annotations

import email.utils

import httpx2
import openai
import pytest

from ai_orchestrator.errors import (
    CONNECTION_FAILED,
    CONTENT_FILTERED,
    INCOMPLETE_STREAM,
    PROVIDER_REJECTED,
    PROVIDER_UNAVAILABLE,
    QUOTA_EXHAUSTED,
    RATE_LIMITED,
    IncompleteStreamError,
    classify,
    parse_retry_after,
    redact,
    redaction_echoes,
)
from ai_orchestrator.providers._tls import openai_http_client

REQUEST = httpx2.Request("POST", "http://provider.test/v1/chat/completions")


def status_error(
    status: int, headers: dict[str, str] | None = None, body: object = None
) -> openai.APIStatusError:
    response = httpx2.Response(status, headers=headers or {}, request=REQUEST)
    body = body if body is not None else {"error": {"message": f"boom {status}", "code": None}}
    return openai.AsyncOpenAI(
        api_key="x", max_retries=0, http_client=openai_http_client()
    )._make_status_error(f"Error code: {status}", body=body, response=response)


@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503, 504])
def test_retryable_statuses(status: int) -> None:
    assert classify(status_error(status)).retryable


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_client_errors_fail_fast(status: int) -> None:
    verdict = classify(status_error(status, {"x-request-id": "req_1"}))
    assert not verdict.retryable
    assert verdict.error_type == PROVIDER_REJECTED
    assert f"HTTP {status}" in verdict.message and "req_1" in verdict.message


def test_rate_limit_reads_retry_after_seconds_and_ms() -> None:
    assert classify(status_error(429, {"retry-after": "2"})).retry_after == 2.0
    verdict = classify(status_error(429, {"retry-after-ms": "1500", "retry-after": "9"}))
    assert verdict.error_type == RATE_LIMITED and verdict.retry_after == 1.5


def test_retry_after_http_date() -> None:
    header = {"retry-after": email.utils.formatdate(1_000_030, usegmt=True)}
    assert parse_retry_after(header, now=1_000_000) == pytest.approx(30, abs=1)


def test_unparseable_retry_after_is_ignored() -> None:
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({"retry-after-ms": "-5"}) is None


def test_quota_exhausted_is_not_retryable() -> None:
    body = {"error": {"message": "You exceeded your current quota", "code": "insufficient_quota"}}
    verdict = classify(status_error(429, {"retry-after": "1"}, body))
    assert not verdict.retryable and verdict.error_type == QUOTA_EXHAUSTED


def test_x_should_retry_overrides_status() -> None:
    assert not classify(status_error(500, {"x-should-retry": "false"})).retryable
    assert classify(status_error(400, {"x-should-retry": "true"})).retryable


def test_server_error_is_provider_unavailable() -> None:
    assert classify(status_error(503, {"retry-after": "3"})).error_type == PROVIDER_UNAVAILABLE


def test_connection_and_timeout_errors_retry() -> None:
    assert classify(openai.APIConnectionError(request=REQUEST)).error_type == CONNECTION_FAILED
    assert classify(openai.APITimeoutError(request=REQUEST)).retryable


def test_incomplete_stream_retries() -> None:
    verdict = classify(IncompleteStreamError("cut"))
    assert verdict.retryable and verdict.error_type == INCOMPLETE_STREAM


def test_programming_errors_do_not_retry() -> None:
    assert not classify(TypeError("bad argument")).retryable


def test_redact_removes_configured_secret_and_key_shapes() -> None:
    text = "Incorrect API key provided: sk-ab*****yz; also sk-live-123456 and MYSECRET"
    cleaned = redact(text, "MYSECRET")
    assert "MYSECRET" not in cleaned and "sk-ab" not in cleaned and "sk-live" not in cleaned
    assert "Incorrect API key provided" in cleaned


def test_malformed_stream_data_retries() -> None:
    import json

    try:
        json.loads('{"this is not json')
    except json.JSONDecodeError as exc:
        verdict = classify(exc)
    assert verdict.retryable and verdict.error_type == INCOMPLETE_STREAM


def test_raw_transport_error_retries() -> None:
    assert classify(httpx2.RemoteProtocolError("incomplete chunked read")).retryable


def stream_error_event(
    type_: str | None, code: str | None, message: str = "upstream said no"
) -> openai.APIError:
    """Exactly what openai._streaming does with ``data: {"error": {...}}`` in a 200 stream."""
    data = {"error": {"message": message, "type": type_, "code": code, "param": None}}
    return openai.APIError(message=message, request=REQUEST, body=data["error"])


@pytest.mark.parametrize(
    ("type_", "code", "error_type", "retryable"),
    [
        ("requests", "rate_limit_exceeded", RATE_LIMITED, True),
        ("tokens", None, RATE_LIMITED, True),
        ("insufficient_quota", "insufficient_quota", QUOTA_EXHAUSTED, False),
        ("invalid_request_error", "billing_hard_limit_reached", QUOTA_EXHAUSTED, False),
        ("server_error", None, PROVIDER_UNAVAILABLE, True),
        ("overloaded_error", None, PROVIDER_UNAVAILABLE, True),
        ("api_error", None, PROVIDER_UNAVAILABLE, True),
        (None, "service_unavailable", PROVIDER_UNAVAILABLE, True),
        ("invalid_request_error", None, PROVIDER_REJECTED, False),
        ("invalid_request_error", "context_length_exceeded", PROVIDER_REJECTED, False),
        ("invalid_request_error", "invalid_prompt", PROVIDER_REJECTED, False),
        ("server_error", "context_length_exceeded", PROVIDER_REJECTED, False),  # code wins
        ("mystery_error", "mystery_code", INCOMPLETE_STREAM, True),
        (None, None, INCOMPLETE_STREAM, True),
    ],
)
def test_error_event_inside_stream_is_judged_by_code_then_type(
    type_: str | None, code: str | None, error_type: str, retryable: bool
) -> None:
    verdict = classify(stream_error_event(type_, code))
    assert (verdict.error_type, verdict.retryable) == (error_type, retryable)
    assert verdict.message.startswith("provider sent an error event inside the stream")
    assert f"type={type_!r}" in verdict.message and f"code={code!r}" in verdict.message
    assert "upstream said no" in verdict.message
    assert verdict.status_code is None and verdict.retry_after is None


def test_bare_api_error_without_body_stays_incomplete_stream() -> None:
    verdict = classify(openai.APIError("An error occurred during streaming", REQUEST, body=None))
    assert verdict.retryable and verdict.error_type == INCOMPLETE_STREAM
    assert "provider stream error" in verdict.message


def test_content_filtered_constant() -> None:
    assert CONTENT_FILTERED == "ContentFiltered"


def test_redaction_echoes_cover_prompt_and_context_values() -> None:
    prompt = "Summarise the confidential merger memo for the board, section by section"
    context = {
        "memo": "Acme buys Globex for 4.2bn; announce on the 14th; do not leak this",
        "client": {"name": "Initech Holdings", "tier": "gold"},
        "short": "tiny",
        "number": 7,
    }
    echoes = redaction_echoes(prompt, context)
    rendered = '{"name": "Initech Holdings", "tier": "gold"}'
    for text in (prompt, context["memo"], rendered):
        assert text in echoes and text[:64] in echoes
    assert "tiny" not in echoes and "7" not in echoes
    assert list(echoes) == sorted(echoes, key=len, reverse=True)  # wholes before prefixes
    quoted = f"invalid prompt: {prompt[:64]}... and {context['memo']}"
    cleaned = redact(quoted, *echoes)
    assert "merger" not in cleaned and "Globex" not in cleaned


def test_redaction_echoes_skip_short_inputs() -> None:
    assert redaction_echoes("hi there", {}) == ()
    assert redaction_echoes("exactly sixteen!", {}) == ("exactly sixteen!",)
