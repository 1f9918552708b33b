"""Every vendor client we build shares one TLS context per process (building one reads
the whole CA bundle: 60 ms an OpenAI client, 215 ms a Gemini one), and it trusts what
the SDK's own default would have trusted."""

from __future__ import annotations

import ssl
from typing import Any

import httpx2
import pytest
from google import genai
from google.genai import types
from google.genai._api_client import BaseApiClient

from ai_orchestrator.adapters import AsyncChatGPTAdapter
from ai_orchestrator.config import ProviderSettings
from ai_orchestrator.core import Platform
from ai_orchestrator.providers._config import simulated
from ai_orchestrator.providers._tls import (
    genai_http_options,
    genai_httpx_tls,
    genai_tls,
    httpx_tls,
)
from ai_orchestrator.providers.anthropic import AnthropicProvider
from ai_orchestrator.providers.batch_anthropic import AnthropicBatches
from ai_orchestrator.providers.gemini import GeminiProvider
from ai_orchestrator.worker import openai_client


def _context(sdk_client: Any) -> ssl.SSLContext:
    """The context an openai/anthropic client's connection pool wraps sockets with."""
    return sdk_client._client._transport._pool._ssl_context


def _genai_contexts(client: genai.Client) -> list[Any]:
    options = client._api_client._http_options
    return [options.client_args["verify"], options.async_client_args["ssl"]]


def _trusts(context: ssl.SSLContext) -> dict[str, int]:
    return context.cert_store_stats()


def test_the_contexts_trust_what_the_sdks_defaults_trust() -> None:
    """The same certificates as the context each SDK builds when left alone."""
    assert _trusts(httpx_tls()) == _trusts(httpx2.create_ssl_context())
    sync_args, _ = BaseApiClient._ensure_httpx_ssl_ctx(types.HttpOptions())
    assert _trusts(genai_httpx_tls()) == _trusts(sync_args["verify"])
    aiohttp_args = BaseApiClient._ensure_aiohttp_ssl_ctx(types.HttpOptions())
    assert _trusts(genai_tls()) == _trusts(aiohttp_args["ssl"])
    for context in (httpx_tls(), genai_httpx_tls(), genai_tls()):
        assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname


def test_our_openai_and_anthropic_clients_share_one_context(
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
    assert first._client is not second._client  # each its own connections
    clients = [first, second, AnthropicProvider().client, AnthropicBatches()._client]
    assert all(_context(client) is httpx_tls() for client in clients)


async def test_the_in_process_adapter_shares_it() -> None:
    async with AsyncChatGPTAdapter(api_key="sk-test", base_url="http://127.0.0.1:9/v1") as adapter:
        assert _context(adapter._client) is httpx_tls()


def test_the_simulator_stacks_vendor_clients_share_them_too() -> None:
    providers = simulated("http://127.0.0.1:9/")
    claude, gemini = providers[Platform.CLAUDE], providers[Platform.GEMINI]
    assert isinstance(claude, AnthropicProvider) and isinstance(gemini, GeminiProvider)
    assert _context(claude.client) is httpx_tls()
    assert _genai_contexts(gemini.client) == [genai_httpx_tls(), genai_tls()]


def test_a_gemini_client_built_from_the_environment_shares_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", "AIza-test")
    monkeypatch.delenv("GOOGLE_GENAI_USE_VERTEXAI", raising=False)
    assert _genai_contexts(GeminiProvider().client) == [genai_httpx_tls(), genai_tls()]


def test_vertex_ai_is_left_to_the_sdk(monkeypatch: pytest.MonkeyPatch) -> None:
    """It may load a client certificate and use the mTLS endpoint: no context of ours."""
    monkeypatch.setenv("GOOGLE_GENAI_USE_VERTEXAI", "true")
    options = genai_http_options(timeout=5000)
    assert options.client_args is None and options.async_client_args is None
    assert genai_http_options(vertexai=False).client_args == {"verify": genai_httpx_tls()}


def test_a_context_given_by_the_caller_is_kept() -> None:
    own = ssl.create_default_context()
    options = genai_http_options(vertexai=False, async_client_args={"ssl": own}, timeout=5000)
    assert options.async_client_args == {"ssl": own}
    assert options.client_args == {"verify": genai_httpx_tls()}
    assert options.timeout == 5000
