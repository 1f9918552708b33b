"""One TLS context per process, shared by every vendor SDK client we build.

Left to themselves, the SDKs build a TLS context for each client by reading the
whole CA bundle: measured on a 2-core machine, 60 ms to build an ``AsyncOpenAI``
or ``AsyncAnthropic`` (0.5 ms with a shared context) and 215 ms for a
``genai.Client``, which builds three (3 ms shared). A worker, every CLI command
and the simulator stack build several, and a test suite hundreds: it was a
tenth of our suite's CPU. The context is the one the SDK would have built (its
own defaults, ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` honoured as it honours them),
built once; an ``SSLContext`` is meant to be shared by many connections. The
environment is read once, on first use: ``SSL_CERT_*`` set later in the process are
not seen.

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
    """The context ``genai.Client`` builds by default for aiohttp and websockets
    (certifi's bundle)."""
    import certifi

    return ssl.create_default_context(
        cafile=os.environ.get("SSL_CERT_FILE", certifi.where()),
        capath=os.environ.get("SSL_CERT_DIR"),
    )


@functools.cache
def genai_httpx_tls() -> ssl.SSLContext:
    """The context ``genai.Client`` builds by default for its httpx clients (the
    system's trust store, as httpx builds it, unless ``SSL_CERT_*`` name another)."""
    cafile, capath = os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR")
    if cafile or capath:
        return ssl.create_default_context(cafile=cafile, capath=capath)
    return httpx_tls()


def openai_http_client() -> Any:
    """A fresh ``openai.DefaultAsyncHttpxClient`` (the SDK's defaults) on the shared context."""
    from openai import DefaultAsyncHttpxClient

    return DefaultAsyncHttpxClient(verify=httpx_tls())


def anthropic_http_client() -> Any:
    """A fresh ``anthropic.DefaultAsyncHttpxClient`` on the shared context."""
    from anthropic import DefaultAsyncHttpxClient

    return DefaultAsyncHttpxClient(verify=httpx_tls())


def genai_http_options(*, vertexai: bool | None = None, **options: Any) -> types.HttpOptions:
    """``types.HttpOptions(**options)`` whose HTTP clients use the shared contexts (a
    context already given in ``client_args`` / ``async_client_args`` is kept).

    Vertex AI clients (``vertexai``, by default ``GOOGLE_GENAI_USE_VERTEXAI`` as the
    SDK reads it) are left to the SDK: it may load a client certificate and switch
    to the mTLS endpoint, which a context of ours would turn off.
    """
    from google.genai import types

    if vertexai is None:
        vertexai = os.environ.get("GOOGLE_GENAI_USE_VERTEXAI", "0").lower() in ("true", "1")
    if vertexai:
        return types.HttpOptions(**options)
    return types.HttpOptions(
        **{
            **options,
            "client_args": {"verify": genai_httpx_tls(), **(options.get("client_args") or {})},
            "async_client_args": {"ssl": genai_tls(), **(options.get("async_client_args") or {})},
        }
    )


__all__ = [
    "anthropic_http_client",
    "genai_http_options",
    "genai_httpx_tls",
    "genai_tls",
    "httpx_tls",
    "openai_http_client",
]
