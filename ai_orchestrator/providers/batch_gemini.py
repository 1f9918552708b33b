"""Gemini's Batch API (Gemini Developer API, inlined requests) behind :class:`BatchProvider`.

Each item is an ``InlinedRequest`` holding what a live call sends
(:func:`ai_orchestrator.providers.gemini.request_config`: contents, system
instruction, ``max_output_tokens``, ``temperature``), with ``metadata={"key":
custom_id}``; all go in one ``batches.create(model=..., src=[...])``. Inlined
requests must fit in one request body of 20 MB (Google answers 400 past
20,971,520 bytes), so a bigger batch is refused before anything is sent. The
file source (``files/...``) and Vertex AI are not used.

Idempotent submission. The batch's ``display_name`` is the tag. ``find()`` lists
every batch of the key (all pages: the API does not document the list's order,
so nothing is cut short) and returns the newest whose display name is the tag,
created at or after ``since`` less a minute of clock skew, passing over a
``JOB_STATE_FAILED`` one (it ran nothing, so a new submit makes a new batch, as
OpenAI's adapter does). So a worker killed after ``create`` returned finds its
batch on retry. Not covered: a create still in flight when the retry lists; the
same tag with other items adopts the first batch (tags are unique per batch of
ours). :class:`BatchLookupPending` is never raised here.

Matching answers to items. Results come back in ``dest.inlined_responses``,
"in the same order as the input requests" (the API's contract, kept by the
simulator), not keyed by custom_id. Each response's ``metadata["key"]`` is
preferred (the SDK and the simulator carry a request's metadata back; Google's
API has been reported to drop it). Without it, position decides, against the
custom_ids this adapter object itself sent in that batch, and only if the
counts agree: a batch found again rather than created, or read by another
process, has no such record (its items may differ from the ones sent). An
answer that neither names is yielded with an empty custom_id, so the caller
matches it to no task and the task is answered in real time rather than given
someone else's answer.

What google-genai shows of a Gemini API batch: name, display name, state and
times, and once ended the inlined responses. It drops the batch's request
counts and the reason a batch failed, so counts are reported from the responses
once the batch has ended (0 before), and a failed batch's ``error`` says only
that it failed. An item's error is a ``google.rpc.Status`` whose ``code`` may be
a gRPC code (mapped to its HTTP status) or an HTTP status (the simulator's); it
is judged by :func:`classify` as the same error from a live call.
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from typing import Any

from ..core import Platform
from ..errors import IncompleteStreamError, classify, redact
from ..messages import Usage
from ._base import FINISH_STOP
from ._batch_types import (
    CLOCK_SKEW_SECONDS,
    ITEM_CANCELLED,
    ITEM_ERRORED,
    ITEM_EXPIRED,
    ITEM_SUCCEEDED,
    OUTCOME_CANCELLED,
    OUTCOME_COMPLETED,
    OUTCOME_EXPIRED,
    OUTCOME_FAILED,
    STATUS_CANCELLING,
    STATUS_ENDED,
    STATUS_IN_PROGRESS,
    STATUS_VALIDATING,
    BatchItem,
    BatchNotEnded,
    ItemResult,
    ProviderBatchState,
    check_items,
    check_tag,
)
from .gemini import _FINISH, request_config

try:
    from google import genai
    from google.genai import errors as genai_errors
    from google.genai import types
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "Gemini batches need the google-genai SDK: pip install 'temporal-ai-orchestrator[gemini]'"
    ) from exc

logger = logging.getLogger(__name__)

MAX_REQUESTS = 100_000
#: Google's limit on a request body, which holds every inlined request.
MAX_INLINE_BYTES = 20 * 1024 * 1024
#: The request metadata field that carries our custom_id.
KEY = "key"
#: Bytes the wire form adds to each request over its ``model_dump`` (the
#: ``request`` wrapper, the system instruction as a Content): measured at 23 to 62.
WIRE_OVERHEAD_BYTES = 128
#: Batches whose sent custom_ids are remembered for matching answers by position.
_REMEMBERED = 256
_PAGE_SIZE = 100

_STATES: dict[str, tuple[str, str | None]] = {
    "JOB_STATE_QUEUED": (STATUS_VALIDATING, None),
    "JOB_STATE_PENDING": (STATUS_VALIDATING, None),
    "JOB_STATE_RUNNING": (STATUS_IN_PROGRESS, None),
    "JOB_STATE_UPDATING": (STATUS_IN_PROGRESS, None),
    "JOB_STATE_PAUSED": (STATUS_IN_PROGRESS, None),
    "JOB_STATE_CANCELLING": (STATUS_CANCELLING, None),
    "JOB_STATE_SUCCEEDED": (STATUS_ENDED, OUTCOME_COMPLETED),
    "JOB_STATE_PARTIALLY_SUCCEEDED": (STATUS_ENDED, OUTCOME_COMPLETED),
    "JOB_STATE_FAILED": (STATUS_ENDED, OUTCOME_FAILED),
    "JOB_STATE_CANCELLED": (STATUS_ENDED, OUTCOME_CANCELLED),
    "JOB_STATE_EXPIRED": (STATUS_ENDED, OUTCOME_EXPIRED),
}
#: google.rpc.Code → the HTTP status a live call gets with it.
_GRPC_HTTP = {
    1: 499, 2: 500, 3: 400, 4: 504, 5: 404, 6: 409, 7: 403, 8: 429,
    9: 400, 10: 409, 11: 400, 12: 501, 13: 500, 14: 503, 15: 500, 16: 401,
}  # fmt: skip
_CANCELLED_STATUS = 499
_DEADLINE_STATUS = 504


def inlined_request(item: BatchItem) -> types.InlinedRequest:
    """One item as the live call's contents and config, keyed by its custom_id."""
    contents, config = request_config(item.task)
    return types.InlinedRequest(contents=contents, config=config, metadata={KEY: item.custom_id})


def encoded_size(requests: Sequence[types.InlinedRequest], tag: str) -> int:
    """An upper bound on the bytes of ``batchGenerateContent``'s body, as the SDK
    encodes it (``json.dumps`` with its defaults)."""
    dumped = [r.model_dump(mode="json", by_alias=True, exclude_none=True) for r in requests]
    body = {"batch": {"displayName": tag, "inputConfig": {"requests": {"requests": dumped}}}}
    return len(json.dumps(body).encode("utf-8")) + WIRE_OVERHEAD_BYTES * len(requests)


def vendor_state(job: types.BatchJob) -> str:
    """The job's state as ``JOB_STATE_*`` (the SDK renames ``BATCH_STATE_*``; an
    unknown one it passes through is renamed here)."""
    raw = getattr(job.state, "value", job.state)
    name = str(raw or "JOB_STATE_UNSPECIFIED")
    return "JOB_STATE_" + name.removeprefix("BATCH_STATE_") if name.startswith("BATCH_") else name


def _http_status(code: int | None) -> int:
    code = int(code or 0)
    return _GRPC_HTTP.get(code, 500) if 0 < code < 100 else (code or 500)


def _not_run(error: types.JobError, outcome: str | None) -> str | None:
    """``cancelled`` or ``expired`` for a request the batch never ran; else None."""
    status = _http_status(error.code)
    if status == _CANCELLED_STATUS:
        return ITEM_CANCELLED
    if status == _DEADLINE_STATUS and outcome == OUTCOME_EXPIRED:
        return ITEM_EXPIRED
    return None


def _kind(response: types.InlinedResponse, outcome: str | None) -> str:
    if response.error is not None:
        return _not_run(response.error, outcome) or ITEM_ERRORED
    return ITEM_SUCCEEDED if response.response is not None else ITEM_ERRORED


def batch_state(job: types.BatchJob, *secrets: str | None) -> ProviderBatchState:
    """The job's state; counts only once it has ended (see the module docstring)."""
    vendor = vendor_state(job)
    status, outcome = _STATES.get(vendor, (STATUS_IN_PROGRESS, None))
    kinds: list[str] = []
    if status == STATUS_ENDED and job.dest is not None:
        kinds = [_kind(r, outcome) for r in job.dest.inlined_responses or ()]
    error = None
    if outcome == OUTCOME_FAILED:
        error = f"Gemini says the batch failed ({vendor}) and gives no reason"
        if job.error is not None:
            error = redact(f"{vendor}: {job.error.code}: {job.error.message or ''}", *secrets)
    return ProviderBatchState(
        id=job.name or "",
        status=status,
        outcome=outcome,
        total=len(kinds),
        succeeded=kinds.count(ITEM_SUCCEEDED),
        errored=kinds.count(ITEM_ERRORED),
        processing=0,
        vendor_status=vendor,
        error=error,
        expired=kinds.count(ITEM_EXPIRED),
        cancelled=kinds.count(ITEM_CANCELLED),
        created_at=job.create_time.timestamp() if job.create_time else 0.0,
    )


def custom_ids(
    responses: Sequence[types.InlinedResponse], sent: Sequence[str] | None = None
) -> list[str]:
    """Each response's custom_id: its metadata key, else the id sent at its position
    (when ``sent`` has one id per response), else ``""`` (nobody's)."""
    by_position = list(sent) if sent is not None and len(sent) == len(responses) else None
    found = []
    for position, response in enumerate(responses):
        key = (response.metadata or {}).get(KEY)
        found.append(key or (by_position[position] if by_position else ""))
    return found


def _errored(custom_id: str, error: types.JobError, *secrets: str | None) -> ItemResult:
    """An errored request, judged by :func:`classify` as the same error from a live call."""
    status = _http_status(error.code)
    body = {"error": {"code": status, "message": error.message or ""}}
    verdict = classify(genai_errors.APIError(status, body))
    return ItemResult(
        custom_id=custom_id,
        kind=ITEM_ERRORED,
        error=redact(verdict.message, *secrets),
        error_type=verdict.error_type,
        retryable=verdict.retryable,
    )


def _incomplete(custom_id: str, why: str) -> ItemResult:
    """An answer without a finish reason, judged as a live stream that stopped so."""
    verdict = classify(IncompleteStreamError(why))
    return ItemResult(
        custom_id=custom_id,
        kind=ITEM_ERRORED,
        error=verdict.message,
        error_type=verdict.error_type,
        retryable=verdict.retryable,
    )


def result_from_response(
    custom_id: str,
    inlined: types.InlinedResponse,
    outcome: str | None = None,
    *secrets: str | None,
) -> ItemResult:
    """One inlined response as an :class:`ItemResult` (``outcome``: the batch's)."""
    if inlined.error is not None:
        kind = _not_run(inlined.error, outcome)
        if kind == ITEM_CANCELLED:
            message = "cancelled: the batch was cancelled before this request ran"
            return ItemResult(custom_id=custom_id, kind=kind, error=message)
        if kind == ITEM_EXPIRED:
            message = "expired: the batch's 24 hours ran out before this request ran"
            return ItemResult(custom_id=custom_id, kind=kind, error=message, retryable=True)
        return _errored(custom_id, inlined.error, *secrets)
    response = inlined.response
    if response is None:
        return _incomplete(custom_id, "Gemini's batch returned neither an answer nor an error")
    candidate = response.candidates[0] if response.candidates else None
    if candidate is None or candidate.finish_reason is None:
        feedback = response.prompt_feedback
        blocked = feedback.block_reason if feedback is not None else None
        why = f" (prompt blocked: {getattr(blocked, 'value', blocked)})" if blocked else ""
        return _incomplete(custom_id, f"Gemini's batch answer has no finish reason{why}")
    vendor = str(getattr(candidate.finish_reason, "value", candidate.finish_reason))
    parts = candidate.content.parts if candidate.content else None
    text = "".join(p.text for p in parts or () if p.text and not p.thought)
    usage = None
    meta = response.usage_metadata
    if meta is not None and meta.prompt_token_count is not None:
        prompt = meta.prompt_token_count or 0
        output = (meta.candidates_token_count or 0) + (meta.thoughts_token_count or 0)
        usage = Usage(prompt_tokens=prompt, completion_tokens=output, total_tokens=prompt + output)
    return ItemResult(
        custom_id=custom_id,
        kind=ITEM_SUCCEEDED,
        text=text,
        usage=usage,
        finish_reason=_FINISH.get(vendor, FINISH_STOP),
        vendor_finish_reason=vendor,
        model=response.model_version or "",
    )


def _retry_attempts(client: genai.Client) -> int | None:
    """The SDK's own retry attempts, if set (not public: read as ``limit_scope`` reads)."""
    api = getattr(client, "_api_client", None)
    options = getattr(getattr(api, "_http_options", None), "retry_options", None)
    attempts = getattr(options, "attempts", None)
    return attempts if isinstance(attempts, int) else None


class GeminiBatches:
    """:class:`BatchProvider` over the Gemini API's batch mode (or a server that speaks it).

    Args:
        client: a ``genai.Client`` in Gemini API mode (not Vertex AI: inlined
            requests are the Gemini API's), without SDK retries (Temporal retries).
    """

    platform = Platform.GEMINI

    def __init__(self, client: genai.Client) -> None:
        if client.vertexai:
            raise ValueError("Gemini batches take inlined requests: use the Gemini API, not Vertex")
        if (_retry_attempts(client) or 1) > 1:
            raise ValueError(
                "the genai client must retry once at most (HttpRetryOptions(attempts=1)): "
                "Temporal is the only retry layer"
            )
        self._client = client
        key = getattr(getattr(client, "_api_client", None), "api_key", None)
        self._secrets = (key if isinstance(key, str) else None,)
        self._sent: OrderedDict[str, tuple[str, ...]] = OrderedDict()

    async def submit(
        self, items: Sequence[BatchItem], tag: str, *, since: float | None = None
    ) -> str:
        """The name (``batches/...``) of the batch tagged ``tag``: found (see the
        module docstring) or created.

        Raises:
            ValueError: no items, repeated custom_ids, two models, a body over
                20 MB, or a tag that is not 1-64 printable characters.
        """
        found = check_items(items, MAX_REQUESTS, "Gemini")
        check_tag(tag)
        models = sorted({item.model for item in found})
        if len(models) > 1:
            raise ValueError(f"a Gemini batch runs one model, these items name {models}")
        requests = [inlined_request(item) for item in found]
        size = encoded_size(requests, tag)
        if size > MAX_INLINE_BYTES:
            raise ValueError(
                f"the batch's inlined requests take about {size:,} bytes; Gemini takes at "
                f"most 20 MB ({MAX_INLINE_BYTES:,} bytes) in one request: send fewer items"
            )
        existing = await self.find(tag, since=since)
        if existing is not None:
            return existing
        src: Any = requests
        job = await self._client.aio.batches.create(
            model=models[0], src=src, config=types.CreateBatchJobConfig(display_name=tag)
        )
        if not job.name:
            raise RuntimeError(f"Gemini created batch {tag!r} without naming it")
        self._remember(job.name, [item.custom_id for item in found])
        return job.name

    def _remember(self, name: str, ids: list[str]) -> None:
        self._sent[name] = tuple(ids)
        while len(self._sent) > _REMEMBERED:
            self._sent.popitem(last=False)

    async def find(
        self,
        tag: str,
        *,
        since: float | None = None,
        items: Sequence[BatchItem] | None = None,
    ) -> str | None:
        """The newest batch named ``tag`` that did not fail, created at or after
        ``since`` (less the clock skew allowance; None: any). ``items`` is not
        needed here: the tag alone identifies a batch."""
        check_tag(tag)
        floor = None if since is None else since - CLOCK_SKEW_SECONDS
        best: tuple[float, str] | None = None
        async for job in await self._client.aio.batches.list(config={"page_size": _PAGE_SIZE}):
            if job.display_name != tag or not job.name:
                continue
            created = job.create_time.timestamp() if job.create_time else 0.0
            if floor is not None and created < floor:
                continue
            if vendor_state(job) == "JOB_STATE_FAILED":
                continue
            if best is None or created > best[0]:
                best = (created, job.name)
        return best[1] if best else None

    async def state(self, batch_id: str) -> ProviderBatchState:
        return batch_state(await self._client.aio.batches.get(name=batch_id), *self._secrets)

    async def results(self, batch_id: str, *, skip: int = 0) -> AsyncIterator[ItemResult]:
        """Each inlined response, in request order, from position ``skip``.

        The answers are part of the batch itself (one ``get``), fixed once it has
        ended, so positions are stable across readers. A failed batch has none.
        """
        job = await self._client.aio.batches.get(name=batch_id)
        vendor = vendor_state(job)
        status, outcome = _STATES.get(vendor, (STATUS_IN_PROGRESS, None))
        if status != STATUS_ENDED:
            raise BatchNotEnded(f"batch {batch_id} is {vendor}: it has no results yet")
        dest = job.dest
        responses = (dest.inlined_responses if dest else None) or []
        if not responses and dest is not None and dest.file_name:
            raise RuntimeError(
                f"batch {batch_id}'s answers are in file {dest.file_name}; this adapter "
                "reads inlined answers only"
            )
        ids = custom_ids(responses, self._sent.get(batch_id))
        if "" in ids[skip:]:
            logger.warning(
                "batch %s: %d answers name no request (no metadata key, and this process "
                "did not send the batch): they are left unmatched",
                batch_id,
                ids[skip:].count(""),
            )
        for position in range(skip, len(responses)):
            yield result_from_response(ids[position], responses[position], outcome, *self._secrets)

    async def cancel(self, batch_id: str) -> None:
        try:
            await self._client.aio.batches.cancel(name=batch_id)
        except genai_errors.ClientError as exc:
            if exc.code not in (400, 409):
                raise
            job = await self._client.aio.batches.get(name=batch_id)
            if _STATES.get(vendor_state(job), ("", None))[0] != STATUS_ENDED:
                raise

    async def aclose(self) -> None:
        await self._client.aio.aclose()
