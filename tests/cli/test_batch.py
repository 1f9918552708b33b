"""``ai-orchestrator batch`` as a user runs it: real processes, a real server, a SIGKILL.

The worker runs in the test process against the test's simulator, so the
simulator's request log is the bill: a task paid for twice shows up there.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from ai_orchestrator.batch import batch_id_for
from ai_orchestrator.local.devserver import DevServer, free_port
from ai_orchestrator.payloads.converter import data_converter
from ai_orchestrator.simulator import Fault, Simulator

from ..conftest import running_worker, unique
from ..support.processes import run_cli, spawn, stop, worker_env

TOTAL = 50


def finished(sim: Simulator) -> int:
    return len([r for r in sim.requests if r.finished])


async def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)


async def runs_by_id(client: Client, prefix: str, expected: int) -> Counter[str]:
    """Workflow runs per id whose id starts with ``prefix``, as Temporal recorded them."""
    deadline = time.monotonic() + 10
    while True:  # visibility is eventually consistent: wait until it has every run closed
        runs = [wf async for wf in client.list_workflows(f"WorkflowId STARTS_WITH '{prefix}'")]
        closed = [r for r in runs if r.status != WorkflowExecutionStatus.RUNNING]
        if len(closed) >= expected or time.monotonic() > deadline:
            assert all(r.status == WorkflowExecutionStatus.COMPLETED for r in runs), runs
            return Counter(r.id for r in runs)
        await asyncio.sleep(0.1)


def write_prompts(path: Path, prompts: list[object]) -> Path:
    path.write_text("".join(json.dumps(p) + "\n" for p in prompts), encoding="utf-8")
    return path


async def test_killed_batch_resumes_without_running_anything_twice(
    temporal: DevServer, client: Client, queue: str, sim: Simulator, tmp_path: Path
) -> None:
    sim.tokens_per_second = 20  # 10 tokens: about half a second per task
    sim.default_tokens = 10
    tag = unique("kill")  # a fresh file content, so a fresh batch id on a shared server
    prompts = write_prompts(tmp_path / "prompts.jsonl", [f"{tag} #{i}" for i in range(TOTAL)])
    batch_id = batch_id_for(prompts)
    results = tmp_path / "prompts.results.jsonl"
    args = ("-m", "ai_orchestrator", "batch", str(prompts), "--concurrency", "5")
    env = worker_env(temporal.target, queue, None, None)

    async with running_worker(client, queue, sim):
        first = await spawn(*args, env=env)
        try:
            await wait_until(
                lambda: finished(sim) >= TOTAL // 2 or first.returncode is not None,
                timeout=40,
                what="half of the batch",
            )
            assert first.returncode is None, (await first.communicate())[1].decode()
            first.kill()  # SIGKILL: no cleanup, no goodbye
            _, first_err = await first.communicate()
        finally:
            await stop(first)
        done_at_kill = finished(sim)
        assert TOTAL // 2 <= done_at_kill < TOTAL
        # The results file is written as tasks finish: what it holds is finished work.
        kept = [json.loads(line) for line in results.read_text().splitlines()]
        assert 1 <= len(kept) <= done_at_kill and {r["status"] for r in kept} == {"completed"}
        assert "done," in first_err.decode()  # plain progress lines without a TTY

        proc = await spawn(*args, env=env)
        out_bytes, err_bytes = await asyncio.wait_for(proc.communicate(), 60)
        code, out, err = proc.returncode, out_bytes.decode(), err_bytes.decode()

    assert code == 0, err
    assert out == ""  # the summary goes to stderr unless --json
    assert "Traceback" not in err and "running worker" in err
    assert f"batch {batch_id}: {TOTAL}/{TOTAL} completed" in err and str(results) in err

    lines = [json.loads(line) for line in results.read_text().splitlines()]
    assert len(lines) == TOTAL
    assert [line["index"] for line in lines] == list(range(TOTAL))
    assert [line["task_id"] for line in lines] == [f"{batch_id}-{i:05d}" for i in range(TOTAL)]
    assert {line["status"] for line in lines} == {"completed"}
    assert all(line["output"].startswith("[simulated]") and line["tokens"] > 0 for line in lines)

    # Temporal ran each task id exactly once, across both processes ...
    runs = await runs_by_id(client, f"{batch_id}-", TOTAL)
    assert set(runs) == {line["task_id"] for line in lines}
    assert set(runs.values()) == {1}
    # ... and the provider was paid exactly once per task, the interrupted ones included.
    assert len(sim.requests) == TOTAL and finished(sim) == TOTAL


async def test_json_summary_and_failed_task(
    temporal: DevServer, client: Client, queue: str, sim: Simulator, tmp_path: Path
) -> None:
    sim.script(Fault.status(400, message="bad request"))  # the first request fails for good
    own_id = unique("own")
    prompts = write_prompts(
        tmp_path / "p.jsonl",
        ["first", {"prompt": "second", "task_id": own_id, "constraints": {"max_tokens": 5}}],
    )
    out_file = tmp_path / "out" / "r.jsonl"
    out_file.parent.mkdir()
    batch_id = unique("json")
    env = worker_env(temporal.target, queue, None, None)
    async with running_worker(client, queue, sim):
        code, out, err = await run_cli(
            "batch", str(prompts), "--json", "--concurrency", "1",
            "--batch-id", batch_id, "--out", str(out_file),
            env=env,
        )  # fmt: skip
    assert code == 1, err  # one task failed
    summary = json.loads(out)
    assert summary["batch_id"] == batch_id and summary["output"] == str(out_file)
    assert (summary["total"], summary["completed"], summary["failed"]) == (2, 1, 1)
    assert summary["cancelled"] == 0 and summary["tokens"] > 0 and summary["cost_usd"] > 0
    assert summary["duration_seconds"] > 0
    lines = [json.loads(line) for line in out_file.read_text().splitlines()]
    assert [(r["task_id"], r["status"]) for r in lines] == [
        (f"{batch_id}-00000", "failed"),
        (own_id, "completed"),
    ]
    assert "HTTP 400" in lines[0]["error"] and lines[1]["model"] == "gpt-4o-mini"
    assert len(lines[1]["output"].split()) == 5


async def test_resume_after_retention_pays_nothing_again(
    temporal: DevServer, client: Client, queue: str, sim: Simulator, tmp_path: Path
) -> None:
    """Promise: batches never re-pay after the namespace's retention (results file).

    The first run goes to a server of its own, which then disappears: the second
    run meets a Temporal that has never heard of these tasks, as it would once
    retention deleted them (deleting runs on the dev server takes ~30 s each).
    """
    tag = unique("retention")
    prompts = write_prompts(tmp_path / "p.jsonl", [f"{tag} #{i}" for i in range(3)])
    results = tmp_path / "p.results.jsonl"
    async with DevServer() as forgetful:
        other = await Client.connect(forgetful.target, data_converter=data_converter())
        async with running_worker(other, queue, sim):
            env = worker_env(forgetful.target, queue, None, None)
            code, _, err = await run_cli("batch", str(prompts), env=env)
        assert code == 0, err
    first = [json.loads(line) for line in results.read_text().splitlines()]
    assert len(sim.requests) == 3 and {r["status"] for r in first} == {"completed"}

    env = worker_env(temporal.target, queue, None, None)
    async with running_worker(client, queue, sim):  # a resubmission would run and pay here
        code, _, err = await run_cli("batch", str(prompts), env=env)
    assert code == 0, err
    assert len(sim.requests) == 3  # not one request more: nothing was paid twice
    assert all(r["fingerprint"].startswith("sha256:") for r in first)
    for record in first:  # ... and nothing was even submitted
        with pytest.raises(RPCError) as info:
            await client.get_workflow_handle(record["task_id"]).describe()
        assert info.value.status == RPCStatusCode.NOT_FOUND
    again = [json.loads(line) for line in results.read_text().splitlines()]
    assert [(r["task_id"], r["output"], r["status"]) for r in again] == [
        (r["task_id"], r["output"], r["status"]) for r in first
    ]


@pytest.mark.parametrize(
    ("lines", "extra", "needle"),
    [
        (['"ok"', "", '{"prompt": "x"'], [], "p.jsonl line 3: invalid JSON"),
        (['"ok"', '{"prompt": "x", "bogus": 1}'], [], "p.jsonl line 2: bogus: Extra inputs"),
        (["", "  "], [], "p.jsonl: no tasks"),
        (None, [], "cannot read"),
        (['"ok"'], ["--concurrency", "0"], "--concurrency"),
    ],
)
async def test_bad_input_is_one_line_and_exit_2(
    lines: list[str] | None, extra: list[str], needle: str, tmp_path: Path
) -> None:
    prompts = tmp_path / "p.jsonl"
    if lines is not None:
        prompts.write_text("\n".join(lines) + "\n")
    env = worker_env(f"127.0.0.1:{free_port()}", "q", None, None)  # never reached
    env["AI_ORCHESTRATOR_HOME"] = str(tmp_path)
    code, out, err = await run_cli("batch", str(prompts), *extra, env=env, timeout=30)
    assert code == 2, err
    assert out == "" and "Traceback" not in err
    err_lines = [line for line in err.splitlines() if line.strip()]
    assert len(err_lines) == 1 and err_lines[0].startswith("error: "), err
    assert needle in err_lines[0], err
    assert not (tmp_path / "temporal.db").exists()  # nothing was started
