"""One TLS context per process, shared by every vendor SDK client we build.

Left to themselves, the SDKs build a TLS context for each client by reading the
whole CA bundle: measured on a 2-core machine, 60 ms to build an ``AsyncOpenAI``
or ``AsyncAnthropic`` (0.5 ms with a shared context) and 215 ms for a
``genai.Client``, which builds three (3 ms shared). A worker, every CLI command
and the simulator stack build several, and a test suite hundreds: it was a
tenth of our suite's CPU. The context is the one the SDK would have built (its
own defaults, ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` honoured as it honours them),
built once; an ``SSLContext`` is meant to be shared by many connections.

The SDKs are imported lazily: Anthropic and Gemini are optional extras.
"""

from __future__ import annotations

import functools
import os
import ssl
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from google.genai import types


@functools.cache
def httpx_tls() -> ssl.SSLContext:
    """The context the openai and anthropic SDKs' HTTP client builds by default."""
    import httpx2

    return httpx2.create_ssl_context()


@functools.cache
def genai_tls() -> ssl.SSLContext:
    """The context ``genai.Client`` builds by default (certifi's bundle)."""
    import certifi

    return ssl.create_default_context(
        cafile=os.environ.get("SSL_CERT_FILE", certifi.where()),
        capath=os.environ.get("SSL_CERT_DIR"),
    )


def openai_http_client() -> Any:
    """A fresh ``openai.DefaultAsyncHttpxClient`` (the SDK's defaults) on the shared context."""
    from openai import DefaultAsyncHttpxClient

    return DefaultAsyncHttpxClient(verify=httpx_tls())


def anthropic_http_client() -> Any:
    """A fresh ``anthropic.DefaultAsyncHttpxClient`` on the shared context."""
    from anthropic import DefaultAsyncHttpxClient

    return DefaultAsyncHttpxClient(verify=httpx_tls())


def genai_http_options(**options: Any) -> types.HttpOptions:
    """``types.HttpOptions(**options)`` whose HTTP clients use the shared context
    (a context already given in ``client_args`` / ``async_client_args`` is kept)."""
    from google.genai import types

    context = genai_tls()
    return types.HttpOptions(
        **{
            **options,
            "client_args": {"verify": context, **(options.get("client_args") or {})},
            "async_client_args": {"ssl": context, **(options.get("async_client_args") or {})},
        }
    )


__all__ = [
    "anthropic_http_client",
    "genai_http_options",
    "genai_tls",
    "httpx_tls",
    "openai_http_client",
]
