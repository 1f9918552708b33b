"""Model listings in each API's shape, and telling the APIs apart on shared paths.

``GET /v1/models`` is a path OpenAI, Anthropic and Gemini (API version v1)
all use, with different JSON. The request's headers say which client is
asking: Anthropic's SDK and Claude Code send ``anthropic-version``,
google-genai sends ``x-goog-api-key`` (or ``key=``) and ``x-goog-api-client``;
anything else is treated as OpenAI, so existing OpenAI clients are unaffected.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from . import _anthropic_shapes as anthropic_shapes
from . import _gemini_shapes as gemini_shapes
from ._errors import error_body as openai_error_body

OPENAI_MODEL_IDS: tuple[str, ...] = (
    "gpt-4o-mini",
    "gpt-4o",
    "gpt-4.1-mini",
    "gpt-4.1",
    "simulator",
)
ANTHROPIC_MODEL_IDS: tuple[str, ...] = (
    "claude-opus-4-5",
    "claude-opus-4-1",
    "claude-sonnet-4-5",
    "claude-sonnet-4-5-20250929",
    "claude-haiku-4-5",
    "claude-3-5-haiku-20241022",
    "simulator",
)
GEMINI_MODEL_IDS: tuple[str, ...] = (
    "gemini-2.5-pro",
    "gemini-2.5-flash",
    "gemini-2.5-flash-lite",
    "gemini-2.0-flash",
    "simulator",
)
_MODEL_CREATED = 1_700_000_000
_ANTHROPIC_CREATED_AT = "2025-09-29T00:00:00Z"


def detect_api(request: web.Request) -> str:
    """``"anthropic"``, ``"gemini"`` or ``"openai"``, from headers and path."""
    headers = request.headers
    if any(name in headers for name in anthropic_shapes.ANTHROPIC_MARKERS):
        return "anthropic"
    if (
        request.path.startswith("/v1beta/")
        or "x-goog-api-key" in headers
        or "x-goog-api-client" in headers
        or "key" in request.query
    ):
        return "gemini"
    return "openai"


def error_response(api: str, status: int, message: str) -> web.Response:
    """A router-level error (404, 405, bad JSON) in the asking API's shape."""
    if api == "anthropic":
        type_ = anthropic_shapes.status_error(status, None, None)["error"]["type"]
        return web.json_response(anthropic_shapes.error_body(type_, message), status=status)
    if api == "gemini":
        return web.json_response(gemini_shapes.error_body(status, message), status=status)
    type_ = "server_error" if status >= 500 else "invalid_request_error"
    return web.json_response(openai_error_body(message, type_), status=status)


def _openai_model(model_id: str) -> dict[str, Any]:
    return {
        "id": model_id,
        "object": "model",
        "created": _MODEL_CREATED,
        "owned_by": "ai-orchestrator-simulator",
    }


def _anthropic_model(model_id: str) -> dict[str, Any]:
    return {
        "type": "model",
        "id": model_id,
        "display_name": f"{model_id} (simulated)",
        "created_at": _ANTHROPIC_CREATED_AT,
        "lifecycle": "active",
        "max_input_tokens": 200_000,
        "max_tokens": 64_000,
    }


def _gemini_model(model_id: str) -> dict[str, Any]:
    return {
        "name": f"models/{model_id}",
        "version": "001",
        "displayName": f"{model_id} (simulated)",
        "description": "Deterministic placeholder answers from ai-orchestrator's simulator.",
        "inputTokenLimit": 1_048_576,
        "outputTokenLimit": 65_536,
        "supportedGenerationMethods": ["generateContent", "countTokens"],
    }


async def list_models(request: web.Request) -> web.Response:
    api = detect_api(request)
    if api == "anthropic":
        ids = ANTHROPIC_MODEL_IDS
        return web.json_response(
            {
                "data": [_anthropic_model(m) for m in ids],
                "has_more": False,
                "first_id": ids[0],
                "last_id": ids[-1],
            }
        )
    if api == "gemini":
        return web.json_response({"models": [_gemini_model(m) for m in GEMINI_MODEL_IDS]})
    return web.json_response(
        {"object": "list", "data": [_openai_model(m) for m in OPENAI_MODEL_IDS]}
    )


async def get_model(request: web.Request) -> web.Response:
    model_id = request.match_info["model"]
    api = detect_api(request)
    if api == "anthropic":
        if model_id not in ANTHROPIC_MODEL_IDS:
            return error_response(api, 404, f"model: {model_id}")
        return web.json_response(_anthropic_model(model_id))
    if api == "gemini":
        name = model_id.removeprefix("models/")
        if name not in GEMINI_MODEL_IDS:
            message = f"models/{name} is not found for API version {request.path.split('/')[1]}."
            return error_response(api, 404, message)
        return web.json_response(_gemini_model(name))
    if model_id not in OPENAI_MODEL_IDS:
        body = openai_error_body(
            f"The model '{model_id}' does not exist",
            "invalid_request_error",
            "model_not_found",
            "model",
        )
        return web.json_response(body, status=404)
    return web.json_response(_openai_model(model_id))
