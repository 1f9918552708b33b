"""Recorded histories must replay on today's workflow code (no non-determinism).

Every ``histories/*.json`` is replayed: each was recorded from a past version of
the workflow (``v1-*`` from the code before ``workflow.patched`` was first used)
and stands for runs in flight during a deploy. Files are only ever added (see
record_histories.py); a history that stops replaying means the change needs a
``workflow.patched`` branch, not a re-recording.

What replay can and cannot prove (measured on temporalio 1.35, Python SDK):
it DETECTS a changed command sequence (an extra timer or search-attribute upsert
before the activity) and a changed activity type or activity id. It does NOT
detect a changed start-to-close, schedule-to-close or heartbeat timeout, retry
policy, or activity task queue; nor a changed activity input or workflow result
value, nor a signal handler change that leaves the commands as they were (one
that changes them is caught: a handler dropping chunks fails the final check,
so the run fails instead of completing). Those replay "green" on old
histories, so such a change needs its own reasoning about in-flight runs. (In
v1-cancelled-before-start the workflow is cancelled before its first command is
sent, so even a new timer or activity id replays there; an upsert does not.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from temporalio import workflow
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory
from temporalio.converter import DataConverter
from temporalio.worker import Replayer
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from ai_orchestrator.core import Result
from ai_orchestrator.messages import WORKFLOW_TYPE, TaskInput
from ai_orchestrator.payloads.codec import EncryptionCodec
from ai_orchestrator.payloads.converter import data_converter
from ai_orchestrator.search import STATUS
from ai_orchestrator.worker import STRICT_WORKFLOW_RUNNER, WORKFLOW_RUNNER
from ai_orchestrator.workflows import BatchCollectorWorkflow, ProviderBatchWorkflow, TaskWorkflow

HISTORIES = Path(__file__).parent / "histories"
#: The workflow a recorded history replays on, by its type.
WORKFLOWS: dict[str, type] = {
    "AiTask": TaskWorkflow,
    "AiTaskBatchCollector": BatchCollectorWorkflow,
    "AiProviderBatch": ProviderBatchWorkflow,
}
PATHS = sorted(HISTORIES.glob("*.json"))

#: Histories may be added, never removed: each name here must still be on disk.
RECORDED = {
    "happy",
    "retry",
    "cancel",
    "v1-completed-search-attributes",
    "v1-failed",
    "v1-failed-retries-exhausted",
    "v1-rate-limited",
    "v1-encrypted",
    "v1-cancelled-before-start",
    "v1-cancelled-mid-stream",
    "v1-restarted-twice",
    "v1-long-stream",
    # Recorded from the first patched workflow (ai-orchestrator-2026-11-edges):
    "v2-completed-search-attributes",
    "v2-failed",
    "v2-failed-retries-exhausted",
    "v2-rate-limited",
    "v2-encrypted",
    "v2-cancelled-before-start",
    "v2-cancelled-mid-stream",
    "v2-restarted-twice",
    "v2-long-stream",
    "v2-reset-mid-stream",
    "v2-content-filtered",
    "v2-provider-faults-exhausted",
    # Recorded from the workflow with fallback between models (patch ...-fallback):
    "v3-fallback-after-quota",
    "v3-fallback-after-streaming",
    # Recorded with the live channel (sparse checkpoints) and resume (one generation
    # over several attempts); the workflow code is v3's:
    "v4-resumed-after-cut",
    "v4-live-long-stream",
    # ai-orchestrator-2026-12-paid: answers stopped, every attempt billed.
    "v5-cancelled-in-backoff",
    "v5-cancelled-mid-stream",
    "v5-chat-cancelled-in-backoff",
    "v5-fallback-from-responses",
    "v5-live-long-stream",
    "v5-reattach-refused",
    "v5-restarted-twice",
    # ai-orchestrator-2026-12-budget: max_cost_usd held over fallback models.
    "v6-budget-fallback",
    "v6-budget-stopped",
    # ai-orchestrator-2026-12-batched: delivery through a provider batch, with the
    # provider batch and collector workflows that carried it.
    "v7-batch-answered",
    "v7-batch-answered-provider-batch",
    "v7-batch-answered-collector",
    "v7-batch-to-realtime",
    "v7-batch-cancelled-after-sending",
    "v7-batch-cancelled-after-sending-provider-batch",
    "v7-batch-cancelled-after-sending-collector",
    # ai-orchestrator-2026-12-batch-beats: the provider batch's activities with a 15 s
    # heartbeat timeout.
    "v8-batch-answered",
    "v8-batch-answered-provider-batch",
    "v8-batch-answered-collector",
    "v8-batch-to-realtime",
    "v8-batch-cancelled-after-sending",
    "v8-batch-cancelled-after-sending-provider-batch",
    "v8-batch-cancelled-after-sending-collector",
}

# A TEST key, public on purpose (the same bytes are in record_histories.py): the
# ``*encrypted*`` histories were recorded with it. Never use it for real data.
TEST_KEY_ID = "replay-test"
TEST_KEY = bytes(range(32))

CLOSED = {
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED,
}


def converter_for(name: str) -> DataConverter:
    if "encrypted" in name:
        return data_converter(EncryptionCodec({TEST_KEY_ID: TEST_KEY}, TEST_KEY_ID))
    return data_converter()


def load(path: Path) -> WorkflowHistory:
    """The history as a worker replaying that run would see it.

    The Replayer names the run after its start event's ``original_execution_run_id``,
    which an operator reset copies from the old run; a worker replaying the reset
    run knows the run's own id (chunks are told apart by it), which the history
    records in the reset's ``WorkflowTaskFailed`` event.
    """
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    children = [
        e.start_child_workflow_execution_initiated_event_attributes.workflow_id
        for e in history.events
        if e.HasField("start_child_workflow_execution_initiated_event_attributes")
    ]
    if children:  # a collector names its provider batches after its own id
        history = WorkflowHistory(children[0].rsplit("/", 1)[0], history.events)
    resets = [
        e.workflow_task_failed_event_attributes.new_run_id
        for e in history.events
        if e.HasField("workflow_task_failed_event_attributes")
        and e.workflow_task_failed_event_attributes.new_run_id
    ]
    if resets:
        history.events[
            0
        ].workflow_execution_started_event_attributes.original_execution_run_id = resets[-1]
    return history


#: The controls below are defined in this test module, which the sandbox must
#: not re-import (pytest and mock are no workflow code); production workflows
#: replay under the worker's own runner.
CONTROL_RUNNER = SandboxedWorkflowRunner(
    restrictions=SandboxRestrictions.default.with_passthrough_modules(__name__)
)


async def replay(
    workflow_class: type, history: WorkflowHistory, *, strict: bool = False
) -> BaseException | None:
    runner = WORKFLOW_RUNNER if workflow_class in WORKFLOWS.values() else CONTROL_RUNNER
    replayer = Replayer(
        workflows=[workflow_class],
        data_converter=converter_for(history.workflow_id),
        workflow_runner=STRICT_WORKFLOW_RUNNER if strict else runner,
    )
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    return result.replay_failure


def test_no_recorded_history_was_removed() -> None:
    assert RECORDED <= {p.stem for p in PATHS}


@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
async def test_recorded_history_replays(path: Path) -> None:
    history = load(path)
    started = history.events[0].workflow_execution_started_event_attributes
    workflow_class = WORKFLOWS[started.workflow_type.name]
    if workflow_class is not BatchCollectorWorkflow:  # a collector runs on, idle
        assert history.events[-1].event_type in CLOSED  # a whole run, start to end
    failure = await replay(workflow_class, history)
    assert failure is None, failure
    # The worker passes the workflow module through the sandbox; the strict sandbox
    # would still refuse a clock, randomness or I/O on every path these runs took.
    failure = await replay(workflow_class, history, strict=True)
    assert failure is None, failure


# -- positive controls: one-line changes to the real workflow that replay must catch --


@workflow.defn(name=WORKFLOW_TYPE)
class Unchanged(TaskWorkflow):
    """The base of the controls below; it must replay, so they fail for their one line."""

    @workflow.run
    async def run(self, input: TaskInput) -> Result:
        return await super().run(input)


@workflow.defn(name=WORKFLOW_TYPE)
class TimerFirst(TaskWorkflow):
    @workflow.run
    async def run(self, input: TaskInput) -> Result:
        await workflow.sleep(0.001)  # the one change: a timer before the activity
        return await super().run(input)


@workflow.defn(name=WORKFLOW_TYPE)
class UpsertFirst(TaskWorkflow):
    @workflow.run
    async def run(self, input: TaskInput) -> Result:
        workflow.upsert_search_attributes([STATUS.value_set("running")])  # the one change
        return await super().run(input)


@workflow.defn(name=WORKFLOW_TYPE)
class OtherActivityId(Unchanged):
    def activity_options(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return {**super().activity_options(*args, **kwargs), "activity_id": "2"}  # the change

    @workflow.run
    async def run(self, input: TaskInput) -> Result:
        return await super().run(input)


@workflow.defn(name=WORKFLOW_TYPE)
class OtherActivityType(Unchanged):
    activity_type = "ai_orchestrator.other"  # the one change

    @workflow.run
    async def run(self, input: TaskInput) -> Result:
        return await super().run(input)


DETECTED: dict[str, type] = {
    "extra timer before the activity": TimerFirst,
    "extra search-attribute upsert": UpsertFirst,
    "different activity id": OtherActivityId,
    "different activity type": OtherActivityType,
}
CONTROL_HISTORIES = ["v1-completed-search-attributes", "v1-restarted-twice", "v1-failed"]


@pytest.mark.parametrize("name", CONTROL_HISTORIES)
async def test_unchanged_subclass_replays(name: str) -> None:
    assert await replay(Unchanged, load(HISTORIES / f"{name}.json")) is None


@pytest.mark.parametrize("name", CONTROL_HISTORIES)
@pytest.mark.parametrize("change", DETECTED)
async def test_replay_detects_a_subtle_change(change: str, name: str) -> None:
    failure = await replay(DETECTED[change], load(HISTORIES / f"{name}.json"))
    assert failure is not None and "Nondeterminism" in str(failure), failure
