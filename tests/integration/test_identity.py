"""One task per task id: conflicts refused, generated ids kept, re-runs only on purpose."""

from __future__ import annotations

import os

import pytest
from temporalio.client import Client
from temporalio.service import RetryConfig

from ai_orchestrator import (
    Task,
    TaskClient,
    TaskIdConflictError,
    TaskNotFoundError,
    TaskStatus,
    TaskValidationError,
    TemporalUnavailableError,
)
from ai_orchestrator.client._identity import FINGERPRINT_MEMO, fingerprint
from ai_orchestrator.local.devserver import DevServer
from ai_orchestrator.messages import WORKFLOW_TYPE, TaskInput
from ai_orchestrator.payloads.codec import EncryptionCodec
from ai_orchestrator.payloads.converter import data_converter
from ai_orchestrator.simulator import Simulator

from ..conftest import FAST_RETRY, running_worker, unique


async def runs_of(client: Client, task_id: str) -> int:
    return len([w async for w in client.list_workflows(f"WorkflowId = '{task_id}'")])


async def test_reused_id_with_another_prompt_is_refused_running_or_closed(
    client: Client, queue: str, sim: Simulator, tasks: TaskClient
) -> None:
    """Promise: one result per task id, never a silent mix-up (conflict -> error)."""
    task_id = unique("conflict")
    await tasks.submit_task(Task(prompt="the first question", task_id=task_id))
    with pytest.raises(TaskIdConflictError, match="already names another task") as info:
        await tasks.submit_task(Task(prompt="another question", task_id=task_id))
    assert info.value.task_id == task_id and isinstance(info.value, TaskValidationError)
    # Same prompt, new Task object (new created_at): the same task, attaches.
    assert await tasks.submit_task(Task(prompt="the first question", task_id=task_id)) == task_id
    desc = await client.get_workflow_handle(task_id).describe()
    memo = await desc.memo_value(FINGERPRINT_MEMO, type_hint=str)
    assert memo == fingerprint(Task(prompt="the first question"))
    async with running_worker(client, queue, sim):
        result = await tasks.get_result(task_id, timeout=30)
    assert result.status == TaskStatus.COMPLETED
    with pytest.raises(TaskIdConflictError):  # closed runs keep their identity
        await tasks.submit_task(
            Task(prompt="the first question", task_id=task_id, priority=1)  # other options
        )
    assert len(sim.requests) == 1 and sim.requests[0].messages[-1]["content"] == (
        "the first question"
    )
    assert await runs_of(client, task_id) == 1


async def test_runs_started_without_a_fingerprint_are_compared_by_their_input(
    client: Client, queue: str, tasks: TaskClient
) -> None:
    """Promise: runs of older clients (no memo) are checked too, from their start event."""
    task_id = unique("old")
    old = Task(prompt="from an older client", task_id=task_id)
    await client.start_workflow(WORKFLOW_TYPE, TaskInput(task=old), id=task_id, task_queue=queue)
    assert await tasks.submit_task(Task(prompt="from an older client", task_id=task_id)) == task_id
    with pytest.raises(TaskIdConflictError):
        await tasks.submit_task(Task(prompt="something else", task_id=task_id))
    await client.get_workflow_handle(task_id).terminate("test done")


async def test_generated_id_is_assigned_before_start_and_named_when_temporal_is_down(
    sim: Simulator,
) -> None:
    """Promise: generated ids are never lost; resubmitting the same Task after an outage
    attaches instead of paying twice."""
    server = await DevServer().start()
    port = server.port
    try:
        client = await Client.connect(
            server.target,
            data_converter=data_converter(),
            retry_config=RetryConfig(initial_interval_millis=50, max_retries=1),
        )
        queue = unique("tq")
        tasks = TaskClient(client, task_queue=queue, retry=FAST_RETRY)
        task = Task(prompt="do not lose me")
        await server.stop()
        with pytest.raises(TemporalUnavailableError) as info:
            await tasks.submit_task(task)
        assert task.task_id is not None and info.value.task_id == task.task_id
        assert "resubmit the same Task" in str(info.value) and task.task_id in str(info.value)
        assert "try again" not in str(info.value)
        server = await DevServer(port=port).start()
        assert await tasks.submit_task(task) == task.task_id
        assert await tasks.submit_task(task) == task.task_id  # the same object: attaches
        async with running_worker(client, queue, sim):
            result = await tasks.get_result(task.task_id, timeout=30)
        assert result.status == TaskStatus.COMPLETED and len(sim.requests) == 1
        assert await runs_of(client, task.task_id) == 1
    finally:
        await server.stop()


async def test_unknown_id_raises_instead_of_a_made_up_result(tasks: TaskClient) -> None:
    """Promise: an unknown id is not a fabricated task (get_result raises, status UNKNOWN)."""
    missing = unique("missing")
    with pytest.raises(TaskNotFoundError, match=missing):
        await tasks.get_result(missing, timeout=5)
    assert await tasks.get_status(missing) == TaskStatus.UNKNOWN


async def test_rerun_restarts_an_ended_task_on_purpose_only(
    client: Client, queue: str, sim: Simulator, tasks: TaskClient
) -> None:
    """Promise: a failed/cancelled/terminated task can be re-run; a completed one cannot."""
    task_id = unique("rerun")
    await tasks.submit_task(Task(prompt="try me twice", task_id=task_id))
    assert await tasks.rerun_task(task_id) == task_id  # still running: left alone
    # Terminated before any worker saw it: ended without a workflow code path.
    await client.get_workflow_handle(task_id).terminate("operator stopped it")
    assert (await tasks.get_result(task_id, timeout=10)).status == TaskStatus.FAILED
    # submit_task stays idempotent: it does not re-run an ended task by accident.
    assert await tasks.submit_task(Task(prompt="try me twice", task_id=task_id)) == task_id
    assert await tasks.get_status(task_id) == TaskStatus.FAILED
    assert await tasks.rerun_task(task_id) == task_id
    async with running_worker(client, queue, sim):
        result = await tasks.get_result(task_id, timeout=30)
    assert result.status == TaskStatus.COMPLETED and result.task.prompt == "try me twice"
    assert len(sim.requests) == 1 and await runs_of(client, task_id) == 2
    with pytest.raises(TaskValidationError, match="already completed"):
        await tasks.rerun_task(task_id)
    with pytest.raises(TaskNotFoundError):
        await tasks.rerun_task(unique("missing"))


async def test_fingerprint_memo_is_encrypted_with_the_payloads(
    temporal: DevServer, queue: str
) -> None:
    """Promise: the identity check works with encryption on, and leaks nothing."""
    codec = EncryptionCodec({"k1": os.urandom(32)}, "k1")
    client = await Client.connect(temporal.target, data_converter=data_converter(codec))
    tasks = TaskClient(client, task_queue=queue)
    task = Task(prompt="a confidential question", task_id=unique("enc"))
    await tasks.submit_task(task)
    desc = await client.get_workflow_handle(task.task_id or "").describe()
    raw = desc.raw_description.workflow_execution_info.memo.fields[FINGERPRINT_MEMO]
    assert fingerprint(task).split(":")[1].encode() not in raw.SerializeToString()
    assert raw.metadata["encoding"] != b"json/plain"
    assert await tasks.submit_task(Task(prompt="a confidential question", task_id=task.task_id))
    with pytest.raises(TaskIdConflictError, match="different prompt"):
        await tasks.submit_task(Task(prompt="another question", task_id=task.task_id))
    other_key = await Client.connect(
        temporal.target,
        data_converter=data_converter(EncryptionCodec({"k2": os.urandom(32)}, "k2")),
    )
    with pytest.raises(TaskIdConflictError, match="cannot be read"):  # never a blind attach
        await TaskClient(other_key, task_queue=queue).submit_task(task)
    await client.get_workflow_handle(task.task_id or "").terminate("test done")
