"""Batch delivery from the command line: ``status`` says which provider batch holds a
task, ``batch --delivery`` shows the provider batch in its progress, ``run
--delivery batch`` works offline, a bad ``--delivery`` is one error line.

The commands run in-process against a real server and worker; the simulator's
batch records say which provider batch the tasks went in.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio.client import Client

from ai_orchestrator import Task, TaskClient, TaskConstraints, TaskStatus
from ai_orchestrator.batch import _provider_batches
from ai_orchestrator.cli import _batch as batch_cli
from ai_orchestrator.client import ProviderBatchInfo, _describe
from ai_orchestrator.delivery import PROVIDER_BATCH_WORKFLOW
from ai_orchestrator.local.devserver import DevServer, free_port
from ai_orchestrator.local.session import worker_polling
from ai_orchestrator.simulator import BatchBehaviour, Simulator

from ..conftest import FAST_RETRY, running_worker, unique
from ..support.cli_inprocess import invoke
from ..support.helpers import wait_until
from ..support.processes import run_cli, worker_env
from .test_cli import assert_one_line_error

BATCH = TaskConstraints(delivery="batch", max_tokens=8, timeout_seconds=300)


@pytest.fixture(autouse=True)
def _quick_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AI_ORCHESTRATOR_BATCH_WINDOW_SECONDS", "0.5")
    monkeypatch.setenv("AI_ORCHESTRATOR_BATCH_POLL_SECONDS", "0.3")
    monkeypatch.setenv("AI_ORCHESTRATOR_BATCH_POLL_MAX_SECONDS", "0.5")


async def _status(task_id: str, at: dict[str, str]) -> tuple[int, str, dict[str, object]]:
    """``status ID`` (its line) and ``status ID --json`` (parsed)."""
    code, line, err = await invoke("status", task_id, **at)
    assert code == 5, err  # still going
    code, out, err = await invoke("status", task_id, "--json", **at)
    assert code == 5, err
    return code, line.strip(), json.loads(out)


async def test_status_says_which_provider_batch_holds_a_task(
    temporal: DevServer,
    client: Client,
    queue: str,
    sim: Simulator,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A batch goes at two tasks (not after a window), and stays in progress.
    monkeypatch.setenv("AI_ORCHESTRATOR_BATCH_WINDOW_SECONDS", "120")
    monkeypatch.setenv("AI_ORCHESTRATOR_BATCH_MAX_ITEMS", "2")
    sim.batch_behaviour = BatchBehaviour(turnaround=2, stall_after=0)
    at = {"target": temporal.target, "queue": queue}
    tasks = TaskClient(client, task_queue=queue, retry=FAST_RETRY)
    async with running_worker(client, queue, sim):
        first = await tasks.submit_task(Task(prompt="one", task_id=unique("bs"), constraints=BATCH))
        _, line, as_json = await _status(first, at)
        assert line == "running  waiting to be sent in a provider batch"
        assert as_json == {
            "task_id": first,
            "status": "running",
            "provider_batch": {
                "status": "gathering",
                "batch_workflow_id": None,
                "provider_batch_id": None,
                "outcome": None,
                "total": 0,
                "succeeded": 0,
                "errored": 0,
                "done": 0,
            },
        }

        second = await tasks.submit_task(
            Task(prompt="two", task_id=unique("bs"), constraints=BATCH)
        )

        async def in_progress() -> bool:
            described = await tasks.describe_task(second)
            batch = described.provider_batch
            return batch is not None and batch.status == "in_progress"

        await wait_until(in_progress, 30, "the provider batch in progress")
        (provider_id,) = sim.batches
        for task_id in (first, second):
            _, line, as_json = await _status(task_id, at)
            assert line == f"running  in provider batch {provider_id} (in_progress, 0 of 2 done)"
            batch = as_json["provider_batch"]
            assert isinstance(batch, dict)
            assert batch["provider_batch_id"] == provider_id and batch["total"] == 2
            assert batch["status"] == "in_progress" and batch["done"] == 0
        holder = str(batch["batch_workflow_id"])
        assert (await client.get_workflow_handle(holder).describe()).workflow_type == (
            PROVIDER_BATCH_WORKFLOW
        )
        described = await tasks.describe_task(first)
        assert described.status == TaskStatus.RUNNING
        assert described.provider_batch == ProviderBatchInfo(
            status="in_progress", batch_workflow_id=holder, provider_batch_id=provider_id, total=2
        )
        for task_id in (first, second):
            assert await tasks.cancel_task(task_id)


async def test_realtime_task_status_json_has_no_provider_batch(
    temporal: DevServer, client: Client, queue: str, sim: Simulator
) -> None:
    sim.tokens_per_second, sim.default_tokens = 5, 200  # still generating when asked
    at = {"target": temporal.target, "queue": queue}
    tasks = TaskClient(client, task_queue=queue, retry=FAST_RETRY)
    async with running_worker(client, queue, sim):
        task_id = await tasks.submit_task(Task(prompt="slow", task_id=unique("rt")))
        await sim.wait_until(lambda: bool(sim.requests) and sim.requests[0].tokens_sent >= 1)
        code, out, err = await invoke("status", task_id, "--json", **at)
        assert code == 5 and json.loads(out) == {"task_id": task_id, "status": "running"}, err
        assert await tasks.cancel_task(task_id)


async def test_status_of_a_batch_task_no_worker_can_query_says_no_batch(
    temporal: DevServer, client: Client, queue: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No worker at all (as for a worker too old to know the query): the query
    # gives up, and the status comes without a batch rather than failing.
    monkeypatch.setattr(_describe, "BATCH_QUERY_TIMEOUT", timedelta(seconds=0.5))
    tasks = TaskClient(client, task_queue=queue)
    task_id = await tasks.submit_task(Task(prompt="q", task_id=unique("nw"), constraints=BATCH))
    code, out, err = await invoke("status", task_id, "--json", target=temporal.target, queue=queue)
    assert code == 5 and json.loads(out) == {"task_id": task_id, "status": "pending"}, err
    await client.get_workflow_handle(task_id).terminate("test over")


async def test_batch_file_with_delivery_batch_shows_its_provider_batch(
    temporal: DevServer,
    client: Client,
    queue: str,
    sim: Simulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Look at the provider batch, and print what it says, often (not every 2 s).
    monkeypatch.setattr(_provider_batches, "WATCH_INTERVAL", 0.1)
    monkeypatch.setattr(batch_cli, "PLAIN_PROGRESS_INTERVAL", 0.0)
    sim.batch_behaviour = BatchBehaviour(turnaround=3)
    tag = unique("bf")
    lines = [
        f"{tag} one",
        {"prompt": f"{tag} two", "constraints": {"max_tokens": 5}},
        f"{tag} three",
        # A line that chose its own delivery keeps it.
        {"prompt": f"{tag} live", "constraints": {"delivery": "realtime"}},
    ]
    prompts = tmp_path / "p.jsonl"
    prompts.write_text("".join(json.dumps(line) + "\n" for line in lines))
    at = {"target": temporal.target, "queue": queue}
    async with running_worker(client, queue, sim):
        # On the test's worker, not one ``batch`` would start on a simulator of its own.
        await wait_until(lambda: worker_polling(client, queue), 30, "the worker polling")
        code, out, err = await invoke(
            "batch", str(prompts), "--delivery", "batch", "--json", "--batch-id", tag, **at
        )
    assert code == 0, err
    assert "its running worker(s)" in err
    assert json.loads(out)["completed"] == 4
    assert "concurrency 2000" in err  # every task open at once: one provider batch
    assert len(sim.batches) == 1, err
    (provider_id,) = sim.batches
    assert len(sim.batches[provider_id].items) == 3
    assert len(sim.requests) == 1  # the realtime line
    assert f"running; provider batch {provider_id}: in_progress, " in err, err
    tasks = TaskClient(client, task_queue=queue)
    results = [await tasks.get_result(f"{tag}-{i:05d}") for i in range(4)]
    deliveries = [[b.get("delivery") for b in r.metadata["billing"]] for r in results]
    assert deliveries == [["batch"], ["batch"], ["batch"], [None]]


async def test_run_with_delivery_batch_works_offline_on_the_simulator(
    temporal: DevServer,
) -> None:
    # No worker polls this queue: ``run`` starts one on the built-in simulator.
    code, out, err = await invoke(
        "run",
        "Say hello",
        "--delivery",
        "batch",
        "--max-tokens",
        "6",
        "--json",
        target=temporal.target,
        queue=unique("offline-batch"),
        AI_ORCHESTRATOR_HOME=str(Path.cwd() / ".never-used"),
    )
    assert code == 0, err
    assert "SIMULATOR" in err
    result = json.loads(out)
    assert result["status"] == "completed" and result["output"].startswith("[simulated]")
    assert [b["delivery"] for b in result["metadata"]["billing"]] == ["batch"]


BOGUS = "'--delivery': 'bogus' is not one of"


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["run", "hi", "--delivery", "bogus"], BOGUS),
        (["submit", "hi", "--delivery", "bogus"], BOGUS),
        (["batch", "{prompts}", "--delivery", "bogus"], BOGUS),
        # A line is checked with the file's delivery: a batch answer cannot be capped.
        (["batch", "{prompts}", "--delivery", "batch"], "p.jsonl line 2: constraints: "),
    ],
    ids=["run", "submit", "batch", "batch-line-with-a-cap"],
)
async def test_a_bad_delivery_is_one_error_line_and_exit_2(
    args: list[str], needle: str, tmp_path: Path
) -> None:
    prompts = tmp_path / "p.jsonl"
    capped = {"prompt": "capped", "constraints": {"max_cost_usd": 0.01}}
    prompts.write_text(f'"hello"\n{json.dumps(capped)}\n')
    env = worker_env(f"127.0.0.1:{free_port()}", "q", None, None)  # never reached
    env["AI_ORCHESTRATOR_HOME"] = str(tmp_path)
    argv = [a.format(prompts=prompts) for a in args]
    code, out, err = await run_cli(*argv, env=env, timeout=30)
    assert_one_line_error(code, err, needle)
    assert out == ""
    assert not (tmp_path / "temporal.db").exists()  # nothing was started
