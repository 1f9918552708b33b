"""What the task commands say about how a task ended, in the CLI's own process.

An encrypted task read without its key, a cancel that comes too late (or just
in time), and the summary of a cancelled task: each must be one true line and a
meaningful exit code, never a traceback or made-up numbers.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.worker import Worker

from ai_orchestrator import RetrySettings, Task, TaskClient, TaskConstraints, TaskStatus
from ai_orchestrator.activities import LLMActivities
from ai_orchestrator.local.devserver import DevServer
from ai_orchestrator.payloads.codec import EncryptionCodec
from ai_orchestrator.payloads.converter import data_converter
from ai_orchestrator.simulator import Simulator
from ai_orchestrator.worker import HEARTBEAT_THROTTLE, WORKFLOW_RUNNER, openai_client
from ai_orchestrator.workflows import TaskWorkflow

from ..conftest import provider_for, running_worker, unique
from ..support.cli_inprocess import invoke
from ..support.helpers import history_events
from .test_cli import assert_one_line_error

KEY = "k1:" + "A" * 43 + "="
WRONG_KEY = "k1:" + "B" * 43 + "="


async def test_encrypted_task_without_its_key_is_one_error_line(
    temporal: DevServer, queue: str, sim: Simulator
) -> None:
    codec = EncryptionCodec.from_env({"AI_ORCHESTRATOR_ENCRYPTION_KEYS": KEY})
    encrypted = await Client.connect(temporal.target, data_converter=data_converter(codec))
    async with running_worker(encrypted, queue, sim):
        task_id = await TaskClient(encrypted, task_queue=queue).submit_task(
            Task(prompt="secret", task_id=unique("enc"), constraints=TaskConstraints(max_tokens=5))
        )
        done = await TaskClient(encrypted, task_queue=queue).get_result(task_id, timeout=60)
    assert done.output
    for command in ("result", "stream"):
        for keys in ({}, {"AI_ORCHESTRATOR_ENCRYPTION_KEYS": WRONG_KEY}):
            code, out, err = await invoke(
                command, task_id, target=temporal.target, queue=queue, **keys
            )
            assert_one_line_error(code, err, "AI_ORCHESTRATOR_ENCRYPTION_KEYS")
            assert done.output not in out
    code, out, _ = await invoke(
        "result", task_id, target=temporal.target, queue=queue, AI_ORCHESTRATOR_ENCRYPTION_KEYS=KEY
    )
    assert code == 0 and out.strip() == done.output


async def test_cancelled_summary_has_the_real_tokens_and_duration(
    temporal: DevServer, client: Client, queue: str, sim: Simulator
) -> None:
    sim.tokens_per_second, sim.default_tokens = 20, 400
    tasks = TaskClient(client, task_queue=queue)
    async with running_worker(client, queue, sim):
        task_id = await tasks.submit_task(Task(prompt="long", task_id=unique("sum")))
        await sim.wait_until(lambda: bool(sim.requests) and sim.requests[0].tokens_sent >= 5)
        assert await tasks.cancel_task(task_id)
        code, _, err = await invoke("result", task_id, target=temporal.target, queue=queue)
    result = await tasks.get_result(task_id, timeout=10)
    summary = re.search(r"\[cancelled\] (\d+) tokens \((\d+) in, (\d+) out\), .*, ([\d.]+)s", err)
    assert code == 1 and summary, err
    total, tokens_in, tokens_out, seconds = summary.groups()
    assert int(total) == result.tokens_used == int(tokens_in) + int(tokens_out)
    assert int(tokens_in) > 0 and int(tokens_out) > 0
    assert float(seconds) > 0 and float(seconds) == round(result.duration_seconds, 2)


async def test_cli_cancel_mid_stream_says_cancelled(
    temporal: DevServer, client: Client, queue: str, sim: Simulator
) -> None:
    sim.tokens_per_second, sim.default_tokens = 10, 200  # 20 s: the cancel lands mid-stream
    tasks = TaskClient(client, task_queue=queue)
    async with running_worker(client, queue, sim):
        task_id = await tasks.submit_task(Task(prompt="long", task_id=unique("mid")))
        await sim.wait_for_tokens_sent(0, 3)
        code, out, err = await invoke("cancel", task_id, target=temporal.target, queue=queue)
    assert code == 0, err
    assert out.strip() == f"cancelled {task_id} (partial output: ai-orchestrator result {task_id})"
    assert (await tasks.get_result(task_id, timeout=10)).status == TaskStatus.CANCELLED
    assert sim.requests[0].tokens_sent < 200


@asynccontextmanager
async def workflow_only_worker(client: Client, queue: str) -> AsyncIterator[None]:
    """Task workflows, no activities; nothing cached, so every workflow task replays."""
    async with Worker(
        client,
        task_queue=queue,
        workflows=[TaskWorkflow],
        workflow_runner=WORKFLOW_RUNNER,
        max_cached_workflows=0,
    ):
        yield


@asynccontextmanager
async def activity_only_worker(
    client: Client, queue: str, sim: Simulator, heartbeat_interval: float = 1.0
) -> AsyncIterator[None]:
    """The provider activities, no workflows, as :func:`ai_orchestrator.worker.build_worker`
    builds them (``heartbeat_interval``: how often an attempt heartbeats, so hears a cancel).
    """
    provider = provider_for(sim)
    async with openai_client(provider) as llm:
        activities = LLMActivities(
            llm,
            default_model=provider.default_model,
            flush_interval=provider.flush_interval,
            heartbeat_interval=heartbeat_interval,
            heartbeat_throttle=HEARTBEAT_THROTTLE.total_seconds(),
            secrets=[provider.api_key],
        )
        async with Worker(
            client,
            task_queue=queue,
            activities=[activities.stream_completion, activities.stop_answers],
            max_heartbeat_throttle_interval=HEARTBEAT_THROTTLE,
            default_heartbeat_throttle_interval=HEARTBEAT_THROTTLE,
        ):
            yield


async def kinds(client: Client, task_id: str) -> list[str]:
    """The kinds of the run's history events: ``activity_task_completed``, ..."""
    events = await history_events(client, task_id)
    return [str(e.WhichOneof("attributes")).removesuffix("_event_attributes") for e in events]


async def recorded(client: Client, task_id: str, event: str, timeout: float = 30) -> None:
    """Return once the run's history holds ``event``."""

    async def poll() -> None:
        while True:
            if event in await kinds(client, task_id):
                return
            await asyncio.sleep(0.05)

    await asyncio.wait_for(poll(), timeout)


async def test_cli_cancel_in_the_workflow_task_of_the_last_text_cancels(
    temporal: DevServer, client: Client, queue: str, sim: Simulator
) -> None:
    """The answer is complete, but the workflow has not seen it when the cancel comes.

    The workflow worker is away while the activity finishes and the cancel is
    requested, so one workflow task carries ``ActivityTaskCompleted`` and
    ``WorkflowExecutionCancelRequested``. The SDK (``temporalio`` 1.35, flag
    ``RAISE_ON_CANCELLING_COMPLETED_ACTIVITY``) lets the cancel win: the task ends
    cancelled with the whole text as its partial output, and ``cancel`` says so.
    """
    sim.tokens_per_second, sim.default_tokens = 2, 40  # 20 s: streaming while the worker goes
    tasks = TaskClient(client, task_queue=queue)
    async with activity_only_worker(client, queue, sim):
        async with workflow_only_worker(client, queue):
            task_id = await tasks.submit_task(Task(prompt="race", task_id=unique("same")))
            await sim.wait_for_tokens_sent(0, 2)
        sim.tokens_per_second = 0  # unpaced: the answer ends with no workflow worker
        await recorded(client, task_id, "activity_task_completed")
        cli = asyncio.create_task(invoke("cancel", task_id, target=temporal.target, queue=queue))
        await recorded(client, task_id, "workflow_execution_cancel_requested")
        async with workflow_only_worker(client, queue):  # a fresh worker: it replays
            code, out, err = await asyncio.wait_for(cli, 60)
            result = await tasks.get_result(task_id, timeout=30)

    seen = await kinds(client, task_id)
    done = seen.index("activity_task_completed")
    asked = seen.index("workflow_execution_cancel_requested")
    assert "workflow_task_completed" not in seen[done:asked], seen  # one workflow task saw both
    assert seen[-1] == "workflow_execution_canceled", seen
    assert result.status == TaskStatus.CANCELLED
    assert result.partial_output and len(result.partial_output.split()) == 40
    assert code == 0, (out, err)
    assert out.strip() == f"cancelled {task_id} (partial output: ai-orchestrator result {task_id})"


async def test_cli_cancel_that_comes_too_late_says_so(
    temporal: DevServer, client: Client, queue: str, sim: Simulator
) -> None:
    """The workflow asks the activity to stop, but the answer ends before a heartbeat
    brings the activity that request: the activity completes, and so does the task
    (its cancellation type waits for the activity's outcome). This is what users hit.

    In production the window is the gap between heartbeats (about a second); here the
    activity worker heartbeats rarely, so the test releases the last text only once
    ``ActivityTaskCancelRequested`` is recorded and the activity cannot have heard it.
    """
    sim.tokens_per_second, sim.default_tokens = 2, 40  # 20 s: the cancel lands mid-stream
    quiet = RetrySettings(heartbeat_timeout_seconds=900)  # heartbeats 300 s apart at most
    tasks = TaskClient(client, task_queue=queue, retry=quiet)
    async with (
        activity_only_worker(client, queue, sim, heartbeat_interval=900),
        workflow_only_worker(client, queue),
    ):
        task_id = await tasks.submit_task(Task(prompt="race", task_id=unique("late")))
        await sim.wait_for_tokens_sent(0, 2)
        cli = asyncio.create_task(invoke("cancel", task_id, target=temporal.target, queue=queue))
        await recorded(client, task_id, "activity_task_cancel_requested")
        sim.tokens_per_second = 0  # unpaced: the answer ends before any heartbeat
        code, out, err = await asyncio.wait_for(cli, 60)
        result = await tasks.get_result(task_id, timeout=30)

    seen = await kinds(client, task_id)
    assert seen.index("activity_task_cancel_requested") < seen.index("activity_task_completed")
    assert seen[-1] == "workflow_execution_completed", seen
    assert result.status == TaskStatus.COMPLETED and len(result.output.split()) == 40
    assert (await client.get_workflow_handle(task_id).describe()).status == (
        WorkflowExecutionStatus.COMPLETED
    )
    assert code == 1 and not out.strip(), (out, err)
    assert err.strip() == (
        f"error: the cancel came too late: {task_id} completed before it took effect "
        f"(its output: ai-orchestrator result {task_id})"
    )
