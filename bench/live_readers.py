"""Readers for ``bench/live.py``, in their own process so their CPU is not the worker's.

Usage: ``python bench/live_readers.py --mode {live,polling,direct}``

Connects (to Temporal at ``$TEMPORAL_ADDRESS``, or to the provider at
``$OPENAI_BASE_URL`` for ``direct``) and prints ``ready``. Then, per line of
stdin, starts one reader as the line arrives: a task id to follow with
``TaskClient.stream_result`` (``live`` or ``polling``: ``TaskClient(live=...)``
when the client has that switch), or a prompt to stream directly with
``AsyncOpenAI`` (``direct``); a key given k times gets k readers. The line
``. DEADLINE FILE`` ends a batch: once its readers have all ended (or DEADLINE
seconds after its first key) it writes, per reader, the monotonic time it
started, ``(monotonic time, words so far)`` per received chunk, its text and
its error, plus this process's CPU seconds since the previous batch ended and
whether the client had ``live=``, to FILE; then prints ``done``. It exits at
EOF. CLOCK_MONOTONIC is system-wide, so the times compare with the
simulator's ``token_sent_at`` in the benchmark process.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import os
import re
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ai_orchestrator import TaskClient

#: Whether this client version has the live channel switch (``TaskClient(live=...)``).
LIVE_SUPPORTED = "live" in inspect.signature(TaskClient.__init__).parameters
WORD = re.compile(r"\S+")


def cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


class Tally:
    """One reader's chunks: arrival times and running word counts (one word per token)."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.received: list[tuple[float, int]] = []
        self.parts: list[str] = []
        self.words = 0
        self._in_word = False

    def feed(self, chunk: str, at: float) -> None:
        if not chunk:
            return
        added = len(WORD.findall(chunk))
        if added and self._in_word and not chunk[0].isspace():
            added -= 1  # a word split across chunks counts once
        self.words += added
        self._in_word = not chunk[-1].isspace()
        self.parts.append(chunk)
        self.received.append((at, self.words))


async def _direct_chunks(openai: Any, prompt: str, model: str) -> AsyncIterator[str]:
    stream = await openai.chat.completions.create(
        model=model, messages=[{"role": "user", "content": prompt}], stream=True
    )
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            yield chunk.choices[0].delta.content


async def _reader(chunks: Callable[[], AsyncIterator[str]], key: str) -> dict[str, Any]:
    tally, error = Tally(), None
    try:
        async for chunk in chunks():
            tally.feed(chunk, time.monotonic())
    except asyncio.CancelledError:
        error = "deadline: still reading when the deadline passed"
    except Exception as exc:  # reported, counted as a mismatch by the benchmark
        error = f"{type(exc).__name__}: {exc}"
    return {
        "key": key,
        "started": tally.started,
        "received": tally.received,
        "text": "".join(tally.parts),
        "error": error,
    }


async def _lines() -> AsyncIterator[str]:
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader(limit=1 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    while line := await stdin.readline():
        if line.strip():
            yield line.decode().strip()


async def main(args: argparse.Namespace) -> None:
    closers: list[Any] = []
    if args.mode == "direct":
        from openai import AsyncOpenAI, DefaultAsyncHttpxClient

        try:  # what this openai version is built on; its default pool stops at 1000
            import httpx2 as httpx  # type: ignore[import-not-found]
        except ImportError:
            import httpx  # type: ignore[no-redef]

        limits = httpx.Limits(max_connections=5000, max_keepalive_connections=5000)
        openai = AsyncOpenAI(
            api_key=os.environ.get("OPENAI_API_KEY", "sk-bench"),
            base_url=os.environ["OPENAI_BASE_URL"],
            max_retries=0,
            http_client=DefaultAsyncHttpxClient(limits=limits),
        )
        closers.append(openai.close)

        def chunks_of(key: str) -> Callable[[], AsyncIterator[str]]:
            return lambda: _direct_chunks(openai, key, args.model)
    else:
        from temporalio.client import Client

        from ai_orchestrator.payloads.converter import data_converter

        client = await Client.connect(
            os.environ["TEMPORAL_ADDRESS"], data_converter=data_converter()
        )
        kwargs: dict[str, Any] = {"live": args.mode == "live"} if LIVE_SUPPORTED else {}
        tasks = TaskClient(client, **kwargs)
        if hasattr(tasks, "aclose"):
            closers.append(tasks.aclose)

        def chunks_of(key: str) -> Callable[[], AsyncIterator[str]]:
            return lambda: tasks.stream_result(key)

    cpu_start = cpu_seconds()
    print("ready", flush=True)
    readers: list[asyncio.Task[dict[str, Any]]] = []
    first_key: float | None = None
    async for line in _lines():
        if not line.startswith(". "):
            first_key = first_key or time.monotonic()
            readers.append(asyncio.create_task(_reader(chunks_of(line), line)))
            continue
        _, deadline, out = line.split(" ", 2)
        results = await _finish(readers, first_key, float(deadline))
        report = {
            "mode": args.mode,
            "live_supported": LIVE_SUPPORTED,
            "cpu_s": cpu_seconds() - cpu_start,
            "readers": results,
        }
        await asyncio.to_thread(Path(out).write_text, json.dumps(report))
        print("done", flush=True)
        readers, first_key, cpu_start = [], None, cpu_seconds()
    for close in closers:
        try:
            await close()
        except Exception:
            pass


async def _finish(
    readers: list[asyncio.Task[dict[str, Any]]], first_key: float | None, deadline: float
) -> list[dict[str, Any]]:
    """Every reader's report, once all ended or ``deadline`` seconds after the first key."""
    if not readers:
        return []
    left = deadline - (time.monotonic() - (first_key or time.monotonic()))
    _, pending = await asyncio.wait(readers, timeout=max(left, 1.0))
    for late in pending:
        late.cancel()
    return [
        r if isinstance(r, dict) else {"key": "?", "received": [], "text": "", "error": repr(r)}
        for r in await asyncio.gather(*readers, return_exceptions=True)
    ]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mode", choices=("live", "polling", "direct"), required=True)
    parser.add_argument("--model", default="gpt-4o-mini")
    asyncio.run(main(parser.parse_args()))
