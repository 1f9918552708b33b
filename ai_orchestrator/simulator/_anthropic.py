"""``POST /v1/messages`` and ``/v1/messages/count_tokens``: Anthropic's Messages API.

The same deterministic text, pacing, records and scripted faults as the
OpenAI endpoint, in Anthropic's shapes, so the real ``anthropic`` SDK (and
the Claude Code CLI via ``ANTHROPIC_BASE_URL``) can be driven offline.

Agent CLIs need one more thing: a tool call. When the request offers a tool
named ``Write`` and the last user message contains a line
``SIMULATOR: write file PATH with TEXT``, the answer is a ``tool_use`` block
calling ``Write`` with ``{"file_path": PATH, "content": TEXT}`` (stop reason
``tool_use``); the next request, carrying the ``tool_result``, gets an
ordinary text answer. ``PATH`` should be absolute, as Claude Code's ``Write``
tool requires; ``TEXT`` runs to the end of the line.
"""

from __future__ import annotations

import json
import re
from typing import Any

from aiohttp import web

from . import _anthropic_shapes as shapes
from ._errors import bearer_token, rate_limit_headers
from ._faults import CUT_FAULTS, Fault
from ._quota_replies import anthropic_error, anthropic_headers, anthropic_retry_headers
from ._quotas import QuotaAsk
from ._records import RecordedRequest
from ._responder import (
    REQUEST_ID_HEADER,
    BaseResponder,
    answer_size,
    choose_for,
    run_generation,
)
from ._state import SimulatorState
from ._text import count_prompt_words, simulated_tokens

#: The anthropic SDK reads ``request-id``; other clients log ``x-request-id``.
REQUEST_ID_HEADERS = ("request-id", REQUEST_ID_HEADER)
WRITE_TOOL = "Write"
WRITE_INSTRUCTION = re.compile(r"^\s*SIMULATOR: write file (\S+) with (.*?)\s*$", re.MULTILINE)


def anthropic_api_key(request: web.Request) -> str | None:
    """``x-api-key`` (Claude Code, curl) or a Bearer token (what this SDK sends)."""
    return request.headers.get("x-api-key") or bearer_token(request.headers.get("Authorization"))


def _block_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            b["text"] for b in content if isinstance(b, dict) and isinstance(b.get("text"), str)
        )
    return ""


def _write_call(params: shapes.MessagesParams) -> dict[str, Any] | None:
    """The ``Write`` input the last user turn asks for, if this request should call it."""
    if not any(tool.get("name") == WRITE_TOOL for tool in params.tools):
        return None
    # Claude Code may append "system" messages after the user's turn; skip them.
    turns = [m for m in params.messages if m.get("role") != "system"]
    if not turns or turns[-1].get("role") != "user":
        return None
    content = turns[-1].get("content")
    if isinstance(content, list) and any(
        isinstance(b, dict) and b.get("type") == "tool_result" for b in content
    ):
        return None  # the tool already ran: now answer in text
    match = WRITE_INSTRUCTION.search(_block_text(content))
    if match is None:
        return None
    return {"file_path": match.group(1), "content": match.group(2)}


async def handle_messages(request: web.Request, state: SimulatorState) -> web.StreamResponse:
    async def dispatch(record: RecordedRequest, headers: dict[str, str]) -> web.StreamResponse:
        return await _dispatch(request, state, record, headers)

    return await run_generation(
        request, state, "anthropic", anthropic_api_key(request), dispatch, REQUEST_ID_HEADERS
    )


def _bad_request(message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(
        shapes.error_body("invalid_request_error", message), status=400, headers=headers
    )


async def handle_count_tokens(request: web.Request, state: SimulatorState) -> web.Response:
    """Counts like usage does; no faults, no record (it is not a generation)."""
    try:
        try:
            body = await request.json()
        except ValueError as exc:
            raise shapes.AnthropicInvalid(f"The request body is not valid JSON: {exc}") from exc
        _, messages, system = shapes.parse_count_tokens(body)
    except shapes.AnthropicInvalid as exc:
        return _bad_request(exc.message)
    tokens = count_prompt_words(shapes.seed_messages(system, messages))
    return web.json_response({"input_tokens": tokens})


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
            raise shapes.AnthropicInvalid(f"The request body is not valid JSON: {exc}") from exc
        params = shapes.parse_messages_params(body)
    except shapes.AnthropicInvalid as exc:
        record.status = 400
        record.finished = True
        body = shapes.error_body("invalid_request_error", exc.message, record.request_id)
        return web.json_response(body, status=400, headers=headers)
    record.model = params.model
    record.stream = params.stream
    record.messages = params.messages
    record.system = params.system
    record.max_tokens = params.max_tokens
    record.temperature = params.temperature

    n_tokens, _ = answer_size(params.max_tokens, state.default_tokens)
    prompt = count_prompt_words(shapes.seed_messages(params.system, params.messages))
    ask = QuotaAsk(record.api_key, params.model, prompt, params.max_tokens)
    choice = choose_for(state, record, n_tokens, ask)
    fault, admission = choice.fault, choice.admission
    headers.update(anthropic_headers(admission))
    responder = _MessagesResponder(request, state, record, params, fault, headers)
    if choice.limiter == "quota" and admission is not None:
        body = anthropic_error(admission, params.model)
        return responder.error(429, body, anthropic_retry_headers(admission))
    if fault is not None and fault.name == "rate_limit":
        limit = state.rpm_limit if choice.limiter == "rpm" and state.rpm_limit is not None else 3
        headers = rate_limit_headers(fault.retry_after, fault.retry_after_ms)
        if not fault.quota_exhausted:
            headers.update(shapes.rate_limit_headers(limit, fault.retry_after))
        return responder.error(
            429, shapes.rate_limit_error(fault.quota_exhausted, params.model, limit), headers
        )
    if fault is not None and fault.name == "status":
        assert fault.status_code is not None
        return responder.error(
            fault.status_code, shapes.status_error(fault.status_code, fault.message, record.api_key)
        )
    if fault is not None and fault.name == "overloaded":
        return responder.error(529, shapes.status_error(529, fault.message, None))
    if params.stream:
        return await responder.stream()
    return await responder.complete()


class _MessagesResponder(BaseResponder):
    """One answer: a text block, or a ``Write`` tool call sent as one JSON "token"."""

    malformed_json = shapes.MALFORMED_JSON

    def __init__(
        self,
        request: web.Request,
        state: SimulatorState,
        record: RecordedRequest,
        params: shapes.MessagesParams,
        fault: Fault | None,
        headers: dict[str, str],
    ) -> None:
        super().__init__(request, state, record, fault, headers)
        self.params = params
        seed = shapes.seed_messages(params.system, params.messages)
        self.prompt_tokens = count_prompt_words(seed)
        self.write = _write_call(params)
        if self.write is not None:
            # The whole input as one delta; output tokens counted like text.
            self.tokens = [json.dumps(self.write)]
            self.output_tokens = max(len(self.write["content"].split()), 1) + 1
            self.stop_reason = "tool_use"
        else:
            n, cut = answer_size(params.max_tokens, state.default_tokens)
            self.tokens = simulated_tokens(seed, params.model, n, state.text_style)
            self.output_tokens = n
            self.stop_reason = "max_tokens" if cut else "end_turn"
        if fault is not None and fault.name in CUT_FAULTS:
            # Anthropic's streaming classifiers cut the answer: stop_reason "refusal".
            n = min(fault.after_tokens, len(self.tokens))
            self.tokens, self.stop_reason = self.tokens[:n], "refusal"
            self.output_tokens = n

    def error(
        self,
        status: int,
        body: dict[str, Any],
        extra_headers: dict[str, str] | None = None,
    ) -> web.Response:
        """Anthropic's error bodies carry the request id too."""
        return super().error(status, {**body, "request_id": self.record.request_id}, extra_headers)

    # -- shapes ------------------------------------------------------------

    def _block_start(self) -> dict[str, Any]:
        if self.write is not None:
            return {
                "type": "tool_use",
                "id": f"toolu_sim_{self.record.index}",
                "name": WRITE_TOOL,
                "input": {},
            }
        return {"type": "text", "text": ""}

    def frame(self, token: str) -> bytes:
        if self.write is None:
            return shapes.text_delta(token)
        delta = {"type": "input_json_delta", "partial_json": token}
        return shapes.sse(
            "content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}
        )

    def _content(self) -> list[dict[str, Any]]:
        if self.write is not None:
            if not self.tokens:  # refused before the call was made
                return []
            return [{**self._block_start(), "input": self.write}]
        if not self.tokens:  # max_tokens=0, or refused at once
            return []
        return [{"type": "text", "text": "".join(self.tokens)}]

    # -- replies -----------------------------------------------------------

    async def stream_start(self, resp: web.StreamResponse) -> None:
        start = shapes.message(
            self.record.index, self.params.model, [], None, shapes.usage(self.prompt_tokens, 1)
        )
        await resp.write(shapes.sse("message_start", {"type": "message_start", "message": start}))
        block = {
            "type": "content_block_start",
            "index": 0,
            "content_block": self._block_start(),
        }
        await resp.write(shapes.sse("content_block_start", block))
        await resp.write(shapes.sse("ping", {"type": "ping"}))

    async def stream_fault_end(self, resp: web.StreamResponse, fault: Fault) -> None:
        if fault.name == "stream_error":
            # Anthropic's in-stream failure: an `error` event inside the 200 stream.
            assert fault.error_type is not None
            body = shapes.stream_error_body(fault.error_type, fault.message)
            await resp.write(shapes.sse("error", body))
        elif fault.name == "malformed":
            await resp.write(shapes.MALFORMED_EVENT)
        # no_finish: the body just ends, no message_delta nor message_stop.

    async def stream_end(self, resp: web.StreamResponse) -> None:
        await resp.write(
            shapes.sse("content_block_stop", {"type": "content_block_stop", "index": 0})
        )
        await resp.write(shapes.message_delta(self.stop_reason, self.output_tokens))
        await resp.write(shapes.sse("message_stop", {"type": "message_stop"}))

    def stream_error_reply(self, error_type: str, fault: Fault) -> tuple[int, dict[str, Any]]:
        return (
            shapes.stream_error_status(error_type),
            shapes.stream_error_body(error_type, fault.message),
        )

    def answer_body(self, finished: bool) -> dict[str, Any]:
        return shapes.message(
            self.record.index,
            self.params.model,
            self._content(),
            self.stop_reason if finished else None,
            shapes.usage(self.prompt_tokens, self.output_tokens),
        )
