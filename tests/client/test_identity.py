"""One task per task id: conflicts refused, generated ids kept, re-runs only on purpose."""

from __future__ import annotations

import os
from typing import Any

import pytest
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RetryConfig

from ai_orchestrator import (
    Platform,
    Task,
    TaskClient,
    TaskConstraints,
    TaskIdConflictError,
    TaskNotFoundError,
    TaskStatus,
    TaskType,
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


#: A task with every field set, so that each can be changed on its own.
BASE_TASK: dict[str, Any] = {
    "prompt": "the same question",
    "context": {"repo": "orchestrator", "branch": "main"},
    "files": ["src/app.py"],
}
BASE_CONSTRAINTS: dict[str, Any] = {"model": "gpt-4o-mini", "max_tokens": 100, "temperature": 0.2}
#: One change per field the fingerprint covers (every field of Task but its id and
#: creation time, every field of TaskConstraints): each makes another task.
TASK_CHANGES: dict[str, Any] = {
    "prompt": "another question",
    "context": {"repo": "orchestrator", "branch": "release"},
    "files": ["src/app.py", "src/other.py"],
    "type": TaskType.CODE_REVIEW,
    "platform_hint": Platform.GEMINI,
    "priority": 1,
    "requires_gsd": True,
    "metadata": {"team": "search"},
}
CONSTRAINT_CHANGES: dict[str, Any] = {
    "model": "gpt-4o",
    "max_tokens": 200,
    "temperature": 0.7,
    "timeout_seconds": 60.0,
    "fallback_models": ["gpt-4o"],
    "openai_api": "responses",
    "chat_resume": "prefix",
    "max_cost_usd": 0.5,
    "budget": "team-a",
    "delivery": "batch",
}


def variant(task_id: str, **changes: Any) -> Task:
    """The base task (built anew: its own created_at), with ``changes`` applied; a
    change named ``constraints.<field>`` changes that constraint."""
    constraints = dict(BASE_CONSTRAINTS)
    fields = dict(BASE_TASK)
    for name, value in changes.items():
        if name.startswith("constraints."):
            constraints[name.removeprefix("constraints.")] = value
        else:
            fields[name] = value
    return Task(**fields, constraints=TaskConstraints(**constraints), task_id=task_id)


def test_every_field_the_fingerprint_covers_has_a_conflict_case() -> None:
    """A field added to Task or TaskConstraints gets its case below, or this fails."""
    assert {*TASK_CHANGES, "constraints", "task_id", "created_at"} == set(Task.model_fields)
    assert set(CONSTRAINT_CHANGES) == set(TaskConstraints.model_fields)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        *TASK_CHANGES.items(),
        *((f"constraints.{name}", value) for name, value in CONSTRAINT_CHANGES.items()),
    ],
    ids=[*TASK_CHANGES, *(f"constraints.{name}" for name in CONSTRAINT_CHANGES)],
)
async def test_reused_id_with_any_other_field_is_refused(
    field: str, value: Any, client: Client, tasks: TaskClient
) -> None:
    """Promise: one result per task id: whatever differs (context, files, model,
    max_tokens, ...) makes another task, refused under the id; nothing is started."""
    task_id = unique("differs")
    await tasks.submit_task(variant(task_id))
    other = variant(task_id, **{field: value})
    assert fingerprint(other) != fingerprint(variant(task_id))
    with pytest.raises(TaskIdConflictError, match="already names another task") as info:
        await tasks.submit_task(other)
    assert info.value.task_id == task_id
    assert await tasks.submit_task(variant(task_id)) == task_id  # the same task attaches
    handle = client.get_workflow_handle(task_id)
    assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
    await handle.terminate("test done")


async def test_the_same_task_written_differently_attaches(
    client: Client, tasks: TaskClient
) -> None:
    """Promise: only meaning counts: the order of context keys, defaults spelled out and
    ``constraints=None`` versus default constraints are the same task."""
    task_id = unique("same")
    await tasks.submit_task(Task(prompt="q", context={"a": 1, "b": 2}, task_id=task_id))
    same = [
        Task(prompt="q", context={"b": 2, "a": 1}, task_id=task_id),
        Task(prompt="q", context={"a": 1, "b": 2}, priority=3, files=[], task_id=task_id),
        Task(prompt="q", context={"a": 1, "b": 2}, constraints=TaskConstraints(), task_id=task_id),
    ]
    for task in same:
        assert await tasks.submit_task(task) == task_id, task
    await client.get_workflow_handle(task_id).terminate("test done")


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
