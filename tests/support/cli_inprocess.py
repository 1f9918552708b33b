"""The CLI run inside the test process: exit codes and error lines without a new interpreter.

Each command runs its own event loop (``asyncio.run``), so it is invoked in a
thread while the test's loop keeps serving workers and servers.
"""

from __future__ import annotations

import asyncio
import traceback

from click.testing import CliRunner

from ai_orchestrator.cli import cli

#: Variables the CLI reads, unset unless a test sets them.
_CLEARED = (
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "ANTHROPIC_API_KEY",
    "GEMINI_API_KEY",
    "GOOGLE_API_KEY",
    "TEMPORAL_ADDRESS",
    "TEMPORAL_NAMESPACE",
    "AI_ORCHESTRATOR_ENCRYPTION_KEYS",
)


async def invoke(*args: str, target: str, queue: str, **env: str) -> tuple[int, str, str]:
    """``ai-orchestrator ARGS`` against ``target``/``queue``: (exit code, stdout, stderr).

    An exception the CLI let escape is rendered as the traceback a user would see.
    """
    overrides: dict[str, str | None] = dict.fromkeys(_CLEARED)
    overrides.update(TEMPORAL_ADDRESS=target, AI_ORCHESTRATOR_TASK_QUEUE=queue, **env)

    def call() -> tuple[int, str, str]:
        result = CliRunner().invoke(cli, list(args), env=overrides, standalone_mode=False)
        err = result.stderr
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            exc = result.exception
            err += "Traceback (most recent call last):\n" + "".join(
                traceback.format_exception(type(exc), exc, exc.__traceback__)
            )
            return 1, result.stdout, err
        code = result.exit_code if result.exit_code else int(result.return_value or 0)
        return code, result.stdout, err

    return await asyncio.to_thread(call)
