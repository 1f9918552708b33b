"""The task and result models every layer shares.

They are pydantic models rather than the plans' dataclasses so that bad input is
rejected at construction, before anything is submitted, and so that they travel
through Temporal as JSON with the pydantic data converter. Keyword construction
and attribute access are the same as the plans' dataclasses, so their call sites
keep working.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, timezone
from enum import Enum
from typing import Any, Final, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

#: Temporal's default priority range is 1 (most urgent) to 5; 3 is its default.
PRIORITY_HIGHEST = 1
PRIORITY_LOWEST = 5
PRIORITY_DEFAULT = 3
#: A week: the longest task whose checkpoints and retries stay well inside
#: Temporal's per-run history limits (51,200 events, 50 MB, 10,000 signals).
MAX_TIMEOUT_SECONDS = 7 * 24 * 3600.0
#: A named budget's name (``TaskConstraints.budget``, ``AI_ORCHESTRATOR_BUDGETS``):
#: short, and safe in a Redis key and a metric attribute.
BUDGET_NAME_PATTERN = r"[A-Za-z0-9._:-]{1,64}"


def decoded_leniently(info: ValidationInfo) -> bool:
    """True when a payload from Temporal is being decoded, not a model built by a user.

    A check users must pass at construction must not turn an input that is
    already in history (written by an older client) into a decoding failure
    that jams its run.
    """
    context = info.context
    return isinstance(context, Mapping) and all(
        context.get(key) == value for key, value in LENIENT_CONTEXT.items()
    )


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


class TaskStatus(str, Enum):
    """Where a task is in its life; UNKNOWN means no such task was found."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    UNKNOWN = "unknown"

    @property
    def is_terminal(self) -> bool:
        return self in (TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED)


class TaskType(str, Enum):
    """What kind of work a task is; informational, carried into the Web UI."""

    GENERAL = "general"
    CODE_GENERATION = "code_generation"
    CODE_REVIEW = "code_review"
    REFACTORING = "refactoring"
    RESEARCH = "research"
    DATA_ANALYSIS = "data_analysis"
    DOCUMENTATION = "documentation"
    TESTING = "testing"


class Platform(str, Enum):
    """Where a task runs: the provider a task is routed to (see ``providers``).

    CHATGPT is OpenAI or any OpenAI-compatible server, CLAUDE Anthropic's
    Messages API, GEMINI Google's Gemini API, CLAUDE_CODE an agentic session of
    the Claude Code CLI run by the worker.
    """

    CHATGPT = "chatgpt"
    CLAUDE = "claude"
    CLAUDE_CODE = "claude_code"
    GEMINI = "gemini"


#: Validation context under which our models drop unknown fields instead of
#: refusing them. Only the data converter passes it (see converter.py): a
#: payload written by a newer client may carry fields this worker does not
#: know, and refusing it would fail every workflow task of that run forever.
LENIENT_CONTEXT: Final[dict[str, Any]] = {"ai_orchestrator_ignore_unknown_fields": True}


def _field_keys(model: type[BaseModel]) -> frozenset[str]:
    """Every key that validation would accept for a field: names and aliases."""
    keys: set[str] = set()
    for name, field in model.model_fields.items():
        keys.add(name)
        if field.alias:
            keys.add(field.alias)
        alias = field.validation_alias
        choices = alias.choices if isinstance(alias, AliasChoices) else [alias]
        keys.update(choice for choice in choices if isinstance(choice, str))
    return frozenset(keys)


class _Model(BaseModel):
    """Strict for users (a typo fails at construction), lenient when decoding.

    ``extra="forbid"`` stays the rule; only validation under
    :data:`LENIENT_CONTEXT` drops unknown keys first. The context reaches
    nested models too, so ``task.constraints`` is tolerated like ``task``.
    """

    model_config = ConfigDict(validate_assignment=True, extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _drop_unknown_fields(cls, data: Any, info: ValidationInfo) -> Any:
        if not isinstance(data, dict) or not decoded_leniently(info):
            return data
        known = _field_keys(cls)
        return {key: value for key, value in data.items() if key in known}


class TaskConstraints(_Model):
    """Limits on one task; None leaves the choice to the server or the adapter."""

    max_tokens: int | None = Field(default=None, gt=0)
    #: The whole task, every attempt and wait included; at most a week (history
    #: must stay within Temporal's limits, and live text is checkpointed into it).
    timeout_seconds: float | None = Field(default=300.0, gt=0)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    model: str | None = None
    #: Models to continue on, in order, when the current one's provider fails for
    #: provider-side reasons (quota, overload or outage after its retries, not
    #: configured on the worker); never for a bad request.
    fallback_models: list[str] = Field(default_factory=list, max_length=5)
    #: Which OpenAI API answers this task: ``"chat"`` (Chat Completions) or
    #: ``"responses"`` (the Responses API in background mode, so a retry re-attaches
    #: to the answer being generated instead of paying for a new one); None uses
    #: the worker's ``AI_ORCHESTRATOR_OPENAI_API``. Background mode *stores the
    #: response at the provider* (``store=true``, kept for about ten minutes for
    #: re-attaching): not for zero-data-retention accounts. OpenAI-compatible
    #: servers only; other platforms ignore it.
    openai_api: Literal["chat", "responses"] | None = None
    #: Opt-in continuation of a Chat Completions answer after a broken stream: the
    #: retry sends the text so far as a partial assistant message and the model
    #: goes on from there. ``"continue_final_message"`` is vLLM's (and SGLang's)
    #: form, ``"prefix"`` DeepSeek's (``"prefix": true``, its beta endpoint); only
    #: servers that support the form may be asked. Caveats: the model continues
    #: text it may not have produced token for token (the seam is re-tokenised, so
    #: a word split there can come out differently), and ``max_tokens`` applies to
    #: the continuation alone. None (the default): a broken stream starts over.
    chat_resume: Literal["continue_final_message", "prefix"] | None = None
    #: A hard cap on what the task may cost (USD), over every attempt and fallback
    #: model, from the same bill as ``Result.cost``. Checked before each call and
    #: after each streamed chunk: when the next chunk would cross it, the stream is
    #: stopped at the provider and the task fails with ``BudgetExceeded``, keeping
    #: its partial output and its true cost. Needs a price for the model (see
    #: ``PricingTable``); the prompt counts at about four characters a token until
    #: the provider reports it. Claude Code gets it as ``--max-budget-usd``.
    max_cost_usd: float | None = Field(default=None, gt=0)
    #: A named budget the task spends from, shared with every task that names it
    #: (a team, a tenant: USD per UTC day, configured on the workers in
    #: ``AI_ORCHESTRATOR_BUDGETS``). Each call reserves the most it can cost before
    #: it starts and settles its true cost after; when the day's budget is spent
    #: the task fails with ``NamedBudgetExceeded``. A name the worker does not
    #: know fails the task at once. Combines with ``max_cost_usd``: the tighter holds.
    budget: str | None = None
    #: How the answer is bought. ``"realtime"`` (the default) streams it now.
    #: ``"batch"`` sends the task in the provider's batch API (OpenAI, Anthropic):
    #: half the price, answered within the provider's 24-hour window, the answer
    #: arriving whole (no stream); tasks of one model are gathered for a few
    #: seconds into one provider batch. ``"auto"`` takes the batch when
    #: ``timeout_seconds`` leaves the whole window plus an hour to go real time
    #: should the batch expire (at least 25 hours), real time otherwise.
    delivery: Literal["realtime", "batch", "auto"] = "realtime"

    @field_validator("timeout_seconds")
    @classmethod
    def _timeout_within_history_limits(
        cls, value: float | None, info: ValidationInfo
    ) -> float | None:
        if value is not None and value > MAX_TIMEOUT_SECONDS and not decoded_leniently(info):
            raise ValueError(
                f"timeout_seconds must be at most {MAX_TIMEOUT_SECONDS:,.0f} (a week): a longer "
                "task could outgrow Temporal's per-run history limits"
            )
        return value

    @field_validator("fallback_models")
    @classmethod
    def _fallbacks_named(cls, value: list[str]) -> list[str]:
        if any(not model.strip() for model in value):
            raise ValueError("fallback_models must name models (no blank entries)")
        return value

    @model_validator(mode="after")
    def _batch_cannot_be_capped(self) -> TaskConstraints:
        if self.delivery == "batch" and (self.max_cost_usd is not None or self.budget):
            raise ValueError(
                "delivery='batch' cannot hold max_cost_usd or a named budget: a batch answer "
                "arrives whole and cannot be stopped at a cap (use 'realtime', or 'auto', "
                "which streams capped tasks in real time)"
            )
        return self

    @field_validator("budget")
    @classmethod
    def _budget_named(cls, value: str | None, info: ValidationInfo) -> str | None:
        # (A worker decoding a task checks the name against its own budgets instead.)
        if (
            value is not None
            and not re.fullmatch(BUDGET_NAME_PATTERN, value)
            and not decoded_leniently(info)
        ):
            raise ValueError(
                "budget must be a name of 1-64 letters, digits and . _ : - "
                f"(one of the workers' AI_ORCHESTRATOR_BUDGETS), got {value[:80]!r}"
            )
        return value

    @field_validator("model")
    @classmethod
    def _model_not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("model must not be blank (leave it unset for the default)")
        return value


class Task(_Model):
    """One prompt to run. ``task_id`` is assigned at submission when left unset."""

    type: TaskType = TaskType.GENERAL
    prompt: str
    platform_hint: Platform | None = None
    priority: int = Field(default=PRIORITY_DEFAULT, ge=PRIORITY_HIGHEST, le=PRIORITY_LOWEST)
    requires_gsd: bool = False
    metadata: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime = Field(default_factory=_utcnow)
    context: dict[str, Any] = Field(default_factory=dict)
    files: list[str] = Field(default_factory=list)
    constraints: TaskConstraints | None = None
    task_id: str | None = None

    @field_validator("prompt")
    @classmethod
    def _prompt_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("prompt must not be empty")
        return value

    @field_validator("task_id")
    @classmethod
    def _task_id_usable(cls, value: str | None) -> str | None:
        # The id becomes a Temporal workflow id: keep it printable and bounded.
        if value is not None and (not value.strip() or len(value) > 255 or "\n" in value):
            raise ValueError("task_id must be 1-255 characters on one line")
        return value

    @property
    def effective_constraints(self) -> TaskConstraints:
        return self.constraints or TaskConstraints()


class Result(_Model):
    """The outcome of one task, whichever way it ended.

    ``status`` defaults from ``success`` so that the plans' call sites, which set
    only ``success``, still produce a coherent result.
    """

    task: Task
    platform: Platform = Platform.CHATGPT
    output: str = ""
    success: bool = False
    error: str | None = None
    cost: float = 0.0
    tokens_used: int = 0
    duration_seconds: float = 0.0
    metadata: dict[str, Any] = Field(default_factory=dict)
    completed_at: datetime = Field(default_factory=_utcnow)
    status: TaskStatus = TaskStatus.UNKNOWN
    files_created: list[str] = Field(default_factory=list)
    partial_output: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _status_from_success(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("status") is None:
            data = {
                **data,
                "status": TaskStatus.COMPLETED if data.get("success") else TaskStatus.FAILED,
            }
        return data
