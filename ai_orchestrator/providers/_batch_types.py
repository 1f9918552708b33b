"""What a provider batch API offers the batch workflows, whatever the vendor.

Issue 18 sends tasks through the vendors' batch APIs (half the price, results
within 24 hours). Each vendor module (:mod:`.batch_openai`,
:mod:`.batch_anthropic`) maps its API onto :class:`BatchProvider` and these
shapes, so activities never branch on the vendor.

Nothing here imports a vendor SDK: a workflow may use these types in its
sandbox. The statuses, outcomes and item kinds are constants so the adapters,
the workflows and the tests cannot disagree on a spelling.

Submission must be idempotent: a worker may die between the vendor's create
returning and the activity recording the batch id, and its retry must find that
batch instead of paying for a second one. ``tag`` (unique per batch of ours,
e.g. a workflow id) and ``since`` (the earliest moment the batch could have been
created: record it in a heartbeat just before creating) are how a retry finds
it; what each vendor can guarantee is in its module's docstring.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from ..core import Platform, Task
from ..messages import Usage

#: Normalised batch statuses: where a batch stands.
STATUS_VALIDATING = "validating"
STATUS_IN_PROGRESS = "in_progress"
STATUS_FINALIZING = "finalizing"
STATUS_CANCELLING = "cancelling"
STATUS_ENDED = "ended"
#: How an ended batch ended. ``failed`` is a whole-batch failure (OpenAI's
#: validation; :attr:`ProviderBatchState.error` says why): no item results.
OUTCOME_COMPLETED = "completed"
OUTCOME_FAILED = "failed"
OUTCOME_EXPIRED = "expired"
OUTCOME_CANCELLED = "cancelled"
#: How one item ended.
ITEM_SUCCEEDED = "succeeded"
ITEM_ERRORED = "errored"
ITEM_EXPIRED = "expired"
ITEM_CANCELLED = "cancelled"

#: Anthropic's pattern for a request's custom_id, the stricter of the two vendors'.
CUSTOM_ID_PATTERN = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
MAX_TAG_CHARS = 64
#: Seconds of clock difference allowed between this worker and the vendor when
#: comparing a vendor's ``created_at`` with a ``since`` taken on our clock.
CLOCK_SKEW_SECONDS = 60.0


class BatchNotEnded(RuntimeError):
    """Results were asked of a batch that has not ended: poll :meth:`BatchProvider.state`."""


class BatchLookupPending(Exception):
    """An earlier attempt's batch may be one the vendor is still running, and which
    one cannot be told until it ends (Anthropic: see :mod:`.batch_anthropic`).

    Creating a batch now could pay twice; adopting a guess could hand one batch's
    answers to another's tasks. Retry the lookup after ``retry_after`` seconds
    (the submit activity should turn this into a retryable failure with that
    delay, and allow the time a batch can take: up to 24 hours).

    Attributes:
        candidates: the running batches that could be ours.
        retry_after: seconds to wait before looking again.
    """

    def __init__(self, message: str, candidates: Sequence[str], retry_after: float) -> None:
        super().__init__(message)
        self.candidates = tuple(candidates)
        self.retry_after = retry_after


def check_custom_id(custom_id: str) -> str:
    """``custom_id`` if both vendors accept it; else a ValueError that says what they accept."""
    if not isinstance(custom_id, str) or not CUSTOM_ID_PATTERN.match(custom_id):
        raise ValueError(
            "a batch item's custom_id must be 1-64 characters from a-z, A-Z, 0-9, '_' and '-' "
            f"(Anthropic's pattern), got {custom_id!r}"
        )
    return custom_id


def check_tag(tag: str) -> str:
    """``tag`` if it can label a batch: 1-64 printable characters (OpenAI's metadata key limit)."""
    if not isinstance(tag, str) or not 0 < len(tag) <= MAX_TAG_CHARS or not tag.isprintable():
        raise ValueError(f"a batch tag must be 1-{MAX_TAG_CHARS} printable characters, got {tag!r}")
    return tag


def check_items(items: Sequence[BatchItem], limit: int, vendor: str) -> list[BatchItem]:
    """``items`` as a list if ``vendor`` takes them as one batch: 1 to ``limit``, ids unique."""
    found = list(items)
    if not found:
        raise ValueError("a batch needs at least one item")
    if len(found) > limit:
        raise ValueError(f"{vendor} takes at most {limit} requests in a batch, got {len(found)}")
    seen: set[str] = set()
    for item in found:
        if not isinstance(item, BatchItem):
            raise TypeError(f"expected BatchItem, got {type(item).__name__}")
        if item.custom_id in seen:
            raise ValueError(f"custom_id {item.custom_id!r} appears twice in one batch")
        seen.add(item.custom_id)
    return found


@dataclass(frozen=True)
class BatchItem:
    """One task in a provider batch.

    Attributes:
        custom_id: ours, unique within the batch; matches results to tasks. Must
            satisfy ``^[a-zA-Z0-9_-]{1,64}$`` (Anthropic: at most 51 characters,
            as its adapter prefixes the tag's mark).
        task: its prompt, context and constraints (``max_tokens``, ``temperature``).
        model: the model to run it on (the task's own ``constraints.model`` is
            not consulted: route the task first).
    """

    custom_id: str
    task: Task
    model: str

    def __post_init__(self) -> None:
        check_custom_id(self.custom_id)
        if not isinstance(self.model, str) or not self.model.strip():
            raise ValueError(f"a batch item needs a model, got {self.model!r}")


@dataclass(frozen=True)
class ProviderBatchState:
    """Where a provider batch stands.

    Attributes:
        status: one of ``validating``, ``in_progress``, ``finalizing``,
            ``cancelling``, ``ended`` (Anthropic has neither validating nor finalizing).
        outcome: once ended: ``completed``, ``failed``, ``expired`` or ``cancelled``.
        total: requests in the batch (OpenAI reports 0 while validating).
        succeeded, errored: requests that ended so. OpenAI counts requests it
            never ran (expired, cancelled) as errored; Anthropic counts them in
            ``expired`` and ``cancelled``, and only once the batch has ended.
        processing: requests not ended yet.
        vendor_status: the vendor's own word, for display.
        error: why a whole batch failed (e.g. an invalid input file), redacted.
        created_at: when the vendor created it, Unix seconds on its clock.
    """

    id: str
    status: str
    outcome: str | None
    total: int
    succeeded: int
    errored: int
    processing: int
    vendor_status: str
    error: str | None = None
    expired: int = 0
    cancelled: int = 0
    created_at: float = 0.0

    @property
    def ended(self) -> bool:
        return self.status == STATUS_ENDED


@dataclass(frozen=True)
class ItemResult:
    """How one item of a batch ended.

    Attributes:
        kind: ``succeeded``, ``errored``, ``expired`` (the batch's 24 h ran out
            first) or ``cancelled``.
        text, usage, finish_reason: the answer, for a succeeded item;
            ``finish_reason`` normalised (``stop``, ``length``, ``content_filter``),
            ``vendor_finish_reason`` as the vendor said it.
        error: the vendor's message for an item that did not succeed, keys redacted
            (the prompt is not known here: redact echoes where the task is).
        error_type: our name for the failure (``ai_orchestrator.errors``), judged
            by the same classifier as a live call's error.
        retryable: worth another try (expired, rate limited, server errors); a
            request the vendor rejected (HTTP 400) is not.
    """

    custom_id: str
    kind: str
    text: str = ""
    usage: Usage | None = None
    finish_reason: str | None = None
    vendor_finish_reason: str | None = None
    model: str = ""
    error: str | None = None
    error_type: str | None = None
    retryable: bool = False


class BatchProvider(Protocol):
    """One vendor's batch API. Vendor errors on these calls are the SDK's own
    exceptions: :func:`ai_orchestrator.errors.classify` judges them as it judges
    a live call's (429 and 5xx retry, 401/403/404 do not)."""

    platform: Platform

    async def submit(
        self, items: Sequence[BatchItem], tag: str, *, since: float | None = None
    ) -> str:
        """The vendor's id of the batch tagged ``tag``: the one found, else a new one.

        Args:
            since: when an earlier attempt may first have created it (e.g. the
                submit activity's ``scheduled_time`` on attempts after the first);
                None: no earlier attempt is known to have tried.

        Raises:
            BatchLookupPending: as :meth:`find`.
        """
        ...

    async def find(
        self,
        tag: str,
        *,
        since: float | None = None,
        items: Sequence[BatchItem] | None = None,
    ) -> str | None:
        """The id of the batch ``submit(items, tag)`` created at or after ``since``;
        None when there is none.

        Raises:
            BatchLookupPending: there may be one, but the vendor cannot say yet.
        """
        ...

    async def state(self, batch_id: str) -> ProviderBatchState: ...

    def results(self, batch_id: str, *, skip: int = 0) -> AsyncIterator[ItemResult]:
        """Every item's result of an ended batch, streamed in a stable order, from
        position ``skip`` (a retried reader resumes where it stopped).

        Raises:
            BatchNotEnded: the batch has not ended.
        """
        ...

    async def cancel(self, batch_id: str) -> None:
        """Ask the vendor to stop the batch; no error if it has already ended."""
        ...

    async def aclose(self) -> None: ...
