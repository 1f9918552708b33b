"""What the task commands say about how a task ended, in the CLI's own process.

An encrypted task read without its key, a cancel that comes too late, and the
summary of a cancelled task: each must be one true line and a meaningful exit
code, never a traceback or made-up numbers.
"""

from __future__ import annotations

import re

from temporalio.client import Client

from ai_orchestrator import Task, TaskClient, TaskConstraints
from ai_orchestrator.codec import EncryptionCodec
from ai_orchestrator.converter import data_converter
from ai_orchestrator.devserver import DevServer
from ai_orchestrator.simulator import Simulator

from ..conftest import running_worker, unique
from .cli_inprocess import invoke
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
