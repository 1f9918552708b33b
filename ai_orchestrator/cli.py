"""The ``ai-orchestrator`` command.

Every failure the user can fix (no Temporal, no API key, a bad option) ends in
one ``error:`` line and exit code 2, never a traceback.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from collections.abc import Callable, Coroutine
from typing import Any

import click
from pydantic import ValidationError

from .config import ConfigError, ProviderSettings, data_home, task_queue, temporal_connect_config
from .core import Task, TaskConstraints, TaskStatus
from .exceptions import StreamRestartedError, TaskFailedError, TaskValidationError
from .session import LocalStack

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    raise SystemExit(EXIT_USAGE)


def _run(coro_fn: Callable[[], Coroutine[Any, Any, int | None]]) -> int:
    try:
        return asyncio.run(coro_fn()) or EXIT_OK
    except (ConfigError, TaskValidationError) as exc:
        _fail(str(exc))
    except ValidationError as exc:
        _fail("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()))
    except OSError as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    return EXIT_OK


def _warn_simulator() -> None:
    from .simulator import SIMULATOR_BANNER

    style = {"fg": "yellow", "bold": True} if sys.stderr.isatty() else {}
    click.echo(click.style(SIMULATOR_BANNER, **style), err=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Log at INFO level.")
def cli(verbose: bool) -> None:
    """Durable LLM tasks on Temporal.

    \b
    Examples:
      ai-orchestrator run "Explain durable execution in two sentences"
      ai-orchestrator dev                 # Temporal + Web UI on :8233 + a worker
      OPENAI_API_KEY=sk-... ai-orchestrator worker
    """
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


@cli.command()
@click.option("--task-queue", "queue", default=None, help="Default: $AI_ORCHESTRATOR_TASK_QUEUE.")
def worker(queue: str | None) -> int:
    """Run a production worker (needs OPENAI_API_KEY or OPENAI_BASE_URL).

    Temporal settings come from TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TLS and
    profile variables, as for every Temporal tool. Stops cleanly on SIGINT/SIGTERM.
    """
    from .worker import serve

    logging.getLogger("ai_orchestrator").setLevel(logging.INFO)
    return _run(lambda: serve(queue=queue))


@cli.command()
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Where the SQLite file lives (default: ~/.ai-orchestrator).",
)
@click.option("--port", default=7233, show_default=True, help="Temporal gRPC port.")
@click.option("--ui-port", default=8233, show_default=True, help="Temporal Web UI port.")
def dev(data_dir: str | None, port: int, ui_port: int) -> int:
    """Temporal dev server (persistent) + Web UI + a worker, until Ctrl-C.

    Uses OPENAI_API_KEY / OPENAI_BASE_URL when set, else the built-in simulator.
    """

    async def main() -> None:
        stack = LocalStack(data_dir=data_dir, port=port, ui_port=ui_port, force_server=True)
        async with stack:
            if stack.simulator is not None:
                _warn_simulator()
            click.echo(f"Temporal:  {stack.target}  (data: {stack.db_file})", err=True)
            click.echo(f"Web UI:    {stack.ui_url}", err=True)
            click.echo(f"Provider:  {stack.provider_description}", err=True)
            click.echo(f"Worker on task queue {stack.task_queue!r}. Ctrl-C to stop.", err=True)
            await stack.wait_for_signal()

    return _run(main)


@cli.command()
@click.argument("prompt")
@click.option("--model", default=None, help="Model name (default: the worker's, gpt-4o-mini).")
@click.option("--max-tokens", type=int, default=None)
@click.option("--temperature", type=float, default=None)
@click.option("--timeout", "timeout_seconds", type=float, default=300.0, show_default=True)
@click.option("--task-id", default=None, help="Idempotency key: re-running attaches to it.")
@click.option("--json", "as_json", is_flag=True, help="Print the final Result as JSON.")
def run(
    prompt: str,
    model: str | None,
    max_tokens: int | None,
    temperature: float | None,
    timeout_seconds: float,
    task_id: str | None,
    as_json: bool,
) -> int:
    """Submit PROMPT and stream the answer.

    Starts an embedded Temporal and a worker when none is reachable, and the
    simulator when no OPENAI_API_KEY / OPENAI_BASE_URL is set.
    """

    async def main() -> int:
        task = Task(
            prompt=prompt,
            task_id=task_id,
            constraints=TaskConstraints(
                model=model,
                max_tokens=max_tokens,
                temperature=temperature,
                timeout_seconds=timeout_seconds,
            ),
        )
        async with LocalStack() as stack:
            if stack.simulator is not None:
                _warn_simulator()
            for line in stack.notes:
                click.echo(line, err=True)
            client = stack.task_client()
            submitted = await client.submit_task(task)
            click.echo(f"task {submitted}", err=True)
            try:
                async for text in client.stream_result(submitted):
                    if not as_json:
                        click.echo(text, nl=False)
            except (asyncio.CancelledError, KeyboardInterrupt):
                await client.cancel_task(submitted)
                raise
            except StreamRestartedError as exc:
                click.echo(f"\n[{exc}]", err=True)
            except TaskFailedError:
                pass
            result = await client.get_result(submitted, timeout=None)
            if as_json:
                click.echo(result.model_dump_json(indent=2))
            else:
                click.echo("")
                meta = result.metadata
                click.echo(
                    f"[{result.status.value}] {result.tokens_used} tokens "
                    f"({meta.get('input_tokens', 0)} in, {meta.get('output_tokens', 0)} out), "
                    f"${result.cost:.6f}, {result.duration_seconds:.2f}s"
                    + (f" - {result.error}" if result.error else ""),
                    err=True,
                )
            return EXIT_OK if result.status == TaskStatus.COMPLETED else EXIT_FAILED

    return _run(main)


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True)
@click.option("--tokens-per-second", default=50.0, show_default=True)
def simulator(host: str, port: int, tokens_per_second: float) -> int:
    """Run the OpenAI-compatible simulator (for tests and offline demos)."""
    from .simulator import serve_forever

    _warn_simulator()
    click.echo(f"Simulator: http://{host}:{port}/v1  (OPENAI_BASE_URL for workers)", err=True)
    return _run(lambda: serve_forever(host=host, port=port, tokens_per_second=tokens_per_second))


@cli.command(name="codec-server")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8081, show_default=True)
@click.option(
    "--allow-origin",
    default="http://localhost:8233",
    show_default=True,
    help="The Web UI's origin (CORS).",
)
@click.option(
    "--token",
    default=None,
    envvar="AI_ORCHESTRATOR_CODEC_TOKEN",
    help="Require 'Authorization: Bearer TOKEN' (needed beyond localhost).",
)
def codec_server(host: str, port: int, allow_origin: str, token: str | None) -> int:
    """Decrypt payloads for the Web UI (keys from AI_ORCHESTRATOR_ENCRYPTION_KEYS).

    \b
    In the Web UI: Settings (or the data-encoder icon) > Codec Server >
    http://localhost:8081. With the CLI: temporal workflow show ... --codec-endpoint URL
    """
    from .codec import ENV_ENCRYPTION_KEYS, EncryptionCodec
    from .codec_server import serve_codec

    async def main() -> None:
        try:
            codec = EncryptionCodec.from_env()
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        if codec is None:
            raise ConfigError(f"{ENV_ENCRYPTION_KEYS} is not set: there is nothing to decode with")
        click.echo(
            f"Codec server on http://{host}:{port} for {allow_origin} "
            f"(keys: {', '.join(codec.key_ids)})",
            err=True,
        )
        await serve_codec(codec, host=host, port=port, allow_origin=allow_origin, token=token)

    return _run(main)


@cli.command(name="encryption-key")
@click.argument("key_id", default="k1")
def encryption_key(key_id: str) -> int:
    """Print a new AES-256 key entry for AI_ORCHESTRATOR_ENCRYPTION_KEYS.

    \b
    Rotate by putting the new entry first and keeping old ones after it:
      AI_ORCHESTRATOR_ENCRYPTION_KEYS="k2:<new>,k1:<old>"
    """
    from .codec import generate_key

    click.echo(f"{key_id}:{generate_key()}")
    return EXIT_OK


@cli.command(name="config")
def show_config() -> int:
    """Print the settings the worker would use (secrets masked)."""
    try:
        provider = ProviderSettings.from_env()
        temporal = temporal_connect_config()
    except ConfigError as exc:
        _fail(str(exc))
    click.echo(
        json.dumps(
            {
                "temporal": {
                    k: ("***" if k == "api_key" else v)
                    for k, v in temporal.items()
                    if isinstance(v, (str, int, bool))
                },
                "task_queue": task_queue(),
                "provider": {
                    "api_key": "set" if provider.api_key else "missing",
                    "base_url": provider.base_url or "https://api.openai.com/v1",
                    "default_model": provider.default_model,
                },
                "data_home": str(data_home()),
            },
            indent=2,
        )
    )
    return EXIT_OK


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


if __name__ == "__main__":
    sys.exit(main())
