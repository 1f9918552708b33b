"""Gemini's ``models/{model}:generateContent``, ``:streamGenerateContent`` and ``:countTokens``.

Served under ``/v1beta/`` and ``/v1/`` (google-genai's default API version is
``v1``; ``GOOGLE_GENAI_API_VERSION`` or ``HttpOptions(api_version=...)``
change it). ``:streamGenerateContent`` always answers SSE, as with ``alt=sse``
which is what the SDK asks for. Same text, pacing, records and faults as the
other APIs, in Google's shapes.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from . import _gemini_shapes as shapes
from ._batches_gemini import handle_batch_create
from ._faults import CUT_FAULTS, Fault
from ._quota_replies import gemini_error
from ._quotas import QuotaAsk
from ._records import RecordedRequest
from ._responder import BaseResponder, answer_size, choose_for, run_generation
from ._state import SimulatorState
from ._text import count_prompt_words, simulated_tokens

_CUT_REASONS = {"content_filter": "SAFETY", "recitation": "RECITATION"}


def gemini_api_key(request: web.Request) -> str | None:
    return request.headers.get("x-goog-api-key") or request.query.get("key")


def _bad_request(message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(shapes.error_body(400, message), status=400, headers=headers)


async def _json_body(request: web.Request) -> Any:
    try:
        return await request.json()
    except ValueError as exc:
        raise shapes.GeminiInvalid(f"Invalid JSON payload received. {exc}") from exc


async def handle_model_method(request: web.Request, state: SimulatorState) -> web.StreamResponse:
    """``POST /{version}/models/{model}:{method}``."""
    model, _, method = request.match_info["spec"].rpartition(":")
    if model and method == "batchGenerateContent":
        return await handle_batch_create(request, state, model, gemini_api_key(request))
    if not model or method not in ("generateContent", "streamGenerateContent", "countTokens"):
        message = f"Unknown method {method or '(none)'!r} on models/{model or '?'}."
        return web.json_response(shapes.error_body(404, message), status=404)
    if method == "countTokens":
        return await _count_tokens(request)
    stream = method == "streamGenerateContent"

    async def dispatch(record: RecordedRequest, headers: dict[str, str]) -> web.StreamResponse:
        return await _dispatch(request, state, record, headers, model, stream)

    return await run_generation(request, state, "gemini", gemini_api_key(request), dispatch)


async def _count_tokens(request: web.Request) -> web.Response:
    """Counts like usage does; no faults, no record (it is not a generation)."""
    try:
        contents, system = shapes.parse_count_tokens(await _json_body(request))
    except shapes.GeminiInvalid as exc:
        return _bad_request(exc.message)
    return web.json_response(
        {"totalTokens": count_prompt_words(shapes.seed_messages(system, contents))}
    )


async def _dispatch(
    request: web.Request,
    state: SimulatorState,
    record: RecordedRequest,
    headers: dict[str, str],
    model: str,
    stream: bool,
) -> web.StreamResponse:
    model = model.removeprefix("models/")
    record.model = model
    record.stream = stream
    try:
        params = shapes.parse_generate_params(model, await _json_body(request))
    except shapes.GeminiInvalid as exc:
        record.status = 400
        record.finished = True
        return _bad_request(exc.message, headers)
    record.messages = params.contents
    record.system = params.system
    record.max_tokens = params.max_tokens
    record.temperature = params.temperature

    n_tokens, _ = answer_size(params.max_tokens, state.default_tokens)
    prompt = count_prompt_words(shapes.seed_messages(params.system, params.contents))
    ask = QuotaAsk(record.api_key, model, prompt, params.max_tokens)
    choice = choose_for(state, record, n_tokens, ask)
    fault, admission = choice.fault, choice.admission
    responder = _GeminiResponder(request, state, record, params, fault, headers)
    if choice.limiter == "quota" and admission is not None:
        # Gemini sends no rate-limit headers: the quota and the delay ride in the body.
        return responder.error(429, gemini_error(admission, model))
    if fault is not None and fault.name == "rate_limit":
        limit = state.rpm_limit if choice.limiter == "rpm" and state.rpm_limit is not None else 3
        body = shapes.rate_limit_error(fault.quota_exhausted, model, limit, fault.retry_after)
        return responder.error(429, body)
    if fault is not None and fault.name == "status":
        assert fault.status_code is not None
        return responder.error(
            fault.status_code, shapes.status_error(fault.status_code, fault.message, record.api_key)
        )
    if fault is not None and fault.name == "overloaded":
        return responder.error(503, shapes.error_body(503, fault.message))
    if stream:
        return await responder.stream()
    return await responder.complete()


class _GeminiResponder(BaseResponder):
    malformed_json = shapes.MALFORMED_JSON

    def __init__(
        self,
        request: web.Request,
        state: SimulatorState,
        record: RecordedRequest,
        params: shapes.GenerateParams,
        fault: Fault | None,
        headers: dict[str, str],
    ) -> None:
        super().__init__(request, state, record, fault, headers)
        self.params = params
        seed = shapes.seed_messages(params.system, params.contents)
        self.prompt_tokens = count_prompt_words(seed)
        n, cut = answer_size(params.max_tokens, state.default_tokens)
        self.tokens = simulated_tokens(seed, params.model, n, state.text_style)
        self.finish_reason = shapes.FINISH_MAX_TOKENS if cut else shapes.FINISH_STOP
        # Only a clean (or merely stalled) answer ends on its last token's chunk.
        self.finish_on_last = fault is None or fault.name == "stall"
        if fault is not None and fault.name in CUT_FAULTS:
            n = min(fault.after_tokens, n)
            self.tokens, self.finish_reason = self.tokens[:n], _CUT_REASONS[fault.name]
        self._framed = 0

    def frame(self, token: str) -> bytes:
        """Usage on every chunk is cumulative, as Gemini reports it."""
        self._framed += 1
        last = self._framed == len(self.tokens) and self.finish_on_last
        return shapes.sse(
            shapes.response(
                self.record.index,
                self.params.model,
                token,
                self.finish_reason if last else None,
                shapes.usage(self.prompt_tokens, self._framed),
            )
        )

    async def stream_fault_end(self, resp: web.StreamResponse, fault: Fault) -> None:
        if fault.name == "malformed":
            await resp.write(shapes.MALFORMED_EVENT)
        elif fault.name == "stream_error":
            # Gemini reports a failure after the 200 as a `data: {"error": ...}` chunk.
            assert fault.error_type is not None
            body = shapes.stream_error_body(fault.error_type, fault.message)
            await resp.write(shapes.sse(body))
        # no_finish: the body just ends, the last chunk without a finishReason.

    async def stream_end(self, resp: web.StreamResponse) -> None:
        """A cut answer ends on a chunk of its own; others on their last token's."""
        if self.fault is not None and self.fault.name in CUT_FAULTS:
            final = shapes.response(
                self.record.index,
                self.params.model,
                None,
                self.finish_reason,
                shapes.usage(self.prompt_tokens, len(self.tokens)),
            )
            await resp.write(shapes.sse(final))

    def stream_error_reply(self, error_type: str, fault: Fault) -> tuple[int, dict[str, Any]]:
        return (
            shapes.stream_error_code(error_type),
            shapes.stream_error_body(error_type, fault.message),
        )

    def answer_body(self, finished: bool) -> dict[str, Any]:
        return shapes.response(
            self.record.index,
            self.params.model,
            "".join(self.tokens) if self.tokens else None,
            self.finish_reason if finished else None,
            shapes.usage(self.prompt_tokens, len(self.tokens)),
        )
