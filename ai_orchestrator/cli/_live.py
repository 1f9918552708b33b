"""Following a task in the terminal: the text, and a live line of tokens and cost.

When the answer goes to a terminal, the text itself shows progress and the
tokens/cost line comes at the end. When it is redirected (``> answer.txt``), a
live line on stderr shows chunks, estimated tokens and cost as they grow.
"""

from __future__ import annotations

import sys
import time

import click

from ..client import TaskClient
from ..core import Result, TaskStatus
from ..exceptions import StreamRestartedError, TaskFailedError
from ..pricing import PricingTable
from ._common import EXIT_FAILED, EXIT_OK


class LiveLine:
    def __init__(self, model: str, enabled: bool) -> None:
        self._price = PricingTable().lookup(model)
        self._enabled = enabled
        self._chunks = 0
        self._last = 0.0
        self._started = time.monotonic()

    def update(self, text: str) -> None:
        self._chunks += 1
        now = time.monotonic()
        if self._enabled and now - self._last >= 0.1:
            self._last = now
            cost = self._price.cost(0, self._chunks) if self._price else 0.0
            click.echo(
                f"\r\033[K~{self._chunks} tokens out, ~${cost:.6f}, {now - self._started:.1f}s",
                nl=False,
                err=True,
            )

    def clear(self) -> None:
        if self._enabled:
            click.echo("\r\033[K", nl=False, err=True)


def summary_line(result: Result) -> str:
    meta = result.metadata
    line = (
        f"[{result.status.value}] {result.tokens_used} tokens ({meta.get('input_tokens', 0)} in, "
        f"{meta.get('output_tokens', 0)} out), ${result.cost:.6f}, {result.duration_seconds:.2f}s"
    )
    return line + (f" - {result.error}" if result.error else "")


async def follow(client: TaskClient, task_id: str, model: str, *, print_text: bool) -> Result:
    """Stream the task's text to stdout (if asked) and return its final result."""
    live = LiveLine(model, enabled=sys.stderr.isatty() and not sys.stdout.isatty())
    try:
        async for text in client.stream_result(task_id):
            live.update(text)
            if print_text:
                click.echo(text, nl=False)
    except StreamRestartedError as exc:
        click.echo(f"\n[{exc}]", err=True)
    except TaskFailedError:
        pass
    finally:
        live.clear()
    return await client.get_result(task_id, timeout=None)


def exit_code(result: Result) -> int:
    return EXIT_OK if result.status == TaskStatus.COMPLETED else EXIT_FAILED
