"""OpenAI's Files and Batch APIs: upload a JSONL file, run it as a batch, read the results.

``POST /v1/files`` (multipart, ``purpose=batch``), ``GET /v1/files[/{id}]``,
``GET /v1/files/{id}/content``, ``DELETE /v1/files/{id}``, and ``POST
/v1/batches``, ``GET /v1/batches[/{id}]``, ``POST /v1/batches/{id}/cancel``, in
the shapes the ``openai`` SDK parses. Lines may target ``/v1/chat/completions``
or ``/v1/responses``; each answer is what that endpoint would answer live.

The upload must be a ``.jsonl`` file; its lines are read when a batch is
created (see ``_batches_openai_lines``). Requests the batch did not get to
(expired, cancelled) count in ``request_counts.failed``, so ``completed +
failed == total`` once a batch has ended. ``GET /v1/batches`` lists newest
first, so a client that crashed can find its batch again by its ``metadata``.
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import BodyPartReader, web

from ._batch_state import BatchRecord, BatchStore, StoredFile, page
from ._batches_openai_lines import FAILED_ERROR, read_lines, render_results
from ._errors import bearer_token, error_body
from ._params import InvalidRequest
from ._state import SimulatorState

FILE_PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")
ENDPOINTS = ("/v1/chat/completions", "/v1/responses")
MAX_FILE_BYTES = 200 * 1024 * 1024


def _bad(message: str, param: str | None = None, status: int = 400) -> web.Response:
    body = error_body(message, "invalid_request_error", None, param)
    return web.json_response(body, status=status)


def _no_such(kind: str, object_id: str) -> web.Response:
    return _bad(f"No such {kind}: {object_id}", "id", 404)


def _store(state: SimulatorState) -> BatchStore:
    return state.batches


def _limit(request: web.Request, high: int, default: int) -> int | None:
    raw = request.query.get("limit")
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        return None
    return value if 1 <= value <= high else None


def _list_body(data: list[dict[str, Any]], has_more: bool) -> dict[str, Any]:
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": has_more,
    }


# -- files ---------------------------------------------------------------------


def _file_json(stored: StoredFile, size: int) -> dict[str, Any]:
    expires = int(stored.created_wall) + 30 * 24 * 3600 if stored.purpose == "batch" else None
    return {
        "id": stored.id,
        "object": "file",
        "bytes": size,
        "created_at": int(stored.created_wall),
        "expires_at": expires,
        "filename": stored.filename,
        "purpose": stored.purpose,
        "status": "processed",
        "status_details": None,
    }


def _content(state: SimulatorState, stored: StoredFile) -> bytes:
    if stored.batch_id is None:
        return stored.content
    record = _store(state).batches[stored.batch_id]
    kind = "output" if stored.id == record.output_file_id else "error"
    return render_results(record, kind)


async def _read_upload(request: web.Request) -> tuple[dict[str, str], str, bytes]:
    """The form's text fields, the file's name and bytes (no 1 MB body cap: files are big)."""
    try:
        reader = await request.multipart()
    except (AssertionError, ValueError, KeyError) as exc:
        raise InvalidRequest("The request must be multipart/form-data.") from exc
    fields: dict[str, str] = {}
    filename, content = "", b""
    async for part in reader:
        if not isinstance(part, BodyPartReader) or part.name is None:
            continue
        chunks, size = [], 0
        while chunk := await part.read_chunk():
            size += len(chunk)
            if size > MAX_FILE_BYTES:
                raise InvalidRequest(f"File exceeds the maximum size of {MAX_FILE_BYTES} bytes.")
            chunks.append(chunk)
        data = b"".join(chunks)
        if part.name == "file":
            filename, content = part.filename or "upload", data
        else:
            fields[part.name] = data.decode("utf-8", "replace")
    return fields, filename, content


async def handle_file_create(request: web.Request, state: SimulatorState) -> web.Response:
    try:
        fields, filename, content = await _read_upload(request)
    except InvalidRequest as exc:
        return _bad(exc.message, "file")
    purpose = fields.get("purpose")
    if purpose is None:
        return _bad("Missing required parameter: 'purpose'.", "purpose")
    if purpose not in FILE_PURPOSES:
        allowed = ", ".join(f"'{p}'" for p in FILE_PURPOSES)
        return _bad(f"Invalid value for 'purpose': '{purpose}'. Expected one of {allowed}.")
    if not filename:
        return _bad("Missing required parameter: 'file'.", "file")
    if purpose == "batch" and not filename.endswith(".jsonl"):
        return _bad("Invalid file format for Batch API. Must be .jsonl", "file")
    key = bearer_token(request.headers.get("Authorization"))
    stored = _store(state).add_file(filename, purpose, content, key)
    return web.json_response(_file_json(stored, len(content)))


def _stored(state: SimulatorState, request: web.Request) -> StoredFile | None:
    return _store(state).files.get(request.match_info["file_id"])


async def handle_file_get(request: web.Request, state: SimulatorState) -> web.Response:
    stored = _stored(state, request)
    if stored is None:
        return _no_such("File object", request.match_info["file_id"])
    return web.json_response(_file_json(stored, len(_content(state, stored))))


async def handle_file_list(request: web.Request, state: SimulatorState) -> web.Response:
    limit = _limit(request, 10_000, 10_000)
    if limit is None:
        return _bad("Invalid 'limit': expected an integer from 1 to 10000.", "limit")
    purpose = request.query.get("purpose")
    files = [f for f in _store(state).files.values() if purpose in (None, f.purpose)]
    if request.query.get("order", "desc") != "asc":
        files.reverse()
    chosen, more = page(files, request.query.get("after"), None, limit)
    data = [_file_json(f, len(_content(state, f))) for f in chosen]
    return web.json_response(_list_body(data, more))


async def handle_file_content(request: web.Request, state: SimulatorState) -> web.Response:
    stored = _stored(state, request)
    if stored is None:
        return _no_such("File object", request.match_info["file_id"])
    return web.Response(body=_content(state, stored), content_type="application/octet-stream")


async def handle_file_delete(request: web.Request, state: SimulatorState) -> web.Response:
    stored = _store(state).files.pop(request.match_info["file_id"], None)
    if stored is None:
        return _no_such("File object", request.match_info["file_id"])
    return web.json_response({"id": stored.id, "object": "file", "deleted": True})


# -- input lines -----------------------------------------------------------------


def batch_json(record: BatchRecord) -> dict[str, Any]:
    """The Batch object as it stands (refresh the record first)."""
    status = record.status
    ended_wall = int(record.wall(record.ended_at)) if record.ended_at is not None else None
    succeeded = [item for item in record.items if item.status == "succeeded"]
    prompt = sum(item.prompt_tokens for item in succeeded)
    output = sum(item.output_tokens for item in succeeded)
    # Validation ended (the in_progress phase began) unless it failed or a cancel came first.
    until = record.ended_at if record.ended_at is not None else time.monotonic()
    validated = record.created_at + 0.1 * record.behaviour.turnaround
    cancel_mono = record.cancel_requested_at
    if cancel_mono is not None:
        until = min(until, cancel_mono)
    started = status != "failed" and until >= validated
    return {
        "id": record.id,
        "object": "batch",
        "endpoint": record.endpoint,
        "model": record.model or None,
        "errors": {"object": "list", "data": record.errors} if record.errors else None,
        "input_file_id": record.input_file_id,
        "completion_window": "24h",
        "status": status,
        "output_file_id": record.output_file_id,
        "error_file_id": record.error_file_id,
        "created_at": int(record.created_wall),
        "in_progress_at": record.offset_wall(0.1) if started else None,
        "expires_at": int(record.expires_wall()),
        "finalizing_at": record.offset_wall(0.9) if status in ("finalizing", "completed") else None,
        "completed_at": ended_wall if status == "completed" else None,
        "failed_at": ended_wall if status == "failed" else None,
        "expired_at": ended_wall if status == "expired" else None,
        "cancelling_at": int(record.wall(cancel_mono)) if cancel_mono is not None else None,
        "cancelled_at": ended_wall if status == "cancelled" else None,
        "request_counts": {
            "total": len(record.items),
            "completed": len(succeeded),
            "failed": record.count("errored", "canceled", "expired"),
        },
        "usage": {
            "input_tokens": prompt,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": output,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": prompt + output,
        },
        "metadata": record.metadata,
    }


def _check_metadata(metadata: Any) -> str | None:
    if metadata is None:
        return None
    if not isinstance(metadata, dict):
        return "Invalid 'metadata': expected an object."
    if len(metadata) > 16:
        return f"Invalid 'metadata': at most 16 properties, got {len(metadata)}."
    for key, value in metadata.items():
        if len(key) > 64:
            return f"Invalid 'metadata': key '{key[:64]}...' is longer than 64 characters."
        if not isinstance(value, str) or len(value) > 512:
            return f"Invalid 'metadata.{key}': expected a string of at most 512 characters."
    return None


async def handle_batch_create(request: web.Request, state: SimulatorState) -> web.Response:
    try:
        body = await request.json()
    except ValueError:
        return _bad("We could not parse the JSON body of your request.")
    if not isinstance(body, dict):
        return _bad("The request body must be a JSON object.")
    for param in ("input_file_id", "endpoint", "completion_window"):
        if not isinstance(body.get(param), str):
            return _bad(f"Missing required parameter: '{param}'.", param)
    endpoint = body["endpoint"]
    if endpoint not in ENDPOINTS:
        allowed = " and ".join(f"'{e}'" for e in ENDPOINTS)
        return _bad(f"Invalid value for 'endpoint': the simulator supports {allowed}.", "endpoint")
    if body["completion_window"] != "24h":
        return _bad(
            f"Invalid value for 'completion_window': '{body['completion_window']}'. "
            "Supported values are: '24h'.",
            "completion_window",
        )
    problem = _check_metadata(body.get("metadata"))
    if problem is not None:
        return _bad(problem, "metadata")
    store = _store(state)
    stored = store.files.get(body["input_file_id"])
    if stored is None:
        return _no_such("File object", body["input_file_id"])
    if stored.purpose != "batch":
        return _bad(
            f"Invalid 'input_file_id': '{stored.id}'. The file must be uploaded with purpose "
            "'batch'.",
            "input_file_id",
        )
    record = BatchRecord(
        id=store.new_id("batch_sim"),
        api="openai",
        endpoint=endpoint,
        api_key=bearer_token(request.headers.get("Authorization")),
        behaviour=store.behaviour,
        items=[],
        created_at=time.monotonic(),
        created_wall=time.time(),
        metadata=body.get("metadata"),
        input_file_id=stored.id,
    )
    read_lines(state, record, stored.content)
    if record.behaviour.outcome == "failed" and not record.errors:
        record.errors.append(dict(FAILED_ERROR))
        record.items = []
    store.refresh(store.add(record))
    state.notify()
    return web.json_response(batch_json(record))


def _batch(state: SimulatorState, request: web.Request) -> BatchRecord | None:
    return _store(state).get(request.match_info["batch_id"], "openai")


async def handle_batch_get(request: web.Request, state: SimulatorState) -> web.Response:
    record = _batch(state, request)
    if record is None:
        return _no_such("batch", request.match_info["batch_id"])
    await record.hold_status_request()
    return web.json_response(batch_json(record))


async def handle_batch_list(request: web.Request, state: SimulatorState) -> web.Response:
    """Newest first; ``after`` is the id of the last batch of the previous page."""
    limit = _limit(request, 100, 20)
    if limit is None:
        return _bad("Invalid 'limit': expected an integer from 1 to 100.", "limit")
    records = _store(state).newest_first("openai")
    chosen, more = page(records, request.query.get("after"), None, limit)
    return web.json_response(_list_body([batch_json(r) for r in chosen], more))


async def handle_batch_cancel(request: web.Request, state: SimulatorState) -> web.Response:
    """Idempotent while cancelling or cancelled; a batch that ended otherwise is a 400."""
    record = _batch(state, request)
    if record is None:
        return _no_such("batch", request.match_info["batch_id"])
    if record.ended and record.status != "cancelled":
        return _bad(f"Cannot cancel a batch with status '{record.status}'.")
    if not record.cancel_requested:
        record.cancel_requested_at = time.monotonic()
        _store(state).refresh(record)
        state.notify()
    return web.json_response(batch_json(record))
