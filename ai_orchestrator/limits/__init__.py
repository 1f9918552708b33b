"""Self-regulation under provider quotas: reserve what the provider will count
before a call, learn the real limits from every answer, hold every call on a key
when one is told to wait.

``LocalLimiter`` serves one worker process (the embedded default);
``RedisLimiter`` is shared by every worker process (``AI_ORCHESTRATOR_LIMITER`` set
to a ``redis://`` URL, or ``redis`` for the live channel's). Keys are the
platform, the provider's address and account, and the model, as providers scope
their limits; the account is a hash of the key, never the key.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping

from ..config import ConfigError
from ..redis_urls import is_redis_url
from ._bucket import DEFAULT_LEASE_SECONDS, Bucket
from ._headers import Observed, go_duration, observe
from ._local import LocalLimiter
from ._types import Lease, Limiter

#: Per-model limits for providers that send no headers: ``"gpt-4o:tpm=30000,rpm=500;..."``.
ENV_LIMITS = "AI_ORCHESTRATOR_LIMITS"
#: ``local`` (the default: one worker process's view), a ``redis://`` URL (shared by
#: every worker), ``redis`` (the live channel's Redis, ``AI_ORCHESTRATOR_LIVE_REDIS_URL``)
#: or ``off`` (each call then only reacts to its own 429).
ENV_LIMITER = "AI_ORCHESTRATOR_LIMITER"
_LIVE_REDIS_URL = "AI_ORCHESTRATOR_LIVE_REDIS_URL"
#: What a call reserves for its answer when the task sets no ``max_tokens`` (the
#: provider counts its own default).
ENV_DEFAULT_MAX_TOKENS = "AI_ORCHESTRATOR_LIMIT_DEFAULT_MAX_TOKENS"
DEFAULT_MAX_TOKENS = 4096


def limit_key(platform: str, address: str, api_key: str | None, model: str) -> str:
    account = hashlib.sha256((api_key or "").encode()).hexdigest()[:12]
    return f"{platform}|{address}|{account}|{model}"


def parse_limits(text: str) -> dict[str, tuple[float | None, float | None]]:
    """``"gpt-4o:tpm=30000,rpm=500;gpt-4o-mini:tpm=200000"`` -> {model: (tpm, rpm)}."""
    limits: dict[str, tuple[float | None, float | None]] = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        model, sep, rest = part.rpartition(":")
        values: dict[str, float] = {}
        for item in filter(None, (i.strip() for i in rest.split(","))):
            name, eq, raw = item.partition("=")
            try:
                value = float(raw)
            except ValueError:
                value = -1.0
            if not eq or name not in ("tpm", "rpm") or value <= 0:
                raise ConfigError(
                    f"{ENV_LIMITS}: {item!r} in {part!r} is not tpm=N or rpm=N (N > 0)"
                )
            values[name] = value
        if not sep or not model or not values:
            raise ConfigError(f"{ENV_LIMITS}: {part!r} is not MODEL:tpm=N,rpm=N")
        limits[model] = (values.get("tpm"), values.get("rpm"))
    return limits


def limiter_from_env(env: Mapping[str, str] | None = None) -> Limiter | None:
    env = os.environ if env is None else env
    raw = env.get(ENV_LIMITER, "").strip()
    if raw.lower() in ("off", "0", "false", "no"):
        return None
    limits = parse_limits(env.get(ENV_LIMITS, ""))
    if raw.lower() in ("", "local"):
        return LocalLimiter(limits)
    if raw.lower() == "redis":
        raw = env.get(_LIVE_REDIS_URL, "").strip()
        if not raw:
            raise ConfigError(f"{ENV_LIMITER}=redis needs {_LIVE_REDIS_URL} (the Redis to share)")
    if not is_redis_url(raw):  # never echoed: a URL may hold a password
        raise ConfigError(f"{ENV_LIMITER} must be local, off, redis or a redis:// URL")
    from ._redis import RedisLimiter  # redis-py is an optional extra

    return RedisLimiter(raw, limits)


def default_max_tokens(env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    raw = env.get(ENV_DEFAULT_MAX_TOKENS)
    try:
        value = int(raw) if raw else DEFAULT_MAX_TOKENS
    except ValueError:
        raise ConfigError(f"{ENV_DEFAULT_MAX_TOKENS} must be a whole number, got {raw!r}") from None
    if value <= 0:
        raise ConfigError(f"{ENV_DEFAULT_MAX_TOKENS} must be positive, got {raw!r}")
    return value


__all__ = [
    "DEFAULT_LEASE_SECONDS",
    "DEFAULT_MAX_TOKENS",
    "ENV_DEFAULT_MAX_TOKENS",
    "ENV_LIMITER",
    "ENV_LIMITS",
    "Bucket",
    "Lease",
    "Limiter",
    "LocalLimiter",
    "Observed",
    "default_max_tokens",
    "go_duration",
    "limit_key",
    "limiter_from_env",
    "observe",
    "parse_limits",
]
