"""Where each vendor's batch API is served, and who answers the paths two vendors share.

google-genai's default API version is ``v1``, so Gemini's ``GET
/v1/batches[/{id}]`` is OpenAI's path too; as for ``GET /v1/models``, the
request's headers say which SDK is asking (``_models.detect_api``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from . import _batches_anthropic as anthropic
from . import _batches_gemini as gemini
from . import _batches_openai as openai
from ._models import detect_api
from ._state import SimulatorState

_Handle = Callable[[web.Request, SimulatorState], Awaitable[web.StreamResponse]]
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def add_batch_routes(app: web.Application, state: SimulatorState) -> None:
    """Routes of OpenAI's Files + Batches, Anthropic's Message Batches and Gemini's batches.

    Gemini's ``models/{model}:batchGenerateContent`` shares its path with the
    other model methods and is routed by ``_gemini.handle_model_method``.
    """

    def bind(handle: _Handle) -> _Handler:
        async def handler(request: web.Request) -> web.StreamResponse:
            return await handle(request, state)

        return handler

    def shared(openai_handle: _Handle, gemini_handle: _Handle) -> _Handler:
        async def handler(request: web.Request) -> web.StreamResponse:
            chosen = gemini_handle if detect_api(request) == "gemini" else openai_handle
            return await chosen(request, state)

        return handler

    router = app.router
    router.add_post("/v1/files", bind(openai.handle_file_create))
    router.add_get("/v1/files", bind(openai.handle_file_list))
    router.add_get("/v1/files/{file_id}", bind(openai.handle_file_get))
    router.add_delete("/v1/files/{file_id}", bind(openai.handle_file_delete))
    router.add_get("/v1/files/{file_id}/content", bind(openai.handle_file_content))
    router.add_post("/v1/batches", bind(openai.handle_batch_create))
    router.add_get("/v1/batches", shared(openai.handle_batch_list, gemini.handle_list))
    router.add_get("/v1/batches/{batch_id}", shared(openai.handle_batch_get, gemini.handle_get))
    router.add_post("/v1/batches/{batch_id}/cancel", bind(openai.handle_batch_cancel))

    base = "/v1/messages/batches"
    router.add_post(base, bind(anthropic.handle_create))
    router.add_get(base, bind(anthropic.handle_list))
    router.add_get(base + "/{batch_id}", bind(anthropic.handle_retrieve))
    router.add_delete(base + "/{batch_id}", bind(anthropic.handle_delete))
    router.add_post(base + "/{batch_id}/cancel", bind(anthropic.handle_cancel))
    router.add_get(base + "/{batch_id}/results", bind(anthropic.handle_results))

    for version in ("v1beta", "v1", "v1alpha"):
        base = f"/{version}/batches"
        if version != "v1":
            router.add_get(base, bind(gemini.handle_list))
            router.add_get(base + "/{batch_id}", bind(gemini.handle_get))
        router.add_delete(base + "/{batch_id}", bind(gemini.handle_delete))
        router.add_post(base + "/{spec}", bind(gemini.handle_cancel))
