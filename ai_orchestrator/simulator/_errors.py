"""OpenAI-shaped error bodies and headers.

Client code (and the openai SDK) branches on the exact shape of these
errors, so they mimic the real provider's wording, types and codes.
"""

from __future__ import annotations

from typing import Any

API_KEYS_URL = "https://platform.openai.com/account/api-keys"
QUOTA_MESSAGE = "You exceeded your current quota, please check your plan and billing details."
NO_KEY_MESSAGE = (
    "You didn't provide an API key. You need to provide your API key in an "
    "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
)

# status -> (default message, error type, error code)
_STATUS_DEFAULTS: dict[int, tuple[str, str, str | None]] = {
    400: ("Simulated bad request.", "invalid_request_error", None),
    403: (
        "You are not allowed to sample from this model.",
        "invalid_request_error",
        "permission_denied",
    ),
    404: ("The requested resource does not exist.", "invalid_request_error", None),
    408: ("Request timed out.", "timeout", None),
    409: ("Simulated conflict.", "invalid_request_error", None),
    422: ("Simulated unprocessable entity.", "invalid_request_error", None),
    429: ("Rate limit reached (simulated).", "requests", "rate_limit_exceeded"),
    500: (
        "The server had an error while processing your request. Sorry about that!",
        "server_error",
        None,
    ),
    502: ("Bad gateway.", "server_error", None),
    503: (
        "The engine is currently overloaded, please try again later.",
        "server_error",
        None,
    ),
    504: ("Gateway timeout.", "server_error", None),
}


def error_body(
    message: str, type_: str, code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def mask_api_key(key: str) -> str:
    """Show at most 3 leading and 2 trailing characters, and never all of them.

    Short keys reveal less, so even a 4-character key is never echoed back in
    full; the point is that logs of simulated 401s can be shared safely.
    """
    length = len(key)
    if length >= 10:
        head, tail = 3, 2
    elif length >= 6:
        head, tail = 1, 1
    else:
        head, tail = 0, 0
    return key[:head] + "*" * (length - head - tail) + key[length - tail :]


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() == "bearer":
        token = token.strip()
        return token or None
    return authorization.strip() or None


def status_error(status: int, message: str | None, authorization: str | None) -> dict[str, Any]:
    """Body for a scripted ``Fault.status``; 401 gets OpenAI's masked-key text."""
    if status == 401:
        token = bearer_token(authorization)
        if message is None:
            if token is None:
                message = NO_KEY_MESSAGE
            else:
                message = (
                    f"Incorrect API key provided: {mask_api_key(token)}. "
                    f"You can find your API key at {API_KEYS_URL}."
                )
        return error_body(message, "invalid_request_error", "invalid_api_key")
    default_message, type_, code = _STATUS_DEFAULTS.get(
        status,
        (
            f"Simulated HTTP {status} error.",
            "server_error" if status >= 500 else "invalid_request_error",
            None,
        ),
    )
    return error_body(message or default_message, type_, code)


def rate_limit_error(quota_exhausted: bool, model: str, limit: int = 3) -> dict[str, Any]:
    if quota_exhausted:
        return error_body(QUOTA_MESSAGE, "insufficient_quota", "insufficient_quota")
    message = (
        f"Rate limit reached for {model or 'the model'} (simulated) on requests "
        f"per min (RPM): Limit {limit}, Used {limit}, Requested 1. Please try again shortly."
    )
    return error_body(message, "requests", "rate_limit_exceeded")


# error type/code -> the HTTP status a non-streaming call would have got instead
_STREAM_ERROR_STATUS: dict[str, int] = {
    "requests": 429,
    "tokens": 429,
    "rate_limit_exceeded": 429,
    "insufficient_quota": 429,
    "invalid_request_error": 400,
    "context_length_exceeded": 400,
    "invalid_prompt": 400,
    "overloaded_error": 503,
    "service_unavailable": 503,
}


def stream_error_body(error_type: str, code: str | None, message: str | None) -> dict[str, Any]:
    """The ``{"error": {...}}`` object OpenAI sends as an event inside a 200 stream."""
    if message is None:
        if error_type == "server_error":
            message = _STATUS_DEFAULTS[500][0]
        else:
            message = f"Simulated {error_type} error during streaming."
    return error_body(message, error_type, code)


def stream_error_status(error_type: str, code: str | None) -> int:
    """For a non-streaming request, the status that carries the same error."""
    for key in (code, error_type):
        if key is not None and key in _STREAM_ERROR_STATUS:
            return _STREAM_ERROR_STATUS[key]
    return 500


def format_retry_after(seconds: float) -> str:
    """``2.0`` -> ``"2"`` and ``0.5`` -> ``"0.5"``: what real servers send."""
    if float(seconds).is_integer():
        return str(int(seconds))
    return repr(float(seconds))


def rate_limit_headers(retry_after: float | None, retry_after_ms: int | None) -> dict[str, str]:
    headers: dict[str, str] = {}
    if retry_after is not None:
        headers["retry-after"] = format_retry_after(retry_after)
    if retry_after_ms is not None:
        headers["retry-after-ms"] = str(int(retry_after_ms))
    return headers
