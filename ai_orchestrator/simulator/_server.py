"""The aiohttp server behind :class:`Simulator` and its lifecycle.

Streams are cancelled on stop rather than awaited, so a test that stalls a
stream for 30 s still tears down immediately.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any

from aiohttp import web

from ._admin import add_admin_routes
from ._anthropic import handle_count_tokens, handle_messages
from ._batch_routes import add_batch_routes
from ._batch_state import BatchBehaviour, BatchRecord
from ._chat import handle_chat_completions
from ._faults import Fault
from ._gemini import handle_model_method
from ._models import OPENAI_MODEL_IDS, detect_api, error_response, get_model, list_models
from ._quotas import Quotas, QuotaUsage
from ._records import RecordedRequest, ResponseRecord
from ._responder import REQUEST_ID_HEADER, SIMULATOR_HEADER
from ._responses import expire_response, handle_cancel, handle_create, handle_retrieve
from ._state import DEFAULT_RESPONSE_TTL, SimulatorState, check_response_ttl

#: What ``GET /v1/models`` lists to OpenAI clients (see ``_models`` for the others).
MODEL_IDS: tuple[str, ...] = OPENAI_MODEL_IDS
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_GEMINI_VERSIONS = "{version:v1beta|v1|v1alpha}"


def _url_host(host: str) -> str:
    if host in ("", "0.0.0.0", "::"):
        return "127.0.0.1"
    if ":" in host and not host.startswith("["):
        return f"[{host}]"
    return host


class Simulator:
    """Local OpenAI-, Anthropic- and Gemini-compatible server that can be scripted to misbehave.

    Use as ``async with Simulator() as sim:`` and point an OpenAI client at
    ``sim.base_url``, an Anthropic client (or ``ANTHROPIC_BASE_URL``) or a
    google-genai client (``HttpOptions(base_url=...)`` or
    ``GOOGLE_GEMINI_BASE_URL``) at ``sim.url``; queue failures with
    :meth:`script` (one FIFO for all APIs), inspect traffic via
    :attr:`requests` (each record's ``api`` says which API it came through).

    Chaos mode, for soak tests: ``fault_rate`` is the probability that a
    request with no scripted fault gets a random one (disconnect, no_finish,
    malformed, HTTP 500 or 503), drawn from a ``random.Random(chaos_seed)`` so
    a run can be replayed; ``rpm_limit`` answers 429 with ``retry-after`` once
    more requests than that arrive within 60 s, whoever sends them.
    ``text_style="escapes"`` makes answers whose JSON form is several times
    their size.

    Provider quotas: ``quotas=Quotas(rpm=..., tpm=..., models={...})`` limits
    each (API key, model) as providers do, with token buckets charged on
    arrival (prompt plus ``max_tokens``), the vendors' rate-limit headers on
    every answer and 429s with a Retry-After of when the request would fit
    (see ``_quotas``); :attr:`quota_usage` counts what each key did.

    OpenAI's Responses API (``client.responses``) is served too: plain and
    streamed creates, background mode (generation goes on when the stream
    drops), ``retrieve(id)``, re-attaching with ``retrieve(id, stream=True,
    starting_after=N)`` and ``cancel(id)``. A finished response can be
    retrieved for ``response_ttl`` seconds, then it is a 404.
    :attr:`responses` bills each response, :attr:`generated_tokens` every API.

    Batch APIs: OpenAI's Files + Batches, Anthropic's Message Batches and
    Gemini's batchGenerateContent (inlined requests), with
    the usual answers, on a timeline that ``batch_behaviour``
    (:class:`BatchBehaviour`) scripts: turnaround, failing items, a stall, a
    failed or expired batch, cancel honoured or not. :attr:`batches` holds
    each batch and its items; batches take no faults and no quota.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        tokens_per_second: float = 50.0,
        default_tokens: int = 64,
        *,
        fault_rate: float = 0.0,
        chaos_seed: int | None = None,
        rpm_limit: int | None = None,
        text_style: str = "words",
        response_ttl: float = DEFAULT_RESPONSE_TTL,
        quotas: Quotas | None = None,
        batch_behaviour: BatchBehaviour | None = None,
    ) -> None:
        self.host = host
        self._requested_port = port
        self._state = SimulatorState(
            tokens_per_second,
            default_tokens,
            fault_rate=fault_rate,
            chaos_seed=chaos_seed,
            rpm_limit=rpm_limit,
            text_style=text_style,
            response_ttl=response_ttl,
            quotas=quotas,
            batch_behaviour=batch_behaviour,
        )
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._port: int | None = None
        self._active: set[asyncio.Task[Any]] = set()
        self._aux_ids = itertools.count()

    # -- lifecycle ---------------------------------------------------------

    async def start(self) -> None:
        if self._runner is not None:
            raise RuntimeError("Simulator is already running")
        runner = web.AppRunner(
            self._make_app(),
            access_log=None,
            # Lets a client disconnect cancel the handler, so it is noticed
            # even while the stream is sleeping between tokens.
            handler_cancellation=True,
            shutdown_timeout=1.0,
        )
        await runner.setup()
        site = web.TCPSite(runner, self.host, self._requested_port, backlog=1024)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner, self._site = runner, site
        self._port = int(runner.addresses[0][1])

    async def stop(self) -> None:
        runner = self._runner
        if runner is None:
            return
        self._state.stopping = True
        try:
            if self._site is not None:
                await self._site.stop()  # stop accepting before cancelling
                self._site = None
            tasks = [t for t in (*self._active, *self._state.background) if not t.done()]
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.wait(tasks, timeout=5.0)
            await runner.cleanup()
        finally:
            self._runner = None
            self._port = None
            self._active.clear()
            self._state.stopping = False

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- addresses ---------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("Simulator is not running; call start() first")
        return self._port

    @property
    def url(self) -> str:
        """Server root: the admin API, and the base URL for the anthropic and google-genai SDKs."""
        return f"http://{_url_host(self.host)}:{self.port}"

    @property
    def base_url(self) -> str:
        """What to pass as ``base_url`` to an OpenAI client."""
        return f"{self.url}/v1"

    # -- scripting and inspection -----------------------------------------

    def script(self, *faults: Fault) -> None:
        """Append to the FIFO; each valid generation request consumes one ``times`` unit.

        One FIFO serves every API: an OpenAI, Anthropic or Gemini request takes
        the next fault, whichever arrives first, and renders it in its own shape.

        Requests rejected with 400 (no model, no messages) do not consume
        faults, so a client bug cannot silently eat a scripted failure.
        """
        self._state.script(*faults)

    @property
    def pending_faults(self) -> list[Fault]:
        return self._state.pending()

    @property
    def requests(self) -> list[RecordedRequest]:
        return self._state.requests

    @property
    def responses(self) -> dict[str, ResponseRecord]:
        """Responses-API responses by id, each with what a provider would bill for it."""
        return self._state.responses

    @property
    def generated_tokens(self) -> int:
        """Output tokens generated across every API (see ``SimulatorState.generated_tokens``)."""
        return self._state.generated_tokens

    @property
    def batches(self) -> dict[str, BatchRecord]:
        """Every batch of either API by id, oldest first, brought up to now."""
        return self._state.batches.all()

    @property
    def batch_behaviour(self) -> BatchBehaviour:
        """How batches created from now on behave (each keeps the one it was created under)."""
        return self._state.batches.behaviour

    @batch_behaviour.setter
    def batch_behaviour(self, value: BatchBehaviour) -> None:
        self._state.batches.behaviour = value

    def expire_response(self, response_id: str) -> None:
        """Make one response expire now: retrieving or re-attaching it is a 404 from here on."""
        expire_response(self._state, response_id)

    @property
    def response_ttl(self) -> float:
        """Seconds a finished Responses-API response stays retrievable."""
        return self._state.response_ttl

    @response_ttl.setter
    def response_ttl(self, value: float) -> None:
        self._state.response_ttl = check_response_ttl(value)

    def reset(self) -> None:
        """Forget the script, the request log, the rpm window, all responses, batches and quota
        usage; every quota bucket is full again (config is kept).

        Background generations still running are cancelled.

        The chaos sequence restarts from ``chaos_seed``, so a reset run replays it.
        """
        self._state.reset()

    def cut_stalls(self) -> None:
        """Drop the connection of every stream stalled now (``Fault.stall``), as a
        network cut would: the client's retry follows at once instead of after its
        read timeout. (Chat Completions, Messages and Gemini streams.)"""
        self._state.cut_stalls()

    @property
    def tokens_per_second(self) -> float:
        return self._state.tokens_per_second

    @tokens_per_second.setter
    def tokens_per_second(self, value: float) -> None:
        self._state.tokens_per_second = value

    @property
    def default_tokens(self) -> int:
        return self._state.default_tokens

    @default_tokens.setter
    def default_tokens(self, value: int) -> None:
        self._state.default_tokens = value

    @property
    def fault_rate(self) -> float:
        """Probability (0..1) that an unscripted request gets a random fault."""
        return self._state.fault_rate

    @fault_rate.setter
    def fault_rate(self, value: float) -> None:
        self._state.fault_rate = value

    @property
    def chaos_seed(self) -> int | None:
        """Seed of the chaos draws; setting it restarts their sequence."""
        return self._state.chaos_seed

    @chaos_seed.setter
    def chaos_seed(self, value: int | None) -> None:
        self._state.chaos_seed = value

    @property
    def rpm_limit(self) -> int | None:
        """Requests admitted per rolling 60 s; None means no limit."""
        return self._state.rpm_limit

    @rpm_limit.setter
    def rpm_limit(self, value: int | None) -> None:
        self._state.rpm_limit = value

    @property
    def quotas(self) -> Quotas | None:
        """Per-(API key, model) limits; None means none. Setting it refills every bucket."""
        return self._state.quota.quotas

    @quotas.setter
    def quotas(self, value: Quotas | None) -> None:
        self._state.quota.quotas = value

    @property
    def quota_usage(self) -> list[QuotaUsage]:
        """What each (API key, model) did, live: admitted, 429s by API, tokens reserved/used."""
        return list(self._state.quota.usage.values())

    def usage_for(self, api_key: str | None, model: str) -> QuotaUsage:
        """One key's usage of one model (all zero if it never asked)."""
        usage = self._state.quota.usage.get((api_key, model))
        return usage if usage is not None else QuotaUsage(api_key, model)

    @property
    def rate_limited(self) -> int:
        """429s answered to generation requests so far, whatever decided them."""
        return sum(u.rate_limited for u in self._state.quota.usage.values())

    @property
    def text_style(self) -> str:
        """``"words"``, ``"escapes"`` or ``"escape_blocks"`` (JSON-heavy text for payload-size
        tests)."""
        return self._state.text_style

    @text_style.setter
    def text_style(self, value: str) -> None:
        self._state.text_style = value

    async def wait_until(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        """Re-checked whenever a request arrives, streams a token or ends."""
        await self._state.wait_until(predicate, timeout, "condition")

    async def wait_for_requests(self, n: int, timeout: float = 10.0) -> None:
        await self._state.wait_until(
            lambda: len(self._state.requests) >= n, timeout, f"{n} request(s)"
        )

    async def wait_for_tokens_sent(self, request_index: int, n: int, timeout: float = 10.0) -> None:
        """Fails fast (still TimeoutError) once the request ended short of ``n``."""

        def ready() -> bool:
            requests = self._state.requests
            if request_index >= len(requests):
                return False
            record = requests[request_index]
            if record.tokens_sent >= n:
                return True
            if record.ended_at is not None:
                raise TimeoutError(
                    f"request {request_index} ended after {record.tokens_sent} "
                    f"token(s); it will never reach {n}"
                )
            return False

        await self._state.wait_until(
            ready, timeout, f"request {request_index} to send {n} token(s)"
        )

    # -- aiohttp wiring ----------------------------------------------------

    def _make_app(self) -> web.Application:
        app = web.Application(middlewares=[self._headers_middleware])
        app.router.add_post("/v1/chat/completions", self._tracked(handle_chat_completions))
        app.router.add_post("/v1/responses", self._tracked(handle_create))
        app.router.add_get("/v1/responses/{response_id}", self._tracked(handle_retrieve))
        app.router.add_post("/v1/responses/{response_id}/cancel", self._tracked(handle_cancel))
        app.router.add_post("/v1/messages", self._tracked(handle_messages))
        app.router.add_post("/v1/messages/count_tokens", self._untracked(handle_count_tokens))
        # GET /v1/models serves all three APIs; the request's headers pick the shape.
        for version in ("v1", "v1beta", "v1alpha"):
            app.router.add_get(f"/{version}/models", list_models)
            app.router.add_get(f"/{version}/models/{{model}}", get_model)
        app.router.add_post(
            f"/{_GEMINI_VERSIONS}/models/{{spec}}", self._tracked(handle_model_method)
        )
        # Claude Code (its Bun runtime) sends `HEAD /` before the first request.
        app.router.add_get("/", self._root)
        add_batch_routes(app, self._state)
        add_admin_routes(app, self._state)
        return app

    async def _root(self, request: web.Request) -> web.Response:
        return web.json_response({"simulator": "ai-orchestrator", "ok": True})

    @web.middleware
    async def _headers_middleware(
        self, request: web.Request, handler: _Handler
    ) -> web.StreamResponse:
        """Marks every reply as simulated; router errors take the asking API's shape."""
        try:
            resp = await handler(request)
        except web.HTTPException as exc:
            message = exc.reason
            if exc.status == 404:
                message = f"Unknown request URL: {request.method} {request.path}."
            resp = error_response(detect_api(request), exc.status, message)
            if "Allow" in exc.headers:
                resp.headers["Allow"] = exc.headers["Allow"]
        if not resp.prepared:
            if REQUEST_ID_HEADER not in resp.headers:
                resp.headers[REQUEST_ID_HEADER] = f"req_sim_aux_{next(self._aux_ids)}"
            resp.headers.setdefault(SIMULATOR_HEADER, "1")
        return resp

    def _tracked(self, handle: Callable[[web.Request, SimulatorState], Awaitable[Any]]) -> _Handler:
        """A generation handler whose task :meth:`stop` cancels (streams may be stalled)."""

        async def handler(request: web.Request) -> web.StreamResponse:
            task = asyncio.current_task()
            if task is not None:
                self._active.add(task)
            try:
                return await handle(request, self._state)
            finally:
                if task is not None:
                    self._active.discard(task)

        return handler

    def _untracked(
        self, handle: Callable[[web.Request, SimulatorState], Awaitable[Any]]
    ) -> _Handler:
        async def handler(request: web.Request) -> web.StreamResponse:
            return await handle(request, self._state)

        return handler


async def serve_forever(
    host: str = "127.0.0.1",
    port: int = 8000,
    tokens_per_second: float = 50.0,
    default_tokens: int = 64,
    *,
    fault_rate: float = 0.0,
    chaos_seed: int | None = None,
    rpm_limit: int | None = None,
    text_style: str = "words",
    response_ttl: float = DEFAULT_RESPONSE_TTL,
    quotas: Quotas | None = None,
    batch_behaviour: BatchBehaviour | None = None,
) -> None:
    """Run until cancelled (e.g. Ctrl-C in the CLI), then shut down cleanly."""
    async with Simulator(
        host=host,
        port=port,
        tokens_per_second=tokens_per_second,
        default_tokens=default_tokens,
        fault_rate=fault_rate,
        chaos_seed=chaos_seed,
        rpm_limit=rpm_limit,
        text_style=text_style,
        response_ttl=response_ttl,
        quotas=quotas,
        batch_behaviour=batch_behaviour,
    ):
        await asyncio.Event().wait()
