"""Redis URLs as every wing that uses Redis (the live channel, the shared quota
limiter, named budgets) checks and words them: never quoting the password a URL
may hold. Pure: redis-py is an optional extra, imported where a connection is made.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from .config import ConfigError

_SCHEMES = ("redis", "rediss", "unix")


def is_redis_url(text: str) -> bool:
    try:
        return urlsplit(text.strip()).scheme in _SCHEMES
    except ValueError:
        return False


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
    if not is_redis_url(url):
        # Never echo the value: it may hold a password.
        raise ConfigError(
            f"{where} must be a redis://, rediss:// or unix:// URL, "
            "e.g. redis://:password@host:6379/0"
        )
    return url.strip()
