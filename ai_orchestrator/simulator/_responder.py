"""What every API's generation handler shares: record lifecycle, pacing, aborts.

The OpenAI, Anthropic and Gemini handlers differ only in their JSON and SSE
shapes; how a request is recorded, how tokens are paced, how a vanished
client or a scripted disconnect is noticed must be identical, or a fault
would behave differently depending on which SDK sent the request.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from ._faults import Fault
from ._quotas import QuotaAsk
from ._records import RecordedRequest
from ._state import Choice, SimulatorState

REQUEST_ID_HEADER = "x-request-id"
SIMULATOR_HEADER = "x-ai-orchestrator-simulator"

Dispatch = Callable[[RecordedRequest, dict[str, str]], Awaitable[web.StreamResponse]]


async def run_generation(
    request: web.Request,
    state: SimulatorState,
    api: str,
    api_key: str | None,
    dispatch: Dispatch,
    request_id_headers: tuple[str, ...] = (REQUEST_ID_HEADER,),
) -> web.StreamResponse:
    """Open the record, run ``dispatch``; a vanished client is never a server error.

    ``request_id_headers``: where this API's SDK looks for the request id
    (Anthropic's reads ``request-id``); it is sent under each name.
    """
    record = state.open_record(request.headers.get("Authorization"), api, api_key)
    headers = {name: record.request_id for name in request_id_headers}
    headers[SIMULATOR_HEADER] = "1"
    try:
        return await dispatch(record, headers)
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
        state.finish(record)
        state.notify()


def choose_for(
    state: SimulatorState,
    record: RecordedRequest,
    n_tokens: int,
    ask: QuotaAsk,
    consumer: str = "generation",
) -> Choice:
    """The request's fault and quota decision, written on its record.

    A scripted ``ok`` comes back as no fault: it only says "then succeed".
    """
    choice = state.choose(n_tokens, consumer, ask)
    fault = choice.fault
    if fault is not None and fault.name == "ok":
        fault = None
    record.fault = fault.name if fault is not None else None
    record.quota_tokens = choice.admission.charged if choice.admission is not None else 0
    return choice._replace(fault=fault)


def answer_size(max_tokens: int | None, default_tokens: int) -> tuple[int, bool]:
    """How many tokens the answer has, and whether ``max_tokens`` cut it."""
    if max_tokens is not None and max_tokens < default_tokens:
        return max_tokens, True
    return default_tokens, False


class BaseResponder:
    """Per-request facts and the wire mechanics every API's responder needs.

    :meth:`stream` and :meth:`complete` run the fault script the same way for
    every API; a subclass only says how its API shapes each piece (the
    ``stream_*`` hooks, :meth:`frame`, :meth:`stream_error_reply`,
    :meth:`answer_body` and :attr:`malformed_json`).
    """

    #: Set by each subclass: the answer's tokens and the prompt's token count.
    tokens: list[str]
    prompt_tokens: int
    #: The non-streamed body a ``malformed`` fault sends in place of JSON.
    malformed_json: bytes

    def __init__(
        self,
        request: web.Request,
        state: SimulatorState,
        record: RecordedRequest,
        fault: Fault | None,
        headers: dict[str, str],
    ) -> None:
        self.request = request
        self.state = state
        self.record = record
        self.fault = fault
        self.headers = headers
        self.created = int(time.time())

    def fault_is(self, *names: str) -> bool:
        return self.fault is not None and self.fault.name in names

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

    def abort(self) -> None:
        """Drop the TCP connection without a proper HTTP ending."""
        transport = self.request.transport
        if transport is not None:
            transport.abort()

    def check_client(self) -> None:
        transport = self.request.transport
        if transport is None or transport.is_closing():
            raise ConnectionResetError("client closed the connection")

    def stream_cut(self, n_tokens: int) -> int:
        """Tokens sent before a stream fault strikes (all of them without one)."""
        if self.fault is not None and self.fault.is_stream_fault:
            return min(self.fault.after_tokens, n_tokens)
        return n_tokens

    async def open_stream(self) -> web.StreamResponse:
        resp = web.StreamResponse(
            status=200,
            headers={
                **self.headers,
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
            },
        )
        await resp.prepare(self.request)
        return resp

    async def send_tokens(
        self,
        resp: web.StreamResponse,
        tokens: list[str],
        frame: Callable[[str], bytes],
    ) -> None:
        """One paced write per token, recorded as it goes (records are live)."""
        record = self.record
        for token in tokens:
            # sleep(0) when unpaced still yields, keeping hundreds of streams fair.
            await asyncio.sleep(self.state.token_delay())
            self.check_client()
            await resp.write(frame(token))
            record.tokens_sent += 1
            record.token_sent_at.append(time.monotonic())
            self.state.notify()

    async def generation_time(self, n_tokens: int) -> None:
        """A non-streamed answer takes as long as streaming it would (stall included)."""
        if self.fault is not None and self.fault.name == "stall":
            await asyncio.sleep(self.fault.seconds)
        await asyncio.sleep(self.state.token_delay() * n_tokens)
        self.check_client()

    def stamp_all_tokens(self, n_tokens: int) -> None:
        now = time.monotonic()
        self.record.tokens_sent = n_tokens
        self.record.token_sent_at = [now] * n_tokens

    # -- hooks: this API's shapes --------------------------------------------

    def frame(self, token: str) -> bytes:
        """One token as this API's stream chunk."""
        raise NotImplementedError

    async def stream_start(self, resp: web.StreamResponse) -> None:
        """What this API writes before the first token (nothing by default)."""

    async def stream_fault_end(self, resp: web.StreamResponse, fault: Fault) -> None:
        """The broken ending a ``no_finish``, ``malformed`` or ``stream_error`` writes."""
        raise NotImplementedError

    async def stream_end(self, resp: web.StreamResponse) -> None:
        """The proper ending after the last token."""
        raise NotImplementedError

    def stream_error_reply(self, error_type: str, fault: Fault) -> tuple[int, dict[str, Any]]:
        """Status and body of a ``stream_error`` when there is no stream to put it in."""
        raise NotImplementedError

    def answer_body(self, finished: bool) -> dict[str, Any]:
        """The non-streamed answer; ``finished=False`` leaves out its finish reason."""
        raise NotImplementedError

    # -- replies ---------------------------------------------------------------

    async def stream(self) -> web.StreamResponse:
        record = self.record
        record.prompt_tokens = self.prompt_tokens
        fault = self.fault
        cut = self.stream_cut(len(self.tokens))
        resp: web.StreamResponse | None = None
        try:
            resp = await self.open_stream()
            await self.stream_start(resp)
            await self.send_tokens(resp, self.tokens[:cut], self.frame)
            if fault is not None and fault.name == "disconnect":
                self.abort()
                return resp
            if fault is not None and fault.name in ("no_finish", "malformed", "stream_error"):
                await self.stream_fault_end(resp, fault)
            else:
                if fault is not None and fault.name == "stall":
                    if await self.state.stall(fault.seconds):
                        self.abort()  # cut short: the connection drops
                        return resp
                    await self.send_tokens(resp, self.tokens[cut:], self.frame)
                await self.stream_end(resp)
            await resp.write_eof()
            record.finished = True
        except ConnectionError:
            record.disconnected = True
        return resp if resp is not None else web.Response(status=499, headers=self.headers)

    async def complete(self) -> web.Response:
        """Non-streaming: stream-only faults do the nearest equivalent."""
        record = self.record
        fault = self.fault
        if fault is not None and fault.name == "stream_error":
            # Without a stream the same failure arrives as an error status.
            assert fault.error_type is not None
            return self.error(*self.stream_error_reply(fault.error_type, fault))
        record.prompt_tokens = self.prompt_tokens
        if self.fault_is("disconnect"):
            self.abort()
            record.status = 0  # no status line ever reached the client
            return web.Response(status=200, headers=self.headers)
        await self.generation_time(len(self.tokens))
        if self.fault_is("malformed"):
            record.finished = True
            return web.Response(
                status=200,
                body=self.malformed_json,
                content_type="application/json",
                headers=self.headers,
            )
        finished = not self.fault_is("no_finish")
        self.stamp_all_tokens(len(self.tokens))
        record.finished = True
        return web.json_response(self.answer_body(finished), headers=self.headers)
