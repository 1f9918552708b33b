"""Gemini's Batch API (Developer API): ``models/{model}:batchGenerateContent`` and ``batches/*``.

What google-genai's ``client.batches`` sends when it is not in Vertex mode, so
``create(model=..., src=[inlined requests])``, ``get``, ``list``, ``cancel``
and ``delete`` reach the simulator through ``HttpOptions(base_url=...)``.
Answers are what ``:generateContent`` would answer, returned inline in
``metadata.output.inlinedResponses`` in request order, each with the request's
``metadata``. A request's ``metadata.key`` (else its position) is its
custom_id for :class:`BatchBehaviour`'s ``error_ids``.

Only inlined requests are served: the file source (``src="files/..."``) needs
the Files API's resumable upload, which the simulator does not speak. Gemini
has no cancelling state, so a batch shows ``RUNNING`` until the cancel lands; a
batch scripted to fail is ``BATCH_STATE_FAILED`` with the Operation's ``error``;
requests a cancelled or expired batch never ran come back as errors
(``CANCELLED``, ``DEADLINE_EXCEEDED``) so positions still line up.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from typing import Any

from aiohttp import web

from . import _gemini_shapes as shapes
from ._batch_state import BatchItem, BatchRecord, page
from ._responder import answer_size
from ._state import SimulatorState
from ._text import count_prompt_words, simulated_tokens

MAX_BODY_BYTES = 20 * 1024 * 1024
_STATES = {
    "validating": "BATCH_STATE_PENDING",
    "in_progress": "BATCH_STATE_RUNNING",
    "finalizing": "BATCH_STATE_RUNNING",
    "cancelling": "BATCH_STATE_RUNNING",
    "completed": "BATCH_STATE_SUCCEEDED",
    "failed": "BATCH_STATE_FAILED",
    "cancelled": "BATCH_STATE_CANCELLED",
    "expired": "BATCH_STATE_EXPIRED",
}
_NOT_RUN = {
    "canceled": (499, "The batch was cancelled before this request ran."),
    "expired": (504, "The batch expired before this request ran."),
}


def _error(code: int, message: str) -> web.Response:
    return web.json_response(shapes.error_body(code, message), status=code)


def _iso(wall: float) -> str:
    return datetime.fromtimestamp(wall, timezone.utc).isoformat().replace("+00:00", "Z")


def _status(code: int, message: str | None = None) -> dict[str, Any]:
    """A ``google.rpc.Status``: what an inlined response's ``error`` holds."""
    return dict(shapes.error_body(code, message)["error"])


def _parse(model: str, body: Any) -> tuple[str, list[tuple[str, Any, shapes.GenerateParams]]]:
    if not isinstance(body, dict) or not isinstance(body.get("batch"), dict):
        raise shapes.GeminiInvalid("* BatchGenerateContentRequest.batch: batch is required")
    batch = body["batch"]
    config = batch.get("inputConfig")
    if isinstance(config, dict) and "fileName" in config:
        raise shapes.GeminiInvalid(
            "* inputConfig.file_name: the simulator serves inlined requests only"
        )
    inline = config.get("requests") if isinstance(config, dict) else None
    requests = inline.get("requests") if isinstance(inline, dict) else None
    if not isinstance(requests, list) or not requests:
        raise shapes.GeminiInvalid("* inputConfig.requests: at least one request is required")
    parsed = []
    for i, entry in enumerate(requests):
        where = f"* inputConfig.requests.requests[{i}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("request"), dict):
            raise shapes.GeminiInvalid(f"{where}.request: request is required")
        try:
            params = shapes.parse_generate_params(model, entry["request"])
        except shapes.GeminiInvalid as exc:
            raise shapes.GeminiInvalid(f"{where}: {exc.message.lstrip('* ')}") from exc
        metadata = entry.get("metadata")
        key = metadata.get("key") if isinstance(metadata, dict) else None
        parsed.append((key if isinstance(key, str) else str(i), metadata, params))
    name = batch.get("displayName")
    return name if isinstance(name, str) else "", parsed


def _item(state: SimulatorState, record: BatchRecord, key: str, params: Any) -> BatchItem:
    seed = shapes.seed_messages(params.system, params.contents)
    n, cut = answer_size(params.max_tokens, state.default_tokens)
    text = "".join(simulated_tokens(seed, params.model, n, state.text_style))
    prompt = count_prompt_words(seed)
    finish = shapes.FINISH_MAX_TOKENS if cut else shapes.FINISH_STOP
    answer = shapes.response(0, params.model, text or None, finish, shapes.usage(prompt, n))
    answer["responseId"] = f"{record.id}-{len(record.items)}"
    item = BatchItem(key, params.model, prompt, n, answer)
    behaviour = record.behaviour
    if behaviour.errs(key):
        item.error = _status(behaviour.error_status)
        item.error_status = behaviour.error_status
    return item


def operation(record: BatchRecord) -> dict[str, Any]:
    """The batch as the long-running Operation the API returns (refresh the record first)."""
    name = f"batches/{record.id}"
    ended = record.ended_at is not None
    stats = {
        "requestCount": str(len(record.items)),
        "successfulRequestCount": str(record.count("succeeded")),
        "failedRequestCount": str(record.count("errored", "canceled", "expired")),
        "pendingRequestCount": str(record.count("processing")),
    }
    metadata: dict[str, Any] = {
        "@type": "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch",
        "name": name,
        "model": f"models/{record.model}",
        "displayName": (record.metadata or {}).get("displayName", ""),
        "state": _STATES[record.status],
        "createTime": _iso(record.created_wall),
        "updateTime": _iso(record.wall(record.ended_at if ended else time.monotonic())),
        "batchStats": stats,
    }
    if record.ended_at is not None:
        metadata["endTime"] = _iso(record.wall(record.ended_at))
        metadata["output"] = {"inlinedResponses": {"inlinedResponses": _inlined(record)}}
    done: dict[str, Any] = {"name": name, "metadata": metadata, "done": ended}
    if record.status == "failed" and record.errors:
        done["error"] = record.errors[0]
    return done


def _inlined(record: BatchRecord) -> list[dict[str, Any]]:
    out = []
    for item in record.items:
        entry: dict[str, Any] = {}
        if item.status == "succeeded":
            entry["response"] = item.answer
        elif item.status == "errored":
            entry["error"] = item.error
        else:
            entry["error"] = _status(*_NOT_RUN[item.status])
        request_metadata = (record.metadata or {}).get("requests", {}).get(item.custom_id)
        if request_metadata is not None:
            entry["metadata"] = request_metadata
        out.append(entry)
    return out


async def handle_batch_create(
    request: web.Request, state: SimulatorState, model: str, api_key: str | None
) -> web.Response:
    """``POST /{version}/models/{model}:batchGenerateContent`` (routed from ``_gemini``)."""
    model = model.removeprefix("models/")
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        return _error(400, f"Request payload size exceeds the limit: {MAX_BODY_BYTES} bytes.")
    try:
        body = json.loads(await request.content.read())
    except ValueError:
        return _error(400, "Invalid JSON payload received.")
    try:
        display_name, parsed = _parse(model, body)
    except shapes.GeminiInvalid as exc:
        return _error(400, exc.message)
    store = state.batches
    record = BatchRecord(
        id=store.new_id("sim"),
        api="gemini",
        endpoint=f"models/{model}:batchGenerateContent",
        api_key=api_key,
        behaviour=store.behaviour,
        items=[],
        created_at=time.monotonic(),
        created_wall=time.time(),
        model=model,
        # Gemini batches have no metadata; kept here so every read can echo them.
        metadata={"displayName": display_name, "requests": {}},
    )
    for key, metadata, params in parsed:
        record.items.append(_item(state, record, key, params))
        if metadata is not None:
            record.metadata["requests"][key] = metadata  # type: ignore[index]
    if record.behaviour.outcome == "failed":
        record.errors.append(_status(500, "The batch failed (simulated)."))
        record.items = []
    store.refresh(store.add(record))
    state.notify()
    return web.json_response(operation(record))


def _batch(state: SimulatorState, batch_id: str) -> BatchRecord | None:
    return state.batches.get(batch_id, "gemini")


def _not_found(batch_id: str) -> web.Response:
    return _error(404, f"Batch batches/{batch_id} not found.")


async def handle_get(request: web.Request, state: SimulatorState) -> web.Response:
    record = _batch(state, request.match_info["batch_id"])
    if record is None:
        return _not_found(request.match_info["batch_id"])
    await record.hold_status_request()
    return web.json_response(operation(record))


async def handle_delete(request: web.Request, state: SimulatorState) -> web.Response:
    record = _batch(state, request.match_info["batch_id"])
    if record is None:
        return _not_found(request.match_info["batch_id"])
    del state.batches.batches[record.id]
    return web.json_response({})


async def handle_cancel(request: web.Request, state: SimulatorState) -> web.Response:
    """``POST batches/{id}:cancel``: an empty answer; a batch that ended is a 400."""
    batch_id, _, method = request.match_info["spec"].rpartition(":")
    if method != "cancel":
        return _error(404, f"Unknown method {method!r} on batches/{batch_id}.")
    record = _batch(state, batch_id)
    if record is None:
        return _not_found(batch_id)
    if record.ended:
        return _error(400, f"Batch batches/{batch_id} has already ended and cannot be cancelled.")
    if not record.cancel_requested:
        record.cancel_requested_at = time.monotonic()
        state.batches.refresh(record)
        state.notify()
    return web.json_response({})


async def handle_list(request: web.Request, state: SimulatorState) -> web.Response:
    """Newest first; ``pageToken`` is the id of the previous page's last batch."""
    raw = request.query.get("pageSize", "50")
    size = int(raw) if raw.isdigit() else 0
    if not 1 <= size <= 1000:
        return _error(400, "* page_size: must be between 1 and 1000")
    records = state.batches.newest_first("gemini")
    chosen, more = page(records, request.query.get("pageToken"), None, size)
    body: dict[str, Any] = {"operations": [operation(r) for r in chosen]}
    if more:
        body["nextPageToken"] = chosen[-1].id
    return web.json_response(body)
