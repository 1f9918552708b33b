"""A Temporal codec server: lets an authorised operator read encrypted histories.

With :class:`~ai_orchestrator.payloads.codec.EncryptionCodec` on, the Temporal server
only stores ciphertext, so the Web UI and ``temporal`` CLI show unreadable
``binary/encrypted`` payloads. Temporal's answer is a *codec server*: a small
HTTP service, run by someone who holds the keys, that the UI (Settings → Codec
Server endpoint) or CLI (``temporal workflow show --codec-endpoint
http://127.0.0.1:8081``) calls to decode payloads. The keys never reach the
Temporal server or the UI's backend; the operator's browser calls this service
directly.

Protocol: ``POST /encode`` and ``POST /decode`` take and return the JSON form of
``temporalio.api.common.v1.Payloads``: ``{"payloads": [{"metadata": {"encoding":
"<base64>"}, "data": "<base64>"}]}``.

Security:

* Anyone who can reach ``/decode`` can read every prompt. **Without a token the
  server must only listen on localhost** (the default ``127.0.0.1``), where only
  the operator's own browser and CLI reach it.
* With ``token`` set, every request except CORS preflight needs
  ``Authorization: Bearer <token>`` (the CLI sends it with ``--codec-auth
  "Bearer <token>"``). The token is compared in constant time and never logged.
  The Web UI can only send its own login (OIDC) access token ("Pass access
  token"), not a static one, so in practice the UI uses a tokenless server on
  localhost and the token protects a server shared over the network with CLIs.
* CORS allows only the Web UI's own origins (default the dev Web UI on port
  8233, both as ``http://localhost:8233`` and ``http://127.0.0.1:8233``: ``dev``
  and ``run`` print the second, browsers send whichever the operator opened), so
  other web pages open in the operator's browser cannot use the server to
  decrypt histories. A response names the one origin that asked, as CORS wants.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
from collections.abc import Awaitable, Callable, Sequence

from aiohttp import web
from google.protobuf import json_format
from temporalio.api.common.v1 import Payloads

from ai_orchestrator.payloads.codec import EncryptionCodec

logger = logging.getLogger(__name__)

DEFAULT_UI_PORT = 8233
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8081

#: Histories can carry payloads up to Temporal's ~2 MiB limit, base64 in JSON
#: adds a third, and the UI may send several at once; aiohttp's 1 MiB default
#: would reject real requests.
MAX_BODY_BYTES = 32 * 1024 * 1024

_CODEC_KEY: web.AppKey[EncryptionCodec] = web.AppKey("codec", EncryptionCodec)
_TOKEN_KEY: web.AppKey[str | None] = web.AppKey("token")
_ORIGIN_KEY: web.AppKey[tuple[str, ...]] = web.AppKey("allow_origins")

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def ui_origins(ui_port: int = DEFAULT_UI_PORT) -> tuple[str, str]:
    """The origins a local Web UI on ``ui_port`` has: it answers as both names."""
    return (f"http://localhost:{ui_port}", f"http://127.0.0.1:{ui_port}")


DEFAULT_ALLOW_ORIGINS = ui_origins()


def _error(status: int, message: str) -> web.Response:
    """A one-line JSON error: clients get a reason, never a traceback."""
    one_line = " ".join(message.split())[:300]
    return web.json_response({"error": one_line}, status=status)


@web.middleware
async def _authorise(request: web.Request, handler: _Handler) -> web.StreamResponse:
    """Answer CORS preflight, then require the bearer token if one is configured.

    Preflight (OPTIONS) is always allowed: browsers never send credentials
    with it, so refusing it would only break the UI, and it returns no data.
    """
    if request.method == "OPTIONS":
        return web.Response(status=204)
    token = request.app[_TOKEN_KEY]
    if token is not None:
        supplied = request.headers.get("Authorization", "")
        expected = f"Bearer {token}"
        if not hmac.compare_digest(supplied.encode(), expected.encode()):
            return _error(401, "missing or wrong Authorization: Bearer token")
    return await handler(request)


async def _add_cors_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Set CORS headers on every response, errors included.

    Without them on a 401 or 400 the browser hides the response from the Web
    UI, which then reports a meaningless network error instead of the reason.
    """
    allowed = request.app[_ORIGIN_KEY]
    origin = request.headers.get("Origin", "")
    # The header holds one origin: the caller's when allowed; otherwise the first
    # allowed one, which the browser will not match, so the page gets nothing.
    response.headers["Access-Control-Allow-Origin"] = origin if origin in allowed else allowed[0]
    response.headers["Access-Control-Allow-Methods"] = "POST, OPTIONS"
    response.headers["Access-Control-Allow-Headers"] = "content-type, x-namespace, authorization"
    response.headers["Access-Control-Allow-Credentials"] = "true"
    response.headers["Vary"] = "Origin"


async def _read_payloads(request: web.Request) -> Payloads | web.Response:
    """Parse the body as JSON ``Payloads``, or return the 400 response to send."""
    try:
        text = (await request.read()).decode("utf-8")
        return json_format.Parse(text, Payloads(), ignore_unknown_fields=True)
    except (UnicodeDecodeError, json_format.ParseError) as exc:
        return _error(400, f"body is not JSON Payloads: {exc}")


async def _transform(request: web.Request, *, encode: bool) -> web.Response:
    payloads = await _read_payloads(request)
    if isinstance(payloads, web.Response):
        return payloads
    codec = request.app[_CODEC_KEY]
    try:
        if encode:
            result = await codec.encode(payloads.payloads)
        else:
            result = await codec.decode(payloads.payloads)
    except ValueError as exc:
        # Unknown key id or tampered payload: the message names the key id only.
        return _error(422, str(exc))
    body = json_format.MessageToDict(Payloads(payloads=result))
    body.setdefault("payloads", [])
    return web.json_response(body)


async def _encode(request: web.Request) -> web.Response:
    """POST /encode: encrypt payloads (used by the UI to send signals/queries)."""
    return await _transform(request, encode=True)


async def _decode(request: web.Request) -> web.Response:
    """POST /decode: decrypt payloads; unencrypted ones come back unchanged."""
    return await _transform(request, encode=False)


async def _preflight(request: web.Request) -> web.Response:
    """Never reached (the middleware answers OPTIONS); registered so routing accepts it."""
    return web.Response(status=204)


def codec_app(
    codec: EncryptionCodec,
    *,
    allow_origin: str | Sequence[str] = DEFAULT_ALLOW_ORIGINS,
    token: str | None = None,
) -> web.Application:
    """Build the codec server app: ``POST /encode``, ``POST /decode`` and CORS preflight.

    ``allow_origin``: the Web UI origin(s) whose pages may call the server.
    ``token``: if set, requests need ``Authorization: Bearer <token>``. Without
    one, only serve the app on a loopback address. An empty token is refused
    rather than read as "no token", so a blank setting cannot silently turn
    authorisation off.
    """
    if token is not None and not token.strip():
        raise ValueError("codec server token must not be empty (pass None for no token)")
    app = web.Application(middlewares=[_authorise], client_max_size=MAX_BODY_BYTES)
    # Decoding here is for display only (nothing decoded reaches a workflow), so
    # plaintext payloads, e.g. from before encryption was on, are shown as is.
    app[_CODEC_KEY] = codec.with_accept_plaintext(True)
    app[_TOKEN_KEY] = token
    app[_ORIGIN_KEY] = _origins(allow_origin)
    app.on_response_prepare.append(_add_cors_headers)
    for path, handler in (("/encode", _encode), ("/decode", _decode)):
        app.router.add_post(path, handler)
        app.router.add_route("OPTIONS", path, _preflight)
    return app


def _origins(allow_origin: str | Sequence[str]) -> tuple[str, ...]:
    origins = (allow_origin,) if isinstance(allow_origin, str) else tuple(allow_origin)
    if not origins:
        raise ValueError("the codec server needs at least one allowed origin")
    return origins


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def serve_codec(
    codec: EncryptionCodec,
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    allow_origin: str | Sequence[str] = DEFAULT_ALLOW_ORIGINS,
    token: str | None = None,
) -> None:
    """Serve :func:`codec_app` on ``host:port`` until cancelled.

    Listening beyond localhost without a token would let anyone on the network
    decrypt every history, so that combination is logged as a warning.
    """
    if token is None and not _is_loopback(host):
        logger.warning(
            "codec server on %s without a token: anyone who can reach it can decrypt "
            "every history; set a token or listen on 127.0.0.1",
            host,
        )
    runner = web.AppRunner(codec_app(codec, allow_origin=allow_origin, token=token))
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        logger.info(
            "codec server listening on http://%s:%s (origin %s, token %s)",
            host,
            port,
            ", ".join(_origins(allow_origin)),
            "required" if token else "not required",
        )
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
