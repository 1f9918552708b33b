"""The limiter shared by every worker process: the same rules as one process's,
kept in Redis, which we already deploy for the live channel.

Each worker keeping its own view of a key lets N workers spend N quotas: the 429
storm again, one level up. Here every reservation, every answer's headers and
every Retry-After land on one bucket per key, changed only by one atomic script
(``_lua.py``) on Redis's clock. Waiting calls stand in one line per key, in
priority order then arrival; a waiter calls back at least every second, so one
whose worker died leaves the line within ``WAITER_TTL``, and a reservation whose
worker died stops counting with its lease.

Redis being unreachable must not stop the work: a call then goes ahead
unreserved (reacting to its own 429 as before), and the worker says so in its log.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

try:
    import redis.asyncio as aioredis
    from redis.exceptions import RedisError
    from redis.exceptions import TimeoutError as RedisTimeoutError
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "the shared limiter needs redis-py: pip install 'temporal-ai-orchestrator[redis]'"
    ) from exc

from ..redis_urls import checked_url, redacted
from ._bucket import ARRIVAL_LAG, DEFAULT_LEASE_SECONDS, PROBE_SECONDS
from ._headers import Observed
from ._lua import SCRIPT
from ._types import Lease

logger = logging.getLogger(__name__)

KEY_PREFIX = "ai-orchestrator:limit:"
#: A waiting call calls back at least this often, or it is taken out of the line
#: (its worker died): the longest a dead waiter holds up the calls behind it.
WAITER_TTL = 10.0
#: Keys nobody used for this long are dropped by Redis itself.
IDLE_SECONDS = 86_400.0
#: Longest single nap while waiting, so a cancel or a freed turn is seen.
_MAX_NAP = 1.0
#: Connections one worker process keeps to Redis at most.
_CONNECTIONS = 32
#: How often an unreachable Redis is mentioned in the log.
_COMPLAIN_EVERY = 60.0
#: Longest one script call may take (it takes about a millisecond): a Redis that
#: accepts connections but does not answer counts as unreachable after this, not
#: after the socket's timeout, which is longer than an attempt's heartbeat timeout
#: (a call held past it is paid for on an attempt Temporal has given up on). Not
#: shorter: on a loaded worker, waiting for a pooled connection takes a while,
#: and every call that gives up goes out unreserved.
OP_TIMEOUT = 1.0


def _opt(value: float | None) -> str:
    return "" if value is None else repr(float(value))


class RedisLimiter:
    """Per-key buckets in Redis, learned from answers and configuration, shared."""

    def __init__(
        self,
        url: str,
        limits: dict[str, tuple[float | None, float | None]] | None = None,
        *,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        refund: bool = False,
        waiter_ttl: float = WAITER_TTL,
        op_timeout: float = OP_TIMEOUT,
        clock: Callable[[], float] | None = None,
        client: Any = None,
    ) -> None:
        self._url = checked_url(url, "the shared limiter's Redis URL")
        self._op_timeout = op_timeout
        self._limits = dict(limits or {})
        self._lease_seconds = lease_seconds
        self._refund = refund
        self._waiter_ttl = waiter_ttl
        #: None: Redis's clock (production); a function: the tests' clock.
        self._clock = clock
        # A worker runs many attempts at once: they queue for a bounded pool of
        # connections instead of opening one each (or failing past redis-py's cap).
        self._redis = client or aioredis.Redis(
            connection_pool=aioredis.BlockingConnectionPool.from_url(
                self._url,
                max_connections=_CONNECTIONS,
                timeout=10,
                socket_connect_timeout=2.0,
                socket_timeout=5.0,
            )
        )
        self._script = self._redis.register_script(SCRIPT)
        self._complained = 0.0

    def __repr__(self) -> str:
        return f"RedisLimiter({redacted(self._url)!r})"

    @staticmethod
    def keys(key: str) -> list[str]:
        """Redis keys of one limit key (hashed; one hash slot, for Redis Cluster)."""
        tag = hashlib.sha256(key.encode()).hexdigest()[:20]
        base = f"{KEY_PREFIX}{{{tag}}}:"
        return [base + part for part in ("state", "leases", "held", "line", "alive", "sizes")]

    async def _run(self, key: str, op: str, *args: object) -> Any:
        now = "" if self._clock is None else repr(self._clock())
        call = self._script(
            keys=self.keys(key),
            args=[op, now, PROBE_SECONDS, ARRIVAL_LAG, IDLE_SECONDS, *args],
        )
        try:
            return await asyncio.wait_for(call, self._op_timeout)
        except asyncio.TimeoutError:  # (redis-py drops the connection it cancelled)
            raise RedisTimeoutError(f"no answer within {self._op_timeout:g} s") from None

    def _complain(self, exc: BaseException) -> None:
        if time.monotonic() - self._complained >= _COMPLAIN_EVERY or not self._complained:
            self._complained = time.monotonic()
            logger.warning(
                "shared limiter: Redis at %s is unreachable (%s); calls go ahead unreserved",
                redacted(self._url),
                type(exc).__name__,
            )

    async def acquire(
        self,
        key: str,
        tokens: int,
        *,
        model: str = "",
        priority: int = 3,
        while_waiting: Callable[[float], Awaitable[None]] | None = None,
    ) -> Lease:
        tpm, rpm = self._limits.get(model, (None, None))
        waiter, lease_id = uuid.uuid4().hex, uuid.uuid4().hex
        started = time.monotonic()
        try:
            while True:
                try:
                    granted, wait, _rank = await self._run(
                        key,
                        "acquire",
                        waiter,
                        max(1, min(int(priority), 100)),
                        tokens,
                        lease_id,
                        self._lease_seconds,
                        _opt(tpm),
                        _opt(rpm),
                        "1" if self._refund else "0",
                        self._waiter_ttl,
                    )
                except RedisError as exc:
                    self._complain(exc)
                    return Lease(key, "", tokens, waited=time.monotonic() - started)
                if int(granted):
                    return Lease(key, lease_id, tokens, waited=time.monotonic() - started)
                seconds = float(wait)
                if while_waiting is not None:
                    await while_waiting(seconds)
                await asyncio.sleep(min(max(seconds, 0.05), _MAX_NAP))
        except BaseException:
            # Cancelled, or past the deadline: out of the line at once, not after the TTL.
            try:
                await asyncio.shield(self._run(key, "leave", waiter))
            except (RedisError, asyncio.CancelledError):
                pass
            raise

    async def _tell(self, key: str, op: str, *args: object) -> None:
        """A change no call waits for: with Redis unreachable it is dropped (and said
        in the log once a minute, like a call going ahead unreserved)."""
        try:
            await self._run(key, op, *args)
        except RedisError as exc:
            self._complain(exc)

    async def settle(self, lease: Lease, used: int | None) -> None:
        if lease.id:  # "": Redis was unreachable and nothing was reserved
            await self._tell(lease.key, "settle", lease.id, "" if used is None else used)

    async def observe(self, key: str, seen: Observed, *, opened: bool = False) -> None:
        if seen.empty and not opened:
            return
        await self._tell(
            key,
            "observe",
            "1" if opened else "0",
            _opt(seen.limit_tokens),
            _opt(seen.remaining_tokens),
            _opt(seen.limit_requests),
            _opt(seen.remaining_requests),
        )

    async def pause(self, key: str, seconds: float) -> None:
        await self._tell(key, "pause", repr(float(seconds)))

    async def state(self, key: str) -> dict[str, str]:
        """The key's bucket as Redis holds it (for tests and operators)."""
        raw = await self._run(key, "state")
        pairs = [v.decode() if isinstance(v, bytes) else str(v) for v in raw]
        return dict(zip(pairs[::2], pairs[1::2], strict=True))

    async def aclose(self) -> None:
        await self._redis.aclose()
