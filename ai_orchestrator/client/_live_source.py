"""Where a reader gets a running task's text: the live channel, else the workflow.

The attempt being followed says where it publishes in its heartbeat details,
which the server returns from ``describe`` without waking a worker; the
reader then holds one connection to that channel for the whole attempt. So a
reader costs a few server calls per attempt, never a workflow activation per
poll, and a thousand readers cost the worker what their text costs.

Between attempts (before the first starts, during a retry's backoff) the
reader waits on the run's history by long-poll, or until the retry is due.
When no channel can be read (a worker with live streaming off, an endpoint
this client cannot reach) it follows the workflow's progress query instead,
as readers did before the live channel existed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from temporalio.api.enums.v1 import PendingActivityState
from temporalio.client import WorkflowExecutionStatus, WorkflowHandle
from temporalio.converter import DataConverter
from temporalio.service import RPCError, RPCStatusCode

from ..exceptions import TaskNotFoundError
from ..live import END_COMPLETED, LiveSubscriber
from ..messages import STREAM_ACTIVITY, AttemptState, Progress
from ._stuck import jam_error, stuck_attempt

logger = logging.getLogger(__name__)

#: An attempt that has run this long without naming a live channel is served
#: by a worker that has none: follow the workflow instead.
_NO_LIVE_AFTER = 1.5
#: Longest wait between looks while an attempt is starting.
_MAX_BACKOFF = 0.5
#: After this long waiting for an attempt to start, look every 2 s, then every
#: tenth of the time waited (at most 10 s): a reader of a task queued behind a
#: thousand others adds at most a tenth to its wait, and asks the server little.
_QUEUED_AFTER = 3.0
_QUEUED_BACKOFF = 2.0
_QUEUED_SHARE = 0.1
_QUEUED_MAX = 10.0
#: How long a live address that failed is followed through Temporal instead
#: (its worker may have died, and its attempt will time out; or it is out of reach).
_RETRY_UNREACHABLE = 2.0
#: Seconds between checks that a run is jammed (one reads its history).
_JAM_CHECK_INTERVAL = 2.0
#: Longest wait on the history long-poll before looking again (a jam is noticed then).
_HISTORY_WAIT = 5.0


@dataclass(frozen=True)
class Piece:
    """Text of ``generation`` from ``offset``; ``done`` once the task has ended."""

    generation: int
    offset: int
    text: str
    done: bool = False


@dataclass(frozen=True)
class _Look:
    run_id: str
    #: The live address of the attempt running now, if it named one.
    address: str | None = None
    #: A started attempt whose worker publishes nothing live.
    unpublished: bool = False
    #: Something is scheduled (an attempt starting or due): look again soon.
    pending: bool = False
    #: Seconds until a retry is due, when waiting for one.
    due_in: float | None = None
    jammed: str | None = None


async def look(
    handle: WorkflowHandle[Any, Any], converter: DataConverter, *, check_jam: bool = True
) -> _Look | None:
    """The run's current attempt, from the server alone; None once the run is closed.

    ``check_jam`` also asks whether the run is jammed, which reads its history
    when its workflow task keeps failing or timing out: callers that look often
    ask only every few seconds, or a busy server gets busier.
    """
    while True:
        try:
            desc = await handle.describe()
            break
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                raise TaskNotFoundError(f"no task with id {handle.id!r}") from None
            await asyncio.sleep(_MAX_BACKOFF)  # a server restart: the task is still there
    if desc.status != WorkflowExecutionStatus.RUNNING:
        return None
    run_id = desc.run_id
    jam = stuck_attempt(desc) if check_jam else 0
    if jam:
        reason = await jam_error(handle, converter, jam)
        if reason:
            return _Look(run_id, jammed=reason)
    for pending in desc.raw_description.pending_activities:
        if pending.activity_type.name != STREAM_ACTIVITY:
            continue
        if pending.state == PendingActivityState.PENDING_ACTIVITY_STATE_SCHEDULED:
            due = None
            if pending.HasField("next_attempt_schedule_time"):
                due = pending.next_attempt_schedule_time.ToMicroseconds() / 1e6 - time.time()
            return _Look(run_id, pending=True, due_in=due)
        state: AttemptState | None = None
        if pending.heartbeat_details.payloads:
            with contextlib.suppress(Exception):
                (state,) = await converter.decode(
                    list(pending.heartbeat_details.payloads), [AttemptState]
                )
        if state is not None and state.attempt == pending.attempt:
            if state.live:
                return _Look(run_id, address=state.live)
            return _Look(run_id, unpublished=True)
        started = pending.last_started_time.ToMicroseconds() / 1e6
        if time.time() - started > _NO_LIVE_AFTER:
            return _Look(run_id, unpublished=True)
        return _Look(run_id, pending=True)
    return _Look(run_id)


class _HistoryWaiter:
    """Wakes a reader when the run's history grows, by one long-poll (not polling)."""

    def __init__(self, handle: WorkflowHandle[Any, Any]) -> None:
        self._handle = handle
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def _follow(self) -> None:
        with contextlib.suppress(Exception):
            async for _ in self._handle.fetch_history_events(wait_new_event=True):
                self._changed.set()
        self._changed.set()

    async def wait(self, timeout: float) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._follow())
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._changed.wait(), timeout)
        self._changed.clear()

    async def pause(self) -> None:
        """Stop long-polling until the next :meth:`wait` (which starts again)."""
        await self.aclose()
        self._task = None
        self._changed.clear()

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


class LiveSource:
    """Pieces of one task's text, live where possible.

    Args:
        position: the reader's (generation, characters of it held), asked before
            each connection so a reconnect continues where the reader is.
        progress: the workflow's progress from an offset (a query), or None once
            the run is closed: the fallback and the filler of gaps.
    """

    def __init__(
        self,
        handle: WorkflowHandle[Any, Any],
        converter: DataConverter,
        subscribers: Sequence[LiveSubscriber],
        position: Callable[[], tuple[int, int]],
        progress: Callable[[int], Any],
        poll_interval: float,
    ) -> None:
        self._handle = handle
        self._converter = converter
        self._subscribers = subscribers
        self._position = position
        self._progress = progress
        self._poll_interval = poll_interval
        self.jammed: str | None = None
        self._jam_checked = -_JAM_CHECK_INTERVAL
        #: Addresses that just failed, and since when: followed through Temporal a while.
        self._unreachable: dict[str, float] = {}

    async def _look(self) -> _Look | None:
        now = time.monotonic()
        check = now - self._jam_checked >= _JAM_CHECK_INTERVAL
        if check:
            self._jam_checked = now
        return await look(self._handle, self._converter, check_jam=check)

    def _subscriber(self, address: str) -> LiveSubscriber | None:
        failed = self._unreachable.get(address)
        if failed is not None and time.monotonic() - failed < _RETRY_UNREACHABLE:
            return None
        return next((s for s in self._subscribers if s.handles(address)), None)

    async def pieces(self) -> AsyncIterator[Piece]:
        history = _HistoryWaiter(self._handle)
        backoff, waited = 0.05, 0.0
        try:
            while True:
                now = await self._look()
                if now is None:
                    return
                if now.jammed:
                    self.jammed = now.jammed
                    return
                subscriber = self._subscriber(now.address) if now.address else None
                if now.address and subscriber is not None:
                    await history.pause()  # its long-poll would wake for every checkpoint
                    async for piece in self._read_attempt(now, subscriber):
                        if piece is None:
                            return
                        yield piece
                    backoff, waited = 0.05, 0.0
                    continue
                if now.address or now.unpublished:
                    progress = await self._progress_or_news(now)
                    if progress is False:
                        continue  # a new attempt to read live, or the run ended
                    if progress is None:
                        return
                    yield Piece(progress.attempt, progress.offset, progress.text, progress.done)
                    if progress.done:
                        return
                    await asyncio.sleep(self._poll_interval)
                elif now.due_in is not None and now.due_in > backoff:
                    await asyncio.sleep(min(now.due_in, _HISTORY_WAIT))
                elif now.pending:
                    await asyncio.sleep(backoff)
                    # Quick while an attempt is starting; slow once it is plainly
                    # queued (a busy worker): a thousand readers asking twice a
                    # second were most of a dev server's load.
                    waited += backoff
                    cap = (
                        _MAX_BACKOFF
                        if waited < _QUEUED_AFTER
                        else min(max(_QUEUED_BACKOFF, waited * _QUEUED_SHARE), _QUEUED_MAX)
                    )
                    backoff = min(backoff * 1.5, cap)
                else:
                    await history.wait(_HISTORY_WAIT)
        finally:
            await history.aclose()

    async def _progress_or_news(self, now: _Look) -> Progress | bool | None:
        """The workflow's progress, or False as soon as there is something better.

        The query can hang for seconds when it is routed to a worker that just
        died (its sticky queue); meanwhile the next attempt may already publish
        live. So the run is looked at again while the query is out.
        """
        query = asyncio.ensure_future(self._progress(self._position()[1]))
        try:
            while True:
                done, _ = await asyncio.wait({query}, timeout=_MAX_BACKOFF)
                if done:
                    result: Progress | None = query.result()
                    return result
                again = await self._look()
                if again is None or again.jammed:
                    return False
                if again.address and again.address != now.address:
                    if self._subscriber(again.address) is not None:
                        return False
        finally:
            if not query.done():
                query.cancel()
                await asyncio.gather(query, return_exceptions=True)

    async def _read_attempt(
        self, now: _Look, subscriber: LiveSubscriber
    ) -> AsyncIterator[Piece | None]:
        """The attempt's frames; a final None when the task's text is complete."""
        assert now.address is not None
        generation, offset = self._position()
        end: str | None = None
        try:
            async for frame in subscriber.read(
                now.address, self._handle.id, now.run_id, generation, offset
            ):
                if frame.run_id != now.run_id:
                    continue
                if frame.text:
                    yield Piece(frame.generation, frame.offset, frame.text)
                if frame.end:
                    end = frame.end
                    break
        except ConnectionError as exc:  # LiveUnavailable, or a broker out of reach
            logger.warning("following task %s through Temporal instead: %s", self._handle.id, exc)
            self._unreachable[now.address] = time.monotonic()
            return
        if end == END_COMPLETED:
            yield None
        elif end is None:
            await asyncio.sleep(0.05)  # the source went away: look again, briefly later
