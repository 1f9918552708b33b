"""``stream``/``run`` when a retry ends with shorter text than was printed: real processes.

Printed text cannot be taken back. A redirected file must end up holding the
final output (exit by the task's status); a pipe gets a clear stderr line and
exit 1. The first attempt stalls after 10 tokens until the CLI processes have
printed them, then the simulator drops its connection; the retry says only 4.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from pathlib import Path

from temporalio.client import Client

from ai_orchestrator import Task, TaskClient
from ai_orchestrator.local.devserver import DevServer
from ai_orchestrator.simulator import Fault, Simulator

from ..conftest import provider_for, running_worker, unique
from ..support.processes import ROOT, worker_env

FIRST, RETRY = 10, 4


def words(path: Path) -> int:
    return len(path.read_text().split()) if path.exists() else 0


async def cli_to(stdout: object, *args: str, env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ai_orchestrator",
        *args,
        env=env,
        cwd=ROOT,
        stdout=stdout,  # type: ignore[arg-type]
        stderr=asyncio.subprocess.PIPE,
    )


async def shrink_when_printed(sim: Simulator, *printed: Callable[[], int]) -> list[int]:
    """Once the first attempt streamed FIRST words and every ``printed()`` shows them,
    cut its stall (the retry will say RETRY); how many words each showed before
    the retry."""
    await sim.wait_until(lambda: bool(sim.requests) and sim.requests[0].tokens_sent >= FIRST, 60)
    sim.default_tokens = RETRY
    most = [0] * len(printed)
    deadline = time.monotonic() + 60
    while len(sim.requests) < 2 and time.monotonic() < deadline:
        most = [max(m, count()) for m, count in zip(most, printed, strict=True)]
        if all(m >= FIRST for m in most):
            sim.cut_stalls()  # what a CLI prints after this comes from the retry
        await asyncio.sleep(0.05)
    sim.cut_stalls()  # not printed in time: the test goes on, and fails on ``most``
    return most


async def collect(stream: asyncio.StreamReader | None, into: bytearray) -> None:
    assert stream is not None
    while chunk := await stream.read(4096):
        into.extend(chunk)


#: Long enough never to end a stall before the test cuts it (CLI processes start
#: slowly on a loaded machine: interpreter start and imports took over 5 s there).
STALL_SECONDS = 90.0


def prepare(sim: Simulator) -> None:
    sim.tokens_per_second, sim.default_tokens = 40, 24
    sim.script(Fault.stall(after_tokens=FIRST, seconds=STALL_SECONDS))


def stalling_worker(client: Client, queue: str, sim: Simulator):  # type: ignore[no-untyped-def]
    return running_worker(
        client, queue, sim, provider=provider_for(sim, read_timeout=STALL_SECONDS + 30)
    )


async def test_stream_rewrites_a_redirected_file_and_fails_on_a_pipe(
    temporal: DevServer, client: Client, queue: str, sim: Simulator, tmp_path: Path
) -> None:
    """Promise: the CLI never leaves the wrong text in a redirected file with exit 0."""
    prepare(sim)
    env = worker_env(temporal.target, queue, None, None)
    out = tmp_path / "answer.txt"
    tasks = TaskClient(client, task_queue=queue)
    async with stalling_worker(client, queue, sim):
        task_id = await tasks.submit_task(Task(prompt="shrink for the CLI", task_id=unique("cli")))
        with out.open("w") as f:
            to_file = await cli_to(f, "stream", task_id, env=env)
        to_pipe = await cli_to(asyncio.subprocess.PIPE, "stream", task_id, env=env)
        piped = bytearray()
        reading = asyncio.create_task(collect(to_pipe.stdout, piped))
        seen, seen_piped = await shrink_when_printed(
            sim, lambda: words(out), lambda: len(piped.decode(errors="replace").split())
        )
        _, file_err = await asyncio.wait_for(to_file.communicate(), 60)
        assert to_pipe.stderr is not None  # stdout is ``reading``'s alone
        pipe_err = await asyncio.wait_for(to_pipe.stderr.read(), 60)
        await asyncio.wait_for(asyncio.gather(to_pipe.wait(), reading), 60)
        pipe_out = bytes(piped)
        result = await tasks.get_result(task_id, timeout=30)
    assert seen == seen_piped == FIRST, "the CLIs should have printed the first attempt's text"
    assert len(result.output.split()) == RETRY and len(sim.requests) == 2
    assert to_file.returncode == 0, file_err.decode()
    assert out.read_text() == result.output + "\n"
    assert "rewritten with the final output" in file_err.decode()
    assert to_pipe.returncode == 1, pipe_err.decode()
    assert len(pipe_out.decode().split()) == FIRST  # printed, cannot be taken back ...
    assert f"ai-orchestrator result {task_id}" in pipe_err.decode()  # ... so it says so


async def test_run_rewrites_a_redirected_file(
    temporal: DevServer, client: Client, queue: str, sim: Simulator, tmp_path: Path
) -> None:
    """Promise: `run ... > file` ends with the final output in the file, exit 0."""
    prepare(sim)
    env = worker_env(temporal.target, queue, None, None)
    out = tmp_path / "run.txt"
    kept = "kept: written before the command"
    out.write_text(kept + "\n")
    async with stalling_worker(client, queue, sim):
        with out.open("a") as f:  # >> : the command rewrites only what it wrote
            proc = await cli_to(f, "run", "shrink for run", env=env)
        (seen,) = await shrink_when_printed(sim, lambda: words(out) - len(kept.split()))
        _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert seen == FIRST
    assert proc.returncode == 0, err.decode()
    head, _, answer = out.read_text().partition("\n")
    assert head == kept
    assert len(answer.split()) == RETRY and answer.endswith("\n")
    assert "rewritten with the final output" in err.decode()
