"""The live channel on Redis Streams: for workers that scale out behind one broker.

One stream per run, ``ai-orchestrator:live:{workflow_id}:{run_id}``; every entry
holds one sealed :class:`~ai_orchestrator.live.LiveFrame` (encrypted when
encryption is on, so Redis sees only ciphertext). Workers publish with
:class:`RedisLivePublisher` (:mod:`._publisher`); clients read with
:class:`RedisLiveSubscriber` (:mod:`._subscriber`). Both are configured by
``AI_ORCHESTRATOR_LIVE_REDIS_URL`` (``redis://:password@host:6379/0``); what a
worker advertises in heartbeat details is only the word ``redis``, never the
URL (:mod:`._connection`).
"""

from ._connection import (
    ADDRESS,
    ENV_LIVE_REDIS_URL,
    FIELD,
    KEY_PREFIX,
    RedisLiveDecodeError,
    RedisLiveError,
    RedisLiveUnavailable,
    redacted,
    stream_key,
)
from ._publisher import (
    DEFAULT_EXPIRE_SECONDS,
    DEFAULT_FLUSH_INTERVAL,
    DEFAULT_MAX_FRAMES,
    MAX_FRAME_CHARS,
    RedisLivePublisher,
)
from ._subscriber import RedisLiveSubscriber

__all__ = [
    "ADDRESS",
    "DEFAULT_EXPIRE_SECONDS",
    "DEFAULT_FLUSH_INTERVAL",
    "DEFAULT_MAX_FRAMES",
    "ENV_LIVE_REDIS_URL",
    "FIELD",
    "KEY_PREFIX",
    "MAX_FRAME_CHARS",
    "RedisLiveDecodeError",
    "RedisLiveError",
    "RedisLivePublisher",
    "RedisLiveSubscriber",
    "RedisLiveUnavailable",
    "redacted",
    "stream_key",
]
