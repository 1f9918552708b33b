"""Commands for operators: worker, setup, codec-server, encryption-key, config."""

from __future__ import annotations

import json
import logging

import click

from ..config import ConfigError, ProviderSettings, data_home, task_queue, temporal_connect_config
from ..metrics import ENV_METRICS
from ._common import EXIT_OK, _fail, _run, emit_json


@click.command()
@click.option("--task-queue", "queue", default=None, help="Default: $AI_ORCHESTRATOR_TASK_QUEUE.")
@click.option(
    "--metrics-address",
    default=None,
    envvar=ENV_METRICS,
    help="Serve Prometheus metrics on HOST:PORT (e.g. 0.0.0.0:9464).",
)
def worker(queue: str | None, metrics_address: str | None) -> int:
    """Run a production worker (needs OPENAI_API_KEY or OPENAI_BASE_URL).

    Temporal settings come from TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TLS and
    profile variables, as for every Temporal tool. Stops cleanly on SIGINT/SIGTERM.
    """
    from ..worker import serve

    logging.getLogger("ai_orchestrator").setLevel(logging.INFO)
    return _run(lambda: serve(queue=queue, metrics_address=metrics_address))


@click.command()
@click.option("--json", "as_json", is_flag=True)
def setup(as_json: bool) -> int:
    """Register our search attributes on the namespace (idempotent).

    Needed once per namespace for `list --query` and Web UI filters on AiModel,
    AiStatus, AiCostUsd ... (`ai-orchestrator dev` does it by itself).
    """
    from ..client import connect_client
    from ..search import ALL_KEYS, register

    async def main() -> int:
        client = await connect_client()
        added = await register(client)
        if as_json:
            emit_json(
                {
                    "namespace": client.namespace,
                    "added": added,
                    "search_attributes": [k.name for k in ALL_KEYS],
                }
            )
        else:
            click.echo(
                f"namespace {client.namespace}: "
                + (f"registered {', '.join(added)}" if added else "already set up")
            )
        return EXIT_OK

    return _run(main)


@click.command(name="codec-server")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8081, show_default=True)
@click.option(
    "--ui-port",
    default=8233,
    show_default=True,
    help="The port of the local Web UI (the one `dev`/`run` printed): both "
    "http://localhost:PORT and http://127.0.0.1:PORT may call the server.",
)
@click.option(
    "--allow-origin",
    "allow_origins",
    multiple=True,
    help="A Web UI origin allowed instead (CORS), e.g. https://temporal.example.com; repeatable.",
)
@click.option(
    "--token",
    default=None,
    envvar="AI_ORCHESTRATOR_CODEC_TOKEN",
    help="Require 'Authorization: Bearer TOKEN' (needed beyond localhost).",
)
def codec_server(
    host: str, port: int, ui_port: int, allow_origins: tuple[str, ...], token: str | None
) -> int:
    """Decrypt payloads for the Web UI (keys from AI_ORCHESTRATOR_ENCRYPTION_KEYS).

    \b
    In the Web UI: the data-encoder settings > codec server > http://localhost:8081.
    With the CLI: temporal workflow show ... --codec-endpoint http://localhost:8081
    """
    from ..payloads.codec import ENV_ENCRYPTION_KEYS, EncryptionCodec
    from ..payloads.codec_server import serve_codec, ui_origins

    origins = allow_origins or ui_origins(ui_port)

    async def main() -> None:
        try:
            codec = EncryptionCodec.from_env()
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        if codec is None:
            raise ConfigError(f"{ENV_ENCRYPTION_KEYS} is not set: there is nothing to decode with")
        click.echo(
            f"Codec server on http://{host}:{port} for {' and '.join(origins)} "
            f"(keys: {', '.join(codec.key_ids)})",
            err=True,
        )
        await serve_codec(codec, host=host, port=port, allow_origin=origins, token=token)

    return _run(main)


@click.command(name="encryption-key")
@click.argument("key_id", default="k1")
def encryption_key(key_id: str) -> int:
    """Print a new AES-256 key entry for AI_ORCHESTRATOR_ENCRYPTION_KEYS.

    \b
    Rotate by putting the new entry first and keeping old ones after it:
      AI_ORCHESTRATOR_ENCRYPTION_KEYS="k2:<new>,k1:<old>"
    """
    from ..payloads.codec import generate_key

    click.echo(f"{key_id}:{generate_key()}")
    return EXIT_OK


def _platforms(provider: ProviderSettings) -> dict[str, str]:
    """Which platforms a worker here would serve (no secret: only whether it is set)."""
    from ..config import configured
    from ..providers.claude_code import find_claude_binary

    found = {"chatgpt": "configured" if provider.configured else "not configured"}
    vendors = configured()
    for platform in ("claude", "gemini"):
        found[platform] = (
            "configured" if any(p.value == platform for p in vendors) else "not configured"
        )
    binary = find_claude_binary()
    if binary is None:
        found["claude_code"] = "claude CLI not found"
    elif found["claude"] == "configured":
        found["claude_code"] = f"claude CLI at {binary}"
    else:
        found["claude_code"] = "claude CLI found, needs the Anthropic variables"
    return found


@click.command(name="config")
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
                "platforms": _platforms(provider),
                "data_home": str(data_home()),
            },
            indent=2,
        )
    )
    return EXIT_OK
