"""A reader in its own process: ``python -m tests.live.reader_process TARGET QUEUE``.

It connects its own ``TaskClient`` (encryption keys and live secret from its
environment, exactly as a user's program would), prints ``ready``, waits for a
task id on stdin, then prints every event of ``stream_events`` as one JSON line
stamped with ``time.monotonic()`` (system-wide on Linux, so comparable with the
simulator's timestamps in the test process). The test side is :class:`Reader`.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from ai_orchestrator.client._events import Restart, StreamEvent, TextDelta


def _emit(record: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps({**record, "t": time.monotonic()}) + "\n")
    sys.stdout.flush()


async def _main(target: str, queue: str) -> None:
    from temporalio.client import Client

    from ai_orchestrator import TaskClient
    from ai_orchestrator.payloads.converter import data_converter_from_env

    client = await Client.connect(target, data_converter=data_converter_from_env())
    tasks = TaskClient(client, task_queue=queue)
    _emit({"kind": "ready"})
    task_id = (await asyncio.to_thread(sys.stdin.readline)).strip()
    _emit({"kind": "joined", "task_id": task_id})
    async for event in tasks.stream_events(task_id):
        if isinstance(event, TextDelta):
            _emit(
                {
                    "kind": "text",
                    "text": event.text,
                    "attempt": event.attempt,
                    "offset": event.offset,
                }
            )
        elif isinstance(event, Restart):
            _emit({"kind": "restart", "attempt": event.attempt, "discarded": event.discarded})
        else:
            result = event.result
            _emit({"kind": "finished", "status": result.status.value, "output": result.output})


# -- the test's side -------------------------------------------------------------------


@dataclass
class Reader:
    """A started reader process and what it printed."""

    proc: asyncio.subprocess.Process
    records: list[dict[str, Any]] = field(default_factory=list)
    ready_at: float = 0.0
    joined_at: float = 0.0

    async def _line(self, timeout: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        raw = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        if not raw:
            err = b""
            if self.proc.stderr is not None:
                err = await self.proc.stderr.read()
            raise RuntimeError(f"reader exited early:\n{err.decode(errors='replace')[-3000:]}")
        record = json.loads(raw)
        self.records.append(record)
        return record

    async def ready(self, timeout: float = 60) -> None:
        record = await self._line(timeout)
        assert record["kind"] == "ready", record
        self.ready_at = record["t"]

    async def follow(self, task_id: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{task_id}\n".encode())
        await self.proc.stdin.drain()

    async def finish(self, timeout: float = 90) -> None:
        """Reads records until ``finished`` (the whole stream)."""

        async def all_lines() -> None:
            while (await self._line(timeout))["kind"] != "finished":
                pass

        await asyncio.wait_for(all_lines(), timeout)
        await asyncio.wait_for(self.proc.wait(), 30)

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [r for r in self.records if r["kind"] == kind]

    @property
    def first_text_at(self) -> float:
        return self.of("text")[0]["t"]

    @property
    def output(self) -> str:
        (finished,) = self.of("finished")
        return finished["output"]

    def events(self) -> list[StreamEvent]:
        """The stream's events again (``Finished`` left out: ``apply_event`` ignores it)."""
        out: list[StreamEvent] = []
        for r in self.records:
            if r["kind"] == "text":
                out.append(TextDelta(text=r["text"], attempt=r["attempt"], offset=r["offset"]))
            elif r["kind"] == "restart":
                out.append(Restart(attempt=r["attempt"], discarded=r["discarded"]))
        return out


async def spawn_reader(target: str, queue: str, env: dict[str, str]) -> Reader:
    """A reader process, returned once its client is connected."""
    from ..support.processes import ROOT

    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.live.reader_process",
        target,
        queue,
        env=env,
        cwd=ROOT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    reader = Reader(proc)
    await reader.ready()
    return reader


if __name__ == "__main__":
    asyncio.run(_main(sys.argv[1], sys.argv[2]))
