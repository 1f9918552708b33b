"""OpenAI's Files + Batch APIs behind :class:`BatchProvider`.

A batch is one JSONL file of Chat Completions requests (built by
:func:`ai_orchestrator.providers.openai_chat.request_params`, as a live call
builds them), uploaded with ``purpose="batch"`` and run by ``batches.create``.
Results are two JSONL files, answers and errors, streamed line by line.

Idempotent submission. The batch carries ``metadata={"ai_orchestrator_tag":
tag}`` and its input file the name :func:`input_file_name` (``tag``). A
``submit()`` first lists batches newest first (paging until ``since`` less a
minute of clock skew, or to the end without it) and returns the one whose
metadata carries ``tag``; so a worker killed after ``batches.create`` returned
finds its batch on retry, exactly, whatever else the organisation runs. Before
uploading it looks for an input file of the same name and size, so a worker
killed between upload and create does not upload twice. What is not covered:
a create still in flight when the retry lists (the retry comes after Temporal's
backoff, and listing is assumed to read its own writes); a batch that failed
validation is passed over (it ran nothing), so a later submit makes a new one;
the same tag with other items adopts the first batch (tags are unique per
batch of ours). The tag settles it, so :class:`BatchLookupPending` is never
raised here. OpenAI runs one model per batch: items for two models raise.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx2
from openai import APIError, APIStatusError, AsyncOpenAI
from openai.types import Batch

from ..core import Platform
from ..errors import classify, redact
from ..messages import Usage
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
    STATUS_FINALIZING,
    STATUS_IN_PROGRESS,
    STATUS_VALIDATING,
    BatchItem,
    BatchNotEnded,
    ItemResult,
    ProviderBatchState,
    check_items,
    check_tag,
)
from .openai_chat import request_params

ENDPOINT = "/v1/chat/completions"
#: The batch metadata key that carries our tag.
TAG_KEY = "ai_orchestrator_tag"
MAX_REQUESTS = 50_000
MAX_FILE_BYTES = 200 * 1024 * 1024
#: Whole-batch errors quoted in :attr:`ProviderBatchState.error`.
_MAX_QUOTED_ERRORS = 3

_STATUSES: dict[str, tuple[str, str | None]] = {
    "validating": (STATUS_VALIDATING, None),
    "in_progress": (STATUS_IN_PROGRESS, None),
    "finalizing": (STATUS_FINALIZING, None),
    "cancelling": (STATUS_CANCELLING, None),
    "completed": (STATUS_ENDED, OUTCOME_COMPLETED),
    "failed": (STATUS_ENDED, OUTCOME_FAILED),
    "expired": (STATUS_ENDED, OUTCOME_EXPIRED),
    "cancelled": (STATUS_ENDED, OUTCOME_CANCELLED),
}
#: Error-file codes of requests the batch never ran (``batch_cancelled`` by analogy).
_NOT_RUN = {
    "batch_expired": (ITEM_EXPIRED, True),
    "batch_cancelled": (ITEM_CANCELLED, False),
    "batch_canceled": (ITEM_CANCELLED, False),
}
_SLUG = re.compile(r"[^A-Za-z0-9_.-]")
# Item errors are judged by classify(), which reads SDK exceptions: one is made per item.
_ITEM_REQUEST = httpx2.Request("POST", "https://api.openai.com/v1/chat/completions")


def request_line(item: BatchItem) -> dict[str, Any]:
    """One line of the input file: the live call's request, without streaming."""
    params = request_params(item.task, item.model)
    params["model"] = item.model
    for key in ("stream", "stream_options"):
        params.pop(key, None)
    extra = params.pop("extra_body", None) or {}
    body = {**params, **extra}
    return {"custom_id": item.custom_id, "method": "POST", "url": ENDPOINT, "body": body}


def encode_input(items: Sequence[BatchItem]) -> bytes:
    lines = (json.dumps(request_line(i), ensure_ascii=False, separators=(",", ":")) for i in items)
    return "".join(line + "\n" for line in lines).encode("utf-8")


def input_file_name(tag: str) -> str:
    """``ai-orchestrator-<tag, file-safe>-<10 hex of the tag>.jsonl``: one name per tag."""
    digest = hashlib.sha256(tag.encode("utf-8")).hexdigest()[:10]
    return f"ai-orchestrator-{_SLUG.sub('_', tag)}-{digest}.jsonl"


def batch_state(batch: Batch, *secrets: str | None) -> ProviderBatchState:
    status, outcome = _STATUSES.get(batch.status, (STATUS_IN_PROGRESS, None))
    counts = batch.request_counts
    total = counts.total if counts else 0
    succeeded = counts.completed if counts else 0
    errored = counts.failed if counts else 0
    error = None
    if batch.errors and batch.errors.data:
        quoted = [
            f"{e.code or 'error'}: {e.message or ''}" + (f" (line {e.line})" if e.line else "")
            for e in batch.errors.data[:_MAX_QUOTED_ERRORS]
        ]
        more = len(batch.errors.data) - len(quoted)
        error = redact("; ".join(quoted) + (f"; and {more} more" if more > 0 else ""), *secrets)
    return ProviderBatchState(
        id=batch.id,
        status=status,
        outcome=outcome,
        total=total,
        succeeded=succeeded,
        errored=errored,
        processing=0 if status == STATUS_ENDED else max(0, total - succeeded - errored),
        vendor_status=batch.status,
        error=error,
        created_at=float(batch.created_at),
    )


def _usage(raw: Any) -> Usage | None:
    if not isinstance(raw, dict):
        return None
    prompt = int(raw.get("prompt_tokens") or 0)
    completion = int(raw.get("completion_tokens") or 0)
    total = int(raw.get("total_tokens") or prompt + completion)
    return Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=total)


def _failed(custom_id: str, exc: APIError, message: str | None, *secrets: str | None) -> ItemResult:
    """An errored item, judged by :func:`classify` as the same error from a live call."""
    verdict = classify(exc)
    return ItemResult(
        custom_id=custom_id,
        kind=ITEM_ERRORED,
        error=redact(message or verdict.message, *secrets),
        error_type=verdict.error_type,
        retryable=verdict.retryable,
    )


def result_from_line(line: dict[str, Any], *secrets: str | None) -> ItemResult:
    """One line of an output or error file as an :class:`ItemResult`.

    Lines are ``{"custom_id", "response": {"status_code", "request_id", "body"},
    "error"}``; a request the batch never ran has no response and an ``error``
    of ``batch_expired`` (or ``batch_cancelled``).
    """
    custom_id = str(line.get("custom_id") or "")
    response = line.get("response")
    if isinstance(response, dict):
        status = int(response.get("status_code") or 500)
        body = response.get("body")
        if status == 200 and isinstance(body, dict):
            choices = [c for c in body.get("choices") or () if c.get("index", 0) == 0]
            choice = choices[0] if choices else {}
            finish = choice.get("finish_reason")
            return ItemResult(
                custom_id=custom_id,
                kind=ITEM_SUCCEEDED,
                text=(choice.get("message") or {}).get("content") or "",
                usage=_usage(body.get("usage")),
                finish_reason=finish,
                vendor_finish_reason=finish,
                model=str(body.get("model") or ""),
            )
        rid = response.get("request_id")
        headers = {"x-request-id": str(rid)} if rid else {}
        http = httpx2.Response(status, headers=headers, request=_ITEM_REQUEST)
        exc = APIStatusError(f"HTTP {status}", response=http, body=body)
        return _failed(custom_id, exc, None, *secrets)
    error = line.get("error") if isinstance(line.get("error"), dict) else {}
    code = str(error.get("code") or "")
    message = f"{code or 'error'}: {error.get('message') or ''}"
    if code in _NOT_RUN:
        kind, retryable = _NOT_RUN[code]
        return ItemResult(
            custom_id=custom_id, kind=kind, error=redact(message, *secrets), retryable=retryable
        )
    # No status: judged by its code, as an error event inside a stream is.
    exc = APIError(message, _ITEM_REQUEST, body=error)
    return _failed(custom_id, exc, message, *secrets)


class OpenAIBatches:
    """:class:`BatchProvider` over OpenAI's Batch API (or a server that speaks it).

    Args:
        client: an ``AsyncOpenAI`` with ``max_retries=0`` (checked): Temporal retries.
    """

    platform = Platform.CHATGPT

    def __init__(self, client: AsyncOpenAI) -> None:
        if client.max_retries != 0:
            raise ValueError(
                "the openai client must have max_retries=0: Temporal is the only retry layer"
            )
        self._client = client
        self._secrets = (client.api_key,)

    async def submit(
        self, items: Sequence[BatchItem], tag: str, *, since: float | None = None
    ) -> str:
        """The id of the batch tagged ``tag``: found (see the module docstring) or created.

        Raises:
            ValueError: no items, too many, repeated custom_ids, two models, a file
                over 200 MB, or a tag that is not 1-64 printable characters.
        """
        found = check_items(items, MAX_REQUESTS, "OpenAI")
        check_tag(tag)
        models = sorted({item.model for item in found})
        if len(models) > 1:
            raise ValueError(f"an OpenAI batch runs one model, these items name {models}")
        content = encode_input(found)
        if len(content) > MAX_FILE_BYTES:
            raise ValueError(f"the batch file is {len(content)} bytes, OpenAI takes at most 200 MB")
        existing = await self.find(tag, since=since)
        if existing is not None:
            return existing
        file_id = await self._input_file(tag, content, since)
        batch = await self._client.batches.create(
            input_file_id=file_id,
            endpoint=ENDPOINT,
            completion_window="24h",
            metadata={TAG_KEY: tag},
        )
        return batch.id

    async def _input_file(self, tag: str, content: bytes, since: float | None) -> str:
        """An uploaded file of this tag's name and size, else a new upload."""
        name = input_file_name(tag)
        async for stored in self._client.files.list(purpose="batch", order="desc"):
            if since is not None and stored.created_at < since - CLOCK_SKEW_SECONDS:
                break
            if stored.filename == name and stored.bytes == len(content):
                return stored.id
        uploaded = await self._client.files.create(
            file=(name, content, "application/jsonl"), purpose="batch"
        )
        return uploaded.id

    async def find(
        self,
        tag: str,
        *,
        since: float | None = None,
        items: Sequence[BatchItem] | None = None,
    ) -> str | None:
        """The newest batch whose metadata carries ``tag`` and that did not fail
        validation, created at or after ``since`` (less the clock skew allowance;
        None: any). ``items`` is not needed here: the tag alone identifies a batch."""
        check_tag(tag)
        async for batch in self._client.batches.list(limit=100):
            if since is not None and batch.created_at < since - CLOCK_SKEW_SECONDS:
                return None
            if (batch.metadata or {}).get(TAG_KEY) == tag and batch.status != "failed":
                return batch.id
        return None

    async def state(self, batch_id: str) -> ProviderBatchState:
        return batch_state(await self._client.batches.retrieve(batch_id), *self._secrets)

    async def results(self, batch_id: str, *, skip: int = 0) -> AsyncIterator[ItemResult]:
        """The output file's lines, then the error file's, from position ``skip``.

        Each file is streamed (never held whole); a file's order is fixed once the
        batch has ended, so positions are stable across readers.
        """
        batch = await self._client.batches.retrieve(batch_id)
        if _STATUSES.get(batch.status, ("", None))[0] != STATUS_ENDED:
            raise BatchNotEnded(f"batch {batch_id} is {batch.status}: it has no results yet")
        position = 0
        for file_id in (batch.output_file_id, batch.error_file_id):
            if not file_id:
                continue
            async with self._client.files.with_streaming_response.content(file_id) as response:
                async for text in response.iter_lines():
                    if not text.strip():
                        continue
                    if position >= skip:
                        yield result_from_line(json.loads(text), *self._secrets)
                    position += 1

    async def cancel(self, batch_id: str) -> None:
        try:
            await self._client.batches.cancel(batch_id)
        except APIStatusError as exc:
            if exc.status_code not in (400, 409):
                raise
            batch = await self._client.batches.retrieve(batch_id)
            if batch.status not in ("cancelling", "cancelled", "completed", "failed", "expired"):
                raise

    async def aclose(self) -> None:
        await self._client.close()
