"""``/_simulator/*``: drive the simulator from another process.

Demos and benchmarks often run the simulator via the CLI and the client
elsewhere, so scripting, inspection and tuning must also work over HTTP.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ._batch_state import BatchBehaviour
from ._errors import error_body
from ._faults import Fault
from ._quotas import Quotas
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

    def quota_report() -> dict[str, Any]:
        quotas = state.quota.quotas
        usage = [u.to_dict() for u in state.quota.usage.values()]
        return {
            "quotas": quotas.to_dict() if quotas is not None else None,
            "usage": usage,
            "rate_limited": sum(u["rate_limited"] for u in usage),
        }

    async def get_quotas(request: web.Request) -> web.Response:
        """The quota config and what each (key, model) did, e.g. for a benchmark's 429 count."""
        return web.json_response(quota_report())

    async def post_quotas(request: web.Request) -> web.Response:
        """A whole :class:`Quotas` as JSON (``null`` removes them); buckets start full."""
        body = await _json(request)
        try:
            state.quota.quotas = None if body is None else Quotas.from_dict(body)
        except (TypeError, ValueError) as exc:
            return _bad_request(f"quotas: {exc}")
        return web.json_response(quota_report())

    def batch_report() -> dict[str, Any]:
        return {
            "behaviour": state.batches.behaviour.to_dict(),
            "batches": [b.to_dict() for b in state.batches.all().values()],
        }

    async def get_batches(request: web.Request) -> web.Response:
        """Every batch with its items' states, and the behaviour new batches get."""
        return web.json_response(batch_report())

    async def post_batch_behaviour(request: web.Request) -> web.Response:
        """A whole :class:`BatchBehaviour` as JSON; missing keys take their defaults."""
        body = await _json(request)
        try:
            state.batches.behaviour = BatchBehaviour.from_dict(body)
        except (TypeError, ValueError) as exc:
            return _bad_request(f"batch behaviour: {exc}")
        return web.json_response(batch_report())

    app.router.add_post("/_simulator/script", post_script)
    app.router.add_get("/_simulator/script", get_script)
    app.router.add_get("/_simulator/requests", get_requests)
    app.router.add_post("/_simulator/reset", post_reset)
    app.router.add_get("/_simulator/config", get_config)
    app.router.add_post("/_simulator/config", post_config)
    app.router.add_get("/_simulator/quotas", get_quotas)
    app.router.add_post("/_simulator/quotas", post_quotas)
    app.router.add_get("/_simulator/batches", get_batches)
    app.router.add_post("/_simulator/batches/behaviour", post_batch_behaviour)
