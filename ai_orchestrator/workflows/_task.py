"""One workflow per task: run the provider activity, collect its output, report.

The workflow holds the streamed text so far (fed by batched signals from the
activity) and answers queries about it; clients poll those queries, so
following a task adds nothing to its history. It fails (not returns an error
result) when the task fails, and is cancelled when the task is cancelled, so
the Web UI shows each run's real outcome.

Versioning: runs in flight when a worker is upgraded replay on the new code,
so every change of behaviour is taken only by runs for which
``workflow.patched`` says so; the recorded histories in
``tests/reliability/histories`` (added, never re-recorded) prove the old paths
still replay. ``EDGES`` (2026-11) covers: provider faults bounded by the
activity instead of Temporal's attempt count, the billed ledger in results,
search attributes in every end state, and a result too large for Temporal
failing clearly instead of jamming the run. ``FALLBACK`` (2026-11, taken only by
tasks that name ``fallback_models``): on a provider-side failure the task
continues on the next model, each model a new activity. ``PAID`` (2026-12,
taken when a run first fails, is cancelled or falls back): answers the task
gave up on that may still be generating at the provider are stopped by a short
activity (their real bill replaces the estimates), an attempt lost with its
worker is priced and an answer it created is billed even before its first text,
and the route names the model and platform each failed leg actually called.
``BUDGET`` (2026-12, taken only by tasks with ``max_cost_usd`` that fall back):
the next model's activity is told what the models before it cost. ``BATCHED``
(2026-12, taken only by tasks with ``delivery="batch"`` or ``"auto"``): the task
is answered through a provider batch (see ``_batch_path``), real time otherwise.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    TimeoutError,
    is_cancelled_exception,
)

with workflow.unsafe.imports_passed_through():
    from ..core import LENIENT_CONTEXT, Platform, Result, Task, TaskStatus
    from ..delivery import ANSWER_SIGNAL, BATCH_QUERY, JOINED_UPDATE, BatchAnswer, BatchJoined
    from ..errors import OUTPUT_TOO_LARGE, TASK_FAILED
    from ..messages import (
        CHUNKS_SIGNAL,
        PROGRESS_QUERY,
        STOP_ACTIVITY,
        STREAM_ACTIVITY,
        WORKFLOW_TYPE,
        AttemptState,
        ChunkBatch,
        CompletionOutput,
        CompletionRequest,
        Ledger,
        Progress,
        ProgressQuery,
        StopAnswers,
        StoppedAnswers,
        TaskInput,
    )
    from ..output import OutputBuffer
    from ..search import COST_USD, STATUS, TOKENS
    from ._batch_path import BATCHED, BatchPath, wants_batch
    from ._options import DEFAULT_TIMEOUT_SECONDS, FALLBACK_ERROR_TYPES, stream_activity_options

#: See the module docstring; never rename or remove while runs may carry them.
EDGES = "ai-orchestrator-2026-11-edges"
FALLBACK = "ai-orchestrator-2026-11-fallback"
PAID = "ai-orchestrator-2026-12-paid"
BUDGET = "ai-orchestrator-2026-12-budget"
#: Generations of the n-th model of a route start at n * this, so a fallback's
#: text supersedes the text of every model before it.
GENERATION_STRIDE = 1000
#: Temporal refuses payloads over 2 MB; a result this large fails the task
#: clearly rather than being refused at completion, forever.
MAX_RESULT_BYTES = 1_900_000


def _ledger(value: Any) -> Ledger | None:
    try:
        return Ledger.model_validate(value, context=LENIENT_CONTEXT)
    except ValueError:
        return None


def _cancel_requested() -> bool:
    """Whether this run was asked to cancel, however its activity then ended.

    An attempt whose worker died times out even after the task was cancelled,
    and Temporal reports that timeout, not the cancel: the user's cancel must
    still end the task as cancelled. (``Task.cancelling`` is Python 3.11+; on
    3.10 such a task ends failed, as before.)
    """
    task = asyncio.current_task()
    cancelling = getattr(task, "cancelling", None)
    return bool(cancelling and cancelling())


def _called(err: ActivityError) -> dict[str, Any]:
    """The model and platform the failed activity actually called (newer workers say)."""
    cause = err.cause
    if isinstance(cause, ApplicationError) and len(cause.details) > 1:
        called = cause.details[1]
        if isinstance(called, dict):
            return {k: called.get(k) for k in ("model", "platform")}
    return {}


#: The stop activity is a short call; a worker that cannot reach the provider
#: gives up soon (the bill keeps its estimates).
_STOP_OPTIONS: dict[str, Any] = {
    "start_to_close_timeout": timedelta(seconds=30),
    "schedule_to_close_timeout": timedelta(seconds=90),
    "retry_policy": RetryPolicy(maximum_attempts=3),
    "summary": "stop answers the task gave up on",
}


def _estimate_prompt_tokens(task: Task) -> int:
    return (len(task.prompt) + sum(len(str(v)) for v in task.context.values()) + 3) // 4


@workflow.defn(name=WORKFLOW_TYPE)
class TaskWorkflow:
    #: The provider activity; a class attribute so replay controls can vary it.
    activity_type = STREAM_ACTIVITY

    @workflow.init
    def __init__(self, input: TaskInput) -> None:
        self._buffer = OutputBuffer(run_id=workflow.info().run_id)
        self._status = TaskStatus.PENDING
        self._done = False
        self._batch = BatchPath()

    @workflow.signal(name=CHUNKS_SIGNAL)
    def chunks(self, batch: ChunkBatch) -> None:
        if not self._done:
            self._buffer.apply(batch)

    @workflow.update(name=JOINED_UPDATE)
    def batch_joined(self, joined: BatchJoined) -> bool:
        return self._batch.join(joined)

    @batch_joined.validator
    def _may_join(self, joined: BatchJoined) -> None:
        self._batch.check(joined)

    @workflow.signal(name=ANSWER_SIGNAL)
    def batch_answer(self, answer: BatchAnswer) -> None:
        self._batch.answered(answer)

    @workflow.query(name=BATCH_QUERY)
    def batch(self) -> BatchJoined | None:
        """The provider batch workflow holding this task, if one does."""
        return self._batch.joined

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
        self,
        input: TaskInput,
        status: TaskStatus,
        tokens: int = 0,
        cost: float = 0.0,
        *,
        every_end_state: bool = False,
    ) -> None:
        """Record the outcome for operators: a metric, and the searchable status.

        Runs before ``EDGES`` only recorded tokens and cost for completed tasks;
        keeping their exact commands is what lets them replay.
        """
        self._done = True
        self._status = status
        workflow.metric_meter().create_counter(
            "ai_orchestrator_tasks", "Tasks finished, by status"
        ).add(1, {"status": status.value})
        if input.search_attributes:
            updates = [STATUS.value_set(status.value)]
            if every_end_state or status == TaskStatus.COMPLETED:
                updates += [TOKENS.value_set(int(tokens)), COST_USD.value_set(float(cost))]
            workflow.upsert_search_attributes(updates)

    def activity_options(
        self, input: TaskInput, timeout: timedelta, *, edges: bool
    ) -> dict[str, Any]:
        """The provider activity's options, decided in :mod:`..options`."""
        return stream_activity_options(input.retry, timeout, activity_counts_faults=edges)

    @staticmethod
    def _spent(cap: float | None, spent: Ledger) -> dict[str, float]:
        """What earlier models cost, for a task held to ``max_cost_usd``: the next
        model's calls count against the same cap."""
        if cap is None or not spent.attempts or not workflow.patched(BUDGET):
            return {}
        return {"spent_usd": spent.cost}

    def _billed(self, err: BaseException | None, task: Task, *, whole: bool = False) -> Ledger:
        """What the provider billed, from the failure or the last checkpoint."""
        cause = err.cause if isinstance(err, ActivityError) else None
        if isinstance(cause, ApplicationError) and cause.details:
            ledger = _ledger(cause.details[0])
            if ledger is not None:
                return ledger
        if isinstance(cause, TimeoutError) and cause.last_heartbeat_details:
            try:
                state = AttemptState.model_validate(
                    cause.last_heartbeat_details[0], context=LENIENT_CONTEXT
                )
                return state.settled(_estimate_prompt_tokens(task), whole=whole)
            except ValueError:
                pass
        return self._buffer.ledger or Ledger()

    async def _stop_open_answers(self, billed: Ledger) -> Ledger:
        """Stop the answers ``billed`` says may still be generating; their real bills."""
        open_ids = billed.open_responses()
        if not open_ids:
            return billed
        last = {a.response_id: a for a in billed.attempts if a.response_id in open_ids}
        try:
            stopped: StoppedAnswers = await workflow.execute_activity(
                STOP_ACTIVITY,
                StopAnswers(answers=list(last.values())),
                result_type=StoppedAnswers,
                **_STOP_OPTIONS,
            )
        except ActivityError as exc:  # best effort: the estimates stand
            workflow.logger.warning("could not stop the task's open answers: %s", exc)
            return billed
        for bill in stopped.bills:
            billed = billed.settle_response(bill)
        return billed

    async def _through_batch(self, input: TaskInput, deadline: Any) -> CompletionOutput | None:
        """The provider batch's answer; None: real time. A cancel or a refusal ends
        the task here, as on the real-time path."""
        try:
            return await self._batch.wait(input.task, deadline)
        except asyncio.CancelledError:
            await self._batch.leave()
            self._finish(input, TaskStatus.CANCELLED, every_end_state=True)
            raise
        except ApplicationError:
            self._finish(input, TaskStatus.FAILED, every_end_state=True)
            raise

    @workflow.run
    async def run(self, input: TaskInput) -> Result:
        task = input.task
        constraints = task.effective_constraints
        started = workflow.now()
        timeout = timedelta(seconds=constraints.timeout_seconds or DEFAULT_TIMEOUT_SECONDS)
        deadline = started + timeout
        self._status = TaskStatus.RUNNING
        edges = workflow.patched(EDGES)
        # Only tasks that name fallback models take (and mark) the fallback path.
        routes = [task]
        if edges and constraints.fallback_models and workflow.patched(FALLBACK):
            routes += [
                task.model_copy(
                    update={"constraints": constraints.model_copy(update={"model": model})}
                )
                for model in constraints.fallback_models
            ]
        spent = Ledger()  # what the models given up on were billed
        route: list[dict[str, Any]] = []
        output: CompletionOutput | None = None
        if edges and wants_batch(task) and workflow.patched(BATCHED):
            output = await self._through_batch(input, deadline)
        for index, attempt_task in enumerate(routes if output is None else []):
            model = attempt_task.effective_constraints.model or "default model"
            budget = timeout if index == 0 else deadline - workflow.now()
            try:
                output: CompletionOutput = await workflow.execute_activity(
                    self.activity_type,
                    CompletionRequest(
                        task=attempt_task,
                        deadline_epoch=deadline.timestamp(),
                        retry=input.retry if edges else None,
                        generation_base=index * GENERATION_STRIDE,
                        **self._spent(constraints.max_cost_usd, spent),
                    ),
                    result_type=CompletionOutput,
                    summary=f"chat completion ({model})",
                    **self.activity_options(input, budget, edges=edges),
                )
                break
            except ActivityError as err:
                paid = edges and workflow.patched(PAID)
                billed = self._billed(err, task, whole=paid) if edges else Ledger()
                if paid:  # the checkpoint's bill may still be the models' before this one
                    first = index * GENERATION_STRIDE
                    billed = Ledger(attempts=[a for a in billed.attempts if a.generation >= first])
                billed = Ledger(attempts=[*spent.attempts, *billed.attempts])
                if paid:
                    billed = billed.with_late_bills(self._buffer.own_bills) or billed
                    billed = await self._stop_open_answers(billed)
                cancelled = is_cancelled_exception(err)
                if cancelled or (edges and _cancel_requested()):
                    self._finish(
                        input,
                        TaskStatus.CANCELLED,
                        billed.tokens,
                        billed.cost,
                        every_end_state=edges,
                    )
                    if cancelled:
                        raise
                    raise asyncio.CancelledError("cancelled while its worker was away") from err
                cause = err.cause
                message = str(cause) if cause else str(err)
                error_type = cause.type if isinstance(cause, ApplicationError) else None
                more_time = deadline - workflow.now() > timedelta(seconds=1)
                if index + 1 < len(routes) and error_type in FALLBACK_ERROR_TYPES and more_time:
                    # The provider is the problem, not the request: durably on to the
                    # next model (a worker crash from here resumes at that model).
                    spent = billed
                    leg = {"model": model, "outcome": "failed", "error_type": error_type}
                    if paid:  # what was actually called, not what the task named
                        called = _called(err)
                        leg.update(
                            model=called.get("model") or model, platform=called.get("platform")
                        )
                    route.append(leg)
                    continue
                self._finish(
                    input, TaskStatus.FAILED, billed.tokens, billed.cost, every_end_state=edges
                )
                tried = f" (after {', '.join(r['model'] for r in route)})" if route else ""
                raise ApplicationError(
                    f"task failed{tried}: {message}",
                    *([billed] if edges else []),
                    type=error_type or TASK_FAILED,
                    non_retryable=True,
                ) from err
            except asyncio.CancelledError:
                # Cancelled before the activity was even scheduled: older runs left
                # their searchable status as it was.
                if edges:
                    billed = Ledger(
                        attempts=[*spent.attempts, *(self._buffer.ledger or Ledger()).attempts]
                    )
                    self._finish(
                        input,
                        TaskStatus.CANCELLED,
                        billed.tokens,
                        billed.cost,
                        every_end_state=True,
                    )
                raise

        generation = output.generation if output.generation is not None else output.attempt
        self._buffer.apply(
            ChunkBatch(
                attempt=output.attempt,
                offset=output.offset,
                text=output.tail,
                run_id=workflow.info().run_id,
                generation=generation,
            )
        )
        if self._buffer.attempt != generation or self._buffer.length != (
            output.offset + len(output.tail)
        ):
            raise ApplicationError(
                "internal error: streamed output and final result disagree",
                type=TASK_FAILED,
                non_retryable=True,
            )
        ledger = output.ledger if edges and output.ledger is not None else None
        if ledger is not None and spent.attempts:
            ledger = Ledger(attempts=[*spent.attempts, *ledger.attempts])
        if ledger is not None:
            # Taken (and marked) only by a run whose attempts sent bills the final
            # ledger lacks: an attempt that ran on through a Temporal outage.
            late = ledger.with_late_bills(self._buffer.own_bills)
            if late is not None and workflow.patched(PAID):
                ledger = late
        tokens = ledger.tokens if ledger else output.usage.total_tokens
        cost = ledger.cost if ledger else output.cost
        finished = workflow.now()
        result = Result(
            task=task,
            platform=Platform(output.platform) if output.platform else Platform.CHATGPT,
            output=self._buffer.text,
            files_created=output.files_created,
            success=True,
            status=TaskStatus.COMPLETED,
            cost=cost,
            tokens_used=tokens,
            duration_seconds=(finished - started).total_seconds(),
            completed_at=finished,
            metadata={
                "model": output.model,
                "input_tokens": ledger.prompt_tokens if ledger else output.usage.prompt_tokens,
                "output_tokens": (
                    ledger.completion_tokens if ledger else output.usage.completion_tokens
                ),
                "usage_estimated": ledger.estimated if ledger else output.usage.estimated,
                "cost_known": output.cost_known,
                "finish_reason": output.finish_reason,
                "vendor_finish_reason": output.vendor_finish_reason,
                **({"session_id": output.resume_token} if output.resume_token else {}),
                "truncated": output.truncated,
                "attempts": output.attempt,
                "restarts": self._buffer.restarts,
                "chunks": output.chunks,
                "signals": output.signals,
                "first_chunk_seconds": output.first_chunk_seconds,
                **(
                    {
                        "answer_usage": output.usage.model_dump(),
                        "billing": [bill.model_dump() for bill in ledger.attempts],
                    }
                    if ledger
                    else {}
                ),
                **(
                    {
                        "route": [
                            *route,
                            {
                                "model": output.model,
                                "platform": output.platform,
                                "outcome": "completed",
                            },
                        ]
                    }
                    if route
                    else {}
                ),
            },
        )
        if edges and len(result.output) + len(task.prompt) > MAX_RESULT_BYTES // 8:
            # Measured only for big results: encoding twice is not free.
            size = len(result.model_dump_json().encode())
            if size > MAX_RESULT_BYTES:
                self._finish(input, TaskStatus.FAILED, tokens, cost, every_end_state=True)
                raise ApplicationError(
                    f"the result is {size:,} bytes once encoded, over what Temporal stores "
                    f"({MAX_RESULT_BYTES:,}); shorten the prompt or set max_tokens",
                    type=OUTPUT_TOO_LARGE,
                    non_retryable=True,
                )
        self._finish(input, TaskStatus.COMPLETED, tokens, cost)
        return result
