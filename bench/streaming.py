"""One streamed task: ours vs a direct streaming call vs ``workflow_streams``."""

from __future__ import annotations

import time
import uuid

from temporalio.contrib.workflow_streams import WorkflowStreamClient

from ai_orchestrator import Task, TaskConstraints

from .baselines import TOPIC, StreamsWorkflow
from .context import Bench
from .stats import history_stats, lags, pct


def _summary(b: Bench, index: int, received: list[tuple[float, int]]) -> dict[str, float]:
    request = b.sim.requests[index]
    lag = lags(request.token_sent_at, received)
    return {
        "lag_p50": pct(lag, 0.5),
        "lag_p95": pct(lag, 0.95),
        "first_chunk_ms": (received[0][0] - request.received_at) * 1000,
    }


async def ours(b: Bench, tokens: int) -> dict[str, float]:
    b.sim.default_tokens = tokens
    index = len(b.sim.requests)
    task_id = await b.tasks.submit_task(
        Task(prompt="stream ours", constraints=TaskConstraints(timeout_seconds=120))
    )
    received: list[tuple[float, int]] = []
    text = ""
    async for chunk in b.tasks.stream_result(task_id):
        text += chunk
        received.append((time.monotonic(), len(text.split())))
    events, size = await history_stats(b.client, task_id)
    return {**_summary(b, index, received), "events": events, "bytes": size}


async def workflow_streams(b: Bench, tokens: int) -> dict[str, float]:
    b.sim.default_tokens = tokens
    index = len(b.sim.requests)
    workflow_id = f"streams-{uuid.uuid4().hex}"
    await b.client.start_workflow(
        StreamsWorkflow.run, "stream baseline", id=workflow_id, task_queue=b.base_queue
    )
    received: list[tuple[float, int]] = []
    text = ""
    subscriber = WorkflowStreamClient.create(b.client, workflow_id)
    async for item in subscriber.subscribe(TOPIC, result_type=str):
        text += item.data
        received.append((time.monotonic(), len(text.split())))
        if len(text.split()) >= tokens:
            break
    await b.client.get_workflow_handle(workflow_id).result()
    events, size = await history_stats(b.client, workflow_id)
    return {**_summary(b, index, received), "events": events, "bytes": size}


async def direct(b: Bench, tokens: int) -> dict[str, float]:
    b.sim.default_tokens = tokens
    index = len(b.sim.requests)
    received: list[tuple[float, int]] = []
    text = ""
    stream = await b.openai.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "direct stream"}], stream=True
    )
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            text += chunk.choices[0].delta.content
            received.append((time.monotonic(), len(text.split())))
    return _summary(b, index, received)
