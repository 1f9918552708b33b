"""A Temporal client configured the way every worker and tool of a deployment is.

Temporal's own environment configuration (``TEMPORAL_ADDRESS``, profiles, TLS,
API keys) plus our data converter, so encryption is on wherever its keys are set.
"""

from __future__ import annotations

from typing import Any

from temporalio.client import Client
from temporalio.converter import DataConverter

from ..config import ConfigError, temporal_connect_config
from ..exceptions import TemporalUnavailableError
from ..metrics import prometheus_runtime
from ..payloads.converter import data_converter_from_env


async def connect_client(
    target_host: str | None = None,
    namespace: str | None = None,
    *,
    metrics_address: str | None = None,
    data_converter: DataConverter | None = None,
    connect_options: dict[str, Any] | None = None,
) -> Client:
    """A client configured from the environment (Temporal envconfig, encryption);
    arguments win over it, and ``connect_options`` go to ``Client.connect`` last.

    With ``metrics_address``, the client's runtime (and so every worker built on
    it) serves Prometheus metrics there.
    """
    config = temporal_connect_config()
    if metrics_address:
        try:
            config["runtime"] = prometheus_runtime(metrics_address)
        except Exception as exc:
            raise ConfigError(f"cannot serve metrics on {metrics_address}: {exc}") from None
    if target_host:
        config["target_host"] = target_host
    if namespace:
        config["namespace"] = namespace
    config.update(connect_options or {})
    converter = data_converter or data_converter_from_env()
    try:
        return await Client.connect(data_converter=converter, **config)
    except Exception as exc:
        raise TemporalUnavailableError(
            f"cannot reach Temporal at {config['target_host']} (namespace "
            f"{config['namespace']}): {exc}. Start one with 'ai-orchestrator dev' or set "
            "TEMPORAL_ADDRESS."
        ) from None
