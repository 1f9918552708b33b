"""How often a streaming attempt heartbeats and checkpoints, on a worker's shared budget.

Every heartbeat is a write on the server and every chunk signal a workflow task
and a few history writes, so the worker's attempts share a budget of each: the
more of them stream at once, the less often each one heartbeats or signals. Two
bounds hold whatever the load: a heartbeat at least every third of the heartbeat
timeout (a cancel arrives with one, and a dead worker is noticed), and the
heartbeat an attempt leaves as it fails is never lost to the SDK's throttle.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from temporalio import activity

from ..messages import AttemptState, CompletionRequest
from ..providers import ProviderStream

#: Checkpoints widen as a run gets older, so that even a week-long task sends a
#: bounded number of signals: one per this fraction of the run's age at most.
RUN_AGE_DIVISOR = 200.0


def unseen(stream: ProviderStream, every: float) -> int:
    """Chunks a stream is expected to add before the next heartbeat, were its worker
    to die unseen meanwhile: half the interval at its pace (none once it ended)."""
    if stream.finish_reason is not None:
        return 0
    return round(stream.pace() * every / 2)


class LastBeat:
    """When this attempt last heartbeated, so its final heartbeat is not lost.

    The SDK holds a heartbeat back for the throttle interval after the previous
    one, and drops a held one when the attempt ends. The heartbeat an attempt
    sends before failing carries what the next attempt must inherit (its bill,
    the provider-fault count), so the attempt waits out the window first.
    """

    def __init__(self, throttle: float) -> None:
        self.throttle = throttle
        self.at: float | None = None

    def send(self, details: object) -> None:
        activity.heartbeat(details)
        self.at = time.monotonic()

    async def last_word(self, details: object) -> None:
        held = self.at is not None and time.monotonic() - self.at < self.throttle
        wait = self.throttle - (time.monotonic() - self.at) if held and self.at else 0.0
        activity.heartbeat(details)
        if held:
            await asyncio.sleep(wait + 0.1)  # the SDK sends it when the window closes


@dataclass
class Pacing:
    """The worker's pace settings (see ``LLMActivities``), and how many of its
    attempts stream now: that count divides the budgets."""

    flush_interval: float
    checkpoint_interval: float
    signals_per_second: float
    checkpoints_per_second: float
    heartbeat_interval: float
    heartbeats_per_second: float
    heartbeat_throttle: float
    #: With a live channel, chunk signals are only durable checkpoints.
    live: bool
    streaming: int = 0

    def interval_for(
        self, request: CompletionRequest, *, floor: bool = True
    ) -> Callable[[], float]:
        """Seconds until the next chunk signal, asked anew before each one; without
        ``floor``, only what the worker's signal budget and the run's age ask for."""
        constraints = request.task.effective_constraints
        run_started = (
            request.deadline_epoch - (constraints.timeout_seconds or 0.0)
            if request.deadline_epoch is not None
            else time.time()
        )

        def interval() -> float:
            budget = self.signals_per_second
            if self.live:
                budget = min(budget, self.checkpoints_per_second)
            busy = self.streaming / budget
            age = max(0.0, time.time() - run_started) / RUN_AGE_DIVISOR
            least = self.checkpoint_interval if self.live else self.flush_interval
            return max(least if floor else 0.0, busy, age)

        return interval

    def heartbeat_every(self, timeout: timedelta | None) -> float:
        """Seconds to the next heartbeat: often (a cancel arrives with one), less so
        when many attempts share the worker's budget (each heartbeat is a write on
        the server: 300 streams at one a second kept a dev server 80% busy), and
        always a third of the heartbeat timeout at most (a dead worker is noticed)."""
        busy = max(self.heartbeat_interval, self.streaming / self.heartbeats_per_second)
        if timeout is None:
            return busy
        return min(busy, timeout.total_seconds() / 3)

    def throttle_for(self, timeout: timedelta | None) -> float:
        """How long the SDK holds back a heartbeat after the previous one."""
        if timeout is None:
            return self.heartbeat_throttle
        return min(self.heartbeat_throttle, 0.8 * timeout.total_seconds())

    async def heartbeat(
        self,
        details: Callable[[], AttemptState],
        stream: ProviderStream,
        timeout: timedelta | None,
        beat: LastBeat,
    ) -> None:
        """Heartbeat ``details`` until cancelled, with the text a sudden death would
        leave unseen, so the next attempt bills it."""
        # The first waits an interval: a short answer needs no heartbeat at all.
        while True:
            every = self.heartbeat_every(timeout)
            await asyncio.sleep(every)
            beat.send(details().model_copy(update={"unseen_chunks": unseen(stream, every)}))
