"""What every command shares: exit codes, one-line errors, connecting, printing."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable, Coroutine
from dataclasses import asdict, is_dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, NoReturn, get_args

import click
from pydantic import BaseModel, ValidationError

from ..config import ConfigError, ProviderSettings, task_queue
from ..core import TaskConstraints
from ..exceptions import TaskNotFoundError, TaskValidationError, TemporalUnavailableError
from ..payloads.codec import ENV_ENCRYPTION_KEYS, PayloadDecryptionError

if TYPE_CHECKING:
    from ..client import TaskClient

#: Exit codes, documented in ``ai-orchestrator --help``.
EXIT_OK = 0  # done, the task completed
EXIT_FAILED = 1  # the task failed or was cancelled
EXIT_USAGE = 2  # bad arguments, input or configuration; nothing happened
EXIT_NOT_FOUND = 3  # no such task
EXIT_UNAVAILABLE = 4  # Temporal could not be reached
EXIT_RUNNING = 5  # the task is still running (result --timeout)
EXIT_INTERRUPTED = 130

EXIT_CODES_HELP = (
    "Exit codes: 0 done, 1 task failed or cancelled, 2 bad input or configuration, "
    "3 no such task, 4 Temporal unreachable, 5 still running, 130 interrupted."
)


#: ``--delivery`` values: the ones ``TaskConstraints.delivery`` accepts.
DELIVERIES: tuple[str, ...] = get_args(TaskConstraints.model_fields["delivery"].annotation)


def delivery_option(help: str, default: str | None = None) -> Callable[[Any], Any]:
    """``--delivery realtime|batch|auto``; anything else is one ``error:`` line, exit 2."""
    return click.option(
        "--delivery",
        type=click.Choice(DELIVERIES, case_sensitive=False),
        default=default,
        show_default=default is not None,
        help=help,
    )


def _fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    raise SystemExit(code)


def _run(coro_fn: Callable[[], Coroutine[Any, Any, int | None]]) -> int:
    """Run a command's coroutine; turn every expected failure into one line."""
    try:
        return asyncio.run(coro_fn()) or EXIT_OK
    except TemporalUnavailableError as exc:  # before OSError: it is a ConnectionError
        _fail(str(exc), EXIT_UNAVAILABLE)
    except (ConfigError, TaskValidationError, OSError) as exc:
        _fail(str(exc))
    except ValidationError as exc:
        _fail("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()))
    except TaskNotFoundError as exc:
        _fail(str(exc), EXIT_NOT_FOUND)
    except (PayloadDecryptionError, KeyError) as exc:
        _fail(unreadable(exc))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def unreadable(exc: PayloadDecryptionError | KeyError) -> str:
    """Why a task's payloads cannot be read here: no key, or not the workers' key.

    Without keys the SDK's converter meets an encoding it does not know (a
    ``KeyError``); with other keys our codec refuses. Any other ``KeyError`` is
    a bug and is raised again.
    """
    if isinstance(exc, PayloadDecryptionError):
        return f"cannot read the task with the keys in {ENV_ENCRYPTION_KEYS}: {exc}"
    message = str(exc.args[0]) if exc.args else ""
    if not message.startswith("Unknown payload encoding"):
        raise exc
    encoding = message.rpartition(" ")[2]
    if encoding == "binary/encrypted":
        return (
            f"the task is encrypted and {ENV_ENCRYPTION_KEYS} is not set here; "
            "set it to the workers' keys to read it"
        )
    return f"cannot read the task: its payloads use encoding {encoding!r}, unknown here"


def _warn_simulator() -> None:
    from ..simulator import SIMULATOR_BANNER

    style = {"fg": "yellow", "bold": True} if sys.stderr.isatty() else {}
    click.echo(click.style(SIMULATOR_BANNER, **style), err=True)


async def connect_tasks() -> TaskClient:
    """A TaskClient configured from the environment, like the worker's.

    Imported late: ``--help`` and argument errors should not pay for Temporal.
    """
    from ..client import TaskClient, connect_client

    client = await connect_client()
    return TaskClient(
        client, task_queue=task_queue(), default_model=ProviderSettings.from_env().default_model
    )


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if is_dataclass(value) and not isinstance(value, type):
        return {k: _plain(v) for k, v in asdict(value).items()}
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def emit_json(value: Any) -> None:
    click.echo(json.dumps(_plain(value), indent=2, default=str))
