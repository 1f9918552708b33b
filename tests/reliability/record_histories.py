"""Record workflow histories for the replay tests (tests/reliability/test_replay.py).

Histories are ADDED, never re-recorded. Every file in ``histories/`` is evidence
that runs started on some past version of the workflow survive a deploy of the
current code, so an existing file is never overwritten: this script records only
the names whose file does not exist yet. When the workflow changes (behind
``workflow.patched``), bump ``VERSION`` (``v2``, ``v3``...) and run it again: it
records new names (``v2-...``) next to the old ones, which must keep replaying.

Run ``python -m tests.reliability.record_histories`` from a checkout of the code
that should be recorded (e.g. a ``git worktree`` of ``main``, so nobody's
uncommitted edits leak in). ``happy``, ``retry`` and ``cancel`` were recorded by an
earlier version of this script, before the ``v1-`` names.
"""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import EventType
from temporalio.api.workflowservice.v1 import ResetWorkflowExecutionRequest
from temporalio.client import Client

from ai_orchestrator import Task, TaskClient, TaskConstraints
from ai_orchestrator.config import ProviderSettings
from ai_orchestrator.delivery import BATCH_QUERY, BatchJoined
from ai_orchestrator.local.devserver import DevServer
from ai_orchestrator.messages import RetrySettings
from ai_orchestrator.payloads.codec import EncryptionCodec
from ai_orchestrator.payloads.converter import data_converter
from ai_orchestrator.simulator import BatchBehaviour, Fault, Simulator
from ai_orchestrator.worker import running

from ..support.helpers import wait_until

HERE = Path(__file__).parent / "histories"
VERSION = "v8"
RETRY = RetrySettings(initial_interval_seconds=0.2, heartbeat_timeout_seconds=2.0)
FEW_ATTEMPTS = RetrySettings(
    max_attempts=3, initial_interval_seconds=0.2, heartbeat_timeout_seconds=2.0
)
# A TEST key, public on purpose: the encrypted histories must be decodable by
# test_replay.py. Never use it for anything real.
TEST_KEY_ID = "replay-test"
TEST_KEY = bytes(range(32))


def replay_codec() -> EncryptionCodec:
    return EncryptionCodec({TEST_KEY_ID: TEST_KEY}, TEST_KEY_ID)


@dataclass
class Ctx:
    server: DevServer
    sim: Simulator
    client: Client
    provider: ProviderSettings

    def tasks(self, retry: RetrySettings = RETRY, queue: str = "record") -> TaskClient:
        return TaskClient(self.client, task_queue=queue, retry=retry)


@contextmanager
def pace(sim: Simulator, *, tokens_per_second: float, tokens: int) -> Iterator[None]:
    saved = sim.tokens_per_second, sim.default_tokens
    sim.tokens_per_second, sim.default_tokens = tokens_per_second, tokens
    try:
        yield
    finally:
        sim.tokens_per_second, sim.default_tokens = saved


async def completed_search_attributes(ctx: Ctx, wid: str) -> None:
    await ctx.tasks().execute(Task(prompt="completed with search attributes", task_id=wid))


async def failed(ctx: Ctx, wid: str) -> None:
    ctx.sim.script(Fault.status(400))
    await ctx.tasks().execute(Task(prompt="bad request", task_id=wid))


async def failed_retries_exhausted(ctx: Ctx, wid: str) -> None:
    ctx.sim.script(Fault.status(503, times=50))
    await ctx.tasks(FEW_ATTEMPTS).execute(Task(prompt="provider down", task_id=wid))
    ctx.sim.reset()


async def rate_limited(ctx: Ctx, wid: str) -> None:
    ctx.sim.script(Fault.rate_limit(retry_after=1))
    await ctx.tasks().execute(Task(prompt="rate limited, then served", task_id=wid))


async def encrypted(ctx: Ctx, wid: str) -> None:
    client = await Client.connect(ctx.server.target, data_converter=data_converter(replay_codec()))
    async with running(client, task_queue="record-encrypted", provider=ctx.provider):
        tasks = TaskClient(client, task_queue="record-encrypted", retry=RETRY)
        await tasks.execute(Task(prompt="secret prompt, encrypted in history", task_id=wid))


async def cancelled_before_start(ctx: Ctx, wid: str) -> None:
    queue = "record-idle"  # no worker listens here until the cancel is requested
    tasks = ctx.tasks(queue=queue)
    await tasks.submit_task(Task(prompt="cancelled before any worker", task_id=wid))
    assert await tasks.cancel_task(wid)
    async with running(ctx.client, task_queue=queue, provider=ctx.provider):
        await tasks.get_result(wid)


async def cancelled_mid_stream(ctx: Ctx, wid: str) -> None:
    tasks = ctx.tasks()
    with pace(ctx.sim, tokens_per_second=20, tokens=100):
        await tasks.submit_task(Task(prompt="cancelled mid-stream", task_id=wid))
        await ctx.sim.wait_for_requests(1)
        await ctx.sim.wait_for_tokens_sent(0, 10)
        await asyncio.sleep(0.3)  # let a chunk signal or two land first
        await tasks.cancel_task(wid)
        await tasks.get_result(wid)


async def restarted_twice(ctx: Ctx, wid: str) -> None:
    ctx.sim.script(Fault.disconnect(after_tokens=8), Fault.disconnect(after_tokens=15))
    await ctx.tasks().execute(Task(prompt="two cut streams, then served", task_id=wid))


async def long_stream(ctx: Ctx, wid: str) -> None:
    with pace(ctx.sim, tokens_per_second=60, tokens=300):
        await ctx.tasks().execute(Task(prompt="a long answer", task_id=wid))


async def reset_mid_stream(ctx: Ctx, wid: str) -> None:
    """An operator reset: the new run's history holds the old run's re-applied chunks."""
    tasks = ctx.tasks()
    with pace(ctx.sim, tokens_per_second=40, tokens=60):
        await tasks.submit_task(Task(prompt="reset by an operator", task_id=wid))
        handle = ctx.client.get_workflow_handle(wid)
        for _ in range(200):  # until the old run holds a chunk signal
            history = await handle.fetch_history()
            signalled = EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
            if any(e.event_type == signalled for e in history.events):
                break
            await asyncio.sleep(0.05)
        first_wft = next(
            e.event_id
            for e in history.events
            if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED
        )
        await ctx.client.workflow_service.reset_workflow_execution(
            ResetWorkflowExecutionRequest(
                namespace=ctx.client.namespace,
                workflow_execution=WorkflowExecution(
                    workflow_id=wid, run_id=(await handle.describe()).run_id
                ),
                reason="recording an operator reset",
                workflow_task_finish_event_id=first_wft,
                request_id=str(uuid.uuid4()),
            )
        )
        await tasks.get_result(wid)


async def content_filtered(ctx: Ctx, wid: str) -> None:
    ctx.sim.script(Fault.content_filter(after_tokens=6))
    await ctx.tasks().execute(Task(prompt="stopped by a content filter", task_id=wid))


async def provider_faults_exhausted(ctx: Ctx, wid: str) -> None:
    ctx.sim.script(Fault.disconnect(after_tokens=5, times=3))
    await ctx.tasks(FEW_ATTEMPTS).execute(Task(prompt="three broken streams", task_id=wid))


async def fallback_after_quota(ctx: Ctx, wid: str) -> None:
    ctx.sim.script(Fault.rate_limit(quota_exhausted=True))
    constraints = TaskConstraints(model="gpt-4o-mini", fallback_models=["gpt-4o"])
    await ctx.tasks().execute(
        Task(prompt="quota, then another model", task_id=wid, constraints=constraints)
    )


async def fallback_after_streaming(ctx: Ctx, wid: str) -> None:
    ctx.sim.script(Fault.disconnect(after_tokens=10))
    constraints = TaskConstraints(model="gpt-4o-mini", fallback_models=["gpt-4o"])
    one_fault = RETRY.model_copy(update={"max_attempts": 1})
    with pace(ctx.sim, tokens_per_second=40, tokens=30):
        await ctx.tasks(one_fault).execute(
            Task(prompt="streamed, broke, moved on", task_id=wid, constraints=constraints)
        )


async def resumed_after_cut(ctx: Ctx, wid: str) -> None:
    """A background response re-attached twice: one generation across three attempts."""
    ctx.sim.script(Fault.drop_stream(after_events=100), Fault.reattach_drop(after_events=80))
    constraints = TaskConstraints(openai_api="responses")
    with pace(ctx.sim, tokens_per_second=40, tokens=240):
        await ctx.tasks().execute(Task(prompt="resumed", task_id=wid, constraints=constraints))


async def live_long_stream(ctx: Ctx, wid: str) -> None:
    """A long answer streamed live: history holds one checkpoint a second."""
    with pace(ctx.sim, tokens_per_second=60, tokens=300):
        await ctx.tasks().execute(Task(prompt="a long live answer", task_id=wid))


async def _until_backoff(ctx: Ctx, wid: str) -> None:
    handle = ctx.client.get_workflow_handle(wid)
    for _ in range(300):
        pending = (await handle.describe()).raw_description.pending_activities
        if any(p.attempt >= 2 and p.HasField("last_failure") for p in pending):
            return
        await asyncio.sleep(0.1)
    raise SystemExit(f"{wid}: never went into backoff")


SLOW_RETRY = RETRY.model_copy(update={"initial_interval_seconds": 5.0, "max_interval_seconds": 20})


async def cancelled_in_backoff(ctx: Ctx, wid: str) -> None:
    """A background answer left generating while the task waits: the stop activity runs."""
    ctx.sim.script(Fault.drop_stream(after_events=8))
    tasks = ctx.tasks(SLOW_RETRY)
    constraints = TaskConstraints(openai_api="responses")
    with pace(ctx.sim, tokens_per_second=10, tokens=60):
        await tasks.submit_task(
            Task(prompt="cut, then cancelled", task_id=wid, constraints=constraints)
        )
        await _until_backoff(ctx, wid)
        await tasks.cancel_task(wid)
        await tasks.get_result(wid)


async def chat_cancelled_in_backoff(ctx: Ctx, wid: str) -> None:
    ctx.sim.script(Fault.disconnect(after_tokens=5))
    tasks = ctx.tasks(SLOW_RETRY)
    with pace(ctx.sim, tokens_per_second=50, tokens=60):
        await tasks.submit_task(Task(prompt="broke, then cancelled", task_id=wid))
        await _until_backoff(ctx, wid)
        await tasks.cancel_task(wid)
        await tasks.get_result(wid)


async def reattach_refused(ctx: Ctx, wid: str) -> None:
    ctx.sim.script(Fault.drop_stream(after_events=8), Fault.reattach_refused(status_code=403))
    constraints = TaskConstraints(openai_api="responses")
    with pace(ctx.sim, tokens_per_second=10, tokens=60):
        await ctx.tasks().execute(Task(prompt="refused", task_id=wid, constraints=constraints))


async def fallback_from_responses(ctx: Ctx, wid: str) -> None:
    ctx.sim.script(
        Fault.drop_stream(after_events=8), Fault.reattach_refused(status_code=429, retry_after=900)
    )
    constraints = TaskConstraints(openai_api="responses", fallback_models=["gpt-4o"])
    with pace(ctx.sim, tokens_per_second=10, tokens=60):
        await ctx.tasks().execute(
            Task(prompt="left for another model", task_id=wid, constraints=constraints)
        )


async def budget_stopped(ctx: Ctx, wid: str) -> None:
    constraints = TaskConstraints(model="gpt-4o", max_cost_usd=0.0003)
    with pace(ctx.sim, tokens_per_second=100, tokens=200):
        await ctx.tasks().execute(
            Task(prompt="stopped by its cost cap", task_id=wid, constraints=constraints)
        )


async def budget_fallback(ctx: Ctx, wid: str) -> None:
    ctx.sim.script(Fault.disconnect(after_tokens=10))
    constraints = TaskConstraints(
        model="gpt-4o", fallback_models=["gpt-4o-mini"], max_cost_usd=0.0003
    )
    one_fault = RETRY.model_copy(update={"max_attempts": 1})
    with pace(ctx.sim, tokens_per_second=100, tokens=600):
        await ctx.tasks(one_fault).execute(
            Task(prompt="capped, broke, moved on", task_id=wid, constraints=constraints)
        )


BATCH = TaskConstraints(delivery="batch", max_tokens=20)
#: The collector every batch recipe goes through (task queue "record", the default model).
COLLECTOR = "ai-orchestrator-batch:record:chatgpt:gpt-4o-mini"


async def _save_batch_workflows(ctx: Ctx, wid: str) -> None:
    """The provider batch that held ``wid`` and the collector, beside the task's own."""
    joined = await ctx.client.get_workflow_handle(wid).query(BATCH_QUERY, result_type=BatchJoined)
    batch = ctx.client.get_workflow_handle(joined.batch_workflow_id)
    await batch.result()
    for name, handle in ((f"{wid}-provider-batch", batch), (f"{wid}-collector", None)):
        handle = handle or ctx.client.get_workflow_handle(COLLECTOR)
        path = HERE / f"{name}.json"
        if not path.exists():
            with path.open("x") as f:
                f.write((await handle.fetch_history()).to_json())
            print(f"recorded {name}")


async def batch_answered(ctx: Ctx, wid: str) -> None:
    ctx.sim.batch_behaviour = BatchBehaviour(turnaround=0.3)
    await ctx.tasks().execute(Task(prompt="answered in a batch", task_id=wid, constraints=BATCH))
    await _save_batch_workflows(ctx, wid)


async def batch_to_realtime(ctx: Ctx, wid: str) -> None:
    ctx.sim.batch_behaviour = BatchBehaviour(turnaround=0.3, error_rate=1.0)
    await ctx.tasks().execute(Task(prompt="batch failed it", task_id=wid, constraints=BATCH))


async def batch_cancelled_after_sending(ctx: Ctx, wid: str) -> None:
    ctx.sim.batch_behaviour = BatchBehaviour(turnaround=30)
    tasks = ctx.tasks()
    await tasks.submit_task(Task(prompt="cancelled in a batch", task_id=wid, constraints=BATCH))
    await wait_until(lambda: bool(ctx.sim.batches), 60, "the provider batch")
    await tasks.cancel_task(wid)
    await tasks.get_result(wid)
    await _save_batch_workflows(ctx, wid)


Recipe = Callable[[Ctx, str], Awaitable[None]]
COMPLETED = EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED
FAILED = EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED
CANCELED = EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED

#: kind -> (how to produce it, the history's final event, minimum chunk signals)
RECIPES: dict[str, tuple[Recipe, EventType.ValueType, int]] = {
    "completed-search-attributes": (completed_search_attributes, COMPLETED, 2),
    "failed": (failed, FAILED, 0),
    "failed-retries-exhausted": (failed_retries_exhausted, FAILED, 0),
    "rate-limited": (rate_limited, COMPLETED, 2),
    "encrypted": (encrypted, COMPLETED, 2),
    "cancelled-before-start": (cancelled_before_start, CANCELED, 0),
    "cancelled-mid-stream": (cancelled_mid_stream, CANCELED, 1),
    "restarted-twice": (restarted_twice, COMPLETED, 2),
    "long-stream": (long_stream, COMPLETED, 20),
    # From v2 on:
    "reset-mid-stream": (reset_mid_stream, COMPLETED, 1),
    "content-filtered": (content_filtered, FAILED, 0),
    "provider-faults-exhausted": (provider_faults_exhausted, FAILED, 0),
    # From v3 on:
    "fallback-after-quota": (fallback_after_quota, COMPLETED, 0),
    "fallback-after-streaming": (fallback_after_streaming, COMPLETED, 1),
    # From v4 on (the live channel and resume; the workflow code is v3's):
    "resumed-after-cut": (resumed_after_cut, COMPLETED, 2),
    "live-long-stream": (live_long_stream, COMPLETED, 2),
    # From v5 on (ai-orchestrator-2026-12-paid: answers stopped, every attempt billed):
    "cancelled-in-backoff": (cancelled_in_backoff, CANCELED, 1),
    "chat-cancelled-in-backoff": (chat_cancelled_in_backoff, CANCELED, 1),
    "reattach-refused": (reattach_refused, FAILED, 1),
    "fallback-from-responses": (fallback_from_responses, COMPLETED, 1),
    # From v6 on (ai-orchestrator-2026-12-budget: max_cost_usd over fallback models):
    "budget-stopped": (budget_stopped, FAILED, 1),
    "budget-fallback": (budget_fallback, FAILED, 1),
    # From v7 on (ai-orchestrator-2026-12-batched: delivery through provider batches;
    # the provider batch and collector workflows are saved beside the task):
    "batch-answered": (batch_answered, COMPLETED, 0),
    "batch-to-realtime": (batch_to_realtime, COMPLETED, 1),
    "batch-cancelled-after-sending": (batch_cancelled_after_sending, CANCELED, 0),
    # v8 (ai-orchestrator-2026-12-batch-beats: batch activities' 15 s heartbeat timeout)
    # records the three batch kinds only: the task workflow did not change.
}


async def record(kinds: list[str]) -> None:
    todo = {f"{VERSION}-{k}": v for k, v in RECIPES.items() if not kinds or k in kinds}
    todo = {name: v for name, v in todo.items() if not (HERE / f"{name}.json").exists()}
    if not todo:
        print(f"nothing to record: every {VERSION}- history exists (they are never re-recorded)")
        return
    os.environ.setdefault("AI_ORCHESTRATOR_BATCH_WINDOW_SECONDS", "0.5")
    os.environ.setdefault("AI_ORCHESTRATOR_BATCH_POLL_SECONDS", "0.3")
    async with DevServer() as server, Simulator(tokens_per_second=100, default_tokens=30) as sim:
        client = await Client.connect(server.target, data_converter=data_converter())
        provider = ProviderSettings(
            api_key="sk-record",
            base_url=sim.base_url,
            default_model="gpt-4o-mini",
            read_timeout=5,
            flush_interval=0.1,
        )
        ctx = Ctx(server, sim, client, provider)
        async with running(client, task_queue="record", provider=provider):
            for name, (recipe, final, min_signals) in todo.items():
                sim.reset()
                await recipe(ctx, name)
                history = await client.get_workflow_handle(name).fetch_history()
                last = history.events[-1].event_type
                signals = sum(
                    e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
                    for e in history.events
                )
                if last != final or signals < min_signals:
                    raise SystemExit(
                        f"{name}: ends with {EventType.Name(last)} after {signals} signals; "
                        f"expected {EventType.Name(final)} after >= {min_signals}. Not saved."
                    )
                path = HERE / f"{name}.json"
                with path.open("x") as f:  # "x": never overwrite a recorded history
                    f.write(history.to_json())
                print(
                    f"recorded {name}: {len(history.events)} events, {signals} signals, "
                    f"ends {EventType.Name(last)}"
                )


if __name__ == "__main__":
    # Optional kinds to record (default: every kind not yet recorded for VERSION).
    asyncio.run(record(sys.argv[1:]))
