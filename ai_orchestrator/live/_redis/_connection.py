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

try:
    import redis.asyncio as aioredis
    import redis.exceptions as redis_errors
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "the Redis live channel needs redis-py: pip install 'temporal-ai-orchestrator[redis]'"
    ) from exc

from ...redis_urls import checked_url as checked_url
from ...redis_urls import redacted as redacted

#: The Redis URL both sides use, e.g. ``redis://:password@host:6379/0``.
ENV_LIVE_REDIS_URL = "AI_ORCHESTRATOR_LIVE_REDIS_URL"
#: What a worker advertises in heartbeat details (no URL: it may hold a password).
ADDRESS = "redis"
KEY_PREFIX = "ai-orchestrator:live:"
#: The entry field holding the sealed frame.
FIELD = b"frame"

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
