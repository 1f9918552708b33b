"""``/_simulator/*``: drive the simulator from another process.

Demos and benchmarks often run the simulator via the CLI and the client
elsewhere, so scripting, inspection and tuning must also work over HTTP.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ._errors import error_body
from ._faults import Fault
from ._state import SimulatorState


def _bad_request(message: str) -> web.Response:
    return web.json_response(error_body(message, "invalid_request_error"), status=400)


async def _json(request: web.Request) -> Any:
    try:
        return await request.json()
    except ValueError as exc:
        raise web.HTTPBadRequest(reason=f"invalid JSON body: {exc}") from exc


def add_admin_routes(app: web.Application, state: SimulatorState) -> None:
    async def post_script(request: web.Request) -> web.Response:
        body = await _json(request)
        items = body if isinstance(body, list) else [body]
        try:
            faults = [Fault.from_dict(item) for item in items]
        except ValueError as exc:
            return _bad_request(str(exc))
        state.script(*faults)
        return web.json_response(
            {"queued": len(faults), "script": [f.to_dict() for f in state.pending()]}
        )

    async def get_script(request: web.Request) -> web.Response:
        return web.json_response({"script": [f.to_dict() for f in state.pending()]})

    async def get_requests(request: web.Request) -> web.Response:
        return web.json_response([r.to_dict() for r in state.requests])

    async def post_reset(request: web.Request) -> web.Response:
        state.reset()
        return web.json_response({"ok": True})

    async def get_config(request: web.Request) -> web.Response:
        return web.json_response(state.config())

    async def post_config(request: web.Request) -> web.Response:
        """Keys: see ``CONFIG_CHECKS``; all are checked before any is applied."""
        body = await _json(request)
        if not isinstance(body, dict):
            return _bad_request("config must be a JSON object")
        try:
            state.configure(**body)
        except ValueError as exc:
            return _bad_request(str(exc))
        return web.json_response(state.config())

    app.router.add_post("/_simulator/script", post_script)
    app.router.add_get("/_simulator/script", get_script)
    app.router.add_get("/_simulator/requests", get_requests)
    app.router.add_post("/_simulator/reset", post_reset)
    app.router.add_get("/_simulator/config", get_config)
    app.router.add_post("/_simulator/config", post_config)
