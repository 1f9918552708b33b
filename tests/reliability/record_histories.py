"""Record the workflow histories that the replay tests check in.

Run ``python -m tests.reliability.record_histories`` after an intended change to
workflow behaviour, and commit the new files with a note on why they changed.
A change to the workflow that breaks replay of these files would break every
task in flight when it is deployed.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from temporalio.client import Client

from ai_orchestrator import Task, TaskClient
from ai_orchestrator.config import ProviderSettings
from ai_orchestrator.converter import data_converter
from ai_orchestrator.devserver import DevServer
from ai_orchestrator.messages import RetrySettings
from ai_orchestrator.simulator import Fault, Simulator
from ai_orchestrator.worker import running

HERE = Path(__file__).parent / "histories"
RETRY = RetrySettings(initial_interval_seconds=0.2, heartbeat_timeout_seconds=2.0)


async def record() -> None:
    async with DevServer() as server, Simulator(tokens_per_second=50, default_tokens=30) as sim:
        client = await Client.connect(server.target, data_converter=data_converter())
        provider = ProviderSettings(
            api_key="sk-record",
            base_url=sim.base_url,
            default_model="gpt-4o-mini",
            read_timeout=5,
            flush_interval=0.1,
        )
        async with running(client, task_queue="record", provider=provider):
            tasks = TaskClient(client, task_queue="record", retry=RETRY)
            await tasks.execute(Task(prompt="happy path", task_id="happy"))
            sim.script(Fault.disconnect(after_tokens=12))
            await tasks.execute(Task(prompt="retried after a cut stream", task_id="retry"))
            await tasks.submit_task(Task(prompt="cancelled mid-stream", task_id="cancel"))
            await sim.wait_for_tokens_sent(len(sim.requests) - 1, 10)
            await tasks.cancel_task("cancel")
            await tasks.get_result("cancel")
            for name in ("happy", "retry", "cancel"):
                history = await client.get_workflow_handle(name).fetch_history()
                (HERE / f"{name}.json").write_text(history.to_json())
                print(f"recorded {name}: {len(history.events)} events")


if __name__ == "__main__":
    asyncio.run(record())
