"""Recorded histories must replay on today's workflow code (no non-determinism)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from temporalio import workflow
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from ai_orchestrator.converter import data_converter
from ai_orchestrator.messages import WORKFLOW_TYPE, TaskInput
from ai_orchestrator.worker import WORKFLOW_RUNNER
from ai_orchestrator.workflows import TaskWorkflow

HISTORIES = Path(__file__).parent / "histories"


@workflow.defn(name=WORKFLOW_TYPE)
class ChangedWorkflow:
    """An incompatible rewrite: it sleeps where the real workflow runs the activity."""

    @workflow.run
    async def run(self, input: TaskInput) -> None:
        await workflow.sleep(timedelta(seconds=1))


def replayer() -> Replayer:
    return Replayer(
        workflows=[TaskWorkflow], data_converter=data_converter(), workflow_runner=WORKFLOW_RUNNER
    )


@pytest.mark.parametrize("name", ["happy", "retry", "cancel"])
async def test_recorded_history_replays(name: str) -> None:
    history = WorkflowHistory.from_json(name, (HISTORIES / f"{name}.json").read_text())
    signals = sum(
        1 for e in history.events if e.HasField("workflow_execution_signaled_event_attributes")
    )
    assert signals >= 2  # the histories exercise the chunk channel
    result = await replayer().replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, result.replay_failure


async def test_replay_detects_a_changed_workflow() -> None:
    """Positive control: a workflow that schedules something else must fail replay."""
    history = WorkflowHistory.from_json("happy", (HISTORIES / "happy.json").read_text())
    result = await Replayer(
        workflows=[ChangedWorkflow],
        data_converter=data_converter(),
        workflow_runner=WORKFLOW_RUNNER,
    ).replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is not None
