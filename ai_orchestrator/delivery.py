"""Batch delivery's vocabulary: what travels between a task, its collector and
its provider batch, and the names that address them.

A task with ``delivery="batch"`` is still one ``AiTask`` workflow. It joins the
collector of its task queue, platform and model (one long-lived workflow per
key, started by the first task that needs it); the collector gathers tasks for
a short window, then hands them to a provider-batch workflow, which sends them
as one provider batch, waits for it on durable timers, and hands each answer
to its task by a signal, so answers never pass through one workflow's history
together. Like every payload here, none of these may hold a secret or a prompt:
the provider batch workflow reads each task's prompt from the task's own
history when it builds the batch.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from pydantic import Field

from .config import ConfigError
from .core import Platform, Task
from .messages import CompletionOutput, _Msg

COLLECTOR_WORKFLOW = "AiTaskBatchCollector"
PROVIDER_BATCH_WORKFLOW = "AiProviderBatch"
#: Task -> collector: take me into the next batch. Collector: a task left.
JOIN_SIGNAL = "ai_orchestrator.batch_join"
LEAVE_SIGNAL = "ai_orchestrator.batch_leave"
#: Provider batch -> task: may I send you in this batch? (an update: a task
#: already in another batch, or closed, says no, so no task is ever paid twice).
JOINED_UPDATE = "ai_orchestrator.batch_joined"
#: Provider batch -> task: here is your answer.
ANSWER_SIGNAL = "ai_orchestrator.batch_answer"
BATCH_QUERY = "ai_orchestrator.batch_state"

JOIN_ACTIVITY = "ai_orchestrator.batch_join"
SUBMIT_ACTIVITY = "ai_orchestrator.batch_submit"
POLL_ACTIVITY = "ai_orchestrator.batch_poll"
FAN_OUT_ACTIVITY = "ai_orchestrator.batch_fan_out"
CANCEL_ACTIVITY = "ai_orchestrator.batch_cancel"

#: Providers answer a batch within 24 hours (OpenAI's and Anthropic's window).
COMPLETION_WINDOW_SECONDS = 24 * 3600.0
#: ``delivery="auto"`` batches a task only when its deadline leaves this much
#: past the completion window: time to go real time if the batch expires.
AUTO_MARGIN_SECONDS = 3600.0


def takes_batch(task: Task) -> bool:
    """Whether a task goes through a provider batch: ``batch`` always; ``auto`` when
    its deadline leaves the provider's whole completion window plus a margin to go
    real time should the batch expire, and no cost cap needs its answer streamed
    (a batch answer arrives whole). Never an agent session. The workflow and the
    client (status, progress) both ask this."""
    if task.platform_hint == Platform.CLAUDE_CODE:
        return False
    constraints = task.effective_constraints
    if constraints.delivery == "batch":
        return True
    capped = constraints.max_cost_usd is not None or bool(constraints.budget)
    long_enough = (constraints.timeout_seconds or 0) >= (
        COMPLETION_WINDOW_SECONDS + AUTO_MARGIN_SECONDS
    )
    return constraints.delivery == "auto" and long_enough and not capped


class BatchMember(_Msg):
    """One task in a batch: its workflow, and its id in the provider's batch."""

    workflow_id: str
    run_id: str | None = None


class BatchJoinRequest(_Msg):
    """Task -> join activity: the task, and what routes it (the worker resolves the
    model: the workflow does not know the worker's default)."""

    member: BatchMember
    model: str | None = None
    platform_hint: str | None = None


class CollectorInput(_Msg):
    """A collector's settings (fixed by the first task of its key) and what it
    carries over a continue-as-new."""

    task_queue: str
    platform: str
    model: str
    #: A batch goes once this long passes with no new task ...
    window_seconds: float = Field(default=2.0, gt=0)
    #: ... or this long after its first task, or once it holds ``max_items``.
    max_wait_seconds: float = Field(default=60.0, gt=0)
    max_items: int = Field(default=2000, ge=1)
    #: Provider polling: first interval, growth, longest interval.
    poll_seconds: float = Field(default=1.0, gt=0)
    poll_max_seconds: float = Field(default=5.0, gt=0)
    pending: list[BatchMember] = Field(default_factory=list)
    sequence: int = 0


class ProviderBatchInput(_Msg):
    """One provider batch: who is in it, and (after a continue-as-new) how far it got."""

    task_queue: str
    platform: str
    model: str
    members: list[BatchMember]
    poll_seconds: float = 1.0
    poll_max_seconds: float = 5.0
    provider_batch_id: str | None = None
    #: Members (by index) the batch leaves out: closed before it was sent, or
    #: cancelled since (their answers are discarded, their cost still counted).
    left: list[int] = Field(default_factory=list)
    included: list[int] | None = None
    #: Epoch seconds before which this batch cannot have been created at the
    #: provider: how a retried send finds the batch an earlier attempt created.
    since: float | None = None


class BatchJoined(_Msg):
    """To a task: the provider batch workflow that holds it, and its place there."""

    batch_workflow_id: str
    index: int


class BatchAnswer(_Msg):
    """To a task: its answer (a whole attempt's output, billed at the batch price),
    or why the batch could not answer it."""

    batch_workflow_id: str
    provider_batch_id: str
    output: CompletionOutput | None = None
    error: str | None = None
    error_type: str | None = None
    #: Worth asking again in real time (expired, a server error), not a bad request.
    retryable: bool = False


class SubmitOutcome(_Msg):
    provider_batch_id: str | None
    included: list[int]
    left: list[int]


class BatchPoll(_Msg):
    provider_batch_id: str
    platform: str


class BatchState(_Msg):
    """What the provider says of a batch (and what ``BATCH_QUERY`` answers)."""

    provider_batch_id: str | None = None
    status: str = "gathering"
    outcome: str | None = None
    total: int = 0
    succeeded: int = 0
    errored: int = 0
    vendor_status: str = ""
    error: str | None = None

    @property
    def ended(self) -> bool:
        return self.status == "ended"


class FanOut(_Msg):
    batch_workflow_id: str
    provider_batch_id: str
    platform: str
    model: str
    members: list[BatchMember]
    #: Members (by index) sent in the batch; the others were never sent.
    included: list[int] = Field(default_factory=list)
    left: list[int] = Field(default_factory=list)
    #: The whole batch failed or expired: every member gets this error.
    error: str | None = None


class FanOutSummary(_Msg):
    answered: int = 0
    errored: int = 0
    discarded: int = 0
    cost: float = 0.0
    tokens: int = 0


#: Tasks in one provider batch at most: their ids ride in the provider batch
#: workflow's input (about 150 bytes each, under Temporal's 2 MB payload limit).
#: 50,000 tasks of one model go as ten or more provider batches.
MAX_ITEMS = 5000
#: The collector's settings, read by workers (the first task of a key fixes them).
ENV_WINDOW = "AI_ORCHESTRATOR_BATCH_WINDOW_SECONDS"
ENV_MAX_WAIT = "AI_ORCHESTRATOR_BATCH_MAX_WAIT_SECONDS"
ENV_MAX_ITEMS = "AI_ORCHESTRATOR_BATCH_MAX_ITEMS"
ENV_POLL = "AI_ORCHESTRATOR_BATCH_POLL_SECONDS"
ENV_POLL_MAX = "AI_ORCHESTRATOR_BATCH_POLL_MAX_SECONDS"


def settings_from_env(env: Mapping[str, str] | None = None) -> dict[str, float | int]:
    """The collector settings the environment sets (the rest keep their defaults)."""
    source = os.environ if env is None else env
    found: dict[str, float | int] = {}
    for name, field, kind in (
        (ENV_WINDOW, "window_seconds", float),
        (ENV_MAX_WAIT, "max_wait_seconds", float),
        (ENV_MAX_ITEMS, "max_items", int),
        (ENV_POLL, "poll_seconds", float),
        (ENV_POLL_MAX, "poll_max_seconds", float),
    ):
        raw = source.get(name, "").strip()
        if not raw:
            continue
        try:
            value = kind(raw)
        except ValueError:
            value = -1
        if value <= 0 or (field == "max_items" and value > MAX_ITEMS):
            raise ConfigError(
                f"{name} must be a positive number ({ENV_MAX_ITEMS}: at most {MAX_ITEMS})"
            )
        found[field] = value
    return found
