"""Following a task's text as it is generated: ``stream_events`` and ``stream_result``.

Kept apart from the rest of :class:`~ai_orchestrator.client.TaskClient` because
how live text reaches readers (today: a progress query polled every
``poll_interval``, which adds nothing to history) is the part expected to
change on its own; the reader API and its restart rules must not.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from temporalio.api.enums.v1 import QueryRejectCondition
from temporalio.client import (
    Client,
    WorkflowHandle,
    WorkflowQueryFailedError,
    WorkflowQueryRejectedError,
)
from temporalio.service import RPCError, RPCStatusCode

from ..core import Result, TaskStatus
from ..exceptions import TaskFailedError, TaskNotFoundError
from ..messages import PROGRESS_QUERY, Progress, ProgressQuery
from ..streaming import PrefixGuard
from ._events import Finished, Restart, StreamEvent, TextDelta
from ._stuck import watch_stuck


class Following:
    """The following half of :class:`~ai_orchestrator.client.TaskClient` (a mixin)."""

    client: Client
    poll_interval: float

    if TYPE_CHECKING:

        def _handle(self, task_id: str) -> WorkflowHandle[Any, Any]: ...

        async def get_result(self, task_id: str, timeout: float | None = 300) -> Result: ...

    async def _progress(self, handle: WorkflowHandle[Any, Any], offset: int) -> Progress | None:
        """The task's progress from ``offset``, or None once the run is closed."""
        while True:
            try:
                return await handle.query(
                    PROGRESS_QUERY,
                    ProgressQuery(offset=offset),
                    result_type=Progress,
                    reject_condition=QueryRejectCondition.QUERY_REJECT_CONDITION_NOT_OPEN,
                    rpc_timeout=timedelta(seconds=10),
                )
            except WorkflowQueryRejectedError:
                return None
            except RPCError as exc:
                if exc.status == RPCStatusCode.NOT_FOUND:
                    raise TaskNotFoundError(f"no task with id {handle.id!r}") from None
                # No worker yet, or a server restart: the task is still there; wait.
            except WorkflowQueryFailedError:
                pass
            await asyncio.sleep(max(self.poll_interval, 0.2))

    async def _progress_unless_stuck(
        self, handle: WorkflowHandle[Any, Any], offset: int, watch: asyncio.Future[str]
    ) -> Progress | None:
        """Like :meth:`_progress`, but None as soon as ``watch`` finds the run jammed."""
        if watch.done():
            return None
        query = asyncio.ensure_future(self._progress(handle, offset))
        done, _ = await asyncio.wait({query, watch}, return_when=asyncio.FIRST_COMPLETED)
        if query in done:
            return query.result()
        query.cancel()
        await asyncio.gather(query, return_exceptions=True)
        return None

    async def stream_events(self, task_id: str) -> AsyncIterator[StreamEvent]:
        """Every change of the task's output, restarts included, then ``Finished``.

        Joins at any time, even after the task ended: the text always starts at
        the beginning of the current attempt. A jammed run (see :meth:`get_result`)
        ends the stream within seconds with a FAILED ``Finished``.

        Raises:
            TaskNotFoundError: no such task.
        """
        handle = self._handle(task_id)
        # A jammed run answers no query and never closes: watch for it alongside.
        watch = asyncio.ensure_future(watch_stuck(handle, self.client.data_converter))
        attempt, text = 0, ""
        try:
            while True:
                progress = await self._progress_unless_stuck(handle, len(text), watch)
                if progress is None:
                    break
                if progress.attempt != attempt:
                    if progress.offset:  # the offset was meant for the old attempt: read again
                        progress = await self._progress_unless_stuck(handle, 0, watch)
                        if progress is None:
                            break
                    if text:
                        yield Restart(attempt=progress.attempt, discarded=text)
                    attempt, text = progress.attempt, ""
                if progress.text:
                    yield TextDelta(text=progress.text, attempt=attempt, offset=len(text))
                    text += progress.text
                if progress.done:
                    break
                await asyncio.sleep(self.poll_interval)
        finally:
            watch.cancel()
            await asyncio.gather(watch, return_exceptions=True)
        result = await self.get_result(task_id, timeout=None)
        final = (
            result.output if result.status == TaskStatus.COMPLETED else result.partial_output or ""
        )
        if final.startswith(text):
            if len(final) > len(text):
                yield TextDelta(text=final[len(text) :], attempt=attempt, offset=len(text))
        else:
            final_attempt = int(result.metadata.get("attempts") or attempt + 1)
            yield Restart(attempt=final_attempt, discarded=text)
            if final:
                yield TextDelta(text=final, attempt=final_attempt, offset=0)
        yield Finished(result=result)

    async def stream_result(self, task_id: str) -> AsyncIterator[str]:
        """The task's text as it is generated; concatenated, it equals the final output.

        Ends when the task ends (for a cancelled task, after its partial output).
        If a retry regenerates the same text it continues seamlessly. It ends
        normally only if what it yielded is exactly the final output (the partial
        output of a cancelled task).

        Raises:
            StreamRestartedError: a retry produced different or shorter text than
                was already streamed (use :meth:`stream_events` to handle restarts;
                ``.final`` holds the final text when the task had ended).
            TaskFailedError: the task failed; its partial output was streamed.
            TaskNotFoundError: no such task.
        """
        guard = PrefixGuard()
        async for event in self.stream_events(task_id):
            if isinstance(event, Restart):
                guard.restart(event.attempt)
            elif isinstance(event, TextDelta):
                fresh = guard.feed(event.text)
                if fresh:
                    yield fresh
            elif event.result.status == TaskStatus.FAILED:
                raise TaskFailedError(event.result)
            else:
                result = event.result
                guard.finish(
                    result.output
                    if result.status == TaskStatus.COMPLETED
                    else result.partial_output or ""
                )
