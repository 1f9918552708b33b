"""``POST /v1/chat/completions``: normal answers plus every scripted fault.

Each request gets a :class:`_ChatResponder` so the per-request facts (record,
tokens, fault) travel together instead of through long parameter lists.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiohttp import web

from ._errors import (
    error_body,
    rate_limit_error,
    rate_limit_headers,
    status_error,
    stream_error_body,
    stream_error_status,
)
from ._faults import Fault
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
from ._records import RecordedRequest
from ._state import SimulatorState
from ._text import count_prompt_words, simulated_tokens

REQUEST_ID_HEADER = "x-request-id"
SIMULATOR_HEADER = "x-ai-orchestrator-simulator"


async def handle_chat_completions(
    request: web.Request, state: SimulatorState
) -> web.StreamResponse:
    """Never lets a vanished client turn into a logged server error."""
    record = state.open_record(request.headers.get("Authorization"))
    headers = {REQUEST_ID_HEADER: record.request_id, SIMULATOR_HEADER: "1"}
    try:
        return await _dispatch(request, state, record, headers)
    except ConnectionError:
        # Client vanished while we read the body or wrote a non-stream reply;
        # nothing can be delivered, and raising would make aiohttp log a 500.
        record.disconnected = True
        return web.Response(status=499, headers=headers)
    except asyncio.CancelledError:
        # aiohttp cancels the handler when the peer goes away
        # (handler_cancellation=True); Simulator.stop() cancels it on purpose.
        if not state.stopping:
            record.disconnected = True
        raise
    finally:
        if record.ended_at is None:
            record.ended_at = time.monotonic()
        state.notify()


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

    n_tokens, _ = _answer_size(params, state.default_tokens)
    fault, by_limiter = state.choose_fault(n_tokens)
    if fault is not None and fault.name == "ok":
        fault = None
    record.fault = fault.name if fault is not None else None
    responder = _ChatResponder(request, state, record, params, fault, headers)
    if fault is not None and fault.name == "rate_limit":
        limit = state.rpm_limit if by_limiter and state.rpm_limit is not None else 3
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
    if params.stream:
        return await responder.stream()
    return await responder.complete()


def _answer_size(params: ChatParams, default_tokens: int) -> tuple[int, str]:
    """How many tokens the answer has, and the finish reason if it is not cut."""
    if params.max_tokens is not None and params.max_tokens < default_tokens:
        return params.max_tokens, "length"
    return default_tokens, "stop"


class _ChatResponder:
    def __init__(
        self,
        request: web.Request,
        state: SimulatorState,
        record: RecordedRequest,
        params: ChatParams,
        fault: Fault | None,
        headers: dict[str, str],
    ) -> None:
        self.request = request
        self.state = state
        self.record = record
        self.params = params
        self.fault = fault
        self.headers = headers
        self.created = int(time.time())
        n, self.finish_reason = _answer_size(params, state.default_tokens)
        self.tokens = simulated_tokens(params.messages, params.model, n, state.text_style)
        self.prompt_tokens = count_prompt_words(params.messages)
        if fault is not None and fault.name == "content_filter":
            # The filter cuts the answer; usage counts only what was generated.
            n = min(fault.after_tokens, n)
            self.tokens, self.finish_reason = self.tokens[:n], "content_filter"
        self.usage = usage(self.prompt_tokens, n)

    def error(
        self,
        status: int,
        body: dict[str, Any],
        extra_headers: dict[str, str] | None = None,
    ) -> web.Response:
        self.record.status = status
        self.record.finished = True
        return web.json_response(
            body, status=status, headers={**self.headers, **(extra_headers or {})}
        )

    def _abort(self) -> None:
        """Drop the TCP connection without a proper HTTP ending."""
        transport = self.request.transport
        if transport is not None:
            transport.abort()

    def _check_client(self) -> None:
        transport = self.request.transport
        if transport is None or transport.is_closing():
            raise ConnectionResetError("client closed the connection")

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        return sse_event(chunk(self.record.index, self.created, self.params.model, delta, finish))

    async def _send_tokens(self, resp: web.StreamResponse, tokens: list[str]) -> None:
        record = self.record
        for token in tokens:
            # sleep(0) when unpaced still yields, keeping hundreds of streams fair.
            await asyncio.sleep(self.state.token_delay())
            self._check_client()
            await resp.write(self._chunk({"content": token}))
            record.tokens_sent += 1
            record.token_sent_at.append(time.monotonic())
            self.state.notify()

    async def stream(self) -> web.StreamResponse:
        record = self.record
        record.prompt_tokens = self.prompt_tokens
        resp = web.StreamResponse(
            status=200,
            headers={
                **self.headers,
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
            },
        )
        fault = self.fault
        cut = len(self.tokens)
        if fault is not None and fault.is_stream_fault:
            cut = min(fault.after_tokens, cut)
        try:
            await resp.prepare(self.request)
            await resp.write(self._chunk({"role": "assistant", "content": ""}))
            await self._send_tokens(resp, self.tokens[:cut])
            if fault is not None and fault.name == "disconnect":
                self._abort()
                return resp
            if fault is not None and fault.name in ("no_finish", "malformed"):
                ending = DONE_EVENT if fault.name == "no_finish" else MALFORMED_EVENT
                await resp.write(ending)
                await resp.write_eof()
                record.finished = True
                return resp
            if fault is not None and fault.name == "stream_error":
                # What OpenAI sends once a 200 stream has begun; no [DONE] follows.
                assert fault.error_type is not None
                body = stream_error_body(fault.error_type, fault.code, fault.message)
                await resp.write(sse_event(body))
                await resp.write_eof()
                record.finished = True
                return resp
            if fault is not None and fault.name == "stall":
                await asyncio.sleep(fault.seconds)
                await self._send_tokens(resp, self.tokens[cut:])
            await resp.write(self._chunk({}, self.finish_reason))
            if self.params.include_usage:
                await resp.write(
                    sse_event(
                        usage_chunk(record.index, self.created, self.params.model, self.usage)
                    )
                )
            await resp.write(DONE_EVENT)
            await resp.write_eof()
            record.finished = True
        except ConnectionError:
            record.disconnected = True
        return resp

    async def complete(self) -> web.Response:
        """Non-streaming: stream-only faults do the nearest equivalent."""
        record = self.record
        fault = self.fault
        if fault is not None and fault.name == "stream_error":
            # Without a stream the same failure arrives as an error status.
            assert fault.error_type is not None
            return self.error(
                stream_error_status(fault.error_type, fault.code),
                stream_error_body(fault.error_type, fault.code, fault.message),
            )
        record.prompt_tokens = self.prompt_tokens
        if fault is not None and fault.name == "disconnect":
            self._abort()
            record.status = 0  # no status line ever reached the client
            return web.Response(status=200, headers=self.headers)
        if fault is not None and fault.name == "stall":
            await asyncio.sleep(fault.seconds)
        # A real non-streaming call takes as long as generating every token.
        await asyncio.sleep(self.state.token_delay() * len(self.tokens))
        self._check_client()
        if fault is not None and fault.name == "malformed":
            record.finished = True
            return web.Response(
                status=200,
                body=MALFORMED_JSON,
                content_type="application/json",
                headers=self.headers,
            )
        no_finish = fault is not None and fault.name == "no_finish"
        finish = None if no_finish else self.finish_reason
        now = time.monotonic()
        record.tokens_sent = len(self.tokens)
        record.token_sent_at = [now] * len(self.tokens)
        record.finished = True
        return web.json_response(
            completion(
                record.index,
                self.created,
                self.params.model,
                "".join(self.tokens),
                finish,
                self.usage,
            ),
            headers=self.headers,
        )
