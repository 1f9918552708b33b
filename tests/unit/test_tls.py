"""Every vendor client we build shares one TLS context per process (building one reads
the whole CA bundle: 60 ms an OpenAI client, 215 ms a Gemini one), and it is the
context the SDK would have built itself."""

from __future__ import annotations

import ssl
from typing import Any

import pytest
from google import genai

from ai_orchestrator.config import ProviderSettings
from ai_orchestrator.core import Platform
from ai_orchestrator.providers._config import simulated
from ai_orchestrator.providers._tls import genai_http_options, genai_tls, httpx_tls
from ai_orchestrator.providers.anthropic import AnthropicProvider
from ai_orchestrator.providers.gemini import GeminiProvider
from ai_orchestrator.worker import openai_client


def _context(sdk_client: Any) -> ssl.SSLContext:
    """The context an openai/anthropic client's connection pool wraps sockets with."""
    return sdk_client._client._transport._pool._ssl_context


def _genai_contexts(client: genai.Client) -> list[Any]:
    options = client._api_client._http_options
    return [options.client_args["verify"], options.async_client_args["ssl"]]


def test_our_openai_and_anthropic_clients_share_the_sdks_default_context(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    settings = ProviderSettings(
        api_key="sk-test",
        base_url="http://127.0.0.1:9/v1",
        default_model="gpt-4o-mini",
        read_timeout=5.0,
        flush_interval=0.1,
    )
    first, second = openai_client(settings), openai_client(settings)
    claude = AnthropicProvider().client
    assert first._client is not second._client  # each its own connections
    assert _context(first) is _context(second) is _context(claude) is httpx_tls()
    # What the SDK builds by default: verifying, against the system's trust store.
    assert httpx_tls().verify_mode == ssl.CERT_REQUIRED and httpx_tls().check_hostname


def test_the_simulator_stacks_vendor_clients_share_them_too() -> None:
    providers = simulated("http://127.0.0.1:9/")
    claude, gemini = providers[Platform.CLAUDE], providers[Platform.GEMINI]
    assert isinstance(claude, AnthropicProvider) and isinstance(gemini, GeminiProvider)
    assert _context(claude.client) is httpx_tls()
    assert _genai_contexts(gemini.client) == [genai_tls(), genai_tls()]
    assert genai_tls().verify_mode == ssl.CERT_REQUIRED


def test_a_gemini_client_built_from_the_environment_shares_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", "AIza-test")
    assert _genai_contexts(GeminiProvider().client) == [genai_tls(), genai_tls()]


def test_a_context_given_by_the_caller_is_kept() -> None:
    own = ssl.create_default_context()
    options = genai_http_options(async_client_args={"ssl": own}, timeout=5000)
    assert options.async_client_args == {"ssl": own}
    assert options.client_args == {"verify": genai_tls()}
    assert options.timeout == 5000
