"""Baselines measured beside ours in the same run.

- a bare Temporal workflow with one activity making the same (non-streamed) call, and
  its twin streaming the answer with usage as ours does (``BenchBareStreamed``);
- ``temporalio.contrib.workflow_streams`` publishing every delta from an
  activity, read by a subscriber: Temporal's own answer to streaming;
- bare workflows parked in a heartbeating activity, for the concurrency scenario;
- bare workflows parked on a signal that carries their answer, for the batches
  scenario: the floor of handing 1,000 answers to 1,000 waiting workflows.

``python -m bench.baselines`` runs a worker for them (used as a separate process
so its memory can be measured on its own).
"""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import timedelta

from openai import AsyncOpenAI
from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.common import RetryPolicy
from temporalio.contrib.workflow_streams import WorkflowStream, WorkflowStreamClient
from temporalio.worker import PollerBehaviorSimpleMaximum, Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

BARE_ACTIVITY = "bench.bare_completion"
BARE_STREAMED_ACTIVITY = "bench.bare_streamed_completion"
STREAMS_ACTIVITY = "bench.streams_completion"
PARKED_ACTIVITY = "bench.parked"
ANSWER_SIGNAL = "answer"
TOPIC = "delta"

# Same sandbox treatment as our worker: the module is passed through, not re-imported per run.
BASELINE_RUNNER = SandboxedWorkflowRunner(
    restrictions=SandboxRestrictions.default.with_passthrough_modules("bench", "openai")
)


class BaselineActivities:
    def __init__(self, openai_client: AsyncOpenAI, batch_interval: float) -> None:
        self._client = openai_client
        self._batch_interval = timedelta(seconds=batch_interval)

    @activity.defn(name=BARE_ACTIVITY)
    async def bare_completion(self, prompt: str) -> str:
        response = await self._client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": prompt}]
        )
        return response.choices[0].message.content or ""

    @activity.defn(name=BARE_STREAMED_ACTIVITY)
    async def bare_streamed_completion(self, prompt: str) -> str:
        stream = await self._client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": prompt}],
            stream=True,
            stream_options={"include_usage": True},
        )
        text = [c.choices[0].delta.content or "" async for c in stream if c.choices]
        return "".join(text)

    @activity.defn(name=STREAMS_ACTIVITY)
    async def streams_completion(self, prompt: str) -> str:
        text: list[str] = []
        stream_client = WorkflowStreamClient.from_within_activity(
            batch_interval=self._batch_interval
        )
        async with stream_client:
            topic = stream_client.topic(TOPIC, type=str)
            stream = await self._client.chat.completions.create(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": prompt}],
                stream=True,
                stream_options={"include_usage": True},
            )
            async for chunk in stream:
                for choice in chunk.choices:
                    if choice.delta and choice.delta.content:
                        text.append(choice.delta.content)
                        topic.publish(choice.delta.content)
                activity.heartbeat()
        return "".join(text)

    @activity.defn(name=PARKED_ACTIVITY)
    async def parked(self, seconds: float) -> None:
        """Holds a slot like a streaming call would, heartbeating as ours does."""
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        while loop.time() < end:
            await asyncio.sleep(1.0)
            activity.heartbeat()


async def _one_activity(name: str, prompt: str) -> str:
    """The whole of a bare workflow: one activity, its answer as the result."""
    return await workflow.execute_activity(
        name,
        prompt,
        result_type=str,
        start_to_close_timeout=timedelta(seconds=60),
        retry_policy=RetryPolicy(maximum_attempts=3),
    )


@workflow.defn(name="BenchBare")
class BareWorkflow:
    @workflow.run
    async def run(self, prompt: str) -> str:
        return await _one_activity(BARE_ACTIVITY, prompt)


@workflow.defn(name="BenchBareStreamed")
class BareStreamedWorkflow:
    @workflow.run
    async def run(self, prompt: str) -> str:
        return await _one_activity(BARE_STREAMED_ACTIVITY, prompt)


@workflow.defn(name="BenchParked")
class ParkedWorkflow:
    @workflow.run
    async def run(self, seconds: float) -> None:
        await workflow.execute_activity(
            PARKED_ACTIVITY,
            seconds,
            start_to_close_timeout=timedelta(seconds=seconds * 10 + 60),
            heartbeat_timeout=timedelta(seconds=10),
        )


@workflow.defn(name="BenchAnswered")
class AnsweredWorkflow:
    """Waits for its answer by signal and returns it: all a batched task must do."""

    def __init__(self) -> None:
        self.answer: str | None = None

    @workflow.run
    async def run(self) -> str:
        await workflow.wait_condition(lambda: self.answer is not None)
        return self.answer or ""

    @workflow.signal(name=ANSWER_SIGNAL)
    def give(self, answer: str) -> None:
        self.answer = answer


@workflow.defn(name="BenchStreams")
class StreamsWorkflow:
    @workflow.init
    def __init__(self, prompt: str) -> None:
        self.stream = WorkflowStream()

    @workflow.run
    async def run(self, prompt: str) -> str:
        text = await workflow.execute_activity(
            STREAMS_ACTIVITY,
            prompt,
            result_type=str,
            start_to_close_timeout=timedelta(seconds=120),
            heartbeat_timeout=timedelta(seconds=10),
            retry_policy=RetryPolicy(maximum_attempts=1),
        )
        # Let subscribers drain before the run closes.
        await workflow.sleep(timedelta(milliseconds=500))
        return text


def baseline_worker(
    client: Client, queue: str, openai_client: AsyncOpenAI, workflow_pollers: int = 5
) -> Worker:
    """SDK defaults (5 workflow-task polls) unless told: the start floor matches ours."""
    acts = BaselineActivities(openai_client, batch_interval=0.1)
    return Worker(
        client,
        task_queue=queue,
        workflows=[
            BareWorkflow,
            BareStreamedWorkflow,
            StreamsWorkflow,
            ParkedWorkflow,
            AnsweredWorkflow,
        ],
        activities=[
            acts.bare_completion,
            acts.bare_streamed_completion,
            acts.streams_completion,
            acts.parked,
        ],
        workflow_runner=BASELINE_RUNNER,
        max_concurrent_activities=1000,
        max_heartbeat_throttle_interval=timedelta(seconds=1),
        default_heartbeat_throttle_interval=timedelta(seconds=1),
        workflow_task_poller_behavior=PollerBehaviorSimpleMaximum(workflow_pollers),
    )


async def _serve() -> None:
    client = await Client.connect(os.environ["TEMPORAL_ADDRESS"])
    openai_client = AsyncOpenAI(
        api_key="sk-bench", base_url=os.environ["OPENAI_BASE_URL"], max_retries=0
    )
    pollers = int(os.environ.get("BENCH_WORKFLOW_POLLERS", "5"))
    queue = os.environ["AI_ORCHESTRATOR_TASK_QUEUE"]
    async with baseline_worker(client, queue, openai_client, workflow_pollers=pollers):
        print("baseline worker listening", file=sys.stderr, flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(_serve())
