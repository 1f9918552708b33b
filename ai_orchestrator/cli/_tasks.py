"""Commands on tasks in a running deployment: submit, status, result, stream, cancel, list.

They need a reachable Temporal (``TEMPORAL_ADDRESS`` ...) and, to make
progress, a worker on the task queue; they never start one.
"""

from __future__ import annotations

import json
from dataclasses import asdict

import click

from ..client import Finished, Restart, TextDelta
from ..core import TaskStatus
from ..exceptions import TaskNotFoundError
from ._common import (
    EXIT_FAILED,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_RUNNING,
    _run,
    connect_tasks,
    emit_json,
)
from ._live import exit_code, follow, summary_line
from ._local import build_task, task_options

_STATUS_EXIT = {
    TaskStatus.COMPLETED: EXIT_OK,
    TaskStatus.FAILED: EXIT_FAILED,
    TaskStatus.CANCELLED: EXIT_FAILED,
    TaskStatus.UNKNOWN: EXIT_NOT_FOUND,
    TaskStatus.PENDING: EXIT_RUNNING,
    TaskStatus.RUNNING: EXIT_RUNNING,
}


@click.command()
@click.argument("prompt")
@task_options
def submit(prompt: str, as_json: bool, **options: object) -> int:
    """Submit PROMPT and print its task id at once.

    \b
    Example:
      id=$(ai-orchestrator submit "Draft release notes" --model gpt-4o)
      ai-orchestrator stream "$id"
    """

    async def main() -> int:
        task = build_task(prompt, **options)  # type: ignore[arg-type]
        tasks = await connect_tasks()
        task_id = await tasks.submit_task(task)
        if as_json:
            emit_json({"task_id": task_id, "task_queue": tasks.task_queue})
        else:
            click.echo(task_id)
        return EXIT_OK

    return _run(main)


@click.command()
@click.argument("task_id")
@click.option("--json", "as_json", is_flag=True)
def status(task_id: str, as_json: bool) -> int:
    """Print a task's status (pending, running, completed, failed, cancelled, unknown).

    A running task whose provider call waits for room on the provider's quota
    says so: `running  waiting for capacity on gpt-4o-mini (about 12 s)`; one
    with batch delivery says where its provider batch is:
    `running  in provider batch batch_abc (in_progress, 12 of 40 done)`.
    Exits 0 when completed, 1 failed or cancelled, 3 unknown, 5 still going.
    """

    async def main() -> int:
        described = await (await connect_tasks()).describe_task(task_id)
        state, waiting = described.status, described.waiting_for_capacity
        batch = described.provider_batch
        if as_json:
            out: dict[str, object] = {"task_id": task_id, "status": state.value}
            if waiting is not None:
                out["waiting_for_capacity"] = {"model": waiting.model, "seconds": waiting.seconds}
            if batch is not None:
                out["provider_batch"] = {**asdict(batch), "done": batch.done}
            emit_json(out)
        else:
            doing = waiting or batch
            click.echo(state.value if doing is None else f"{state.value}  {doing}")
        return _STATUS_EXIT[state]

    return _run(main)


@click.command()
@click.argument("task_id")
@click.option("--timeout", type=float, default=None, help="Seconds to wait (default: until done).")
@click.option("--json", "as_json", is_flag=True, help="The whole Result as JSON.")
def result(task_id: str, timeout: float | None, as_json: bool) -> int:
    """Wait for a task and print its output (partial output if it failed or was cancelled)."""

    async def main() -> int:
        res = await (await connect_tasks()).get_result(task_id, timeout=timeout)
        if as_json:
            emit_json(res)
        else:
            text = res.output if res.status == TaskStatus.COMPLETED else res.partial_output or ""
            click.echo(text)
            click.echo(summary_line(res), err=True)
        return _STATUS_EXIT[res.status]

    return _run(main)


@click.command()
@click.argument("task_id")
@click.option(
    "--json", "as_json", is_flag=True, help="One JSON event per line: delta, restart, finished."
)
def stream(task_id: str, as_json: bool) -> int:
    """Follow a task's output live (from the start, even if you join late).

    If a retry ends with other text than was printed, a redirected file is
    rewritten with the final output; on a pipe or terminal the command says so
    on stderr and exits 1.
    """

    async def main() -> int:
        tasks = await connect_tasks()
        if as_json:
            async for event in tasks.stream_events(task_id):
                if isinstance(event, TextDelta):
                    emit_line(
                        {
                            "type": "delta",
                            "text": event.text,
                            "attempt": event.attempt,
                            "offset": event.offset,
                        }
                    )
                elif isinstance(event, Restart):
                    emit_line(
                        {
                            "type": "restart",
                            "attempt": event.attempt,
                            "discarded_chars": len(event.discarded),
                        }
                    )
                elif isinstance(event, Finished):
                    emit_line({"type": "finished", "result": event.result.model_dump(mode="json")})
                    return exit_code(event.result)
            return EXIT_OK
        followed = await follow(tasks, task_id, tasks.default_model, print_text=True)
        click.echo("")
        click.echo(summary_line(followed.result), err=True)
        return exit_code(followed.result, followed.wrong_text)

    return _run(main)


def emit_line(event: dict[str, object]) -> None:
    click.echo(json.dumps(event))


@click.command()
@click.argument("task_id")
@click.option(
    "--wait",
    type=float,
    default=10.0,
    show_default=True,
    help="Seconds to wait for the task to stop (0: only request the cancel).",
)
@click.option("--json", "as_json", is_flag=True)
def cancel(task_id: str, wait: float, as_json: bool) -> int:
    """Cancel a running task; its partial output is kept.

    Waits (--wait) until the task has stopped and says how it ended: exit 0 if
    it was cancelled (or is still stopping when the wait ends), 1 if it had
    already ended, or ended anyway because the cancel came too late.
    """

    async def main() -> int:
        tasks = await connect_tasks()
        before = await tasks.get_status(task_id)
        if before == TaskStatus.UNKNOWN:
            raise TaskNotFoundError(f"no task with id {task_id!r}")
        requested = await tasks.cancel_task(task_id)
        after = before
        if requested and wait > 0:
            after = (await tasks.get_result(task_id, timeout=wait)).status
        took_effect = requested and after not in (TaskStatus.COMPLETED, TaskStatus.FAILED)
        if as_json:
            emit_json(
                {
                    "task_id": task_id,
                    "cancelled": took_effect,
                    "status_before": before.value,
                    "status_after": after.value,
                }
            )
        else:
            line = cancel_outcome(task_id, requested, before, after, wait)
            click.echo(line, err=line.startswith("error: "))
        return EXIT_OK if took_effect else EXIT_FAILED

    return _run(main)


def cancel_outcome(
    task_id: str, requested: bool, before: TaskStatus, after: TaskStatus, wait: float
) -> str:
    """The line ``cancel`` prints: what became of the task, not only what was asked."""
    if not requested:
        return f"{task_id} had already ended ({before.value})"
    if after == TaskStatus.COMPLETED:
        return (
            f"error: the cancel came too late: {task_id} completed before it took effect "
            f"(its output: ai-orchestrator result {task_id})"
        )
    if after == TaskStatus.CANCELLED:
        return f"cancelled {task_id} (partial output: ai-orchestrator result {task_id})"
    if after == TaskStatus.FAILED:
        return f"{task_id} failed before the cancel took effect"
    if wait > 0:
        return f"cancel requested for {task_id}; it has not stopped after {wait:g}s (no worker?)"
    return f"cancel requested for {task_id}"


@click.command()
@click.argument("task_id")
@click.option("--json", "as_json", is_flag=True)
def rerun(task_id: str, as_json: bool) -> int:
    """Run a failed, cancelled or terminated task again, with the same input.

    A completed task is refused (exit 2: its result stays available; submit a
    new task to pay for another answer). A task still running is left alone
    (exit 5). Follow the new run with `ai-orchestrator stream TASK_ID`.
    """

    async def main() -> int:
        tasks = await connect_tasks()
        before = await tasks.get_status(task_id)
        if before == TaskStatus.UNKNOWN:
            raise TaskNotFoundError(f"no task with id {task_id!r}")
        await tasks.rerun_task(task_id)
        started = before not in (TaskStatus.PENDING, TaskStatus.RUNNING)
        if as_json:
            emit_json({"task_id": task_id, "rerun": started, "status_before": before.value})
        else:
            click.echo(f"re-running {task_id}" if started else f"{task_id} is still {before.value}")
        return EXIT_OK if started else EXIT_RUNNING

    return _run(main)


@click.command(name="list")
@click.option(
    "--query",
    "-q",
    default=None,
    help="Temporal visibility query, e.g. \"AiModel = 'gpt-4o' AND AiCostUsd > 0.01\".",
)
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--json", "as_json", is_flag=True)
def list_tasks(query: str | None, limit: int, as_json: bool) -> int:
    """List tasks, newest first.

    \b
    Searchable: AiModel, AiStatus, AiTaskType, AiPlatform (chatgpt, claude, gemini,
    claude_code) (keywords),
    AiPriority, AiTokens (ints), AiCostUsd (double), and Temporal's own
    (ExecutionStatus, StartTime, TaskQueue ...). Run `ai-orchestrator setup`
    once per namespace so the Ai* attributes exist.
    \b
    Example:
      ai-orchestrator list -q "AiModel = 'gpt-4o-mini' AND AiCostUsd > 0.01"
    """

    async def main() -> int:
        rows = await (await connect_tasks()).list_tasks(query, limit=limit)
        if as_json:
            emit_json(rows)
            return EXIT_OK
        if not rows:
            click.echo("no tasks match", err=True)
            return EXIT_OK
        click.echo(
            f"{'TASK ID':44} {'STATUS':10} {'PLATFORM':11} {'MODEL':18} {'TOKENS':>7} "
            f"{'COST USD':>10}  STARTED"
        )
        for r in rows:
            started = r.started_at.strftime("%Y-%m-%d %H:%M:%S") if r.started_at else ""
            cost = f"{r.cost_usd:.6f}" if r.cost_usd is not None else ""
            click.echo(
                f"{r.task_id:44} {r.status:10} {r.platform or '':11} {r.model or '':18} "
                f"{r.tokens if r.tokens is not None else '':>7} {cost:>10}  {started}"
            )
        return EXIT_OK

    return _run(main)


__all__ = ["cancel", "list_tasks", "rerun", "result", "status", "stream", "submit"]
