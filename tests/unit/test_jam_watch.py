"""When the jam watch asks the server, and when it starts following the history.

The watch runs beside every caller waiting on a task, so its requests are the
client's whole cost on the server; a short task must cost at most one.
(A real jam, reported by the real server, is ``client/test_stuck.py``'s.)
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from temporalio.api.workflowservice.v1 import DescribeWorkflowExecutionResponse
from temporalio.client import WorkflowExecutionStatus

from ai_orchestrator.client import _stuck


class FakeRun:
    """A run whose pending workflow task has the attempts given, one per describe."""

    def __init__(self, attempts: list[int], status: WorkflowExecutionStatus) -> None:
        self.attempts = attempts
        self.status = status
        self.described: list[float] = []
        self.followed = asyncio.Event()

    async def describe(self) -> Any:
        self.described.append(asyncio.get_running_loop().time())
        attempt = self.attempts[min(len(self.described), len(self.attempts)) - 1]
        raw = DescribeWorkflowExecutionResponse()
        if attempt:
            raw.pending_workflow_task.attempt = attempt
        return SimpleNamespace(status=self.status, raw_description=raw)

    def fetch_history_events(self, **_: Any) -> Any:
        self.followed.set()

        async def none() -> Any:
            await asyncio.sleep(3600)
            yield  # pragma: no cover

        return none()


async def watch(run: FakeRun, until: float, grace: float = 0.05) -> None:
    """Runs the watch (phase 0.8 s) until ``until`` seconds or it follows."""
    task = asyncio.ensure_future(
        _stuck.watch_stuck(run, None, interval=0.05, grace=grace, phase=0.8)  # type: ignore[arg-type]
    )
    try:
        await asyncio.wait_for(run.followed.wait(), until)
    except asyncio.TimeoutError:  # the built-in's alias only from 3.11
        pass
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_healthy_young_run_is_described_at_doubling_gaps_then_followed() -> None:
    run = FakeRun([1], WorkflowExecutionStatus.RUNNING)
    start = asyncio.get_running_loop().time()
    await watch(run, 5.0)
    offsets = [t - start for t in run.described]
    # At 0.05, 0.15, 0.35, 0.75 and 0.8 (the phase's end): five requests in 0.8 s,
    # where one every interval would have been sixteen. (Sleeps only ever run long.)
    assert len(offsets) == 5, offsets
    assert offsets[0] >= 0.05 and offsets[-1] >= 0.8, offsets
    assert run.followed.is_set()


async def test_a_short_task_costs_no_request_before_the_grace() -> None:
    run = FakeRun([1], WorkflowExecutionStatus.RUNNING)
    await watch(run, 0.3, grace=30.0)
    assert run.described == [] and not run.followed.is_set()


@pytest.mark.parametrize("attempt", [2, 5])
async def test_a_failed_workflow_task_starts_following_at_once(attempt: int) -> None:
    run = FakeRun([1, attempt], WorkflowExecutionStatus.RUNNING)
    await watch(run, 5.0)
    assert run.followed.is_set()
    assert len(run.described) == 2  # no third description: the history tells the rest


async def test_a_closed_run_is_not_taken_for_a_jam() -> None:
    run = FakeRun([7], WorkflowExecutionStatus.COMPLETED)
    await watch(run, 0.3)
    assert not run.followed.is_set() and len(run.described) >= 2
