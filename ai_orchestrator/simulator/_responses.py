"""OpenAI's Responses API over HTTP: create, retrieve, re-attach to a stream, cancel.

Connections only *read* a :class:`~._responses_run.ResponseRun`'s stored events,
so a streamed create and any number of re-attaches
(``GET /v1/responses/{id}?stream=true&starting_after=N``) all see the same
events, each with its own fault. A background response's task outlives its
connections (that is what background mode is for); a foreground response is
cancelled when the connection that created it goes away, as a chat
completion stops when its client leaves.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from . import _responses_shapes as shapes
from ._errors import bearer_token
from ._faults import CUT_FAULTS, Fault
from ._params import InvalidRequest
from ._payloads import MALFORMED_JSON
from ._quota_replies import openai_error, openai_headers, openai_retry_headers
from ._quotas import QuotaAsk
from ._records import RecordedRequest, ResponseRecord
from ._responder import choose_for, run_generation
from ._responses_run import DELTA, TERMINAL_EVENTS, ResponseRun, lookup
from ._state import SimulatorState
from ._text import count_prompt_words, simulated_tokens

#: Before one of these, a token-counted stream fault strikes even if fewer
#: tokens than its ``after_tokens`` were sent (the answer was shorter).
_STRIKE_BEFORE = TERMINAL_EVENTS | {"response.output_text.done"}


# -- connections --------------------------------------------------------------


class _Pump:
    """Writes one run's stored events to one connection, applying its fault."""

    def __init__(
        self,
        request: web.Request,
        state: SimulatorState,
        record: RecordedRequest,
        run: ResponseRun,
        fault: Fault | None,
    ) -> None:
        self.request = request
        self.state = state
        self.record = record
        self.run = run
        self.fault = fault
        self.stalled = False

    def _abort(self) -> None:
        transport = self.request.transport
        if transport is not None:
            transport.abort()

    def _strikes(self, event: dict[str, Any], sent_events: int) -> bool:
        fault = self.fault
        if fault is None:
            return False
        if fault.name in ("drop_stream", "reattach_drop"):
            return sent_events >= fault.after_events
        if fault.name == "slow_events":
            return not self.stalled  # once, before the first event
        if fault.name not in ("disconnect", "no_finish", "malformed", "stream_error", "stall"):
            return False
        if fault.name == "stall" and self.stalled:
            return False
        if event["type"] == DELTA:
            return self.record.tokens_sent >= fault.after_tokens
        return event["type"] in _STRIKE_BEFORE

    async def run_on(self, resp: web.StreamResponse, starting_after: int) -> None:
        """Until the run's terminal event is written, or the fault ends the stream."""
        record, run = self.record, self.run
        next_seq = max(starting_after + 1, 0)
        sent = 0
        while True:
            while next_seq < len(run.events):
                event = run.events[next_seq]
                if self._strikes(event, sent):
                    if not await self._strike(resp, next_seq):
                        return
                transport = self.request.transport
                if transport is None or transport.is_closing():
                    raise ConnectionResetError("client closed the connection")
                await resp.write(shapes.sse(event))
                sent += 1
                next_seq += 1
                if event["type"] == DELTA:
                    record.tokens_sent += 1
                    record.token_sent_at.append(time.monotonic())
                    self.state.notify()
                if event["type"] in TERMINAL_EVENTS:
                    await resp.write_eof()
                    record.finished = True
                    return
            await run.wait_change()  # a done run ended with a terminal event, written above

    async def _strike(self, resp: web.StreamResponse, next_seq: int) -> bool:
        """Apply the fault; True if the stream goes on afterwards (a stall)."""
        fault = self.fault
        assert fault is not None
        if fault.name in ("stall", "slow_events"):
            self.stalled = True
            await asyncio.sleep(fault.seconds)
            return True
        if fault.name in ("disconnect", "drop_stream", "reattach_drop"):
            self._abort()
            return False
        if fault.name == "stream_error":
            await resp.write(shapes.sse(shapes.error_event(fault, next_seq)))
        elif fault.name == "malformed":
            await resp.write(shapes.MALFORMED_EVENT)
        await resp.write_eof()  # no_finish: a clean end with no terminal event
        self.record.finished = True
        return False


async def _open_stream(request: web.Request, headers: dict[str, str]) -> web.StreamResponse:
    resp = web.StreamResponse(
        status=200,
        headers={**headers, "Content-Type": "text/event-stream", "Cache-Control": "no-cache"},
    )
    await resp.prepare(request)
    return resp


async def _stream(
    request: web.Request,
    state: SimulatorState,
    record: RecordedRequest,
    run: ResponseRun,
    fault: Fault | None,
    headers: dict[str, str],
    starting_after: int = -1,
) -> web.StreamResponse:
    resp: web.StreamResponse | None = None
    try:
        resp = await _open_stream(request, headers)
        await _Pump(request, state, record, run, fault).run_on(resp, starting_after)
    except ConnectionError:
        record.disconnected = True
    return resp if resp is not None else web.Response(status=499, headers=headers)


# -- handlers ------------------------------------------------------------------


_Dispatch = Callable[
    [web.Request, SimulatorState, RecordedRequest, dict[str, str]], Awaitable[web.StreamResponse]
]


def _handler(
    kind: str, dispatch: _Dispatch
) -> Callable[[web.Request, SimulatorState], Awaitable[web.StreamResponse]]:
    """Every Responses request is recorded (``api="responses"``) with its ``kind``."""

    async def handle(request: web.Request, state: SimulatorState) -> web.StreamResponse:
        async def run(record: RecordedRequest, headers: dict[str, str]) -> web.StreamResponse:
            record.kind = kind
            record.response_id = request.match_info.get("response_id")
            return await dispatch(request, state, record, headers)

        key = bearer_token(request.headers.get("Authorization"))
        return await run_generation(request, state, "responses", key, run)

    return handle


async def _create(
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
        params = shapes.parse_params(body)
    except InvalidRequest as exc:
        record.status, record.finished = 400, True
        return shapes.bad_request(exc.message, headers, exc.param)
    record.model, record.stream = params.model, params.stream
    record.messages, record.max_tokens = params.messages, params.max_output_tokens
    record.temperature = params.temperature

    n = state.default_tokens
    reason = None
    if params.max_output_tokens is not None and params.max_output_tokens < n:
        n, reason = params.max_output_tokens, "max_output_tokens"
    prompt = count_prompt_words(params.messages)
    ask = QuotaAsk(record.api_key, params.model, prompt, params.max_output_tokens)
    choice = choose_for(state, record, n, ask, "responses")
    fault, admission = choice.fault, choice.admission
    headers.update(openai_headers(admission))
    error: tuple[int, dict[str, Any], dict[str, str]] | None
    if choice.limiter == "quota" and admission is not None:
        error = 429, openai_error(admission, params.model), openai_retry_headers(admission)
    else:
        by_limiter = choice.limiter == "rpm"
        error = shapes.refusal(
            fault, by_limiter, params.model, state.rpm_limit, record.authorization, params.stream
        )
    if error is not None:
        status, err_body, extra = error
        record.status, record.finished = status, True
        return web.json_response(err_body, status=status, headers={**headers, **extra})

    tokens = simulated_tokens(params.messages, params.model, n, state.text_style)
    if fault is not None and fault.name in CUT_FAULTS:
        tokens, reason = tokens[: fault.after_tokens], "content_filter"
    response_id = f"resp_sim_{next(state.response_ids)}"
    record.response_id = response_id
    record.prompt_tokens = prompt
    billing = ResponseRecord(
        id=response_id,
        model=params.model,
        request_index=record.index,
        background=params.background,
        store=params.store,
        stream=params.stream,
        input_tokens=record.prompt_tokens,
        max_output_tokens=params.max_output_tokens,
        created_at=time.monotonic(),
        status="queued" if params.background else "in_progress",
    )
    state.responses[response_id] = billing
    run = ResponseRun(state, billing, params, tokens, reason, record.api_key, record.quota_tokens)
    state.response_runs[response_id] = run
    run.start()
    try:
        if fault is not None and fault.name == "slow_start":
            await asyncio.sleep(fault.seconds)
        if params.stream:
            return await _stream(request, state, record, run, fault, headers)
        return await _create_plain(request, record, run, fault, headers)
    finally:
        if not params.background:
            run.cancel()  # a no-op once finished; else the client left


async def _create_plain(
    request: web.Request,
    record: RecordedRequest,
    run: ResponseRun,
    fault: Fault | None,
    headers: dict[str, str],
) -> web.StreamResponse:
    """A background create answers at once (queued); a foreground one when generated."""
    if fault is not None and fault.name in ("disconnect", "drop_stream"):
        transport = request.transport
        if transport is not None:
            transport.abort()
        record.status = 0
        return web.Response(status=200, headers=headers)
    if fault is not None and fault.name == "stall":
        await asyncio.sleep(fault.seconds)
    if not run.params.background:
        await run.wait_done()
        record.tokens_sent = run.billing.generated_tokens
        record.token_sent_at = [time.monotonic()] * record.tokens_sent
    record.finished = True
    if fault is not None and fault.name == "malformed":
        return web.Response(
            status=200, body=MALFORMED_JSON, content_type="application/json", headers=headers
        )
    return web.json_response(run.snapshot(), headers=headers)


async def _retrieve(
    request: web.Request,
    state: SimulatorState,
    record: RecordedRequest,
    headers: dict[str, str],
) -> web.StreamResponse:
    response_id = request.match_info["response_id"]
    stream = request.query.get("stream", "false").lower() == "true"
    if stream:
        record.kind = "retrieve_stream"
        record.stream = True
    run = lookup(state, response_id)
    if run is None:
        record.status, record.finished = 404, True
        return shapes.not_found(response_id, headers)
    record.model = run.params.model
    if not stream:
        record.finished = True
        return web.json_response(run.snapshot(), headers=headers)
    if not run.params.background:
        record.status, record.finished = 400, True
        return shapes.bad_request(
            "This response cannot be streamed because it was not created with background=true.",
            headers,
        )
    raw_after = request.query.get("starting_after", "-1")
    try:
        starting_after = int(raw_after)
    except ValueError:
        record.status, record.finished = 400, True
        return shapes.bad_request(
            "Invalid 'starting_after': expected an integer.", headers, "starting_after"
        )
    remaining = len(run.tokens) + 8 - max(starting_after + 1, 0)
    fault = state.choose_reattach_fault(remaining)
    record.fault = fault.name if fault is not None else None
    if fault is not None and fault.name == "expire":
        run.billing.expired = True
        record.status, record.finished = 404, True
        return shapes.not_found(response_id, headers)
    if fault is not None and fault.name == "reattach_refused":
        assert fault.status_code is not None
        as_create = (
            Fault.rate_limit(retry_after=fault.retry_after)
            if fault.status_code == 429
            else Fault.status(fault.status_code)
        )
        refused = shapes.refusal(
            as_create, False, run.params.model, state.rpm_limit, record.authorization, True
        )
        assert refused is not None
        status, body, extra = refused
        record.status, record.finished = status, True
        return web.json_response(body, status=status, headers={**headers, **extra})
    run.billing.reattaches += 1
    return await _stream(request, state, record, run, fault, headers, starting_after)


async def _cancel(
    request: web.Request,
    state: SimulatorState,
    record: RecordedRequest,
    headers: dict[str, str],
) -> web.StreamResponse:
    response_id = request.match_info["response_id"]
    run = lookup(state, response_id)
    if run is None:
        record.status, record.finished = 404, True
        return shapes.not_found(response_id, headers)
    record.model = run.params.model
    if not run.params.background:
        record.status, record.finished = 400, True
        return shapes.bad_request("Cannot cancel a synchronous response.", headers)
    if run.done and run.status != "cancelled":
        record.status, record.finished = 400, True
        return shapes.bad_request(f"Cannot cancel a {run.status} response.", headers)
    run.cancel()  # cancelling a cancelled response returns it again, as OpenAI does
    record.finished = True
    return web.json_response(run.snapshot(), headers=headers)


handle_create = _handler("create", _create)
handle_retrieve = _handler("retrieve", _retrieve)
handle_cancel = _handler("cancel", _cancel)


def expire_response(state: SimulatorState, response_id: str) -> None:
    """Expire one response at once (404 from now on); KeyError if unknown."""
    state.responses[response_id].expired = True
    state.notify()
