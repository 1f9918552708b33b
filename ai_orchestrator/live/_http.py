"""The default live channel: an HTTP endpoint inside each worker process.

Readers learn the endpoint of the attempt they follow from its heartbeat
details and hold one long response open on it; frames are written as they
are produced (4-byte length, then the sealed frame). Nothing is stored
outside the worker, so there is nothing to install: ``ai-orchestrator dev``
and ``run`` use it as is. A deployment with readers far from its workers, or
more readers than a worker should serve, uses the Redis channel instead.

The endpoint listens on loopback unless told otherwise. Listening anywhere
else needs a key (:mod:`._auth`): a stream is then served only to readers
presenting the run's token, and its frames are encrypted when encryption is
on, exactly as payloads are.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import socket
import struct
from collections.abc import AsyncIterator, Callable, Mapping

import aiohttp
from aiohttp import web
from temporalio.converter import DataConverter

from ..config import ConfigError
from ._auth import ENV_LIVE_SECRET, LiveAuth
from ._frames import LiveFrame, seal, unseal
from ._hub import HubStream, LiveHub

logger = logging.getLogger(__name__)

ENV_LIVE_LISTEN = "AI_ORCHESTRATOR_LIVE_LISTEN"
ENV_LIVE_ADVERTISE = "AI_ORCHESTRATOR_LIVE_ADVERTISE"
_PATH = "/v1/live/{workflow_id}/{run_id}"
_LENGTH = struct.Struct(">I")
#: A frame larger than this is refused by readers: the output cap is 1 MB of
#: text, so no honest frame comes near it.
MAX_FRAME_BYTES = 8_000_000


class LiveUnavailable(ConnectionError):
    """The live source cannot be read (unreachable, refused, gone): follow the workflow."""


class LiveConfigError(ConfigError):
    """The live channel's settings cannot work; the message says how to fix them."""


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _split_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise LiveConfigError(f"{ENV_LIVE_LISTEN} must be host:port (port 0: any), got {value!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


class _HubSink:
    def __init__(self, stream: HubStream) -> None:
        self._stream = stream

    def add(self, text: str) -> None:
        self._stream.add(text)

    def close(self, end: str) -> None:
        self._stream.close(end)

    def on_read(self, callback: Callable[[], None]) -> None:
        self._stream.on_read = callback


class HttpLivePublisher:
    """Args:
    converter: seals frames (the worker's data converter: encrypted when it is).
    host, port: where to listen; port 0 picks a free one.
    advertise: the base URL readers use (default: from the listening address);
        set it when readers reach the worker by another name.
    auth: required unless listening on loopback.
    """

    def __init__(
        self,
        converter: DataConverter,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        advertise: str | None = None,
        auth: LiveAuth | None = None,
    ) -> None:
        if auth is None and not _is_loopback(host):
            raise LiveConfigError(
                f"the live endpoint would listen on {host}, beyond this machine, with no key: "
                f"set {ENV_LIVE_SECRET} (the same value for clients and workers) or turn "
                "encryption on, so that only your readers can follow a task's text"
            )
        self._converter = converter
        self._host, self._port = host, port
        self._advertise = advertise
        self._auth = auth
        self.hub = LiveHub()
        self._runner: web.AppRunner | None = None
        self.address = ""

    @classmethod
    def from_env(
        cls, converter: DataConverter, env: Mapping[str, str] | None = None
    ) -> HttpLivePublisher:
        env = os.environ if env is None else env
        host, port = _split_listen(env.get(ENV_LIVE_LISTEN) or "127.0.0.1:0")
        return cls(
            converter,
            host=host,
            port=port,
            advertise=env.get(ENV_LIVE_ADVERTISE) or None,
            auth=LiveAuth.from_env(env),
        )

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get(_PATH, self._serve)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port, reuse_address=True)
        await site.start()
        port = self._runner.addresses[0][1]  # the port that 0 picked
        if self._advertise:
            self.address = self._advertise.rstrip("/")
        else:
            host = self._host
            if host in ("0.0.0.0", "::", ""):
                host = socket.gethostname()
            self.address = f"http://{f'[{host}]' if ':' in host else host}:{port}"
        logger.info("live endpoint at %s", self.address)

    async def stop(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    def open(
        self, workflow_id: str, run_id: str, generation: int, start: int = 0, prefix: str = ""
    ) -> _HubSink:
        return _HubSink(self.hub.open(workflow_id, run_id, generation, start, prefix))

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        workflow_id = request.match_info["workflow_id"]
        run_id = request.match_info["run_id"]
        if self._auth is not None:
            token = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
            if not self._auth.check(token, workflow_id, run_id):
                return web.json_response({"error": "not allowed to read this run"}, status=403)
        stream = self.hub.get(workflow_id, run_id)
        if stream is None:
            return web.json_response({"error": "no such stream on this worker"}, status=404)
        try:
            generation = int(request.query.get("generation", "0"))
            offset = int(request.query.get("offset", "0"))
        except ValueError:
            return web.json_response({"error": "generation and offset are integers"}, status=400)
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        try:
            async for frame in stream.frames(generation, max(0, offset)):
                data = await seal(frame, self._converter)
                await response.write(_LENGTH.pack(len(data)) + data)
        except (ConnectionResetError, asyncio.CancelledError):
            return response
        await response.write_eof()
        return response


class HttpLiveSubscriber:
    """A client's reader of worker endpoints."""

    def __init__(
        self, converter: DataConverter, *, auth: LiveAuth | None = None, connect_timeout: float = 3
    ) -> None:
        self._converter = converter
        self._auth = auth
        self._timeout = aiohttp.ClientTimeout(total=None, connect=connect_timeout, sock_read=None)

    def handles(self, address: str) -> bool:
        return address.startswith(("http://", "https://"))

    async def read(
        self, address: str, workflow_id: str, run_id: str, generation: int, offset: int
    ) -> AsyncIterator[LiveFrame]:
        headers = {}
        if self._auth is not None:
            headers["Authorization"] = f"Bearer {self._auth.token(workflow_id, run_id)}"
        url = f"{address}/v1/live/{workflow_id}/{run_id}"
        params = {"generation": str(generation), "offset": str(offset)}
        try:
            # A session per stream: each holds its own long connection anyway, and
            # nothing outlives the read (no session for the caller to close).
            async with (
                aiohttp.ClientSession(timeout=self._timeout) as session,
                session.get(url, params=params, headers=headers) as response,
            ):
                if response.status == 403:
                    raise LiveUnavailable(
                        f"the worker at {address} refused to stream this task: clients and "
                        f"workers need the same {ENV_LIVE_SECRET} (or encryption keys)"
                    )
                if response.status != 200:
                    raise LiveUnavailable(f"{address} answered {response.status}")
                while True:
                    try:
                        head = await response.content.readexactly(_LENGTH.size)
                    except asyncio.IncompleteReadError as exc:
                        if exc.partial:
                            raise LiveUnavailable("the live stream broke mid-frame") from None
                        return  # the worker ended the response (or went away cleanly)
                    (size,) = _LENGTH.unpack(head)
                    if size > MAX_FRAME_BYTES:
                        raise LiveUnavailable(f"a {size:,}-byte live frame is not believable")
                    try:
                        data = await response.content.readexactly(size)
                    except asyncio.IncompleteReadError:
                        raise LiveUnavailable("the live stream broke mid-frame") from None
                    yield await unseal(data, self._converter)
        except aiohttp.ClientError as exc:
            raise LiveUnavailable(f"cannot read the live stream at {address}: {exc}") from None

    async def aclose(self) -> None:
        """Nothing to release: every read closes its own connection."""
