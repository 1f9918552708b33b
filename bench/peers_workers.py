"""Worker processes of the peers scenario (:mod:`bench.peers`): other Temporal LLM integrations
answering from the same simulator, each in a process of its own, as ours runs in
``ai-orchestrator worker``.

``python -m bench.peers_workers SYSTEM``, SYSTEM one of:

- ``pydantic_ai``: pydantic-ai's durable execution (``pydantic_ai.durable_exec.temporal``): an
  ``Agent`` with the ``TemporalDurability`` capability (what the deprecated ``TemporalAgent``
  wrapper became), an ``OpenAIChatModel`` on the simulator, ``PydanticAIPlugin`` on the client;
- ``openai_agents``: Temporal's OpenAI Agents SDK integration (``temporalio.openai_agents``,
  the ``temporalio-openai-agents`` package; ``temporalio.contrib.openai_agents`` re-exports
  it), ``OpenAIAgentsPlugin`` with an ``OpenAIProvider`` (Chat Completions) on the simulator;
- ``bare``: the one-activity workflow of :mod:`bench.baselines`, on a worker polling like ours
  (the floor under ours);
- ``ours_passthrough``: ``ai-orchestrator worker`` with ``ai_orchestrator`` passed through the
  workflow sandbox (:data:`ai_orchestrator.worker.WORKFLOW_RUNNER` replaced in this process
  only), so that the workflow module is not re-imported for every run: the profile's test of a
  proposed change (:mod:`bench.peers_profile`).

The environment is the one :meth:`bench.context.Bench.env` gives ``ai-orchestrator worker``
(``TEMPORAL_ADDRESS``, ``OPENAI_BASE_URL``, ``OPENAI_API_KEY``,
``AI_ORCHESTRATOR_TASK_QUEUE``), plus ``PEERS_HEARTBEAT_SECONDS``: the model activities'
heartbeat timeout, set to ours so that a killed worker is noticed as fast (their defaults:
30 s for pydantic-ai, none for the OpenAI Agents integration, which then waits for the 60 s
start-to-close timeout). Each worker says ``worker listening`` on stderr once it polls.

Workflows (started by name by :mod:`bench.peers`):

- ``PeersPydanticShort`` / ``PeersAgentsShort``: one agent run, answer returned;
- ``PeersPydanticStream`` / ``PeersAgentsStream``: the same, streamed to the Workflow Stream
  topic :data:`TOPIC` (the live streaming each integration offers; both publish through
  ``temporalio.contrib.workflow_streams`` from the model activity).
"""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import timedelta
from typing import Any

import agents
from agents import Runner, set_tracing_disabled
from agents.models.openai_provider import OpenAIProvider as AgentsOpenAIProvider
from openai import AsyncOpenAI
from pydantic_ai import Agent
from pydantic_ai.durable_exec.temporal import (
    AgentEventStream,
    PydanticAIPlugin,
    TemporalDurability,
)
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.openai import OpenAIProvider
from temporalio import workflow
from temporalio.client import Client
from temporalio.contrib.workflow_streams import WorkflowStream
from temporalio.openai_agents import ModelActivityParameters, OpenAIAgentsPlugin
from temporalio.plugin import SimplePlugin
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

MODEL = "gpt-4o-mini"
TOPIC = "peers-events"
SYSTEMS = ("pydantic_ai", "openai_agents", "bare", "ours_passthrough")
PYDANTIC_SHORT, PYDANTIC_STREAM = "PeersPydanticShort", "PeersPydanticStream"
AGENTS_SHORT, AGENTS_STREAM = "PeersAgentsShort", "PeersAgentsStream"
#: What the OpenAI Agents stream workflow waits after the answer, so that its subscribers
#: read the end of the stream before the run closes (it has no drain handshake; pydantic-ai's
#: ``AgentEventStream`` has one, and waits for the subscriber's acknowledgement).
AGENTS_DRAIN = timedelta(milliseconds=500)

# The workflows' module is passed through, not re-imported per run (as ours and the baselines).
RUNNER = SandboxedWorkflowRunner(
    restrictions=SandboxRestrictions.default.with_passthrough_modules("bench")
)

#: The pydantic-ai agents, built at worker start (they read the simulator's URL).
_AGENTS: dict[str, Any] = {}


def heartbeat() -> timedelta:
    return timedelta(seconds=float(os.environ.get("PEERS_HEARTBEAT_SECONDS", "3")))


# -- pydantic-ai --------------------------------------------------------------------------


@workflow.defn(name=PYDANTIC_SHORT)
class PydanticShort:
    @workflow.run
    async def run(self, prompt: str) -> str:
        result = await _AGENTS["short"].run(prompt)
        return str(result.output)


@workflow.defn(name=PYDANTIC_STREAM)
class PydanticStream:
    @workflow.init
    def __init__(self, prompt: str) -> None:
        self.events = AgentEventStream()

    @workflow.run
    async def run(self, prompt: str) -> str:
        async with self.events:  # leaving waits for a subscriber to read the end
            result = await _AGENTS["stream"].run(prompt)
        return str(result.output)


def pydantic_plugin() -> SimplePlugin:
    return PydanticAIPlugin()


def _pydantic_worker(client: Client, queue: str) -> Worker:
    provider = OpenAIProvider(
        base_url=os.environ["OPENAI_BASE_URL"], api_key=os.environ["OPENAI_API_KEY"]
    )
    model = OpenAIChatModel(MODEL, provider=provider)
    model_config = {"heartbeat_timeout": heartbeat()}
    _AGENTS["short"] = Agent(
        model,
        name="peers_short",
        capabilities=[TemporalDurability(model_activity_config=model_config)],
    )
    _AGENTS["stream"] = Agent(
        model,
        name="peers_stream",
        capabilities=[
            TemporalDurability(model_activity_config=model_config, event_stream_topic=TOPIC)
        ],
    )
    PydanticShort.__pydantic_ai_agents__ = [_AGENTS["short"]]  # type: ignore[attr-defined]
    PydanticStream.__pydantic_ai_agents__ = [_AGENTS["stream"]]  # type: ignore[attr-defined]
    return Worker(
        client,
        task_queue=queue,
        workflows=[PydanticShort, PydanticStream],
        workflow_runner=RUNNER,
    )


# -- OpenAI Agents SDK --------------------------------------------------------------------


@workflow.defn(name=AGENTS_SHORT)
class AgentsShort:
    @workflow.run
    async def run(self, prompt: str) -> str:
        result = await Runner.run(agents.Agent(name="Assistant", model=MODEL), input=prompt)
        return str(result.final_output)


@workflow.defn(name=AGENTS_STREAM)
class AgentsStream:
    @workflow.init
    def __init__(self, prompt: str) -> None:
        self.stream = WorkflowStream()

    @workflow.run
    async def run(self, prompt: str) -> str:
        result = Runner.run_streamed(agents.Agent(name="Assistant", model=MODEL), input=prompt)
        async for _ in result.stream_events():
            pass
        await workflow.sleep(AGENTS_DRAIN)
        return str(result.final_output)


def agents_plugin(base_url: str, api_key: str) -> SimplePlugin:
    """The plugin, for the worker and for the client (its converter and trace headers)."""
    # Traces would be exported to OpenAI's own endpoint; nothing here may leave the machine.
    set_tracing_disabled(True)
    provider = AgentsOpenAIProvider(
        openai_client=AsyncOpenAI(base_url=base_url, api_key=api_key, max_retries=0),
        use_responses=False,
    )
    params = ModelActivityParameters(
        start_to_close_timeout=timedelta(seconds=60),  # the plugin's default
        heartbeat_timeout=heartbeat(),
        streaming_topic=TOPIC,
    )
    return OpenAIAgentsPlugin(model_params=params, model_provider=provider)


def _agents_worker(client: Client, queue: str) -> Worker:
    return Worker(
        client, task_queue=queue, workflows=[AgentsShort, AgentsStream], workflow_runner=RUNNER
    )


def serve_ours_passthrough() -> int:
    """``ai-orchestrator worker``, its workflow module imported once instead of once per run."""
    import ai_orchestrator.worker as ours
    from ai_orchestrator.cli import main

    restrictions = SandboxRestrictions.default.with_passthrough_modules("ai_orchestrator")
    ours.WORKFLOW_RUNNER = SandboxedWorkflowRunner(restrictions=restrictions)
    return main(["worker"])


# -- the process --------------------------------------------------------------------------


async def serve(system: str) -> None:
    address, queue = os.environ["TEMPORAL_ADDRESS"], os.environ["AI_ORCHESTRATOR_TASK_QUEUE"]
    base_url, api_key = os.environ["OPENAI_BASE_URL"], os.environ["OPENAI_API_KEY"]
    if system == "pydantic_ai":
        client = await Client.connect(address, plugins=[pydantic_plugin()])
        worker = _pydantic_worker(client, queue)
    elif system == "openai_agents":
        client = await Client.connect(address, plugins=[agents_plugin(base_url, api_key)])
        worker = _agents_worker(client, queue)
    elif system == "bare":
        from ai_orchestrator.config import WorkerTuning
        from bench.baselines import baseline_worker

        client = await Client.connect(address)
        openai_client = AsyncOpenAI(api_key=api_key, base_url=base_url, max_retries=0)
        # Our worker's workflow-task polls (20, not the SDK's 5), as in bench/start_floor.py:
        # the floor differs from ours by what the task does, not by how the worker polls.
        pollers = WorkerTuning().workflow_pollers
        worker = baseline_worker(client, queue, openai_client, workflow_pollers=pollers)
    else:
        raise SystemExit(f"unknown system {system!r}; one of {', '.join(SYSTEMS)}")
    async with worker:
        print(f"worker listening on task queue {queue!r} ({system})", file=sys.stderr, flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    os.environ.setdefault("OPENAI_AGENTS_DISABLE_TRACING", "1")
    # From the module's own name, not __main__: the sandbox passes ``bench`` through.
    from bench.peers_workers import serve as serve_imported
    from bench.peers_workers import serve_ours_passthrough

    system = sys.argv[1] if len(sys.argv) > 1 else ""
    if system == "ours_passthrough":
        sys.exit(serve_ours_passthrough())
    asyncio.run(serve_imported(system))
