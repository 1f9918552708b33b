"""A wait for quota capacity, from the attempt's heartbeat to the status detail.

The attempt heartbeats the limiter's estimate while it waits and clears it once
its turn comes; the client reads it back from the run's description, ignoring
heartbeats that are not the running attempt's own and those of older workers.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from temporalio.api.common.v1 import ActivityType, Payloads
from temporalio.api.enums.v1 import PendingActivityState
from temporalio.api.workflow.v1 import PendingActivityInfo
from temporalio.api.workflowservice.v1 import DescribeWorkflowExecutionResponse
from temporalio.client import WorkflowExecutionDescription
from temporalio.common import MetricMeter
from temporalio.testing import ActivityEnvironment

from ai_orchestrator import CapacityWait, Task
from ai_orchestrator.activities._pacing import LastBeat
from ai_orchestrator.activities._quota import reserve
from ai_orchestrator.client._describe import capacity_wait, waiting_from
from ai_orchestrator.limits import Lease
from ai_orchestrator.messages import STREAM_ACTIVITY, AttemptState, CompletionRequest
from ai_orchestrator.metrics import TaskMetrics
from ai_orchestrator.payloads.converter import data_converter

MODEL = "gpt-4o-mini"


class _Limiter:
    """Makes the call wait ``waits`` (the limiter's estimates, in turn), then grants it."""

    def __init__(self, *waits: float) -> None:
        self.waits = waits

    async def acquire(
        self,
        key: str,
        tokens: int,
        *,
        model: str = "",
        priority: int = 3,
        while_waiting: Callable[[float], Awaitable[None]] | None = None,
    ) -> Lease:
        for seconds in self.waits:
            assert while_waiting is not None
            await while_waiting(seconds)
        return Lease(key, "1", tokens, waited=sum(self.waits))


async def _reserve_heartbeats(limiter: _Limiter) -> tuple[list[float | None], AttemptState]:
    """What each heartbeat of the reservation said of the wait, and the state after."""
    env = ActivityEnvironment()
    said: list[float | None] = []
    env.on_heartbeat = lambda *details: said.append(details[0].waiting_for_capacity)
    state = AttemptState(attempt=1, generation=1, model=MODEL)
    request = CompletionRequest(task=Task(prompt="hello"))

    async def run() -> Lease:
        return await reserve(
            limiter,  # type: ignore[arg-type]
            "key",
            request,
            state,
            LastBeat(1.0),
            prompt_chars=5,
            model=MODEL,
            default_max_tokens=100,
            meter=lambda: TaskMetrics(MetricMeter.noop),
        )

    await env.run(run)
    return said, state


async def test_a_wait_is_heartbeat_and_so_is_its_end() -> None:
    said, state = await _reserve_heartbeats(_Limiter(9.04, 4.0, -1.0))
    # The last heartbeat clears it: a reader must not see a wait that is over.
    assert said == [9.0, 4.0, 0.0, None]
    assert state.waiting_for_capacity is None


async def test_a_call_with_room_sends_no_heartbeat() -> None:
    said, state = await _reserve_heartbeats(_Limiter())
    assert said == [] and state.waiting_for_capacity is None


def test_the_wait_left_is_the_estimate_less_the_heartbeats_age() -> None:
    state = AttemptState(attempt=2, generation=2, model=MODEL, waiting_for_capacity=12.0)
    assert waiting_from(state, 2, 2.0) == CapacityWait(MODEL, 10.0)
    assert waiting_from(state, 2, 30.0) == CapacityWait(MODEL, None)  # overdue: no guess
    assert waiting_from(state, 3, 0.0) is None  # the attempt before's heartbeat
    assert waiting_from(state.model_copy(update={"waiting_for_capacity": None}), 2, 0.0) is None


def test_the_status_line_says_what_waits_and_for_about_how_long() -> None:
    assert str(CapacityWait(MODEL, 11.6)) == f"waiting for capacity on {MODEL} (about 12 s)"
    assert str(CapacityWait(MODEL)) == f"waiting for capacity on {MODEL}"


async def _description(
    details: object, *, attempt: int, state: PendingActivityState.ValueType
) -> WorkflowExecutionDescription:
    converter = data_converter()
    heartbeat = Timestamp()
    heartbeat.FromMicroseconds(int(time.time() * 1e6))
    raw = DescribeWorkflowExecutionResponse(
        pending_activities=[
            PendingActivityInfo(
                activity_type=ActivityType(name=STREAM_ACTIVITY),
                state=state,
                attempt=attempt,
                heartbeat_details=Payloads(payloads=await converter.encode([details])),
                last_heartbeat_time=heartbeat,
            )
        ]
    )
    return await WorkflowExecutionDescription._from_raw_description(raw, "default", converter)


STARTED = PendingActivityState.PENDING_ACTIVITY_STATE_STARTED


async def test_an_older_workers_heartbeat_reads_as_not_waiting() -> None:
    old = {"attempt": 1, "generation": 1, "model": MODEL, "chars": 0, "chunks": 0}
    desc = await _description(old, attempt=1, state=STARTED)
    (state,) = await data_converter().decode(
        list(desc.raw_description.pending_activities[0].heartbeat_details.payloads),
        [AttemptState],
    )
    assert state.waiting_for_capacity is None
    assert await capacity_wait(desc, data_converter()) is None


async def test_the_description_reports_the_running_attempts_wait() -> None:
    waiting = AttemptState(attempt=2, generation=2, model=MODEL, waiting_for_capacity=30.0)
    desc = await _description(waiting, attempt=2, state=STARTED)
    wait = await capacity_wait(desc, data_converter())
    assert wait is not None and wait.model == MODEL
    assert wait.seconds == pytest.approx(30.0, abs=1.0)


@pytest.mark.parametrize(
    ("attempt", "state"),
    [
        (3, STARTED),  # a retry that has not heartbeat yet
        (2, PendingActivityState.PENDING_ACTIVITY_STATE_SCHEDULED),  # waiting for a retry
    ],
)
async def test_a_heartbeat_not_of_the_running_attempt_says_nothing(
    attempt: int, state: PendingActivityState.ValueType
) -> None:
    waiting = AttemptState(attempt=2, generation=2, model=MODEL, waiting_for_capacity=30.0)
    desc = await _description(waiting, attempt=attempt, state=state)
    assert await capacity_wait(desc, data_converter()) is None
