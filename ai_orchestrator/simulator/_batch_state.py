"""Provider batch jobs: what was submitted, how they are scripted, where each one stands.

OpenAI's Files + Batches API, Anthropic's Message Batches API and Gemini's
batches share this model (their shapes live in ``_batches_openai``,
``_batches_anthropic`` and ``_batches_gemini``). A
batch is a list of items whose answers are the simulator's usual deterministic
answers, computed once when the batch is created; *when* each is delivered
follows from the clock alone, computed lazily whenever anyone looks (an HTTP
read, :attr:`Simulator.batches`), so there are no background tasks to cancel
and a test sees the same sequence on every run.

The timeline of a batch created at ``c`` with turnaround ``T``: it validates
during ``[c, c+0.1T)``, answers its ``n`` items one after another, evenly, until
``c+0.9T`` (item ``i`` at ``c + 0.1T + 0.8T(i+1)/n``), finalizes, and ends at
``c+T``. :class:`BatchBehaviour` bends that: items that error, a stall after
some answers, a batch that fails or expires at ``c+T``, a cancel honoured or not.

Batches do not take scripted :class:`Fault` s nor count against
:class:`Quotas`: providers run them in a separate queue with its own limits,
and a batch eating a fault scripted for a live call would hide it. Batch
traffic is not in ``sim.requests`` (those are generations); it is here.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import itertools
import math
import time
from dataclasses import dataclass, field
from typing import Any

#: What a batch does at the end of its turnaround when nothing else intervenes.
OUTCOMES: tuple[str, ...] = ("completed", "failed", "expired")
#: Item states: ``processing`` until answered or the batch ends without it.
ITEM_STATES: tuple[str, ...] = ("processing", "succeeded", "errored", "canceled", "expired")
#: Share of the turnaround spent validating, and where answering ends.
VALIDATING_SHARE = 0.1
ANSWERED_SHARE = 0.9


def _fraction(custom_id: str) -> float:
    """A stable number in [0, 1) per custom_id: ``error_rate`` picks the same items every run."""
    digest = hashlib.sha256(custom_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _number(name: str, value: object, low: float, high: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise ValueError(f"{name} must be a number from {low} to {high}, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class BatchBehaviour:
    """How the next batches behave; each batch keeps the behaviour it was created under.

    Attributes:
        turnaround: Seconds from create to the end of the batch (0 ends it at once).
        error_ids: custom_ids whose request fails (HTTP ``error_status`` inside the batch).
        error_rate: Share of the other items that fail, picked by a hash of their
            custom_id, so the same ones fail on every run.
        error_status: The status a failing item reports (500 ``server_error``/
            ``api_error`` by default; 400 for a request the provider rejects).
        stall_after: Answer only this many items, then stall: the batch ends only
            by cancel or expiry. None answers all (``outcome="expired"`` implies 0).
        outcome: ``"completed"``; ``"failed"`` (OpenAI: the batch fails validation
            with ``token_limit_exceeded``; Anthropic, which has no failed batch:
            every item errors; Gemini: ``BATCH_STATE_FAILED``); ``"expired"`` (the
            24 h window, run out at the end of the turnaround: unanswered items
            expire).
        honour_cancel: False acknowledges a cancel (``cancelling``) but answers
            every item anyway, as a provider whose requests were already running.
        cancel_latency: Seconds a cancel spends in ``cancelling``/``canceling``.
        status_latency: Seconds each request for the batch's state takes before it is
            answered: a slow provider API, or one that hangs while a worker dies.
    """

    turnaround: float = 1.0
    error_ids: frozenset[str] = frozenset()
    error_rate: float = 0.0
    error_status: int = 500
    stall_after: int | None = None
    outcome: str = "completed"
    honour_cancel: bool = True
    cancel_latency: float = 0.1
    status_latency: float = 0.0

    def __post_init__(self) -> None:
        _number("turnaround", self.turnaround, 0)
        _number("error_rate", self.error_rate, 0, 1)
        _number("cancel_latency", self.cancel_latency, 0)
        _number("status_latency", self.status_latency, 0)
        ids = self.error_ids
        if isinstance(ids, str) or not all(isinstance(i, str) for i in ids):
            raise ValueError(f"error_ids must be a collection of custom_id strings, got {ids!r}")
        object.__setattr__(self, "error_ids", frozenset(ids))
        status = self.error_status
        if isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 599:
            raise ValueError(f"error_status must be an HTTP error status, got {status!r}")
        stall = self.stall_after
        if stall is not None and (type(stall) is not int or stall < 0):
            raise ValueError(f"stall_after must be an int >= 0 or None, got {stall!r}")
        if self.outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {', '.join(OUTCOMES)}, got {self.outcome!r}")
        if not isinstance(self.honour_cancel, bool):
            raise ValueError(f"honour_cancel must be a boolean, got {self.honour_cancel!r}")

    def errs(self, custom_id: str) -> bool:
        return custom_id in self.error_ids or _fraction(custom_id) < self.error_rate

    def answered_limit(self) -> int | None:
        """How many items get answered at most (None: all)."""
        if self.stall_after is None and self.outcome == "expired":
            return 0
        return self.stall_after

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "error_ids": sorted(self.error_ids)}

    @classmethod
    def from_dict(cls, data: Any) -> BatchBehaviour:
        """Missing keys take their defaults; unknown keys are an error."""
        if not isinstance(data, dict):
            raise ValueError("batch behaviour must be a JSON object")
        unknown = sorted(set(data) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"unknown batch behaviour keys: {', '.join(unknown)}")
        return cls(**data)


@dataclass
class BatchItem:
    """One request of a batch and its fate.

    ``answer`` is the vendor's success body (a chat completion, a Response or a
    Message), ``error`` the error body a failing item reports with
    ``error_status``; ``due`` is when it is answered, in seconds after the
    batch was created (``inf``: never, the batch stalls before it).
    """

    custom_id: str
    model: str = ""
    prompt_tokens: int = 0
    output_tokens: int = 0
    answer: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    error_status: int = 0
    due: float = math.inf
    status: str = "processing"
    answered_at: float | None = None


@dataclass
class StoredFile:
    """An uploaded file, or a batch's output or error file (rendered when read)."""

    id: str
    filename: str
    purpose: str
    created_wall: float
    content: bytes = b""
    batch_id: str | None = None
    api_key: str | None = None


@dataclass
class BatchRecord:
    """One batch as the provider keeps it; ``status`` uses OpenAI's words for every API.

    ``status``: validating, in_progress, finalizing, completed, failed, expired,
    cancelling, cancelled (Anthropic's ``processing_status`` is derived from it).
    ``errors`` says why an OpenAI batch failed validation. Times are
    ``time.monotonic()``; :meth:`wall` turns one into a Unix timestamp.
    """

    id: str
    api: str
    endpoint: str
    api_key: str | None
    behaviour: BatchBehaviour
    items: list[BatchItem]
    created_at: float
    created_wall: float
    model: str = ""
    metadata: dict[str, Any] | None = None
    input_file_id: str | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)
    status: str = "validating"
    cancel_requested_at: float | None = None
    ended_at: float | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None
    #: Requests for the state being held now (``BatchBehaviour.status_latency``).
    status_requests_held: int = 0

    async def hold_status_request(self) -> None:
        """Wait out the batch's ``status_latency``, counted in ``status_requests_held``."""
        latency = self.behaviour.status_latency
        if latency <= 0:
            return
        self.status_requests_held += 1
        try:
            await asyncio.sleep(latency)
        finally:
            self.status_requests_held -= 1

    @property
    def cancel_requested(self) -> bool:
        return self.cancel_requested_at is not None

    @property
    def ended(self) -> bool:
        return self.ended_at is not None

    def count(self, *states: str) -> int:
        return sum(item.status in states for item in self.items)

    def wall(self, monotonic: float) -> float:
        return self.created_wall + (monotonic - self.created_at)

    def offset_wall(self, share: float) -> int:
        """Unix time at ``share`` of the turnaround."""
        return int(self.created_wall + share * self.behaviour.turnaround)

    def expires_wall(self) -> float:
        """24 h after creation, or the end of the turnaround for a batch scripted to expire."""
        if self.behaviour.outcome == "expired":
            return self.created_wall + self.behaviour.turnaround
        return self.created_wall + 24 * 3600

    def schedule(self) -> None:
        """Give every item its ``due`` time, in order, up to the stall."""
        turnaround = self.behaviour.turnaround
        limit = self.behaviour.answered_limit()
        n = len(self.items)
        for i, item in enumerate(self.items):
            if limit is not None and i >= limit:
                item.due = math.inf
            else:
                span = (ANSWERED_SHARE - VALIDATING_SHARE) * turnaround
                item.due = VALIDATING_SHARE * turnaround + span * (i + 1) / n

    def advance(self, now: float) -> bool:
        """Bring the batch up to ``now``; True when it has just ended."""
        if self.ended_at is not None:
            return False
        behaviour = self.behaviour
        turnaround = behaviour.turnaround
        t = now - self.created_at
        validated = VALIDATING_SHARE * turnaround
        if self.errors:
            if t < validated:
                self.status = "validating"
                return False
            self._end("failed", validated, None)
            return True
        cancel_t = None
        if self.cancel_requested_at is not None:
            cancel_t = self.cancel_requested_at - self.created_at
        honoured = cancel_t is not None and behaviour.honour_cancel
        cutoff = min(t, cancel_t) if honoured and cancel_t is not None else t
        for item in self.items:
            if item.status == "processing" and item.due <= cutoff:
                item.status = "errored" if item.error is not None else "succeeded"
                item.answered_at = self.created_at + item.due
        end = max((item.due for item in self.items), default=validated)
        end = turnaround if math.isfinite(end) else math.inf
        final, leftover = "completed", None
        if behaviour.outcome == "expired":
            end, final, leftover = turnaround, "expired", "expired"
        if cancel_t is not None:
            final = "cancelled"
            if honoured and cancel_t + behaviour.cancel_latency < end:
                end, leftover = cancel_t + behaviour.cancel_latency, "canceled"
        if t >= end:
            self._end(final, end, leftover)
            return True
        if cancel_t is not None:
            self.status = "cancelling"
        elif t < validated:
            self.status = "validating"
        elif self.count("processing"):
            self.status = "in_progress"
        else:
            self.status = "finalizing"
        return False

    def _end(self, status: str, offset: float, leftover: str | None) -> None:
        for item in self.items:
            if item.status == "processing":
                # Only reachable with a leftover state: a natural end answered everything.
                item.status = leftover or "expired"
        self.status = status
        self.ended_at = self.created_at + offset

    def to_dict(self) -> dict[str, Any]:
        """For the admin API: the record without the answers' bodies."""
        return {
            "id": self.id,
            "api": self.api,
            "endpoint": self.endpoint,
            "api_key": self.api_key,
            "model": self.model,
            "metadata": self.metadata,
            "status": self.status,
            "created_wall": self.created_wall,
            "cancel_requested": self.cancel_requested,
            "ended": self.ended,
            "errors": self.errors,
            "behaviour": self.behaviour.to_dict(),
            "items": [
                {
                    "custom_id": item.custom_id,
                    "status": item.status,
                    "prompt_tokens": item.prompt_tokens,
                    "output_tokens": item.output_tokens,
                }
                for item in self.items
            ],
        }


class BatchStore:
    """Every file and batch the simulator holds, and the behaviour new batches get."""

    def __init__(self, behaviour: BatchBehaviour | None = None) -> None:
        self.behaviour = behaviour if behaviour is not None else BatchBehaviour()
        self.files: dict[str, StoredFile] = {}
        self.batches: dict[str, BatchRecord] = {}
        # Never restarted by reset(): an id a client still holds is never reused.
        self._ids = itertools.count(1)

    @property
    def behaviour(self) -> BatchBehaviour:
        return self._behaviour

    @behaviour.setter
    def behaviour(self, value: BatchBehaviour) -> None:
        if not isinstance(value, BatchBehaviour):
            raise TypeError(f"expected BatchBehaviour, got {type(value).__name__}")
        self._behaviour = value

    def new_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):06d}"

    def add_file(
        self, filename: str, purpose: str, content: bytes, api_key: str | None = None
    ) -> StoredFile:
        stored = StoredFile(self.new_id("file-sim"), filename, purpose, time.time(), content)
        stored.api_key = api_key
        self.files[stored.id] = stored
        return stored

    def add(self, record: BatchRecord) -> BatchRecord:
        record.schedule()
        self.batches[record.id] = record
        return record

    def refresh(self, record: BatchRecord, now: float | None = None) -> BatchRecord:
        """Advance one batch; an OpenAI batch that ends gets its output and error files."""
        if record.advance(time.monotonic() if now is None else now) and record.api == "openai":
            if record.count("succeeded"):
                record.output_file_id = self._output_file(record, "output").id
            if record.count("errored", "canceled", "expired"):
                record.error_file_id = self._output_file(record, "error").id
        return record

    def _output_file(self, record: BatchRecord, kind: str) -> StoredFile:
        stored = StoredFile(
            self.new_id("file-sim"),
            f"batch_{record.id}_{kind}.jsonl",
            "batch_output",
            record.wall(record.ended_at or record.created_at),
            batch_id=record.id,
            api_key=record.api_key,
        )
        self.files[stored.id] = stored
        return stored

    def get(self, batch_id: str, api: str) -> BatchRecord | None:
        record = self.batches.get(batch_id)
        if record is None or record.api != api:
            return None
        return self.refresh(record)

    def newest_first(self, api: str) -> list[BatchRecord]:
        now = time.monotonic()
        found = [self.refresh(b, now) for b in self.batches.values() if b.api == api]
        return found[::-1]

    def all(self) -> dict[str, BatchRecord]:
        now = time.monotonic()
        for record in self.batches.values():
            self.refresh(record, now)
        return dict(self.batches)

    def generated_tokens(self) -> int:
        """Output tokens of every answered item, as the provider bills them (at batch rates)."""
        return sum(
            item.output_tokens
            for record in self.all().values()
            for item in record.items
            if item.status == "succeeded"
        )

    def reset(self) -> None:
        """Forget every file and batch; the behaviour is config and stays."""
        self.files = {}
        self.batches = {}


def page(
    records: list[Any], after: str | None, before: str | None, limit: int
) -> tuple[list[Any], bool]:
    """One page of ``records`` (newest first) after or before the one with that id.

    Returns the page and whether more lie beyond it in the direction read.
    An unknown cursor gives an empty page, as a deleted object's id would.
    """
    ids = [r.id for r in records]
    if after is not None:
        if after not in ids:
            return [], False
        rest = records[ids.index(after) + 1 :]
        return rest[:limit], len(rest) > limit
    if before is not None:
        if before not in ids:
            return [], False
        rest = records[: ids.index(before)]
        return rest[-limit:], len(rest) > limit
    return records[:limit], len(records) > limit
