"""Following a task in the terminal: the text, and a live line of tokens and cost.

When the answer goes to a terminal, the text itself shows progress and the
tokens/cost line comes at the end. When it is redirected (``> answer.txt``), a
live line on stderr shows chunks, estimated tokens and cost as they grow.

Text once printed cannot be taken back, and a retry can end with a different or
shorter answer than the one being printed. Then the command never exits 0 with
the wrong text in place: a redirected regular file is rewritten with the final
output (from where the command began writing); on a pipe or terminal a clear
line goes to stderr and the command exits 1.
"""

from __future__ import annotations

import os
import stat
import sys
import time
from dataclasses import dataclass

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


@dataclass(frozen=True)
class Followed:
    """What :func:`follow` saw: the final result, and whether stdout is wrong."""

    result: Result
    #: stdout holds text that is not the final output and could not be rewritten.
    wrong_text: bool = False


def _rewritable_stdout() -> int | None:
    """Where stdout is now, if it is a regular file; else None (pipe, terminal)."""
    try:
        sys.stdout.flush()
        if not stat.S_ISREG(os.fstat(sys.stdout.fileno()).st_mode):
            return None
        return sys.stdout.buffer.tell()
    except (AttributeError, OSError, ValueError):
        return None


def _rewrite_stdout(start: int, text: str) -> None:
    """Replace everything written since ``start`` with ``text``."""
    sys.stdout.flush()
    sys.stdout.buffer.seek(start)
    sys.stdout.buffer.truncate()
    click.echo(text, nl=False)
    sys.stdout.flush()


def final_text(result: Result) -> str:
    return result.output if result.status == TaskStatus.COMPLETED else result.partial_output or ""


async def follow(client: TaskClient, task_id: str, model: str, *, print_text: bool) -> Followed:
    """Stream the task's text to stdout (if asked); return its final result.

    If the stream restarted with other text, stdout is made right (see the
    module docstring) or ``wrong_text`` says it could not be.
    """
    live = LiveLine(model, enabled=sys.stderr.isatty() and not sys.stdout.isatty())
    start = _rewritable_stdout() if print_text else None
    restarted: StreamRestartedError | None = None
    try:
        async for text in client.stream_result(task_id):
            live.update(text)
            if print_text:
                click.echo(text, nl=False)
    except StreamRestartedError as exc:
        restarted = exc
    except TaskFailedError:
        pass
    finally:
        live.clear()
    result = await client.get_result(task_id, timeout=None)
    if restarted is None or not print_text:
        return Followed(result)
    if start is not None:
        _rewrite_stdout(start, final_text(result))
        click.echo(
            f"[the task restarted (attempt {restarted.attempt}) with different text; "
            "the output file was rewritten with the final output]",
            err=True,
        )
        return Followed(result)
    click.echo(
        f"\nerror: the task restarted (attempt {restarted.attempt}) and its final output "
        "is not the text printed above; get it with `ai-orchestrator result "
        f"{task_id}` (or redirect stdout to a file, which is rewritten)",
        err=True,
    )
    return Followed(result, wrong_text=True)


def exit_code(result: Result, wrong_text: bool = False) -> int:
    if wrong_text:
        return EXIT_FAILED
    return EXIT_OK if result.status == TaskStatus.COMPLETED else EXIT_FAILED
