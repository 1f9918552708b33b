"""The ``ai-orchestrator`` command.

Every failure the user can fix (no Temporal, no API key, a bad option, an
unknown task) ends in one ``error:`` line and a meaningful exit code, never a
traceback.
"""

from __future__ import annotations

import logging
import os
import sys

import click

from ._batch import batch_command
from ._common import (
    EXIT_CODES_HELP,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_RUNNING,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
)
from ._local import dev, run, simulator
from ._ops import codec_server, encryption_key, setup, show_config, worker
from ._tasks import cancel, list_tasks, rerun, result, status, stream, submit


@click.group(context_settings={"help_option_names": ["-h", "--help"]}, epilog=EXIT_CODES_HELP)
@click.option("-v", "--verbose", is_flag=True, help="Log at INFO level.")
def cli(verbose: bool) -> None:
    """Durable LLM tasks on Temporal.

    \b
    Examples:
      ai-orchestrator run "Explain durable execution in two sentences"
      ai-orchestrator dev                     # Temporal + Web UI on :8233 + a worker
      OPENAI_API_KEY=... ai-orchestrator worker
      ai-orchestrator submit "Draft the changelog"   # prints a task id
      ai-orchestrator stream TASK_ID
      ai-orchestrator rerun TASK_ID          # again, after it failed or was cancelled
      ai-orchestrator batch prompts.jsonl --concurrency 20
      ai-orchestrator list -q "AiModel = 'gpt-4o' AND AiCostUsd > 0.01"
    """
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def _register() -> None:
    for command in (
        run,
        dev,
        worker,
        simulator,
        submit,
        status,
        result,
        stream,
        cancel,
        rerun,
        list_tasks,
        batch_command,
        setup,
        codec_server,
        encryption_key,
        show_config,
    ):
        cli.add_command(command)


_register()


def main(argv: list[str] | None = None) -> int:
    """The console entry point; it ends the process itself (see below)."""
    code = _main(argv)
    # Temporal's Rust bridge keeps threads that can outlive the event loop; if
    # they touch the interpreter while it finalizes, CPython aborts
    # ("PyGILState_Release ... finalizing", temporalio/sdk-python#300), turning
    # a finished command into exit 134. Everything is done and flushed here, so
    # skip the teardown.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _main(argv: list[str] | None) -> int:
    try:
        result = cli.main(args=argv, prog_name="ai-orchestrator", standalone_mode=False)
    except click.exceptions.Abort:
        return EXIT_INTERRUPTED
    except click.ClickException as exc:
        click.echo(f"error: {exc.format_message()}", err=True)
        return exc.exit_code
    except SystemExit as exc:
        return int(exc.code or 0)
    return int(result or 0)


__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_NOT_FOUND",
    "EXIT_OK",
    "EXIT_RUNNING",
    "EXIT_UNAVAILABLE",
    "EXIT_USAGE",
    "cli",
    "main",
]
