"""Gemini API shapes (``generativelanguage``): request checks, responses, errors.

Modelled on what ``google-genai`` sends and parses. Errors are Google RPC
statuses, ``{"error": {"code", "message", "status", "details"?}}``; the SDK
raises ``errors.ClientError`` for 4xx and ``errors.ServerError`` for 5xx
with ``.code``, ``.status``, ``.message`` and the whole body as ``.details``.
It reads no retry header: a 429's delay is a ``google.rpc.RetryInfo``
detail, which callers must read from ``.details`` themselves.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ._errors import format_retry_after, mask_api_key

# HTTP status -> (google.rpc status, default message), as the real API words them.
_STATUSES: dict[int, tuple[str, str]] = {
    400: ("INVALID_ARGUMENT", "Request contains an invalid argument."),
    401: (
        "UNAUTHENTICATED",
        "Request had invalid authentication credentials. Expected OAuth 2 access token, "
        "login cookie or other valid authentication credential.",
    ),
    403: ("PERMISSION_DENIED", "The caller does not have permission"),
    404: ("NOT_FOUND", "Requested entity was not found."),
    409: ("ABORTED", "The operation was aborted."),
    429: ("RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota)."),
    499: ("CANCELLED", "The operation was cancelled."),
    500: (
        "INTERNAL",
        "An internal error has occurred. Please retry or report in "
        "https://developers.generativeai.google/guide/troubleshooting",
    ),
    501: ("UNIMPLEMENTED", "Operation is not implemented, or supported, or enabled."),
    503: ("UNAVAILABLE", "The model is overloaded. Please try again later."),
    504: ("DEADLINE_EXCEEDED", "Deadline expired before operation could complete."),
}

# Fault.stream_error's error_type (Google's status, or an OpenAI/Anthropic type) -> HTTP code.
_TYPE_CODES: dict[str, int] = {
    **{status: code for code, (status, _) in _STATUSES.items()},
    "server_error": 500,
    "api_error": 500,
    "overloaded_error": 503,
    "service_unavailable": 503,
    "requests": 429,
    "tokens": 429,
    "rate_limit_exceeded": 429,
    "rate_limit_error": 429,
    "insufficient_quota": 429,
    "invalid_request_error": 400,
    "context_length_exceeded": 400,
    "timeout_error": 504,
}

QUOTA_MESSAGE = (
    "You exceeded your current quota, please check your plan and billing details "
    "(simulated). For more information on this error, head to: "
    "https://ai.google.dev/gemini-api/docs/rate-limits."
)
RETRY_INFO_TYPE = "type.googleapis.com/google.rpc.RetryInfo"
QUOTA_FAILURE_TYPE = "type.googleapis.com/google.rpc.QuotaFailure"
FINISH_STOP = "STOP"
FINISH_MAX_TOKENS = "MAX_TOKENS"


class GeminiInvalid(Exception):
    """Becomes a 400 ``INVALID_ARGUMENT``."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def google_status(code: int) -> str:
    if code in _STATUSES:
        return _STATUSES[code][0]
    return "INTERNAL" if code >= 500 else "FAILED_PRECONDITION"


def error_body(
    code: int, message: str | None = None, details: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    if message is None:
        message = _STATUSES.get(code, ("", f"Simulated HTTP {code} error."))[1]
    error: dict[str, Any] = {"code": code, "message": message, "status": google_status(code)}
    if details:
        error["details"] = details
    return {"error": error}


def status_error(code: int, message: str | None, api_key: str | None) -> dict[str, Any]:
    if code == 401 and message is None and api_key:
        message = (
            f"API key not valid (simulated): {mask_api_key(api_key)}. Please pass a valid API key."
        )
    return error_body(code, message)


def rate_limit_error(
    quota_exhausted: bool, model: str, limit: int, retry_after: float | None
) -> dict[str, Any]:
    """429 ``RESOURCE_EXHAUSTED``; the delay rides in ``RetryInfo``, as Google sends it."""
    quota_id = "GenerateRequestsPerMinutePerProjectPerModel"
    if quota_exhausted:
        quota_id = "GenerateRequestsPerDayPerProjectPerModel"
    details: list[dict[str, Any]] = [
        {
            "@type": QUOTA_FAILURE_TYPE,
            "violations": [
                {
                    "quotaMetric": "generativelanguage.googleapis.com/generate_content_requests",
                    "quotaId": quota_id,
                    "quotaDimensions": {"model": model or "simulator", "location": "global"},
                    "quotaValue": str(limit),
                }
            ],
        }
    ]
    if retry_after is not None and not quota_exhausted:
        details.append(
            {"@type": RETRY_INFO_TYPE, "retryDelay": f"{format_retry_after(retry_after)}s"}
        )
    message = (
        QUOTA_MESSAGE
        if quota_exhausted
        else (
            f"Resource has been exhausted (e.g. check quota). Simulated limit: {limit} "
            f"requests per minute for {model or 'the model'}."
        )
    )
    return error_body(429, message, details)


def stream_error_code(error_type: str) -> int:
    return _TYPE_CODES.get(error_type, 500)


def stream_error_body(error_type: str, message: str | None) -> dict[str, Any]:
    return error_body(stream_error_code(error_type), message)


@dataclass(frozen=True)
class GenerateParams:
    model: str
    contents: list[dict[str, Any]]
    system: Any
    max_tokens: int | None
    temperature: float | None


def _check_contents(body: Any) -> list[dict[str, Any]]:
    if not isinstance(body, dict):
        raise GeminiInvalid("Invalid JSON payload received. The request body must be an object.")
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        raise GeminiInvalid("* GenerateContentRequest.contents: contents is not specified")
    for i, content in enumerate(contents):
        if not isinstance(content, dict) or not isinstance(content.get("parts"), list):
            raise GeminiInvalid(f"* GenerateContentRequest.contents[{i}].parts: must be a list")
        if not content["parts"]:
            raise GeminiInvalid(
                f"* GenerateContentRequest.contents[{i}].parts: contents.parts must not be empty."
            )
    return contents


def _system(body: dict[str, Any]) -> Any:
    system = body.get("systemInstruction", body.get("system_instruction"))
    if system is not None and not isinstance(system, dict | str):
        raise GeminiInvalid("* GenerateContentRequest.system_instruction: must be a Content")
    return system


def parse_generate_params(model: str, body: Any) -> GenerateParams:
    contents = _check_contents(body)
    config = body.get("generationConfig") or {}
    if not isinstance(config, dict):
        raise GeminiInvalid("* GenerateContentRequest.generation_config: must be an object")
    max_tokens = config.get("maxOutputTokens")
    if max_tokens is not None and (
        isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1
    ):
        raise GeminiInvalid(
            "* GenerateContentRequest.generation_config.max_output_tokens: must be positive"
        )
    temperature = config.get("temperature")
    if temperature is not None:
        if isinstance(temperature, bool) or not isinstance(temperature, int | float):
            raise GeminiInvalid(
                "* GenerateContentRequest.generation_config.temperature: must be a number"
            )
        temperature = float(temperature)
    return GenerateParams(
        model=model,
        contents=contents,
        system=_system(body),
        max_tokens=max_tokens,
        temperature=temperature,
    )


def parse_count_tokens(body: Any) -> tuple[list[dict[str, Any]], Any]:
    """``countTokens`` takes ``contents`` or a whole ``generateContentRequest``."""
    if isinstance(body, dict) and isinstance(body.get("generateContentRequest"), dict):
        body = body["generateContentRequest"]
    contents = _check_contents(body)
    return contents, _system(body)


def seed_messages(system: Any, contents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Contents as role/content messages, so text and counts work as for the other APIs."""
    messages = [{"role": c.get("role", "user"), "content": c["parts"]} for c in contents]
    if system is None:
        return messages
    parts = system.get("parts", []) if isinstance(system, dict) else [{"text": system}]
    return [{"role": "system", "content": parts}, *messages]


def usage(prompt_tokens: int, candidates_tokens: int) -> dict[str, Any]:
    return {
        "promptTokenCount": prompt_tokens,
        "candidatesTokenCount": candidates_tokens,
        "totalTokenCount": prompt_tokens + candidates_tokens,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt_tokens}],
    }


def _blocked_extras(finish_reason: str | None) -> dict[str, Any]:
    if finish_reason == "SAFETY":
        rating = {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH"}
        return {"safetyRatings": [{**rating, "blocked": True}]}
    if finish_reason == "RECITATION":
        return {"citationMetadata": {"citationSources": [{"startIndex": 0, "endIndex": 1}]}}
    return {}


def response(
    index: int,
    model: str,
    text: str | None,
    finish_reason: str | None,
    usage_: dict[str, Any],
) -> dict[str, Any]:
    """One ``GenerateContentResponse`` (a whole answer or one stream chunk)."""
    candidate: dict[str, Any] = {"index": 0}
    if text is not None:
        candidate["content"] = {"parts": [{"text": text}], "role": "model"}
    if finish_reason is not None:
        candidate["finishReason"] = finish_reason
        candidate.update(_blocked_extras(finish_reason))
    return {
        "candidates": [candidate],
        "usageMetadata": usage_,
        "modelVersion": model,
        "responseId": f"sim-{index}",
    }


def sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\r\n\r\n"


MALFORMED_JSON = b'{"candidates": [{"this is not json'
MALFORMED_EVENT = b"data: " + MALFORMED_JSON + b"\r\n\r\n"
