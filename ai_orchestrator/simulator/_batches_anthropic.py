"""Anthropic's Message Batches API: create, retrieve, list, cancel, delete, results.

``/v1/messages/batches`` in the shapes the ``anthropic`` SDK parses. Each
request's ``params`` are checked as ``POST /v1/messages`` checks them, and the
whole create is a 400 naming ``requests.N...`` when one is wrong, a
``custom_id`` breaks the API's pattern or repeats; the answers are what
``POST /v1/messages`` would answer live.

As the real API does, ``request_counts`` show every request as
``processing`` until the batch ends, and then how each ended; ``results_url``
appears only then. The API has no metadata on batches (a client finds its
batch again by listing and matching its own ``custom_id`` s) and no failed
status: a batch scripted to fail ends with every request ``errored``.
"""

from __future__ import annotations

import json
import re
import time
from datetime import datetime, timezone
from typing import Any

from aiohttp import web

from . import _anthropic_shapes as shapes
from ._anthropic import anthropic_api_key
from ._batch_state import BatchItem, BatchRecord, page
from ._responder import answer_size
from ._state import SimulatorState
from ._text import count_prompt_words, simulated_tokens

MAX_REQUESTS = 100_000
MAX_BODY_BYTES = 256 * 1024 * 1024
CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_ENDED = ("completed", "failed", "expired", "cancelled")


def _processing_status(status: str) -> str:
    if status in _ENDED:
        return "ended"
    return "canceling" if status == "cancelling" else "in_progress"


class _Invalid(Exception):
    def __init__(self, message: str, status: int = 400, type_: str = "invalid_request_error"):
        super().__init__(message)
        self.message, self.status, self.type = message, status, type_


def _error(message: str, status: int = 400, type_: str = "invalid_request_error") -> web.Response:
    return web.json_response(shapes.error_body(type_, message), status=status)


def _iso(wall: float | None) -> str | None:
    if wall is None:
        return None
    return datetime.fromtimestamp(wall, timezone.utc).isoformat().replace("+00:00", "Z")


async def _read_json(request: web.Request) -> Any:
    """The body without aiohttp's 1 MB cap: a batch may hold up to 256 MB of requests."""
    chunks, size = [], 0
    while chunk := await request.content.read(1 << 16):
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise _Invalid(
                f"Request exceeds the maximum allowed number of bytes ({MAX_BODY_BYTES}).",
                413,
                "request_too_large",
            )
        chunks.append(chunk)
    try:
        return json.loads(b"".join(chunks))
    except ValueError as exc:
        raise _Invalid(f"The request body is not valid JSON: {exc}") from exc


def _parse_requests(body: Any) -> list[tuple[str, shapes.MessagesParams]]:
    if not isinstance(body, dict):
        raise _Invalid("The request body must be a JSON object.")
    for key in body:
        if key != "requests":
            raise _Invalid(f"{key}: Extra inputs are not permitted")
    requests = body.get("requests")
    if requests is None:
        raise _Invalid("requests: Field required")
    if not isinstance(requests, list):
        raise _Invalid("requests: Input should be a valid list")
    if not requests:
        raise _Invalid("requests: List should have at least 1 item after validation, not 0")
    if len(requests) > MAX_REQUESTS:
        raise _Invalid(f"requests: List should have at most {MAX_REQUESTS} items")
    seen: set[str] = set()
    parsed = []
    for i, entry in enumerate(requests):
        where = f"requests.{i}"
        if not isinstance(entry, dict):
            raise _Invalid(f"{where}: Input should be a valid dictionary")
        extra = sorted(set(entry) - {"custom_id", "params"})
        if extra:
            raise _Invalid(f"{where}.{extra[0]}: Extra inputs are not permitted")
        custom_id = entry.get("custom_id")
        if not isinstance(custom_id, str) or not CUSTOM_ID.match(custom_id):
            raise _Invalid(
                f"{where}.custom_id: String should match pattern '^[a-zA-Z0-9_-]{{1,64}}$'"
            )
        if custom_id in seen:
            raise _Invalid(
                f"{where}.custom_id: Duplicate custom_id '{custom_id}': custom_id values must "
                "be unique within a Message Batch"
            )
        seen.add(custom_id)
        if "params" not in entry:
            raise _Invalid(f"{where}.params: Field required")
        try:
            params = shapes.parse_messages_params(entry["params"])
        except shapes.AnthropicInvalid as exc:
            raise _Invalid(f"{where}.params.{exc.message}") from exc
        if params.stream:
            raise _Invalid(f"{where}.params.stream: Streaming is not supported in batches")
        parsed.append((custom_id, params))
    return parsed


def _item(
    state: SimulatorState, record: BatchRecord, custom_id: str, params: shapes.MessagesParams
) -> BatchItem:
    """What ``POST /v1/messages`` would answer (text only: no ``Write`` tool calls)."""
    seed = shapes.seed_messages(params.system, params.messages)
    n, cut = answer_size(params.max_tokens, state.default_tokens)
    tokens = simulated_tokens(seed, params.model, n, state.text_style)
    prompt = count_prompt_words(seed)
    content = [{"type": "text", "text": "".join(tokens)}] if tokens else []
    stop = "max_tokens" if cut else "end_turn"
    answer = shapes.message(0, params.model, content, stop, shapes.usage(prompt, n))
    answer["id"] = f"msg_{record.id}_{len(record.items)}"
    item = BatchItem(custom_id, params.model, prompt, n, answer)
    behaviour = record.behaviour
    if behaviour.outcome == "failed" or behaviour.errs(custom_id):
        status = behaviour.error_status
        item.error = shapes.status_error(status, None, None)
        item.error_status = status
    return item


def batch_json(request: web.Request, record: BatchRecord) -> dict[str, Any]:
    """The MessageBatch object as it stands (refresh the record first)."""
    ended = record.status in _ENDED
    n = len(record.items)
    counts = {
        "processing": 0 if ended else n,
        "succeeded": record.count("succeeded") if ended else 0,
        "errored": record.count("errored") if ended else 0,
        "canceled": record.count("canceled") if ended else 0,
        "expired": record.count("expired") if ended else 0,
    }
    cancel = record.cancel_requested_at
    results_url = None
    if ended:
        results_url = f"{request.scheme}://{request.host}/v1/messages/batches/{record.id}/results"
    return {
        "id": record.id,
        "type": "message_batch",
        "processing_status": _processing_status(record.status),
        "request_counts": counts,
        "ended_at": _iso(record.wall(record.ended_at)) if record.ended_at is not None else None,
        "created_at": _iso(record.created_wall),
        "expires_at": _iso(record.expires_wall()),
        "archived_at": None,
        "cancel_initiated_at": _iso(record.wall(cancel)) if cancel is not None else None,
        "results_url": results_url,
    }


def render_results(record: BatchRecord) -> bytes:
    lines = []
    for item in record.items:
        result: dict[str, Any] = {"type": item.status}
        if item.status == "succeeded":
            result["message"] = item.answer
        elif item.status == "errored":
            result["error"] = item.error
        lines.append(json.dumps({"custom_id": item.custom_id, "result": result}) + "\n")
    return "".join(lines).encode()


async def handle_create(request: web.Request, state: SimulatorState) -> web.Response:
    try:
        parsed = _parse_requests(await _read_json(request))
    except _Invalid as exc:
        return _error(exc.message, exc.status, exc.type)
    store = state.batches
    record = BatchRecord(
        id=store.new_id("msgbatch_sim"),
        api="anthropic",
        endpoint="/v1/messages",
        api_key=anthropic_api_key(request),
        behaviour=store.behaviour,
        items=[],
        created_at=time.monotonic(),
        created_wall=time.time(),
        model=parsed[0][1].model,
    )
    for custom_id, params in parsed:
        record.items.append(_item(state, record, custom_id, params))
    store.refresh(store.add(record))
    state.notify()
    return web.json_response(batch_json(request, record))


def _batch(state: SimulatorState, request: web.Request) -> BatchRecord | None:
    return state.batches.get(request.match_info["batch_id"], "anthropic")


def _not_found(request: web.Request) -> web.Response:
    message = f"message_batch {request.match_info['batch_id']} not found"
    return _error(message, 404, "not_found_error")


async def handle_retrieve(request: web.Request, state: SimulatorState) -> web.Response:
    record = _batch(state, request)
    if record is None:
        return _not_found(request)
    await record.hold_status_request()
    return web.json_response(batch_json(request, record))


async def handle_list(request: web.Request, state: SimulatorState) -> web.Response:
    """Newest first, paged with ``after_id``/``before_id``."""
    raw = request.query.get("limit", "20")
    limit = int(raw) if raw.isdigit() else 0
    if not 1 <= limit <= 1000:
        return _error("limit: Input should be between 1 and 1000")
    records = state.batches.newest_first("anthropic")
    after, before = request.query.get("after_id"), request.query.get("before_id")
    chosen, more = page(records, after, before, limit)
    data = [batch_json(request, r) for r in chosen]
    return web.json_response(
        {
            "data": data,
            "has_more": more,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
        }
    )


async def handle_cancel(request: web.Request, state: SimulatorState) -> web.Response:
    """Idempotent while canceling; a batch that has ended is a 400."""
    record = _batch(state, request)
    if record is None:
        return _not_found(request)
    if record.ended:
        return _error(f"Message Batch {record.id} has already ended and cannot be canceled.")
    if not record.cancel_requested:
        record.cancel_requested_at = time.monotonic()
        state.batches.refresh(record)
        state.notify()
    return web.json_response(batch_json(request, record))


async def handle_delete(request: web.Request, state: SimulatorState) -> web.Response:
    record = _batch(state, request)
    if record is None:
        return _not_found(request)
    if not record.ended:
        return _error(
            f"Message Batch {record.id} is still processing; cancel it and wait for it to end "
            "before deleting it."
        )
    del state.batches.batches[record.id]
    return web.json_response({"id": record.id, "type": "message_batch_deleted"})


async def handle_results(request: web.Request, state: SimulatorState) -> web.Response:
    record = _batch(state, request)
    if record is None:
        return _not_found(request)
    if not record.ended:
        return _error(
            f"Message Batch {record.id} has not finished processing; results are available "
            "once its processing_status is 'ended'."
        )
    return web.Response(body=render_results(record), content_type="application/binary")
