"""Following a task's text as it is generated: ``stream_events`` and ``stream_result``.

Kept apart from the rest of :class:`~ai_orchestrator.client.TaskClient`: how
live text reaches readers (the live channel, or the progress query polled every
``poll_interval``) changes on its own; the reader API and its restart rules
(applied here to whatever source the text comes from) must not.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Callable
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
from ..live import LiveSubscriber
from ..live._config import subscribers_from_env
from ..messages import PROGRESS_QUERY, Progress, ProgressQuery
from ..streaming import PrefixGuard
from ._closing import OpenStreams
from ._events import Finished, Restart, StreamEvent, TextDelta
from ._live_source import LiveSource, Piece
from ._stuck import watch_stuck


class Following:
    """The following half of :class:`~ai_orchestrator.client.TaskClient` (a mixin)."""

    client: Client
    poll_interval: float
    #: Follow running attempts on the live channel (False: the progress query only).
    live: bool
    live_subscribers: list[LiveSubscriber] | None
    #: Streams handed out, closed by ``close()`` if the reader left them open.
    _streams: OpenStreams
    #: Whether ``live_subscribers`` were made here (from the environment).
    _own_subscribers: bool

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

    def _subscribers(self) -> list[LiveSubscriber]:
        if self.live_subscribers is None:
            self.live_subscribers = subscribers_from_env(self.client.data_converter)
            self._own_subscribers = True
        return self.live_subscribers

    async def _polled(
        self, handle: WorkflowHandle[Any, Any], position: Callable[[], tuple[int, int]]
    ) -> AsyncIterator[Piece]:
        """Pieces from the progress query alone (``live=False``): how readers followed
        tasks before the live channel, kept for workers without it and as a baseline."""
        watch = asyncio.ensure_future(watch_stuck(handle, self.client.data_converter))
        try:
            while True:
                progress = await self._progress_unless_stuck(handle, position()[1], watch)
                if progress is None:
                    return
                yield Piece(progress.attempt, progress.offset, progress.text, progress.done)
                if progress.done:
                    return
                await asyncio.sleep(self.poll_interval)
        finally:
            watch.cancel()
            await asyncio.gather(watch, return_exceptions=True)

    def stream_events(self, task_id: str) -> AsyncGenerator[StreamEvent, None]:
        """Every change of the task's output, restarts included, then ``Finished``.

        Joins at any time, even after the task ended: the text always starts at
        the beginning of the current attempt. Text comes from the live channel
        the running attempt publishes on, else from the workflow (see
        :mod:`._live_source`); either way the same rules apply. A jammed run
        (see :meth:`get_result`) ends the stream within seconds with a FAILED
        ``Finished``.

        Raises:
            TaskNotFoundError: no such task.
        """
        return self._streams.track(self._events(task_id))

    async def _events(self, task_id: str) -> AsyncGenerator[StreamEvent, None]:
        handle = self._handle(task_id)
        generation, text = 0, ""

        def position() -> tuple[int, int]:
            return generation, len(text)

        async def progress(offset: int) -> Progress | None:
            return await self._progress(handle, offset)

        if self.live:
            source = LiveSource(
                handle,
                self.client.data_converter,
                self._subscribers(),
                position,
                progress,
                self.poll_interval,
            ).pieces()
        else:
            source = self._polled(handle, position)
        async for piece in source:
            if piece.generation < generation:
                continue  # a late piece of an attempt already superseded
            if piece.generation > generation:
                if text:
                    yield Restart(attempt=piece.generation, discarded=text)
                generation, text = piece.generation, ""
            if piece.offset > len(text):
                # The source starts later than this reader is (a resumed attempt on
                # another worker): the workflow's checkpoint has the text between.
                filled = await self._progress(handle, len(text))
                if filled is not None and filled.attempt == generation and filled.text:
                    yield TextDelta(text=filled.text, attempt=generation, offset=len(text))
                    text += filled.text
                if piece.offset > len(text):
                    continue  # still a gap: the final result settles it below
            fresh = piece.text[len(text) - piece.offset :]
            if fresh:
                yield TextDelta(text=fresh, attempt=generation, offset=len(text))
                text += fresh
        result = await self.get_result(task_id, timeout=None)
        final = (
            result.output if result.status == TaskStatus.COMPLETED else result.partial_output or ""
        )
        if final.startswith(text):
            if len(final) > len(text):
                yield TextDelta(text=final[len(text) :], attempt=generation, offset=len(text))
        else:
            final_attempt = int(result.metadata.get("attempts") or generation + 1)
            yield Restart(attempt=final_attempt, discarded=text)
            if final:
                yield TextDelta(text=final, attempt=final_attempt, offset=0)
        yield Finished(result=result)

    def stream_result(self, task_id: str) -> AsyncGenerator[str, None]:
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
        return self._streams.track(self._text(task_id))

    async def _text(self, task_id: str) -> AsyncGenerator[str, None]:
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
