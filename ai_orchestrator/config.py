"""Settings read from the environment, for the worker and the command line.

Temporal's own settings (address, namespace, TLS, API key, profiles) come from
Temporal's envconfig (``TEMPORAL_ADDRESS``, ``TEMPORAL_NAMESPACE``, a TOML
profile ...), so a worker is configured like every other Temporal tool.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from temporalio.envconfig import ClientConfig

from .core import Platform

DEFAULT_TASK_QUEUE = "ai-orchestrator"
DEFAULT_TEMPORAL_ADDRESS = "localhost:7233"
DEFAULT_NAMESPACE = "default"

ENV_TASK_QUEUE = "AI_ORCHESTRATOR_TASK_QUEUE"
ENV_MODEL = "AI_ORCHESTRATOR_MODEL"
ENV_HOME = "AI_ORCHESTRATOR_HOME"
ENV_FLUSH_INTERVAL = "AI_ORCHESTRATOR_FLUSH_INTERVAL"
ENV_READ_TIMEOUT = "AI_ORCHESTRATOR_READ_TIMEOUT"
ENV_RATE_LIMIT = "AI_ORCHESTRATOR_MAX_REQUESTS_PER_SECOND"
ENV_GRACEFUL_SHUTDOWN = "AI_ORCHESTRATOR_GRACEFUL_SHUTDOWN_SECONDS"
ENV_SIGNAL_BUDGET = "AI_ORCHESTRATOR_MAX_SIGNALS_PER_SECOND"
ENV_WORKFLOW_POLLERS = "AI_ORCHESTRATOR_WORKFLOW_POLLERS"
#: Which OpenAI API answers OpenAI-compatible tasks (``constraints.openai_api`` overrides).
ENV_OPENAI_API = "AI_ORCHESTRATOR_OPENAI_API"
OPENAI_APIS = ("chat", "responses")
DEFAULT_OPENAI_API = "chat"
#: The model a task gets when it names none.
DEFAULT_MODEL = "gpt-4o-mini"

#: Variables that configure the other vendors (any one of them enables it).
ANTHROPIC_VARS = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_BASE_URL")
GEMINI_KEYS = ("GEMINI_API_KEY", "GOOGLE_API_KEY")
GEMINI_VARS = (*GEMINI_KEYS, "GOOGLE_GEMINI_BASE_URL")


class ConfigError(Exception):
    """The environment does not describe a usable setup; the message says how to fix it."""


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {raw!r}")
    if value <= 0:
        raise ConfigError(f"{name} must be positive, got {raw!r}")
    return value


def _count(env: Mapping[str, str], name: str, default: int) -> int:
    value = _float(env, name, default)
    if value != int(value):
        raise ConfigError(f"{name} must be a whole number, got {env.get(name)!r}")
    return int(value)


def openai_api(env: Mapping[str, str] | None = None) -> str:
    """``chat`` (Chat Completions, the default) or ``responses`` (the Responses API in
    background mode, which re-attaches to a broken stream; it stores responses at
    the provider, so not for zero-data-retention accounts).

    Raises:
        ConfigError: the variable holds anything else.
    """
    env = os.environ if env is None else env
    raw = (env.get(ENV_OPENAI_API) or "").strip()
    if not raw:
        return DEFAULT_OPENAI_API
    value = raw.lower()
    if value not in OPENAI_APIS:
        raise ConfigError(
            f"{ENV_OPENAI_API} must be one of {', '.join(OPENAI_APIS)} (default "
            f"{DEFAULT_OPENAI_API}), got {raw!r}"
        )
    return value


def temporal_connect_config(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Keyword arguments for ``Client.connect`` from Temporal's envconfig."""
    try:
        config: dict[str, Any] = dict(
            ClientConfig.load_client_connect_config(
                override_env_vars=dict(env) if env is not None else None
            )
        )
    except Exception as exc:  # a malformed TOML profile, a missing cert file ...
        raise ConfigError(f"cannot load Temporal client configuration: {exc}") from None
    config.setdefault("target_host", DEFAULT_TEMPORAL_ADDRESS)
    config.setdefault("namespace", DEFAULT_NAMESPACE)
    return config


def data_home(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    raw = env.get(ENV_HOME)
    return Path(raw).expanduser() if raw else Path.home() / ".ai-orchestrator"


@dataclass(frozen=True)
class ProviderSettings:
    """Where the worker sends prompts. The key stays in this process, never in history."""

    api_key: str | None
    base_url: str | None
    default_model: str
    read_timeout: float
    flush_interval: float
    #: ``chat`` or ``responses``: see :func:`openai_api`.
    openai_api: str = DEFAULT_OPENAI_API

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ProviderSettings:
        env = os.environ if env is None else env
        return cls(
            api_key=env.get("OPENAI_API_KEY") or None,
            base_url=env.get("OPENAI_BASE_URL") or None,
            default_model=env.get(ENV_MODEL) or DEFAULT_MODEL,
            read_timeout=_float(env, ENV_READ_TIMEOUT, 60.0),
            flush_interval=_float(env, ENV_FLUSH_INTERVAL, 0.12),
            openai_api=openai_api(env),
        )

    @property
    def configured(self) -> bool:
        return bool(self.api_key or self.base_url)

    def require(self) -> ProviderSettings:
        """Refuse to run a production worker that has nowhere real to send prompts."""
        if not self.configured and not configured():
            raise ConfigError(
                "no provider is configured. Set OPENAI_API_KEY (or OPENAI_BASE_URL for any "
                "OpenAI-compatible server: Ollama, vLLM, ...), ANTHROPIC_API_KEY for Claude "
                "models, or GEMINI_API_KEY for Gemini models. To try ai-orchestrator without "
                "a provider, use 'ai-orchestrator dev' or 'ai-orchestrator run', which start "
                "the built-in simulator."
            )
        return self


@dataclass(frozen=True)
class WorkerTuning:
    """How a worker behaves on its task queue.

    ``max_requests_per_second`` is enforced by the Temporal server across every
    worker of the task queue, so N workers together stay under one provider
    rate limit.
    """

    max_requests_per_second: float | None = None
    graceful_shutdown_seconds: float = 10.0
    max_signals_per_second: float = 50.0
    #: Concurrent workflow-task polls. The SDK's 5 left new runs' first workflow
    #: tasks queued on the server for seconds when hundreds start at once, and
    #: running runs' sticky tasks timing out behind them (300 streams measured:
    #: 174 sticky timeouts at 5, 57 at 20, and a quarter less server CPU, since a
    #: waiting poll takes a task without it being written to the backlog first).
    workflow_pollers: int = 20

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> WorkerTuning:
        env = os.environ if env is None else env
        rate = env.get(ENV_RATE_LIMIT)
        return cls(
            max_requests_per_second=_float(env, ENV_RATE_LIMIT, 1.0) if rate else None,
            graceful_shutdown_seconds=_float(env, ENV_GRACEFUL_SHUTDOWN, 10.0),
            max_signals_per_second=_float(env, ENV_SIGNAL_BUDGET, 50.0),
            workflow_pollers=_count(env, ENV_WORKFLOW_POLLERS, 20),
        )


def any_set(env: Mapping[str, str], names: tuple[str, ...]) -> bool:
    return any(env.get(name) for name in names)


def configured(env: Mapping[str, str] | None = None) -> list[Platform]:
    """The non-OpenAI platforms whose variables are set."""
    env = os.environ if env is None else env
    found = []
    if any_set(env, ANTHROPIC_VARS):
        found.append(Platform.CLAUDE)
    if any_set(env, GEMINI_VARS):
        found.append(Platform.GEMINI)
    return found


def task_queue(env: Mapping[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    return env.get(ENV_TASK_QUEUE) or DEFAULT_TASK_QUEUE
