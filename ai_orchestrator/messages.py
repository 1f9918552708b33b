"""What travels through Temporal: workflow input, activity I/O, signals, queries.

These payloads are recorded in workflow history, so none of them may hold a
secret: the API key and endpoint live only in the worker's process.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from .core import Task, TaskStatus

#: Signal, query and activity names, fixed so that clients and workers of
#: different versions (and other languages) address the same things.
CHUNKS_SIGNAL = "ai_orchestrator.chunks"
PROGRESS_QUERY = "ai_orchestrator.progress"
STREAM_ACTIVITY = "ai_orchestrator.stream_completion"
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


class RetrySettings(_Msg):
    """How Temporal retries one task's provider calls; bounded by design."""

    max_attempts: int = Field(default=5, ge=1, le=100)
    initial_interval_seconds: float = Field(default=1.0, gt=0)
    backoff_coefficient: float = Field(default=2.0, ge=1.0)
    max_interval_seconds: float = Field(default=30.0, gt=0)
    heartbeat_timeout_seconds: float = Field(default=3.0, gt=0)


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


class ChunkBatch(_Msg):
    """Text produced by one attempt since ``offset``; a newer attempt supersedes."""

    attempt: int
    offset: int
    text: str
    chunks: int = 0


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
