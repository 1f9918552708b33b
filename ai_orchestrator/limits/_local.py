"""The limiter of one worker process: the embedded default, with no service to run.

Calls waiting on a key are served in priority order (Temporal's priority key,
1 first), then in order of arrival, and only the first in line may take what
refills: every refill waking every waiting call is the 429 storm this exists to
prevent. Waiting is not a fault: it uses up no attempt. Several worker processes
on one key need a shared limiter (see ``_redis``).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from ._bucket import DEFAULT_LEASE_SECONDS, Bucket
from ._headers import Observed
from ._types import Lease

#: Longest single sleep while waiting, so a cancel or a better-placed call is seen.
_MAX_NAP = 1.0


@dataclass(order=True)
class _Waiter:
    priority: int
    order: int
    tokens: int = field(compare=False)


class LocalLimiter:
    """Per-key buckets in this process, learned from answers and configuration."""

    def __init__(
        self,
        limits: dict[str, tuple[float | None, float | None]] | None = None,
        *,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        refund: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        #: Configured (tpm, rpm) by model, for providers that send no headers.
        self._limits = dict(limits or {})
        self._lease_seconds = lease_seconds
        self._refund = refund
        self._clock = clock
        self._buckets: dict[str, Bucket] = {}
        self._waiting: dict[str, list[_Waiter]] = {}
        self._order = itertools.count()

    def bucket(self, key: str, model: str = "") -> Bucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = Bucket(refund=self._refund, updated=self._clock())
            tpm, rpm = self._limits.get(model, (None, None))
            bucket.configure(tpm, rpm, self._clock())
        return bucket

    async def acquire(
        self,
        key: str,
        tokens: int,
        *,
        model: str = "",
        priority: int = 3,
        while_waiting: Callable[[float], Awaitable[None]] | None = None,
    ) -> Lease:
        """Wait until a call of ``tokens`` fits on ``key``, then reserve it.

        ``while_waiting(seconds_left)`` is called between naps (the activity
        heartbeats there, so a cancel reaches it); cancelling leaves the line.
        """
        bucket = self.bucket(key, model)
        line = self._waiting.setdefault(key, [])
        me = _Waiter(priority, next(self._order), tokens)
        heapq.heappush(line, me)
        started = self._clock()
        try:
            while True:
                now = self._clock()
                wait = bucket.wait(tokens, now)
                if line[0] is me and wait <= 0:
                    break
                if while_waiting is not None:
                    await while_waiting(wait)
                await asyncio.sleep(min(max(wait, 0.05), _MAX_NAP))
        finally:
            line.remove(me)
            heapq.heapify(line)
        now = self._clock()
        lease = Lease(key, f"{me.order}", tokens, waited=now - started)
        bucket.reserve(lease.id, tokens, now, self._lease_seconds)
        return lease

    async def settle(self, lease: Lease, used: int | None) -> None:
        self.bucket(lease.key).settle(lease.id, used, self._clock())

    async def observe(self, key: str, seen: Observed, *, opened: bool = False) -> None:
        self.bucket(key).observe(seen, self._clock(), opened=opened)

    async def pause(self, key: str, seconds: float) -> None:
        """A Retry-After one call saw holds every call on the key."""
        self.bucket(key).pause(self._clock() + seconds)
