"""``POST /v1/chat/completions``: normal answers plus every scripted fault.

Each request gets a :class:`_ChatResponder` so the per-request facts (record,
tokens, fault) travel together instead of through long parameter lists.

A request may ask to *continue* its final assistant message, as resuming
clients do after a dropped stream: vLLM's ``continue_final_message: true``
(with ``add_generation_prompt: false``) or DeepSeek's ``"prefix": true`` on
that message. The answer is then the rest of the deterministic answer to the
conversation before that message, from where the given text ends, so a
resumed answer joins up with what was already received; only the
continuation is sent and billed.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ._errors import (
    bearer_token,
    error_body,
    rate_limit_error,
    rate_limit_headers,
    status_error,
    stream_error_body,
    stream_error_status,
)
from ._faults import CUT_FAULTS, Fault
from ._params import ChatParams, InvalidRequest, parse_chat_params
from ._payloads import (
    DONE_EVENT,
    MALFORMED_EVENT,
    MALFORMED_JSON,
    chunk,
    completion,
    sse_event,
    usage,
    usage_chunk,
)
from ._quota_replies import openai_error, openai_headers, openai_retry_headers
from ._quotas import QuotaAsk
from ._records import RecordedRequest
from ._responder import BaseResponder, answer_size, choose_for, run_generation
from ._state import SimulatorState
from ._text import _content_text, count_prompt_words, simulated_tokens


async def handle_chat_completions(
    request: web.Request, state: SimulatorState
) -> web.StreamResponse:
    authorization = request.headers.get("Authorization")

    async def dispatch(record: RecordedRequest, headers: dict[str, str]) -> web.StreamResponse:
        return await _dispatch(request, state, record, headers)

    return await run_generation(request, state, "openai", bearer_token(authorization), dispatch)


async def _dispatch(
    request: web.Request,
    state: SimulatorState,
    record: RecordedRequest,
    headers: dict[str, str],
) -> web.StreamResponse:
    try:
        try:
            body: Any = await request.json()
        except ValueError as exc:
            raise InvalidRequest("We could not parse the JSON body of your request.") from exc
        params = parse_chat_params(body)
        prefix = _continued_text(body, params.messages)
    except InvalidRequest as exc:
        record.status = 400
        record.finished = True
        return web.json_response(
            error_body(exc.message, "invalid_request_error", None, exc.param),
            status=400,
            headers=headers,
        )
    record.model = params.model
    record.stream = params.stream
    record.include_usage = params.include_usage
    record.messages = params.messages
    record.max_tokens = params.max_tokens
    record.temperature = params.temperature
    record.continuation = prefix is not None

    n_tokens, _ = _answer_size(params, state.default_tokens)
    prompt = count_prompt_words(params.messages)
    ask = QuotaAsk(record.api_key, params.model, prompt, params.max_tokens)
    choice = choose_for(state, record, n_tokens, ask)
    fault, admission = choice.fault, choice.admission
    headers.update(openai_headers(admission))
    responder = _ChatResponder(request, state, record, params, fault, headers, prefix)
    if choice.limiter == "quota" and admission is not None:
        body = openai_error(admission, params.model)
        return responder.error(429, body, openai_retry_headers(admission))
    if fault is not None and fault.name == "rate_limit":
        limit = state.rpm_limit if choice.limiter == "rpm" and state.rpm_limit is not None else 3
        return responder.error(
            429,
            rate_limit_error(fault.quota_exhausted, params.model, limit),
            rate_limit_headers(fault.retry_after, fault.retry_after_ms),
        )
    if fault is not None and fault.name == "status":
        assert fault.status_code is not None
        return responder.error(
            fault.status_code,
            status_error(fault.status_code, fault.message, record.authorization),
        )
    if fault is not None and fault.name == "overloaded":
        return responder.error(503, status_error(503, fault.message, None))
    if params.stream:
        return await responder.stream()
    return await responder.complete()


def _continued_text(body: dict[str, Any], messages: list[dict[str, Any]]) -> str | None:
    """The final assistant text to continue, or None for an ordinary request."""
    vllm = body.get("continue_final_message") is True
    last = messages[-1]
    if last.get("role") != "assistant":
        if vllm:
            raise InvalidRequest(
                "continue_final_message is set but the final message is not an assistant "
                "message to continue.",
                "continue_final_message",
            )
        return None
    if vllm and body.get("add_generation_prompt") is True:
        raise InvalidRequest(
            "Cannot set both `continue_final_message` and `add_generation_prompt` to True.",
            "continue_final_message",
        )
    if not vllm and last.get("prefix") is not True:
        return None
    return _content_text(last.get("content"))


def continuation_tokens(
    prompt: list[dict[str, Any]],
    messages: list[dict[str, Any]],
    given: str,
    model: str,
    n: int,
    style: str,
) -> tuple[list[str], int]:
    """The tokens that continue ``given``, and how many answer tokens it already held.

    When ``given`` is a prefix of the ``n``-token answer to ``prompt``, the rest
    of that answer (its first token cut where ``given`` ends mid-token);
    otherwise a fresh answer seeded by the whole conversation, ``given``
    included, and 0.
    """
    full = simulated_tokens(prompt, model, n, style)
    if not "".join(full).startswith(given):
        return simulated_tokens(messages, model, n, style), 0
    pos = k = 0
    while k < len(full) and pos + len(full[k]) <= len(given):
        pos += len(full[k])
        k += 1
    rest = full[k:]
    if pos < len(given):
        rest[0] = rest[0][len(given) - pos :]
    return rest, k


def _answer_size(params: ChatParams, default_tokens: int) -> tuple[int, str]:
    """How many tokens the answer has, and the finish reason if it is not cut."""
    n, cut = answer_size(params.max_tokens, default_tokens)
    return n, "length" if cut else "stop"


class _ChatResponder(BaseResponder):
    malformed_json = MALFORMED_JSON

    def __init__(
        self,
        request: web.Request,
        state: SimulatorState,
        record: RecordedRequest,
        params: ChatParams,
        fault: Fault | None,
        headers: dict[str, str],
        prefix: str | None = None,
    ) -> None:
        super().__init__(request, state, record, fault, headers)
        self.params = params
        n, self.finish_reason = _answer_size(params, state.default_tokens)
        if prefix is None:
            self.tokens = simulated_tokens(params.messages, params.model, n, state.text_style)
        else:
            # max_tokens bounds the continuation, as vLLM counts only new tokens.
            rest, record.prefix_tokens = continuation_tokens(
                params.messages[:-1],
                params.messages,
                prefix,
                params.model,
                state.default_tokens,
                state.text_style,
            )
            cut = params.max_tokens is not None and params.max_tokens < len(rest)
            self.tokens = rest[: params.max_tokens] if cut else rest
            self.finish_reason = "length" if cut else "stop"
            n = len(self.tokens)
        self.prompt_tokens = count_prompt_words(params.messages)
        if fault is not None and fault.name in CUT_FAULTS:
            # The filter cuts the answer; usage counts only what was generated.
            n = min(fault.after_tokens, n)
            self.tokens, self.finish_reason = self.tokens[:n], "content_filter"
        self.usage = usage(self.prompt_tokens, n)

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        return sse_event(chunk(self.record.index, self.created, self.params.model, delta, finish))

    def frame(self, token: str) -> bytes:
        return self._chunk({"content": token})

    async def stream_start(self, resp: web.StreamResponse) -> None:
        await resp.write(self._chunk({"role": "assistant", "content": ""}))

    async def stream_fault_end(self, resp: web.StreamResponse, fault: Fault) -> None:
        if fault.name == "stream_error":
            # What OpenAI sends once a 200 stream has begun; no [DONE] follows.
            assert fault.error_type is not None
            body = stream_error_body(fault.error_type, fault.code, fault.message)
            await resp.write(sse_event(body))
        else:
            await resp.write(DONE_EVENT if fault.name == "no_finish" else MALFORMED_EVENT)

    async def stream_end(self, resp: web.StreamResponse) -> None:
        await resp.write(self._chunk({}, self.finish_reason))
        if self.params.include_usage:
            await resp.write(
                sse_event(
                    usage_chunk(self.record.index, self.created, self.params.model, self.usage)
                )
            )
        await resp.write(DONE_EVENT)

    def stream_error_reply(self, error_type: str, fault: Fault) -> tuple[int, dict[str, Any]]:
        return (
            stream_error_status(error_type, fault.code),
            stream_error_body(error_type, fault.code, fault.message),
        )

    def answer_body(self, finished: bool) -> dict[str, Any]:
        return completion(
            self.record.index,
            self.created,
            self.params.model,
            "".join(self.tokens),
            self.finish_reason if finished else None,
            self.usage,
        )
