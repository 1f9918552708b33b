"""What travels through Temporal: workflow input, activity I/O, signals, queries.

These payloads are recorded in workflow history, so none of them may hold a
secret: the API key and endpoint live only in the worker's process.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, model_validator

from .core import Task, TaskStatus, decoded_leniently
from .pricing import ModelPrice

#: Signal, query and activity names, fixed so that clients and workers of
#: different versions (and other languages) address the same things.
CHUNKS_SIGNAL = "ai_orchestrator.chunks"
PROGRESS_QUERY = "ai_orchestrator.progress"
STREAM_ACTIVITY = "ai_orchestrator.stream_completion"
#: Stops provider answers a task no longer wants (see :class:`StopAnswers`).
STOP_ACTIVITY = "ai_orchestrator.stop_answers"
WORKFLOW_TYPE = "AiTask"

#: Temporal refuses payloads over 2 MB (by default). A task's input is capped at
#: submission and its output while streaming, so the final Result (which holds
#: both) always fits, and no attempt fails late, after the provider was paid.
MAX_INPUT_BYTES = 512_000
MAX_OUTPUT_BYTES = 1_000_000


class _Msg(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Usage(_Msg):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    estimated: bool = False


class AttemptBill(_Msg):
    """What one provider attempt cost, whether or not its answer was used.

    Providers bill every attempt that generated tokens: a retried, cancelled or
    crashed attempt is paid for like a successful one, so results report the
    sum over all attempts. ``estimated`` marks counts derived from streamed
    chunks because the provider never sent usage (the stream broke first).
    """

    attempt: int
    generation: int = 0
    model: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    estimated: bool = False
    cost: float = 0.0
    #: completed, failed, cancelled, handed_over, lost (its worker died) or streaming.
    outcome: str = ""
    error_type: str | None = None
    #: The provider's answer this attempt streamed, when several attempts can
    #: stream one answer (a re-attached background response): billed once.
    response_id: str | None = None
    #: The platform that answered (None from older workers: the model's own).
    platform: str | None = None
    #: The provider may have billed this attempt for an answer we could not
    #: identify (its worker died before it recorded anything, or a create whose
    #: answer never reached us): counted, flagged, never silently dropped.
    cost_unknown: bool = False
    #: ``"batch"``: answered through the provider's batch API, at its price.
    delivery: str | None = None


#: Outcomes after which the provider generates nothing more for that answer.
_FINISHED_OUTCOMES = frozenset({"completed", "stopped"})


class Ledger(_Msg):
    """Every attempt a task paid for, carried across attempts in heartbeat details."""

    attempts: list[AttemptBill] = Field(default_factory=list)

    @property
    def prompt_tokens(self) -> int:
        return sum(a.prompt_tokens for a in self.attempts)

    @property
    def completion_tokens(self) -> int:
        return sum(a.completion_tokens for a in self.attempts)

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def cost(self) -> float:
        return sum((a.cost for a in self.attempts), 0.0)

    @property
    def estimated(self) -> bool:
        return any(a.estimated for a in self.attempts)

    @property
    def cost_unknown(self) -> bool:
        return any(a.cost_unknown for a in self.attempts)

    def open_responses(self) -> list[str]:
        """Provider answers that may still be generating: no part of them completed,
        was stopped, or carries the provider's own final count."""
        done = {
            a.response_id
            for a in self.attempts
            if a.outcome in _FINISHED_OUTCOMES or not a.estimated
        }
        ids = [a.response_id for a in self.attempts if a.response_id and a.response_id not in done]
        return list(dict.fromkeys(ids))

    def with_late_bills(self, late: Ledger | None) -> Ledger | None:
        """This ledger with the attempts' own bills from ``late`` where this one only
        has an estimate for them; None if ``late`` adds nothing.

        An attempt that Temporal timed out while it was unreachable may still have
        run to its end on its worker, and sent its own bill by signal; the attempt
        after it only knew its last heartbeat ("lost"). Answers billed by
        ``response_id`` are settled by the provider's own count instead.
        """
        if late is None:
            return None
        merged = list(self.attempts)
        index = {(a.attempt, a.generation): i for i, a in enumerate(merged)}
        changed = False
        for bill in late.attempts:
            if bill.response_id is not None or bill.outcome == "lost":
                continue
            at = index.get((bill.attempt, bill.generation))
            if at is None:
                index[(bill.attempt, bill.generation)] = len(merged)
                merged.append(bill)
            elif merged[at].outcome == "lost":
                merged[at] = bill
            else:
                continue
            changed = True
        return Ledger(attempts=merged) if changed else None

    def settle_response(self, bill: AttemptBill) -> Ledger:
        """The ledger with every part of ``bill.response_id`` replaced by its real bill."""
        kept = [a for a in self.attempts if a.response_id != bill.response_id]
        return Ledger(attempts=[*kept, bill])


#: Temporal's own floor for heartbeats is its throttle; below a second, a busy
#: worker's heartbeat can miss the timeout and every attempt becomes a billed zombie.
MIN_HEARTBEAT_TIMEOUT_SECONDS = 1.0


class RetrySettings(_Msg):
    """How one task's provider calls are retried; every bound is checked at construction.

    ``max_attempts`` bounds the attempts that end in a *provider fault* (HTTP 5xx,
    a broken or malformed stream, a connection failure). Rate-limit waits, a dead
    or stopping worker and a Temporal outage do not count: they are bounded only by
    the task's ``timeout_seconds``, so a durable task never gives up on them while
    its time lasts.
    """

    max_attempts: int = Field(default=8, ge=1, le=100)
    initial_interval_seconds: float = Field(default=1.0, gt=0)
    backoff_coefficient: float = Field(default=2.0, ge=1.0)
    max_interval_seconds: float = Field(default=30.0, gt=0)
    heartbeat_timeout_seconds: float = Field(default=3.0, gt=0)

    @model_validator(mode="after")
    def _temporal_would_accept(self, info: ValidationInfo) -> RetrySettings:
        # Temporal rejects these only when the workflow schedules the activity,
        # and then retries that workflow task forever: refuse them here instead.
        if decoded_leniently(info):
            return self
        if self.max_interval_seconds < self.initial_interval_seconds:
            raise ValueError(
                f"max_interval_seconds ({self.max_interval_seconds}) must be at least "
                f"initial_interval_seconds ({self.initial_interval_seconds}); Temporal "
                "rejects such a retry policy"
            )
        if self.heartbeat_timeout_seconds < MIN_HEARTBEAT_TIMEOUT_SECONDS:
            raise ValueError(
                f"heartbeat_timeout_seconds must be at least {MIN_HEARTBEAT_TIMEOUT_SECONDS:g}: "
                "workers heartbeat at a third of it and Temporal throttles heartbeats, so a "
                "shorter timeout would expire under a live attempt and pay the provider again"
            )
        return self


class TaskInput(_Msg):
    task: Task
    retry: RetrySettings = Field(default_factory=RetrySettings)
    #: Set by the client when the namespace has our search attributes, so the
    #: workflow keeps them up to date (older inputs lack it: replay is unchanged).
    search_attributes: bool = False


class CompletionRequest(_Msg):
    task: Task
    #: Absolute deadline (epoch seconds) of the whole task, so an attempt can
    #: refuse to wait out a Retry-After that would outlive it.
    deadline_epoch: float | None = None
    #: Set by workflows that let the activity bound provider faults itself
    #: (Temporal then retries without an attempt limit, within the deadline).
    #: None: an older run whose retry policy counts every attempt.
    retry: RetrySettings | None = None
    #: Added to attempt numbers to name this activity's streams: a fallback's
    #: streams must supersede every stream of the models before it.
    generation_base: int = 0
    #: What the models before this one were billed (USD): a fallback model's
    #: calls count against the task's ``max_cost_usd`` too.
    spent_usd: float = 0.0


class AttemptState(_Msg):
    """Heartbeat details: what the next attempt must know about the earlier ones.

    Temporal hands the last heartbeat of any attempt to the next one, including
    the heartbeat an attempt sends just before it fails. No text and no secret
    goes here: the server stores heartbeat details in clear unless encryption
    is on.
    """

    attempt: int
    generation: int
    #: Characters and chunks this attempt has streamed so far.
    chars: int = 0
    chunks: int = 0
    model: str = ""
    #: Provider faults over every attempt of this activity, this one included.
    provider_faults: int = 0
    #: Chunk signals sent, and characters they carried, over every attempt
    #: (history grows with them).
    signals: int = 0
    signalled_chars: int = 0
    #: Attempts already closed (billed or not); this one is added when it ends.
    ledger: Ledger = Field(default_factory=Ledger)
    #: True once this attempt's own bill is in ``ledger``.
    closed: bool = False
    #: What lets a retry continue this attempt's stream (a Claude Code session id).
    resume_token: str | None = None
    #: What lets a retry continue *the same text* (a background response's id and
    #: position), and the character offset of the generation it continues at.
    continuation: str | None = None
    continued_at: int = 0
    #: The provider's id for the answer this attempt streams, if it outlives the
    #: connection (see :attr:`AttemptBill.response_id`).
    response_id: str | None = None
    #: Where this attempt publishes its text live (``http://host:port`` or ``redis``):
    #: readers find it here. An address only, never a credential.
    live: str | None = None
    #: The model's price (USD per million tokens), so an attempt lost with its
    #: worker is priced wherever its state is read, the workflow included.
    price_in: float | None = None
    price_out: float | None = None
    #: Chunks this attempt is expected to stream after this heartbeat if its worker
    #: dies before the next one: half a heartbeat interval at its current pace.
    #: Death is equally likely anywhere in the interval, so adding it to a lost
    #: attempt's bill makes lost bills right on average instead of always short.
    unseen_chunks: int = 0
    #: Seconds the worker's quota limiter expects this attempt to wait for room on
    #: its provider's quota before calling it, as of this heartbeat (0: its turn is
    #: unknown, others are ahead). None: not waiting (or a worker that never says):
    #: readers tell "waiting for capacity" from "stuck" or "generating" by it.
    waiting_for_capacity: float | None = None

    def settled(self, prompt_tokens: int, *, whole: bool = True) -> Ledger:
        """The ledger with this attempt included even if it never closed its own bill.

        An attempt that did not close (its worker died, its heartbeat timed out)
        was billed for what it streamed by its last heartbeat plus what it is
        expected to have streamed since (``unseen_chunks``): an estimate, since
        later text is unknown. ``prompt_tokens`` is the caller's estimate.
        An answer created but not yet streamed was billed its prompt; its price is
        the one the attempt recorded. ``whole=False`` keeps the older account
        (streamed attempts only, unpriced) for workflow runs that recorded it.
        """
        created = whole and self.response_id is not None
        if self.closed or not (self.chunks or self.chars or created):
            return self.ledger
        if created and any(a.response_id == self.response_id for a in self.ledger.attempts):
            prompt_tokens = 0  # another part of the same answer: its prompt is billed once
        completion = self.chunks + (self.unseen_chunks if whole and self.chunks else 0)
        cost = 0.0
        if whole and self.price_in is not None and self.price_out is not None:
            price = ModelPrice(input_per_million=self.price_in, output_per_million=self.price_out)
            cost = price.cost(prompt_tokens, completion)
        lost = AttemptBill(
            attempt=self.attempt,
            generation=self.generation,
            model=self.model,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion,
            estimated=True,
            cost=cost,
            outcome="lost",
            response_id=self.response_id,
        )
        return Ledger(attempts=[*self.ledger.attempts, lost])


class CompletionOutput(_Msg):
    """The end of one successful attempt.

    ``tail`` is only the text not already delivered by signals (starting at
    ``offset``), so streamed text is stored in history once, not twice.
    """

    attempt: int
    offset: int
    tail: str
    finish_reason: str
    model: str
    usage: Usage
    cost: float = 0.0
    cost_known: bool = True
    chunks: int = 0
    signals: int = 0
    first_chunk_seconds: float | None = None
    #: The stream this text belongs to (see :class:`ChunkBatch`); None from older workers.
    generation: int | None = None
    #: Every attempt the provider billed, this one included; None from older workers.
    ledger: Ledger | None = None
    #: The platform that answered (a :class:`~ai_orchestrator.core.Platform` value).
    platform: str | None = None
    #: The vendor's own stop reason beside the normalised ``finish_reason``.
    vendor_finish_reason: str | None = None
    #: The answer stopped at ``max_tokens``: complete as asked, not as the model meant.
    truncated: bool = False
    #: Files an agentic session wrote (Claude Code), absolute paths.
    files_created: list[str] = Field(default_factory=list)
    #: The stream a retry would have continued (Claude Code's session id).
    resume_token: str | None = None


class ChunkBatch(_Msg):
    """Text of one stream since ``offset``; a newer stream supersedes an older one.

    A stream is identified by the workflow run that scheduled it and its
    generation (the attempt that started generating it). The run id matters
    because an operator reset starts a new run whose attempts count from 1
    again and re-applies the old run's signals: without it, the old run's text
    would be taken for the new run's and spliced in. Batches from older workers
    carry neither, and are identified by ``attempt`` alone, as they always were.
    """

    attempt: int
    offset: int
    text: str
    chunks: int = 0
    run_id: str | None = None
    generation: int | None = None
    #: What the provider billed so far over every attempt, for a task that ends
    #: cancelled or failed before an attempt completes.
    ledger: Ledger | None = None
    #: A bill and no text: it says nothing about the stream, so it never starts a
    #: new one (readers keep the text they have). Absent from older histories.
    bill_only: bool = False

    @property
    def stream(self) -> int:
        return self.attempt if self.generation is None else self.generation


class StopAnswers(_Msg):
    """Answers a task gave up on that may still be generating at the provider.

    Each bill is the last part the task recorded of one answer (its
    ``response_id``); the activity cancels the answer and returns its real bill.
    """

    answers: list[AttemptBill]


class StoppedAnswers(_Msg):
    """The provider's own account of each stopped answer (missing: it could not say)."""

    bills: list[AttemptBill] = Field(default_factory=list)


class ProgressQuery(_Msg):
    offset: int = Field(default=0, ge=0)


class Progress(_Msg):
    """A view of the current attempt's output from the asked offset."""

    status: TaskStatus
    attempt: int
    offset: int
    text: str
    length: int
    chunks: int
    restarts: int
    done: bool
