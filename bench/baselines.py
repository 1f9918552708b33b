"""Baselines measured beside ours in the same run.

- a bare Temporal workflow with one activity making the same (non-streamed) call;
- ``temporalio.contrib.workflow_streams`` publishing every delta from an
  activity, read by a subscriber: Temporal's own answer to streaming.
"""

from __future__ import annotations

from datetime import timedelta

from openai import AsyncOpenAI
from temporalio import activity, workflow
from temporalio.common import RetryPolicy
from temporalio.contrib.workflow_streams import WorkflowStream, WorkflowStreamClient

BARE_ACTIVITY = "bench.bare_completion"
STREAMS_ACTIVITY = "bench.streams_completion"
TOPIC = "delta"


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


@workflow.defn(name="BenchBare")
class BareWorkflow:
    @workflow.run
    async def run(self, prompt: str) -> str:
        return await workflow.execute_activity(
            BARE_ACTIVITY,
            prompt,
            result_type=str,
            start_to_close_timeout=timedelta(seconds=60),
            retry_policy=RetryPolicy(maximum_attempts=3),
        )


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
