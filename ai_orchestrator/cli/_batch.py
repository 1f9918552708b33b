"""``ai-orchestrator batch``: a JSONL file of prompts in, a JSONL file of results out.

Kept apart from the rest of the ``cli`` package, which registers it.
"""

from __future__ import annotations

import asyncio
import json
import math
import sys
import time
from pathlib import Path
from typing import TextIO

import click

from ..batch import (
    BatchInputError,
    BatchProgress,
    BatchSummary,
    assign_task_ids,
    batch_id_for,
    check_batch_id,
    read_tasks,
    run_batch,
)
from ..client import ProviderBatchInfo
from ..delivery import CollectorInput, takes_batch
from ._common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    _fail,
    _run,
    _warn_simulator,
    delivery_option,
)

#: Without a TTY, progress lines are for logs: at most one per this many seconds.
PLAIN_PROGRESS_INTERVAL = 2.0
_BAR_WIDTH = 20
#: ``--concurrency`` when it is not given: tasks open at once.
DEFAULT_CONCURRENCY = 20
#: ... and for batch delivery: a provider batch holds only the tasks open at
#: once, so as many as the collector sends in one (its default ``max_items``).
DEFAULT_BATCH_CONCURRENCY = CollectorInput.model_fields["max_items"].default


def default_output(prompts: Path) -> Path:
    """``prompts.jsonl`` -> ``prompts.results.jsonl``, next to the input."""
    return prompts.with_name(f"{prompts.stem if prompts.suffix else prompts.name}.results.jsonl")


def progress_line(p: BatchProgress) -> str:
    filled = _BAR_WIDTH * p.done // p.total if p.total else _BAR_WIDTH
    bar = "#" * filled + "." * (_BAR_WIDTH - filled)
    line = f"[{bar}] {p.done}/{p.total} done, {p.failed} failed, {p.running} running"
    line += f", {p.cancelled} cancelled" if p.cancelled else ""
    line += f", {p.not_submitted} not submitted" if p.not_submitted else ""
    if p.provider_batches and p.running:  # once nothing runs, their last state is stale
        line += f"; {provider_batches_line(p.provider_batches)}"
    return line


def provider_batches_line(batches: tuple[ProviderBatchInfo, ...]) -> str:
    """``provider batch batch_abc: in_progress, 12 of 40 done``, or for several
    ``3 provider batches: 2 in_progress, 1 validating; 120 of 6000 done``."""
    done, total = sum(b.done for b in batches), sum(b.total for b in batches)
    if len(batches) == 1:
        (b,) = batches
        name = f"provider batch {b.provider_batch_id}" if b.provider_batch_id else "provider batch"
        state = f"{b.status}: {b.outcome}" if b.outcome else b.status
        return f"{name}: {state}, {done} of {total} done"
    counts: dict[str, int] = {}
    for b in batches:
        counts[b.status] = counts.get(b.status, 0) + 1
    states = ", ".join(f"{n} {status}" for status, n in counts.items())
    return f"{len(batches)} provider batches: {states}; {done} of {total} done"


def _dollars(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    """``--max-cost-usd``: a finite number of dollars above 0 (``$`` allowed)."""
    if value is None:
        return None
    try:
        amount = float(value.strip().removeprefix("$"))
    except ValueError:
        amount = math.nan
    if not (math.isfinite(amount) and amount > 0):
        raise click.BadParameter(f"{value!r} is not an amount of dollars above 0 (e.g. 2.50)")
    return amount


def cap_stop_line(s: BatchSummary) -> str:
    """What the user is told when the batch's cost cap stopped it."""
    return (
        f"batch stopped by its cost cap (${s.max_cost_usd:.6f}): {s.not_submitted} not "
        f"submitted, {s.cancelled} cancelled, ${s.cost_usd:.6f} spent. Run the same command "
        "with a higher --max-cost-usd to finish; completed tasks are not paid for again."
    )


class ProgressPrinter:
    """Draws progress on stderr: one redrawn line on a TTY, throttled lines otherwise."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self._last: BatchProgress | None = None
        self._printed: BatchProgress | None = None
        self._printed_at = float("-inf")
        self._width = 0

    def __call__(self, progress: BatchProgress) -> None:
        self._last = progress
        if self.tty:
            line = progress_line(progress)
            self.stream.write("\r" + line.ljust(self._width))
            self.stream.flush()
            self._width = len(line)
        elif time.monotonic() - self._printed_at >= PLAIN_PROGRESS_INTERVAL:
            self._print_plain(progress)

    def _print_plain(self, progress: BatchProgress) -> None:
        self.stream.write(progress_line(progress) + "\n")
        self.stream.flush()
        self._printed, self._printed_at = progress, time.monotonic()

    def close(self) -> None:
        """End the redrawn line, or print the final state if it was throttled away."""
        if self.tty:
            if self._width:
                self.stream.write("\n")
                self.stream.flush()
        elif self._last is not None and self._last != self._printed:
            self._print_plain(self._last)


@click.command(name="batch", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("prompts", metavar="PROMPTS.jsonl", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Results file (default: PROMPTS.results.jsonl next to the input).",
)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=None,
    help=f"At most this many tasks submitted and unfinished at once (default: "
    f"{DEFAULT_CONCURRENCY}; {DEFAULT_BATCH_CONCURRENCY} with --delivery batch or auto, as a "
    "provider batch holds only the tasks open at once).",
)
@click.option(
    "--batch-id",
    default=None,
    help="Prefix of the task ids (default: batch-<sha256 of the file>[:12]).",
)
@click.option(
    "--max-cost-usd",
    metavar="USD",
    callback=_dollars,
    default=None,
    help="Cost cap for the whole batch: stop submitting, and cancel what runs, once "
    "finished plus reserved spend would cross it.",
)
@delivery_option(
    "Each task's delivery, unless its line sets constraints.delivery: batch sends them "
    "through the provider's batch API at half price (answered within 24 h), auto when "
    "their timeout_seconds is at least 90000 (25 h); the progress then shows the provider "
    "batches' state."
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout.")
def batch_command(
    prompts: Path,
    out: Path | None,
    concurrency: int | None,
    batch_id: str | None,
    max_cost_usd: float | None,
    delivery: str | None,
    as_json: bool,
) -> int:
    """Run every prompt in PROMPTS.jsonl as a durable task; write results as JSONL.

    Each non-blank line is a JSON string (the prompt) or an object with task
    fields. Task ids come from the file's content and line position, so running
    the same command again after an interruption resumes: nothing is started
    twice, finished tasks are not paid for again. The results file is written
    as tasks finish and read back on a re-run: tasks it records as completed
    are not submitted again, even after Temporal has forgotten them.

    \b
    Example:
      printf '%s\\n' '"Explain CRDTs in one line"' \\
        '{"prompt": "Summarize RFC 9110", "constraints": {"max_tokens": 50}}' > p.jsonl
      ai-orchestrator batch p.jsonl --concurrency 10   # -> p.results.jsonl
      ai-orchestrator batch p.jsonl --delivery batch   # half price, within 24 h

    With --max-cost-usd, a task is submitted only if what finished tasks cost,
    plus the most the running ones and it can cost (prompt and max_tokens at
    the model's price), fits the cap; running tasks are cancelled once their
    spend would cross it. Tasks left out are "not submitted" in the results
    file: run again with a higher cap to run them.

    Exit status: 0 if every task completed, 1 if any failed, was cancelled or
    was not submitted (cost cap), 2 for unusable input.
    """
    from ..local.session import LocalStack

    try:
        tasks = read_tasks(prompts, delivery=delivery)
        batch_id = check_batch_id(batch_id) if batch_id is not None else batch_id_for(prompts)
        tasks = assign_task_ids(tasks, batch_id)
    except BatchInputError as exc:
        _fail(str(exc))
    if concurrency is None:
        batched = any(takes_batch(task) for task in tasks)
        concurrency = DEFAULT_BATCH_CONCURRENCY if batched else DEFAULT_CONCURRENCY
    out = out or default_output(prompts)
    if out.resolve() == prompts.resolve():
        _fail(f"--out {out} is the input file; choose another results file")
    if not out.parent.is_dir():
        _fail(f"--out {out}: directory {out.parent} does not exist")

    async def main() -> int:
        async with LocalStack() as stack:
            if stack.simulator is not None:
                _warn_simulator()
            for note in stack.notes:
                click.echo(note, err=True)
            cap = f", cost cap ${max_cost_usd:.6f}" if max_cost_usd is not None else ""
            click.echo(
                f"batch {batch_id}: {len(tasks)} tasks, concurrency {concurrency}{cap}", err=True
            )
            printer = ProgressPrinter()
            try:
                report = await run_batch(
                    stack.task_client(),
                    tasks,
                    batch_id=batch_id,
                    concurrency=concurrency,
                    on_progress=printer,
                    results_path=out,
                    max_cost_usd=max_cost_usd,
                )
            except BatchInputError as exc:  # a model the cap cannot price; nothing submitted
                printer.close()
                click.echo(f"error: {exc}", err=True)
                return EXIT_USAGE
            except (asyncio.CancelledError, KeyboardInterrupt):
                printer.close()
                click.echo(
                    f"batch interrupted; finished tasks are in {out}, submitted ones stay in "
                    "Temporal and continue on any worker. Run the same command again to resume.",
                    err=True,
                )
                raise
            except BaseException:
                printer.close()
                raise
            printer.close()
        s = report.summary
        not_submitted = f", {s.not_submitted} not submitted" if s.not_submitted else ""
        click.echo(
            f"batch {s.batch_id}: {s.completed}/{s.total} completed, {s.failed} failed, "
            f"{s.cancelled} cancelled{not_submitted}; {s.tokens} tokens, ${s.cost_usd:.6f}, "
            f"{s.duration_seconds:.1f}s",
            err=True,
        )
        if s.stopped_by_cap:
            click.echo(cap_stop_line(s), err=True)
        click.echo(f"results: {out}", err=True)
        if as_json:
            click.echo(json.dumps({**s.to_dict(), "output": str(out)}, indent=2))
        return EXIT_OK if s.ok else EXIT_FAILED

    return _run(main)


__all__ = ["batch_command"]
