"""One workflow per task: run the provider activity, collect its output, report.

The workflow holds the streamed text so far (fed by batched signals from the
activity) and answers queries about it; clients poll those queries, so
following a task adds nothing to its history. It fails (not returns an error
result) when the task fails, and is cancelled when the task is cancelled, so
the Web UI shows each run's real outcome.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, is_cancelled_exception

with workflow.unsafe.imports_passed_through():
    from ..core import Platform, Result, TaskStatus
    from ..errors import TASK_FAILED
    from ..messages import (
        CHUNKS_SIGNAL,
        PROGRESS_QUERY,
        STREAM_ACTIVITY,
        WORKFLOW_TYPE,
        ChunkBatch,
        CompletionOutput,
        CompletionRequest,
        Progress,
        ProgressQuery,
        TaskInput,
    )
    from ..options import DEFAULT_TIMEOUT_SECONDS, stream_activity_options
    from ..output import OutputBuffer
    from ..search import COST_USD, STATUS, TOKENS


@workflow.defn(name=WORKFLOW_TYPE)
class TaskWorkflow:
    @workflow.init
    def __init__(self, input: TaskInput) -> None:
        self._buffer = OutputBuffer()
        self._status = TaskStatus.PENDING
        self._done = False

    @workflow.signal(name=CHUNKS_SIGNAL)
    def chunks(self, batch: ChunkBatch) -> None:
        if not self._done:
            self._buffer.apply(batch)

    @workflow.query(name=PROGRESS_QUERY)
    def progress(self, query: ProgressQuery) -> Progress:
        buffer = self._buffer
        offset = min(query.offset, buffer.length)
        return Progress(
            status=self._status,
            attempt=buffer.attempt,
            offset=offset,
            text=buffer.text[offset:] if offset < buffer.length else "",
            length=buffer.length,
            chunks=buffer.chunks,
            restarts=buffer.restarts,
            done=self._done,
        )

    def _finish(
        self, input: TaskInput, status: TaskStatus, tokens: int = 0, cost: float = 0.0
    ) -> None:
        """Record the outcome for operators: a metric, and the searchable status."""
        self._done = True
        self._status = status
        workflow.metric_meter().create_counter(
            "ai_orchestrator_tasks", "Tasks finished, by status"
        ).add(1, {"status": status.value})
        if input.search_attributes:
            updates = [STATUS.value_set(status.value)]
            if status == TaskStatus.COMPLETED:
                updates += [TOKENS.value_set(tokens), COST_USD.value_set(cost)]
            workflow.upsert_search_attributes(updates)

    @workflow.run
    async def run(self, input: TaskInput) -> Result:
        task = input.task
        constraints = task.effective_constraints
        started = workflow.now()
        timeout = timedelta(seconds=constraints.timeout_seconds or DEFAULT_TIMEOUT_SECONDS)
        self._status = TaskStatus.RUNNING
        try:
            output: CompletionOutput = await workflow.execute_activity(
                STREAM_ACTIVITY,
                CompletionRequest(task=task, deadline_epoch=(started + timeout).timestamp()),
                result_type=CompletionOutput,
                summary=f"chat completion ({constraints.model or 'default model'})",
                **stream_activity_options(input.retry, timeout),
            )
        except ActivityError as err:
            if is_cancelled_exception(err):
                self._finish(input, TaskStatus.CANCELLED)
                raise
            self._finish(input, TaskStatus.FAILED)
            cause = err.cause
            message = str(cause) if cause else str(err)
            error_type = cause.type if isinstance(cause, ApplicationError) else None
            raise ApplicationError(
                f"task failed: {message}", type=error_type or TASK_FAILED, non_retryable=True
            ) from err

        self._buffer.apply(
            ChunkBatch(attempt=output.attempt, offset=output.offset, text=output.tail)
        )
        if self._buffer.attempt != output.attempt or self._buffer.length != (
            output.offset + len(output.tail)
        ):
            raise ApplicationError(
                "internal error: streamed output and final result disagree",
                type=TASK_FAILED,
                non_retryable=True,
            )
        self._finish(input, TaskStatus.COMPLETED, output.usage.total_tokens, output.cost)
        finished = workflow.now()
        return Result(
            task=task,
            platform=Platform.CHATGPT,
            output=self._buffer.text,
            success=True,
            status=TaskStatus.COMPLETED,
            cost=output.cost,
            tokens_used=output.usage.total_tokens,
            duration_seconds=(finished - started).total_seconds(),
            completed_at=finished,
            metadata={
                "model": output.model,
                "input_tokens": output.usage.prompt_tokens,
                "output_tokens": output.usage.completion_tokens,
                "usage_estimated": output.usage.estimated,
                "cost_known": output.cost_known,
                "finish_reason": output.finish_reason,
                "attempts": output.attempt,
                "restarts": self._buffer.restarts,
                "chunks": output.chunks,
                "signals": output.signals,
                "first_chunk_seconds": output.first_chunk_seconds,
            },
        )
