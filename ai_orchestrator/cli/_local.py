"""Commands that bring their own stack when none is running: run, dev, simulator."""

from __future__ import annotations

import asyncio

import click

from ..core import Task, TaskConstraints
from ..local.session import LocalStack
from ..metrics import ENV_METRICS
from ._common import EXIT_OK, _run, _warn_simulator, delivery_option, emit_json
from ._live import exit_code, follow, summary_line
from ._sim_quotas import describe, quota_options, quotas_from, usage_line


def task_options(fn):  # type: ignore[no-untyped-def]
    """The options that shape a task, shared by run and submit."""
    options = [
        click.option(
            "--model", default=None, help="Model name (default: the worker's, gpt-4o-mini)."
        ),
        click.option("--max-tokens", type=int, default=None),
        click.option("--temperature", type=float, default=None),
        click.option(
            "--timeout",
            "timeout_seconds",
            type=float,
            default=300.0,
            show_default=True,
            help="Seconds for the whole task, retries included.",
        ),
        click.option(
            "--priority", type=int, default=3, show_default=True, help="1 (most urgent) to 5."
        ),
        delivery_option(
            "batch: through the provider's batch API at half price, answered within 24 h "
            "(with a real provider, give it a --timeout past 86400); auto: batch when "
            "--timeout is at least 90000 (25 h), else real time.",
            default="realtime",
        ),
        click.option(
            "--task-id", default=None, help="Idempotency key: re-submitting attaches to it."
        ),
        click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def build_task(
    prompt: str,
    model: str | None,
    max_tokens: int | None,
    temperature: float | None,
    timeout_seconds: float,
    priority: int,
    task_id: str | None,
    delivery: str = "realtime",
) -> Task:
    return Task(
        prompt=prompt,
        task_id=task_id,
        priority=priority,
        constraints=TaskConstraints(
            model=model,
            max_tokens=max_tokens,
            temperature=temperature,
            timeout_seconds=timeout_seconds,
            delivery=delivery,
        ),
    )


@click.command()
@click.argument("prompt")
@task_options
@quota_options(prefix="sim-")
def run(
    prompt: str,
    as_json: bool,
    quota_rpm: int | None,
    quota_tpm: int | None,
    quota_models: dict[str, object],
    quota_refund: bool,
    **options: object,
) -> int:
    """Submit PROMPT and stream the answer.

    Starts an embedded Temporal and a worker when none is reachable, and the
    simulator when no OPENAI_API_KEY / OPENAI_BASE_URL is set; --sim-rpm and
    --sim-tpm give that simulator a provider's quotas, to watch 429s offline.

    \b
    Examples:
      ai-orchestrator run "Explain backpressure in one paragraph"
      ai-orchestrator run "Summarise: ..." --model gpt-4o --max-tokens 200 --json
      ai-orchestrator run "Hello" --max-tokens 100 --sim-tpm 300
      ai-orchestrator run "Classify: ..." --delivery batch   # half price, one piece
    """
    quotas = quotas_from(quota_rpm, quota_tpm, quota_models, quota_refund)

    async def main() -> int:
        task = build_task(prompt, **options)  # type: ignore[arg-type]
        async with LocalStack() as stack:
            if stack.simulator is not None:
                _warn_simulator()
            for line in stack.notes:
                click.echo(line, err=True)
            if quotas is not None and stack.simulator is None:
                click.echo("--sim-* quotas ignored: no simulator was started here", err=True)
            elif quotas is not None and stack.simulator is not None:
                stack.simulator.quotas = quotas
                click.echo(f"Simulator quotas: {describe(quotas)}", err=True)
            client = stack.task_client()
            task_id = await client.submit_task(task)
            click.echo(f"task {task_id}", err=True)
            model = (task.constraints and task.constraints.model) or client.default_model
            try:
                followed = await follow(client, task_id, model, print_text=not as_json)
            except (asyncio.CancelledError, KeyboardInterrupt):
                await client.cancel_task(task_id)
                raise
            result = followed.result
            if as_json:
                emit_json(result)
            else:
                click.echo("")
                click.echo(summary_line(result), err=True)
            if quotas is not None and stack.simulator is not None:
                click.echo(usage_line(stack.simulator), err=True)
            return exit_code(result, followed.wrong_text)

    return _run(main)


@click.command()
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Where the SQLite file lives (default: ~/.ai-orchestrator).",
)
@click.option("--port", default=7233, show_default=True, help="Temporal gRPC port.")
@click.option("--ui-port", default=8233, show_default=True, help="Temporal Web UI port.")
@click.option(
    "--metrics-address",
    default=None,
    envvar=ENV_METRICS,
    help="Serve Prometheus metrics, e.g. 127.0.0.1:9464.",
)
def dev(data_dir: str | None, port: int, ui_port: int, metrics_address: str | None) -> int:
    """Temporal dev server (persistent, search attributes registered) + Web UI + a worker.

    Uses OPENAI_API_KEY / OPENAI_BASE_URL when set, else the built-in simulator.
    Runs until Ctrl-C.
    """

    async def main() -> None:
        stack = LocalStack(
            data_dir=data_dir,
            port=port,
            ui_port=ui_port,
            force_server=True,
            metrics_address=metrics_address,
        )
        async with stack:
            if stack.simulator is not None:
                _warn_simulator()
            click.echo(f"Temporal:  {stack.target}  (data: {stack.db_file})", err=True)
            click.echo(f"Web UI:    {stack.ui_url}", err=True)
            click.echo(f"Provider:  {stack.provider_description}", err=True)
            if metrics_address:
                click.echo(f"Metrics:   http://{metrics_address}/metrics", err=True)
            click.echo(f"Worker on task queue {stack.task_queue!r}. Ctrl-C to stop.", err=True)
            await stack.wait_for_signal()

    return _run(main)


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True)
@click.option("--tokens-per-second", default=50.0, show_default=True)
@quota_options()
def simulator(
    host: str,
    port: int,
    tokens_per_second: float,
    quota_rpm: int | None,
    quota_tpm: int | None,
    quota_models: dict[str, object],
    quota_refund: bool,
) -> int:
    """Run the OpenAI-, Anthropic- and Gemini-compatible simulator (tests, offline demos).

    --rpm/--tpm limit each API key and model as providers do, with their
    rate-limit headers and 429s; GET /_simulator/quotas counts the 429s sent.

    \b
    Examples:
      ai-orchestrator simulator --port 8000
      ai-orchestrator simulator --rpm 60 --tpm 20000 --model-quota gpt-4o:tpm=5000
    """
    from ..simulator import serve_forever

    quotas = quotas_from(quota_rpm, quota_tpm, quota_models, quota_refund)
    _warn_simulator()
    click.echo(f"Simulator: http://{host}:{port}/v1  (OPENAI_BASE_URL for workers)", err=True)
    if quotas is not None:
        click.echo(f"Quotas:    {describe(quotas)}", err=True)
    _run(
        lambda: serve_forever(
            host=host, port=port, tokens_per_second=tokens_per_second, quotas=quotas
        )
    )
    return EXIT_OK
