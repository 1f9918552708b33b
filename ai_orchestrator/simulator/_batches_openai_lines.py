"""OpenAI batch lines: reading an input file, answering each line, writing the results.

The batch's *validation* (not the upload) reads the lines, as OpenAI's does: a
line that is not JSON, has no ``custom_id`` or repeats one, uses a method other
than POST or a ``url`` other than the batch's endpoint, has no ``body.model``
or names a second model fails the whole batch, with ``errors.data`` naming the
code and line. A line whose body the endpoint would reject otherwise (no
messages) fails on its own, as a 400 in the error file. Each answer is what the
endpoint (``/v1/chat/completions`` or ``/v1/responses``) would answer live.

The error file also lists what a batch did not get to: ``batch_expired`` (the
code OpenAI documents) for an expired batch and ``batch_cancelled`` (by
analogy) for a cancelled one.
"""

from __future__ import annotations

import json
from typing import Any

from . import _responses_shapes as responses_shapes
from ._batch_state import BatchItem, BatchRecord
from ._errors import error_body, status_error
from ._params import InvalidRequest, parse_chat_params
from ._payloads import completion, usage
from ._responder import answer_size
from ._state import SimulatorState
from ._text import count_prompt_words, simulated_tokens

MAX_REQUESTS = 50_000
MAX_REPORTED_ERRORS = 50
#: What a batch scripted with ``outcome="failed"`` reports, as OpenAI's enqueued-token limit does.
FAILED_ERROR = {
    "code": "token_limit_exceeded",
    "message": "Enqueued token limit reached for this model in organization org-simulated "
    "(simulated). Please try again once some in_progress batches have been completed.",
    "param": None,
    "line": None,
}
_NOT_RUN = "This request could not be executed before the "
_LEFTOVER_ERRORS = {
    "expired": ("batch_expired", _NOT_RUN + "completion window expired."),
    "canceled": ("batch_cancelled", _NOT_RUN + "batch was cancelled."),
}


def _line_error(
    code: str, message: str, line: int | None, param: str | None = None
) -> dict[str, Any]:
    return {"code": code, "message": message, "param": param, "line": line}


def _missing(param: str, line: int) -> dict[str, Any]:
    message = f"Missing required parameter: '{param}'."
    return _line_error("missing_required_parameter", message, line, param)


def _answer(
    endpoint: str, body: dict[str, Any], state: SimulatorState, answer_id: str
) -> BatchItem:
    """The item's live answer (``created`` times are stamped when it is rendered)."""
    if endpoint == "/v1/responses":
        r_params = responses_shapes.parse_params(body)
        n, reason = state.default_tokens, None
        if r_params.max_output_tokens is not None and r_params.max_output_tokens < n:
            n, reason = r_params.max_output_tokens, "max_output_tokens"
        messages, model = r_params.messages, r_params.model
        text = "".join(simulated_tokens(messages, model, n, state.text_style))
        prompt = count_prompt_words(messages)
        status = "incomplete" if reason else "completed"
        answer = responses_shapes.response_object(
            response_id=f"resp_{answer_id}",
            created_at=0,
            model=model,
            status=status,
            background=False,
            store=r_params.store,
            instructions=r_params.instructions,
            max_output_tokens=r_params.max_output_tokens,
            temperature=r_params.temperature,
            output=[responses_shapes.message_item(f"msg_{answer_id}", status, text)],
            usage_=responses_shapes.usage(prompt, n),
            incomplete_reason=reason,
            completed_at=0,
        )
    else:
        params = parse_chat_params(body)
        n, cut = answer_size(params.max_tokens, state.default_tokens)
        messages, model = params.messages, params.model
        text = "".join(simulated_tokens(messages, model, n, state.text_style))
        prompt = count_prompt_words(messages)
        finish = "length" if cut else "stop"
        answer = completion(0, 0, model, text, finish, usage(prompt, n))
        answer["id"] = f"chatcmpl-{answer_id}"
    return BatchItem("", model, prompt, n, answer)


def _item(
    state: SimulatorState, record: BatchRecord, endpoint: str, custom_id: str, body: dict[str, Any]
) -> BatchItem:
    behaviour = state.batches.behaviour
    answer_id = f"{record.id}_{len(record.items)}"
    try:
        item = _answer(endpoint, body, state, answer_id)
    except InvalidRequest as exc:
        item = BatchItem("", body["model"])
        item.error = error_body(exc.message, "invalid_request_error", None, exc.param)
        item.error_status = 400
    if item.error is None and behaviour.errs(custom_id):
        item.error = status_error(behaviour.error_status, None, None)
        item.error_status = behaviour.error_status
    item.custom_id = custom_id
    return item


def _check_line(
    line_no: int, text: str, endpoint: str, seen: set[str], models: set[str]
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The parsed line, or the validation error it earns."""
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        return None, _line_error(
            "invalid_json_line", "This line is not parseable as valid JSON.", line_no
        )
    custom_id = data.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        return None, _missing("custom_id", line_no)
    if custom_id in seen:
        message = (
            "The custom_id for this request is a duplicate of another request. "
            "The custom_id parameter must be unique for each request in a batch."
        )
        return None, _line_error("duplicate_custom_id", message, line_no, "custom_id")
    seen.add(custom_id)
    if data.get("method") != "POST":
        message = "The method provided for this request is not supported. Only POST is supported."
        return None, _line_error("invalid_method", message, line_no, "method")
    if data.get("url") != endpoint:
        message = "The URL provided for this request does not match the batch endpoint."
        return None, _line_error("invalid_url", message, line_no, "url")
    body = data.get("body")
    model = body.get("model") if isinstance(body, dict) else None
    if not isinstance(model, str) or not model:
        return None, _missing("body.model", line_no)
    if models and model not in models:
        message = (
            f"The provided model '{model}' does not match the model '{next(iter(models))}' "
            "of other requests in this batch. A batch may use only one model."
        )
        return None, _line_error("mismatched_model", message, line_no, "body.model")
    models.add(model)
    return data, None


def read_lines(state: SimulatorState, record: BatchRecord, content: bytes) -> None:
    """Fill the record's items, or its validation errors."""
    try:
        lines = content.decode("utf-8").splitlines()
    except UnicodeDecodeError:
        record.errors.append(_line_error("invalid_file", "The file is not valid UTF-8.", None))
        return
    seen: set[str] = set()
    models: set[str] = set()
    for line_no, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        data, error = _check_line(line_no, text, record.endpoint, seen, models)
        if error is not None:
            if len(record.errors) < MAX_REPORTED_ERRORS:
                record.errors.append(error)
            continue
        if not record.errors:
            assert data is not None
            item = _item(state, record, record.endpoint, data["custom_id"], data["body"])
            record.items.append(item)
    if not seen and not record.errors:
        record.errors.append(_line_error("empty_file", "The batch input file is empty.", None))
    elif len(seen) > MAX_REQUESTS:
        message = f"The batch input file has more than the maximum of {MAX_REQUESTS} requests."
        record.errors.append(_line_error("too_many_tasks", message, None))
    if record.errors:
        record.items = []
    record.model = next(iter(models), "")


def render_results(record: BatchRecord, kind: str) -> bytes:
    """The output file (``kind="output"``: answers) or the error file, as JSONL."""
    lines = []
    for i, item in enumerate(record.items):
        if (item.status == "succeeded") != (kind == "output") or item.status == "processing":
            continue
        serial = f"{record.id.removeprefix('batch_')}_{i}"
        line: dict[str, Any] = {"id": f"batch_req_{serial}", "custom_id": item.custom_id}
        request_id = f"req_{serial}"
        if item.status in ("succeeded", "errored"):
            body = item.error
            if item.status == "succeeded":
                assert item.answer is not None and item.answered_at is not None
                stamp = int(record.wall(item.answered_at))
                stamps = {"created_at": stamp, "completed_at": stamp}
                if record.endpoint != "/v1/responses":
                    stamps = {"created": stamp}
                body = {**item.answer, **stamps}
            status = 200 if item.status == "succeeded" else item.error_status
            line["response"] = {"status_code": status, "request_id": request_id, "body": body}
            line["error"] = None
        else:
            code, message = _LEFTOVER_ERRORS[item.status]
            line["response"] = None
            line["error"] = {"code": code, "message": message}
        lines.append(json.dumps(line, separators=(",", ":")) + "\n")
    return "".join(lines).encode()
