"""Which live channel a worker publishes on and which ones a client can read.

``AI_ORCHESTRATOR_LIVE`` picks the worker's channel: ``http`` (the default, an
endpoint in the worker process), ``redis`` (Redis Streams at
``AI_ORCHESTRATOR_LIVE_REDIS_URL``) or ``off`` (readers follow the workflow's
checkpoints, which are then frequent, as before the live channel existed).
Clients read whichever channel each attempt advertises.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from temporalio.converter import DataConverter

from ._auth import LiveAuth
from ._channel import LivePublisher, LiveSubscriber
from ._http import HttpLivePublisher, HttpLiveSubscriber, LiveConfigError

ENV_LIVE = "AI_ORCHESTRATOR_LIVE"
ENV_LIVE_REDIS_URL = "AI_ORCHESTRATOR_LIVE_REDIS_URL"
ENV_CHECKPOINT_INTERVAL = "AI_ORCHESTRATOR_CHECKPOINT_INTERVAL"
CHANNELS = ("http", "redis", "off")


def channel(env: Mapping[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    value = (env.get(ENV_LIVE) or "http").strip().lower()
    if value not in CHANNELS:
        raise LiveConfigError(f"{ENV_LIVE} must be one of {', '.join(CHANNELS)}; got {value!r}")
    return value


def checkpoint_interval(env: Mapping[str, str] | None = None) -> float:
    env = os.environ if env is None else env
    raw = env.get(ENV_CHECKPOINT_INTERVAL) or "1.0"
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if value <= 0:
        raise LiveConfigError(f"{ENV_CHECKPOINT_INTERVAL} must be a positive number of seconds")
    return value


def _redis_url(env: Mapping[str, str]) -> str:
    url = env.get(ENV_LIVE_REDIS_URL)
    if not url:
        raise LiveConfigError(
            f"{ENV_LIVE}=redis needs {ENV_LIVE_REDIS_URL} (for example redis://localhost:6379/0)"
        )
    return url


def publisher_from_env(
    converter: DataConverter, env: Mapping[str, str] | None = None
) -> LivePublisher | None:
    """The worker's channel, not yet started; None when live streaming is off."""
    env = os.environ if env is None else env
    kind = channel(env)
    if kind == "off":
        return None
    if kind == "redis":
        from ._redis import RedisLivePublisher  # the redis extra

        return RedisLivePublisher(_redis_url(env), converter)
    return HttpLivePublisher.from_env(converter, env)


def subscribers_from_env(
    converter: DataConverter, env: Mapping[str, str] | None = None
) -> list[LiveSubscriber]:
    """Every channel this client can read: worker endpoints, and Redis when configured."""
    env = os.environ if env is None else env
    readers: list[LiveSubscriber] = [HttpLiveSubscriber(converter, auth=LiveAuth.from_env(env))]
    if env.get(ENV_LIVE_REDIS_URL):
        from ._redis import RedisLiveSubscriber

        readers.append(RedisLiveSubscriber(_redis_url(env), converter))
    return readers
