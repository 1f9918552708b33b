"""Which vendors a worker serves, from each vendor SDK's own environment variables.

A worker serves every provider whose credentials are set; the SDKs then read
those same variables themselves (keys, base URLs, API versions), so a worker
is configured exactly as each vendor documents.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from ..config import ConfigError
from ..core import Platform
from ._base import Provider

ANTHROPIC_VARS = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_BASE_URL")
GEMINI_KEYS = ("GEMINI_API_KEY", "GOOGLE_API_KEY")
GEMINI_VARS = (*GEMINI_KEYS, "GOOGLE_GEMINI_BASE_URL")
#: Values that must never appear in an error message or in history.
SECRET_VARS = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", *GEMINI_KEYS)


def _set(env: Mapping[str, str], names: tuple[str, ...]) -> bool:
    return any(env.get(name) for name in names)


def configured(env: Mapping[str, str] | None = None) -> list[Platform]:
    """The non-OpenAI platforms whose variables are set."""
    env = os.environ if env is None else env
    found = []
    if _set(env, ANTHROPIC_VARS):
        found.append(Platform.CLAUDE)
    if _set(env, GEMINI_VARS):
        found.append(Platform.GEMINI)
    return found


def _claude_code(env: Mapping[str, str] | None = None) -> dict[Platform, Provider]:
    """Claude Code sessions, when the ``claude`` CLI is installed (they run in the
    worker's data directory, one folder per task, so a retry on the same host resumes)."""
    from ..config import data_home
    from .claude_code import ClaudeCodeProvider, find_claude_binary

    if find_claude_binary() is None:
        return {}
    base = data_home() / "claude-code"
    return {Platform.CLAUDE_CODE: ClaudeCodeProvider(base, env=env)}


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
            if not _set(os.environ, GEMINI_KEYS):
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
            api_key="simulator", base_url=base_url, max_retries=0, timeout=read_timeout
        )
        providers[Platform.CLAUDE] = AnthropicProvider(client)
    except ImportError:
        pass
    try:
        from google import genai
        from google.genai import types

        from .gemini import GeminiProvider

        options = types.HttpOptions(
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
