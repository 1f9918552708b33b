"""Anthropic's Message Batches API behind :class:`BatchProvider`.

Each request's ``params`` are what a live call sends
(:func:`ai_orchestrator.providers.anthropic.request_params`, without ``stream``,
its ``extra_body`` folded into the params). Results stream through the SDK's
``batches.results()``, one JSONL line at a time.

Idempotent submission, as far as the API allows. A Message Batch carries no
metadata: while it runs, all the API shows of it is its id, ``created_at`` and
its request count; its requests' ``custom_id`` s appear only in its results,
once it has ended. So each request's custom_id is sent with the tag's mark in
front (``<12 hex of sha256(tag)>_<custom_id>``, hence at most 51 characters of
ours), and :meth:`AnthropicBatches.results` takes it off again. A lookup lists
batches newest first, back to ``since`` less a minute of clock skew (without
``since``: 24 hours, the longest a batch runs), keeping those with as many
requests as ours:

* an *ended* one is ours exactly when its first result carries our mark (one
  line read); the first such is returned;
* a *running* one cannot be told from a stranger's of the same size. With
  ``since`` (a retry), :class:`BatchLookupPending` is raised instead of
  guessing: creating could pay twice, adopting could hand another batch's
  answers to our tasks. The retry after it ends decides exactly. Without
  ``since`` running batches are not looked at and a new batch is created.

Guaranteed: a batch is adopted only if its results carry our mark, so never a
stranger's (save a 48-bit hash collision); a worker killed after ``create``
returned, whose retry passes a ``since`` from before that create, gets its batch
back (after the batch ends, or at once if it has), never a second one. Not
guaranteed: a retry without ``since`` while the batch runs creates a second
batch; a create still in flight at Anthropic when the retry lists is not seen;
``since`` later than the create loses it.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx2

from ..core import Platform
from ..errors import classify, redact
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
    STATUS_CANCELLING,
    STATUS_ENDED,
    STATUS_IN_PROGRESS,
    BatchItem,
    BatchLookupPending,
    BatchNotEnded,
    ItemResult,
    ProviderBatchState,
    check_items,
    check_tag,
)
from ._tls import anthropic_http_client
from .anthropic import _STOP_REASONS, request_params

try:
    from anthropic import AnthropicError, APIError, APIStatusError, AsyncAnthropic
    from anthropic.types.messages import MessageBatch, MessageBatchIndividualResponse
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "Claude batches need the anthropic SDK: pip install 'temporal-ai-orchestrator[anthropic]'"
    ) from exc

MAX_REQUESTS = 100_000
#: Characters of the tag's mark in front of each custom_id (12 hex and ``_``).
MARK_CHARS = 13
MAX_CUSTOM_ID_CHARS = 64 - MARK_CHARS
#: How long a lookup that found a running candidate suggests waiting.
PENDING_RETRY_SECONDS = 60.0
#: How far back ``find()`` looks without ``since``: a batch ends within 24 hours.
LOOKBACK_SECONDS = 24 * 3600.0
_STATUSES = {
    "in_progress": STATUS_IN_PROGRESS,
    "canceling": STATUS_CANCELLING,
    "ended": STATUS_ENDED,
}
#: The HTTP status a live call gets with each error type, so classify() judges alike.
_ERROR_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "gateway_timeout_error": 504,
    "overloaded_error": 529,
}
_ITEM_REQUEST = httpx2.Request("POST", "https://api.anthropic.com/v1/messages")
_MARKED = re.compile(r"^[0-9a-f]{12}_")


def mark(tag: str) -> str:
    """The prefix every custom_id of the batch tagged ``tag`` carries at Anthropic."""
    return hashlib.sha256(tag.encode("utf-8")).hexdigest()[:12] + "_"


def unmarked(custom_id: str) -> str:
    """Our custom_id, from the one Anthropic has (a batch of ours carries a mark)."""
    return custom_id[MARK_CHARS:] if _MARKED.match(custom_id) else custom_id


def request(item: BatchItem, tag: str) -> dict[str, Any]:
    """One entry of ``batches.create(requests=...)``: the live call's params, not
    streamed, under the custom_id with ``tag``'s mark."""
    if len(item.custom_id) > MAX_CUSTOM_ID_CHARS:
        raise ValueError(
            f"custom_id {item.custom_id!r} is over {MAX_CUSTOM_ID_CHARS} characters: an "
            f"Anthropic batch request's id is the tag's {MARK_CHARS}-character mark and ours"
        )
    params = request_params(item.task, item.model)
    params.pop("stream", None)
    extra = params.pop("extra_body", None) or {}
    return {"custom_id": mark(tag) + item.custom_id, "params": {**params, **extra}}


def _total(batch: MessageBatch) -> int:
    c = batch.request_counts
    return c.processing + c.succeeded + c.errored + c.canceled + c.expired


def batch_state(batch: MessageBatch) -> ProviderBatchState:
    """The batch's state. Anthropic has no failed batch (every request errors
    instead); an ended batch was cancelled if a cancel was asked, expired if some
    requests expired, else completed."""
    status = _STATUSES.get(batch.processing_status, STATUS_IN_PROGRESS)
    counts = batch.request_counts
    outcome = None
    if status == STATUS_ENDED:
        if batch.cancel_initiated_at is not None:
            outcome = OUTCOME_CANCELLED
        elif counts.expired:
            outcome = OUTCOME_EXPIRED
        else:
            outcome = OUTCOME_COMPLETED
    return ProviderBatchState(
        id=batch.id,
        status=status,
        outcome=outcome,
        total=_total(batch),
        succeeded=counts.succeeded,
        errored=counts.errored,
        processing=counts.processing,
        vendor_status=batch.processing_status,
        expired=counts.expired,
        cancelled=counts.canceled,
        created_at=batch.created_at.timestamp(),
    )


def _errored(custom_id: str, error: Any, *secrets: str | None) -> ItemResult:
    """An errored request, judged by :func:`classify` as the same error from a live call."""
    body = error.to_dict() if hasattr(error, "to_dict") else error
    body = body if isinstance(body, dict) else {}
    inner = body.get("error") if isinstance(body.get("error"), dict) else {}
    kind = str(inner.get("type") or "")
    headers = {"request-id": str(body["request_id"])} if body.get("request_id") else {}
    http = httpx2.Response(_ERROR_STATUS.get(kind, 500), headers=headers, request=_ITEM_REQUEST)
    verdict = classify(APIStatusError(str(inner.get("message") or kind), response=http, body=body))
    return ItemResult(
        custom_id=custom_id,
        kind=ITEM_ERRORED,
        error=redact(verdict.message, *secrets),
        error_type=verdict.error_type,
        retryable=verdict.retryable,
    )


def result_from_response(line: MessageBatchIndividualResponse, *secrets: str | None) -> ItemResult:
    """One line of a batch's results as an :class:`ItemResult`."""
    result = line.result
    custom_id = unmarked(line.custom_id)
    if result.type == "succeeded":
        message = result.message
        usage = message.usage
        prompt = (
            (usage.input_tokens or 0)
            + (usage.cache_creation_input_tokens or 0)
            + (usage.cache_read_input_tokens or 0)
        )
        output = usage.output_tokens or 0
        vendor = message.stop_reason or "end_turn"
        return ItemResult(
            custom_id=custom_id,
            kind=ITEM_SUCCEEDED,
            text="".join(b.text for b in message.content if b.type == "text"),
            usage=Usage(
                prompt_tokens=prompt, completion_tokens=output, total_tokens=prompt + output
            ),
            finish_reason=_STOP_REASONS.get(vendor, FINISH_STOP),
            vendor_finish_reason=vendor,
            model=message.model or "",
        )
    if result.type == "errored":
        return _errored(custom_id, result.error, *secrets)
    if result.type == "expired":
        message = "expired: the batch's 24 hours ran out before this request ran"
        return ItemResult(custom_id=custom_id, kind=ITEM_EXPIRED, error=message, retryable=True)
    if result.type == "canceled":
        message = "canceled: the batch was cancelled before this request ran"
        return ItemResult(custom_id=custom_id, kind=ITEM_CANCELLED, error=message)
    message = f"unknown result type {result.type!r}"
    return ItemResult(custom_id=custom_id, kind=ITEM_ERRORED, error=message)


class AnthropicBatches:
    """:class:`BatchProvider` over Anthropic's Message Batches API.

    Args:
        client: an ``AsyncAnthropic`` with ``max_retries=0`` (checked); by default
            one built from the SDK's own environment variables.
    """

    platform = Platform.CLAUDE

    def __init__(self, client: AsyncAnthropic | None = None, *, timeout: float = 60.0) -> None:
        self._client = client or AsyncAnthropic(
            max_retries=0, timeout=timeout, http_client=anthropic_http_client()
        )
        if self._client.max_retries != 0:
            raise ValueError("the anthropic client must have max_retries=0: Temporal retries")
        self._secrets = (self._client.api_key, self._client.auth_token)

    async def submit(
        self, items: Sequence[BatchItem], tag: str, *, since: float | None = None
    ) -> str:
        """The id of our batch: found (see the module docstring) or created.

        Args:
            since: when an earlier attempt may first have created it (e.g. the
                submit activity's ``scheduled_time`` on attempts after the first).
                Without it a batch still running is not looked for.

        Raises:
            BatchLookupPending: a running batch created since ``since`` may be ours.
            ValueError: no items, more than 100,000, repeated custom_ids, one
                over 51 characters, or a tag that is not 1-64 printable characters.
        """
        found = check_items(items, MAX_REQUESTS, "Anthropic")
        check_tag(tag)
        requests = [request(item, tag) for item in found]
        existing = await self.find(tag, since=since, items=found)
        if existing is not None:
            return existing
        batch = await self._client.messages.batches.create(requests=requests)
        return batch.id

    async def find(
        self,
        tag: str,
        *,
        since: float | None = None,
        items: Sequence[BatchItem] | None = None,
    ) -> str | None:
        """The batch created for ``tag``, by the rules of the module docstring.

        Args:
            items: the batch's items; only their number is used, to pass over
                batches of another size (without them every size is looked at).

        Raises:
            BatchLookupPending: with ``since``, a running batch of that size was
                created since then: whether it is ours is known once it ends.
        """
        prefix = mark(check_tag(tag))
        size = len(items) if items else None
        start = since if since is not None else time.time() - LOOKBACK_SECONDS
        floor = start - CLOCK_SKEW_SECONDS
        running: list[str] = []
        async for batch in self._client.messages.batches.list(limit=100):
            if batch.created_at.timestamp() < floor:
                break
            if batch.archived_at is not None or size not in (None, _total(batch)):
                continue
            if batch.processing_status != "ended":
                running.append(batch.id)
            elif (await self._first_custom_id(batch.id)).startswith(prefix):
                return batch.id
        if since is not None and running:
            raise BatchLookupPending(
                f"batch {tag}: {len(running)} running batch(es) of this size since {since:.0f} "
                f"({', '.join(running[:5])}) may be ours; Anthropic shows whose only once "
                "they end",
                running,
                PENDING_RETRY_SECONDS,
            )
        return None

    async def _first_custom_id(self, batch_id: str) -> str:
        """The custom_id of an ended batch's first result (one line read)."""
        decoder = await self._client.messages.batches.results(batch_id)
        try:
            async for line in decoder:
                return line.custom_id
        finally:
            await decoder.close()
        return ""

    async def state(self, batch_id: str) -> ProviderBatchState:
        return batch_state(await self._client.messages.batches.retrieve(batch_id))

    async def results(self, batch_id: str, *, skip: int = 0) -> AsyncIterator[ItemResult]:
        """The batch's results from position ``skip``, streamed by the SDK.

        The results file is fixed once the batch has ended, so positions are
        stable across readers (its order is not the requests' order).
        """
        try:
            decoder = await self._client.messages.batches.results(batch_id)
        except APIError:
            raise
        except AnthropicError as exc:
            # The SDK's own complaint that the batch has no results_url yet.
            raise BatchNotEnded(f"batch {batch_id} has no results yet: {exc}") from exc
        try:
            position = 0
            async for line in decoder:
                if position >= skip:
                    yield result_from_response(line, *self._secrets)
                position += 1
        finally:
            await decoder.close()

    async def cancel(self, batch_id: str) -> None:
        try:
            await self._client.messages.batches.cancel(batch_id)
        except APIStatusError as exc:
            if exc.status_code not in (400, 409):
                raise
            batch = await self._client.messages.batches.retrieve(batch_id)
            if batch.processing_status == "in_progress":
                raise

    async def aclose(self) -> None:
        await self._client.close()
