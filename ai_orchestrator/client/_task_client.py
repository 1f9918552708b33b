"""The application's handle on durable tasks: the adapter lifecycle over Temporal.

Every method addresses a task by its id, which is its workflow id, so any
process (another replica, a CLI, a restarted web server) can follow or cancel
a task it did not submit. Following a task polls a query: reads add nothing to
the task's history, however many consumers there are.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import Any

from temporalio.api.enums.v1 import PendingActivityState
from temporalio.client import (
    Client,
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
)
from temporalio.common import Priority, WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.converter import DataConverter
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from ..adapters import AsyncBasePlatformAdapter
from ..config import DEFAULT_MODEL
from ..config import task_queue as task_queue_from_env
from ..core import Result, Task, TaskStatus
from ..exceptions import TaskIdConflictError, TaskNotFoundError, TaskValidationError
from ..live import LiveSubscriber
from ..messages import WORKFLOW_TYPE, RetrySettings, TaskInput
from ..pricing import PricingTable
from ..providers import route
from ..search import initial as initial_search_attributes
from ..search import missing as missing_search_attributes
from ._closing import OpenStreams, settle_bridge
from ._connect import connect_client
from ._describe import TaskDescription, capacity_wait, provider_batch
from ._events import TaskSummary
from ._following import Following
from ._identity import FINGERPRINT_MEMO, fingerprint, run_fingerprint, run_input
from ._outcome import failure, unfinished, wait
from ._stuck import jam_error, stuck_attempt
from ._unavailable import UNAVAILABLE, unavailable
from ._validation import checked_input, validate
from ._visibility import CLOSED_TO_STATUS, summary_row, web_ui_details, web_ui_summary


class TaskClient(Following, AsyncBasePlatformAdapter):
    """Submit, follow, cancel and collect durable LLM tasks.

    Args:
        client: a Temporal client using :func:`ai_orchestrator.payloads.converter.data_converter`.
        task_queue: where workers listen; default: ``AI_ORCHESTRATOR_TASK_QUEUE``, as
            the workers read it (else ``ai-orchestrator``).
        retry: retry bounds for the provider calls of tasks submitted here.
        pricing: if strict, an allow list: tasks naming other models are refused.
        default_model: the model a task without one will use (for validation and
            the Web UI summary; must match the workers' default).
        poll_interval: seconds between progress queries when a task's text is
            followed through the workflow (no live channel, or ``live=False``).
        eager_start: ask Temporal to hand the first workflow task straight to a
            worker in this process, if there is one (saves a round trip).
        live: follow running tasks on the live channel their worker publishes on
            (see :mod:`ai_orchestrator.live`); False polls the workflow instead.
        live_subscribers: the channels this client can read; default: from the
            environment (worker endpoints, and Redis when configured).
    """

    def __init__(
        self,
        client: Client,
        *,
        task_queue: str | None = None,
        retry: RetrySettings | None = None,
        pricing: PricingTable | None = None,
        default_model: str = DEFAULT_MODEL,
        poll_interval: float = 0.03,
        eager_start: bool = True,
        live: bool = True,
        live_subscribers: Sequence[LiveSubscriber] | None = None,
    ) -> None:
        super().__init__()
        self.client = client
        self.task_queue = task_queue or task_queue_from_env()
        self.retry = retry or RetrySettings()
        self.pricing = pricing
        self.default_model = default_model
        self.poll_interval = poll_interval
        self.eager_start = eager_start
        self.live = live
        self.live_subscribers = list(live_subscribers) if live_subscribers is not None else None
        self._own_subscribers = False
        self._streams = OpenStreams()
        self._searchable: bool | None = None

    async def close(self) -> None:
        """End this client's work so the process can exit cleanly (``async with`` calls it).

        Closes the streams it handed out that are still open (a reader that
        broke out of ``stream_result``) and the live channels it opened itself,
        then lets Temporal's threads finish the calls that were cancelled: a
        script that exits with such calls in flight can abort with ``Fatal
        Python error: PyGILState_Release`` (see :mod:`._closing`). The Temporal
        client stays usable; tasks keep running (this cancels none).
        """
        await self._streams.close_all()
        if self._own_subscribers and self.live_subscribers is not None:
            subscribers, self.live_subscribers = self.live_subscribers, None
            for subscriber in subscribers:
                await subscriber.aclose()
        await settle_bridge()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _search_attributes_ready(self) -> bool:
        """Whether the namespace has our search attributes (checked once per client)."""
        if self._searchable is None:
            try:
                self._searchable = not await missing_search_attributes(self.client)
            except RPCError as exc:
                if exc.status in UNAVAILABLE:
                    return False  # an outage says nothing: ask again next time
                self._searchable = False  # no operator access: run without them
        return self._searchable

    @classmethod
    async def connect(
        cls,
        target_host: str | None = None,
        namespace: str | None = None,
        *,
        task_queue: str | None = None,
        connect_options: dict[str, Any] | None = None,
        data_converter: DataConverter | None = None,
        **options: Any,
    ) -> TaskClient:
        """Connect to Temporal where the workers do.

        What is not given comes from the environment, as the workers and the CLI
        read it: Temporal's envconfig (``TEMPORAL_ADDRESS``, ``TEMPORAL_NAMESPACE``,
        profiles, TLS, API key; else ``localhost:7233``, ``default``) and
        ``AI_ORCHESTRATOR_TASK_QUEUE``. ``connect_options`` go to
        ``Client.connect`` over those (TLS, API key). The data converter must
        match the workers'; by default it follows the environment (encrypted when
        ``AI_ORCHESTRATOR_ENCRYPTION_KEYS`` is set).
        """
        client = await connect_client(
            target_host,
            namespace,
            data_converter=data_converter,
            connect_options=connect_options,
        )
        return cls(client, task_queue=task_queue, **options)

    # -- submission ---------------------------------------------------------------

    def _generate_task_id(self, task: Task) -> str:
        """Named after the platform that will answer, not the one hinted (if any)."""
        platform = route(task, self.default_model)[0]
        return super()._generate_task_id(task.model_copy(update={"platform_hint": platform}))

    async def submit_task(self, task: Task) -> str:
        """Start the task's workflow and return its id.

        Idempotent: submitting a task id that already exists (running or ended)
        with the same task starts nothing and returns the id. A task without an
        id gets a generated one, assigned onto ``task`` itself before anything
        is sent, so re-submitting the same object after an error is idempotent too.

        Raises:
            TaskIdConflictError: the id already names a different task; nothing
                was started (see :mod:`ai_orchestrator.client._identity`).
            TaskValidationError: the task cannot run; nothing was started.
            TemporalUnavailableError: Temporal did not answer; ``.task_id`` says
                which id to resubmit.
        """
        model = validate(task, self.default_model, self.pricing)
        if task.task_id is None:
            task.task_id = self._generate_task_id(task)
        task_id = task.task_id
        searchable = await self._search_attributes_ready()
        task_input = checked_input(task, self.retry, searchable)
        mine = fingerprint(task)
        try:
            await self._start(task_input, model, mine, WorkflowIDReusePolicy.REJECT_DUPLICATE)
        except WorkflowAlreadyStartedError:
            await self._check_same_task(task_id, mine)
        except RPCError as exc:
            raise self._translate(exc, task_id) from None
        return task_id

    async def _start(
        self,
        task_input: TaskInput,
        model: str,
        task_fingerprint: str,
        reuse: WorkflowIDReusePolicy,
    ) -> None:
        """Start a run; FAIL on an existing one, so the caller compares identities.

        Failing (rather than USE_EXISTING) makes the happy path one RPC and leaves
        no window between a check and the start.
        """
        task = task_input.task
        assert task.task_id is not None
        await self.client.start_workflow(
            WORKFLOW_TYPE,
            task_input,
            id=task.task_id,
            task_queue=self.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            id_reuse_policy=reuse,
            memo={FINGERPRINT_MEMO: task_fingerprint},
            priority=Priority(priority_key=task.priority),
            static_summary=web_ui_summary(task, model),
            static_details=web_ui_details(task, model),
            search_attributes=(
                initial_search_attributes(task, model, route(task, self.default_model)[0])
                if task_input.search_attributes
                else None
            ),
            request_eager_start=self.eager_start,
        )

    async def _check_same_task(self, task_id: str, mine: str) -> None:
        """Raise TaskIdConflictError unless the existing run of ``task_id`` is this task."""
        handle = self._handle(task_id)
        try:
            theirs = await run_fingerprint(handle, self.client.data_converter)
        except RPCError as exc:
            raise self._translate(exc, task_id) from None
        if theirs == mine:
            return
        why = (
            "its input cannot be read by this client"
            if theirs is None
            else "it has a different prompt, model or options"
        )
        raise TaskIdConflictError(
            f"task id {task_id!r} already names another task ({why}); nothing was started. "
            "Use a new task_id for a different task.",
            task_id=task_id,
        )

    async def rerun_task(self, task_id: str) -> str:
        """Run a failed, cancelled, terminated or timed out task again, on purpose.

        Starts a new run of the task id with the last run's input (the same
        task and retry settings); results and streams then follow the new run.
        Returns the id. A task that is still running is left alone and its id
        returned (so concurrent re-runs start one run), except a jammed one
        (reported FAILED by :meth:`get_status`), which is refused: its run is
        still open and must be terminated first.

        Raises:
            TaskNotFoundError: no such task.
            TaskValidationError: the task already completed (its result stays
                available; submit a new task id to pay for another answer), is
                jammed, or its input cannot be read.
        """
        handle = self._handle(task_id)
        try:
            desc = await handle.describe()
            if desc.status == WorkflowExecutionStatus.RUNNING:
                if await self._jammed(task_id, desc):
                    raise TaskValidationError(
                        f"task {task_id!r} is jammed but its run is still open; fix the "
                        "worker (it then resumes) or terminate the run, then re-run it"
                    )
                return task_id
            if desc.status == WorkflowExecutionStatus.COMPLETED:
                raise TaskValidationError(
                    f"task {task_id!r} already completed; its result stays available. "
                    "Submit a new task id to run the prompt again."
                )
            task_input = await run_input(handle, self.client.data_converter)
            if task_input is None:
                raise TaskValidationError(f"task {task_id!r}: its input cannot be read")
            model = validate(task_input.task, self.default_model, self.pricing)
            searchable = await self._search_attributes_ready()
            task_input = task_input.model_copy(update={"search_attributes": searchable})
            await self._start(
                task_input,
                model,
                fingerprint(task_input.task),
                WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
            )
        except WorkflowAlreadyStartedError:
            pass  # another re-run won the race: follow its run
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                raise TaskNotFoundError(f"no task with id {task_id!r}") from None
            raise self._translate(exc) from None
        return task_id

    async def execute(self, task: Task) -> Result:
        """Submit and wait for the result."""
        return await self.get_result(await self.submit_task(task), timeout=None)

    # -- observation --------------------------------------------------------------

    def _translate(self, exc: RPCError, task_id: str | None = None) -> Exception:
        return unavailable(self.client, exc, task_id) if exc.status in UNAVAILABLE else exc

    def _handle(self, task_id: str) -> WorkflowHandle[Any, Any]:
        return self.client.get_workflow_handle(task_id, result_type=Result)

    async def get_status(self, task_id: str) -> TaskStatus:
        desc = await self._describe(task_id)
        return TaskStatus.UNKNOWN if desc is None else await self._status_of(task_id, desc)

    async def describe_task(self, task_id: str) -> TaskDescription:
        """The task's status (as :meth:`get_status` says it) and, while it runs, what
        it waits for: ``waiting_for_capacity`` is set while its provider call waits
        for room on the provider's quota (the worker's limiter holds it; it is not
        stuck). One server call, like :meth:`get_status`; an unknown id is UNKNOWN.

        A task with batch delivery that waits for its provider batch has
        ``provider_batch`` set and is RUNNING (where :meth:`get_status`, which
        sees no provider call, says PENDING); saying so costs a read of the
        task's first history page and two queries (see :mod:`._describe`).
        """
        desc = await self._describe(task_id)
        if desc is None:
            return TaskDescription(task_id, TaskStatus.UNKNOWN)
        status = await self._status_of(task_id, desc)
        waiting = batch = None
        if status == TaskStatus.RUNNING:
            waiting = await capacity_wait(desc, self.client.data_converter)
        if status in (TaskStatus.PENDING, TaskStatus.RUNNING) and waiting is None:
            batch = await provider_batch(self.client, desc)
            status = TaskStatus.RUNNING if batch is not None else status
        return TaskDescription(task_id, status, waiting, batch)

    async def _describe(self, task_id: str) -> WorkflowExecutionDescription | None:
        """The run's description; None if there is no such task."""
        try:
            return await self._handle(task_id).describe()
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                return None
            raise self._translate(exc) from None

    async def _status_of(self, task_id: str, desc: WorkflowExecutionDescription) -> TaskStatus:
        if desc.status in CLOSED_TO_STATUS:
            return CLOSED_TO_STATUS[desc.status]
        if await self._jammed(task_id, desc):
            return TaskStatus.FAILED  # it cannot finish until someone intervenes
        for pending in desc.raw_description.pending_activities:
            if (
                pending.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
                or pending.attempt > 1
            ):
                return TaskStatus.RUNNING
        return TaskStatus.PENDING

    async def _jammed(self, task_id: str, desc: WorkflowExecutionDescription) -> bool:
        """Whether the described run is jammed (reads history only when it may be)."""
        attempt = stuck_attempt(desc)
        if not attempt:
            return False
        handle = self._handle(task_id)
        return await jam_error(handle, self.client.data_converter, attempt) is not None

    async def get_result(self, task_id: str, timeout: float | None = 300) -> Result:
        """The task's result, waiting up to ``timeout`` seconds (None: until it ends).

        A failed or cancelled task returns a Result with ``partial_output``; a
        task still running after ``timeout`` returns status RUNNING (it is not
        failed) with the output so far. A jammed run (its workflow task keeps
        failing, see :mod:`ai_orchestrator.client._stuck`) returns status FAILED
        within seconds instead of waiting forever.

        Raises:
            TaskNotFoundError: no such task.
        """
        handle, converter = self._handle(task_id), self.client.data_converter
        try:
            outcome = await wait(handle, converter, timeout)
        except WorkflowFailureError as exc:
            status, error = failure(exc)
            return await unfinished(handle, converter, status, error)
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                raise TaskNotFoundError(f"no task with id {task_id!r}") from None
            raise self._translate(exc) from None
        if isinstance(outcome, Result):
            return outcome
        if outcome is None:
            return await unfinished(
                handle,
                converter,
                TaskStatus.RUNNING,
                f"not finished after {timeout}s; the task is still running",
            )
        return await unfinished(handle, converter, TaskStatus.FAILED, outcome)

    async def list_tasks(self, query: str | None = None, *, limit: int = 50) -> list[TaskSummary]:
        """Tasks matching a visibility query (newest first), e.g.
        ``"AiModel = 'gpt-4o-mini' AND AiCostUsd > 0.01"``.

        Raises:
            TaskValidationError: the query is malformed (the server's message says why).
        """
        where = f"WorkflowType = '{WORKFLOW_TYPE}'" + (f" AND ({query})" if query else "")
        rows: list[TaskSummary] = []
        try:
            async for wf in self.client.list_workflows(where, limit=limit):
                rows.append(summary_row(wf))
        except RPCError as exc:
            if exc.status == RPCStatusCode.INVALID_ARGUMENT:
                raise TaskValidationError(f"invalid query: {exc.message}") from None
            raise self._translate(exc) from None
        return rows

    # -- control ------------------------------------------------------------------

    async def cancel_task(self, task_id: str) -> bool:
        """Request cancellation; True if the task was running. Partial output is kept."""
        handle = self._handle(task_id)
        try:
            desc = await handle.describe()
            if desc.status != WorkflowExecutionStatus.RUNNING:
                return False
            await handle.cancel()
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                return False
            raise self._translate(exc) from None
        return True
