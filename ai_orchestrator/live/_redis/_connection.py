"""Where a run's Redis stream lives and how both sides reach it.

The publisher and the subscriber must agree on the stream's key and entry
field, read the same URL setting, and word its problems without ever quoting
the URL (it may hold a password). redis-py is imported here only, behind a
friendly install hint: it is an optional extra.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

try:
    import redis.asyncio as aioredis
    import redis.exceptions as redis_errors
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "the Redis live channel needs redis-py: pip install 'temporal-ai-orchestrator[redis]'"
    ) from exc

from ...config import ConfigError

#: The Redis URL both sides use, e.g. ``redis://:password@host:6379/0``.
ENV_LIVE_REDIS_URL = "AI_ORCHESTRATOR_LIVE_REDIS_URL"
#: What a worker advertises in heartbeat details (no URL: it may hold a password).
ADDRESS = "redis"
KEY_PREFIX = "ai-orchestrator:live:"
#: The entry field holding the sealed frame.
FIELD = b"frame"
_SCHEMES = ("redis", "rediss", "unix")

#: Every error redis-py raises (the subscriber turns them into RedisLiveUnavailable).
RedisError = redis_errors.RedisError


class RedisLiveError(ConnectionError):
    """The live channel on Redis cannot be read: read the text from the workflow instead."""


class RedisLiveUnavailable(RedisLiveError):
    """Redis is unreachable, or refuses our credentials."""


class RedisLiveDecodeError(RedisLiveError):
    """A frame cannot be unsealed: the worker's and client's converters (encryption) differ."""


def stream_key(workflow_id: str, run_id: str) -> str:
    return f"{KEY_PREFIX}{workflow_id}:{run_id}"


def redacted(url: str) -> str:
    """``scheme://host:port/db`` without user or password, for messages and logs."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<unparsable Redis URL>"
    return f"{parts.scheme}://{host}{port}{parts.path}"


def checked_url(url: str, where: str) -> str:
    url = url.strip()
    try:
        scheme = urlsplit(url).scheme
    except ValueError:
        scheme = ""
    if scheme not in _SCHEMES:
        # Never echo the value: it may hold a password.
        raise ConfigError(
            f"{where} must be a redis://, rediss:// or unix:// URL, "
            "e.g. redis://:password@host:6379/0"
        )
    return url


def url_from_env(env: Mapping[str, str] | None) -> str | None:
    source = os.environ if env is None else env
    raw = source.get(ENV_LIVE_REDIS_URL, "")
    if not raw.strip():
        return None
    return checked_url(raw, ENV_LIVE_REDIS_URL)


def connect(url: str, *, connect_timeout: float, socket_timeout: float) -> Any:
    """A redis-py client for ``url``; it connects on first use, never here."""
    return aioredis.from_url(
        url, socket_connect_timeout=connect_timeout, socket_timeout=socket_timeout
    )
