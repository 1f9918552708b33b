"""Which vendors a worker serves, from each vendor SDK's own environment variables.

A worker serves every provider whose credentials are set; the SDKs then read
those same variables themselves (keys, base URLs, API versions), so a worker
is configured exactly as each vendor documents.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping

from ..config import (
    GEMINI_KEYS,
    ConfigError,
    any_set,
    configured,
)
from ..core import Platform
from ._base import Provider
from ._tls import anthropic_http_client, genai_http_options

#: Values that must never appear in an error message or in history.
SECRET_VARS = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", *GEMINI_KEYS)
#: More environment variables (comma-separated names) the Claude Code CLI may see,
#: beyond its allow-list (PATH, locale, proxies and CAs, ANTHROPIC_*, CLAUDE_CODE_*).
ENV_CLAUDE_ENV = "AI_ORCHESTRATOR_CLAUDE_ENV"
#: Days a Claude Code run folder is kept after its last use (never while it runs).
ENV_CLAUDE_RETENTION = "AI_ORCHESTRATOR_CLAUDE_RETENTION_DAYS"
DEFAULT_CLAUDE_RETENTION_DAYS = 7.0
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def claude_extra_env(env: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """The names ``AI_ORCHESTRATOR_CLAUDE_ENV`` adds to the CLI's environment.

    Raises:
        ConfigError: an entry is not a variable name (a value pasted by mistake
            must not be taken for a name, nor echoed).
    """
    env = os.environ if env is None else env
    names = tuple(n for n in re.split(r"[,\s]+", env.get(ENV_CLAUDE_ENV) or "") if n)
    bad = [n for n in names if not _ENV_NAME.fullmatch(n)]
    if bad:
        raise ConfigError(
            f"{ENV_CLAUDE_ENV} must list variable names separated by commas "
            f"(e.g. AWS_REGION,MY_TOOL_TOKEN); {len(bad)} of its entries are not"
        )
    return names


def claude_retention_days(env: Mapping[str, str] | None = None) -> float:
    """``AI_ORCHESTRATOR_CLAUDE_RETENTION_DAYS`` (default 7): positive, fractions allowed."""
    env = os.environ if env is None else env
    raw = (env.get(ENV_CLAUDE_RETENTION) or "").strip()
    if not raw:
        return DEFAULT_CLAUDE_RETENTION_DAYS
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{ENV_CLAUDE_RETENTION} must be a number of days, got {raw!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{ENV_CLAUDE_RETENTION} must be a positive number of days, got {raw!r}")
    return value


def _claude_code(env: Mapping[str, str] | None = None) -> dict[Platform, Provider]:
    """Claude Code sessions, when the ``claude`` CLI is installed (they run in the
    worker's data directory, one folder per task run, so a retry on the same host
    resumes). ``env`` is where the CLI's allow-listed variables come from."""
    from ..config import data_home
    from .claude_code import ClaudeCodeProvider, find_claude_binary

    if find_claude_binary() is None:
        return {}
    base = data_home() / "claude-code"
    provider = ClaudeCodeProvider(
        base,
        env=env,
        extra_env=claude_extra_env(),
        retention_days=claude_retention_days(),
    )
    return {Platform.CLAUDE_CODE: provider}


def from_env(*, read_timeout: float = 60.0) -> dict[Platform, Provider]:
    """Clients for the Anthropic and Gemini APIs, for those configured in ``os.environ``,
    and for Claude Code sessions if its CLI is installed.

    Raises:
        ConfigError: a vendor is half configured, or its SDK is not installed.
    """
    providers: dict[Platform, Provider] = {}
    platforms = configured()
    try:
        if Platform.CLAUDE in platforms:
            from .anthropic import AnthropicProvider

            providers[Platform.CLAUDE] = AnthropicProvider(timeout=read_timeout)
        if Platform.GEMINI in platforms:
            if not any_set(os.environ, GEMINI_KEYS):
                raise ConfigError(
                    "GOOGLE_GEMINI_BASE_URL is set but neither GEMINI_API_KEY nor GOOGLE_API_KEY "
                    "is: the Gemini API needs a key (any value for a local server)"
                )
            from .gemini import GeminiProvider

            providers[Platform.GEMINI] = GeminiProvider(timeout=read_timeout)
    except ImportError as exc:
        raise ConfigError(str(exc)) from None
    if Platform.CLAUDE in platforms:  # the CLI speaks to Anthropic with the same variables
        providers.update(_claude_code())
    return providers


def secrets(env: Mapping[str, str] | None = None) -> list[str]:
    env = os.environ if env is None else env
    return [env[name] for name in SECRET_VARS if env.get(name)]


def simulated(base_url: str, *, read_timeout: float = 60.0) -> dict[Platform, Provider]:
    """Anthropic and Gemini clients aimed at the built-in simulator at ``base_url``.

    Used by ``dev`` and ``run`` when no provider is configured, so every model
    works offline; a vendor whose SDK is not installed is left out.
    """
    providers: dict[Platform, Provider] = {}
    try:
        from anthropic import AsyncAnthropic

        from .anthropic import AnthropicProvider

        client = AsyncAnthropic(
            api_key="simulator",
            base_url=base_url,
            max_retries=0,
            timeout=read_timeout,
            http_client=anthropic_http_client(),
        )
        providers[Platform.CLAUDE] = AnthropicProvider(client)
    except ImportError:
        pass
    try:
        from google import genai
        from google.genai import types

        from .gemini import GeminiProvider

        options = genai_http_options(
            base_url=base_url,
            retry_options=types.HttpRetryOptions(attempts=1),
            timeout=int(read_timeout * 1000),
        )
        providers[Platform.GEMINI] = GeminiProvider(
            genai.Client(api_key="simulator", http_options=options)
        )
    except ImportError:
        pass
    simulated_env = {**os.environ, "ANTHROPIC_BASE_URL": base_url, "ANTHROPIC_API_KEY": "simulator"}
    providers.update(_claude_code(simulated_env))
    return providers
