"""Named budgets shared by every worker process: ``Day``'s rules in one Redis script.

Each worker keeping its own day of a budget would let N workers spend N budgets.
Here every reservation, renewal and settlement of a budget's day is one atomic
script run on four keys (one hash slot, for Redis Cluster), which expire
``KEEP_SECONDS`` after the day ends. Lease expiries use Redis's clock, so workers
whose clocks disagree still agree on whose reservation went silent; the day a
call counts against is its worker's UTC day.

Redis being unreachable never lets a call go ahead unbudgeted: reserving raises
(the activity then retries until the task's deadline), and a settlement that
cannot be written leaves the reservation to be charged in full when its lease
runs out.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

try:
    import redis.asyncio as aioredis
    from redis.exceptions import RedisError
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "named budgets in Redis need redis-py: pip install 'temporal-ai-orchestrator[redis]'"
    ) from exc

from ..redis_urls import checked_url, redacted
from ._store import (
    DEFAULT_LEASE_SECONDS,
    NANO,
    BudgetStoreUnavailable,
    Decision,
    day_of,
    kept_until,
    nanos,
)

KEY_PREFIX = "ai-orchestrator:budget:"
#: Connections one worker process keeps to Redis at most.
_CONNECTIONS = 16

#: KEYS: state (hash: spent, held), leases (zset: lease -> expiry), held (hash:
#: lease -> grant), charged (hash: lease -> grant charged when its lease ran out).
#: ARGV: op, now ("" = Redis's clock), when the keys may be dropped, then the op's own.
SCRIPT = r"""
local state, leases, held, charged = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local op = ARGV[1]
local now
if ARGV[2] ~= '' then
  now = tonumber(ARGV[2])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local drop_at = ARGV[3]
local function f(x) return string.format('%.17g', x) end
local function n(x) return string.format('%.0f', x) end

local spent = tonumber(redis.call('HGET', state, 'spent') or '0')
local holding = tonumber(redis.call('HGET', state, 'held') or '0')

for _, id in ipairs(redis.call('ZRANGEBYSCORE', leases, '-inf', f(now))) do
  local grant = tonumber(redis.call('HGET', held, id) or '0')
  redis.call('ZREM', leases, id)
  redis.call('HDEL', held, id)
  redis.call('HSET', charged, id, n(grant))
  holding = holding - grant
  spent = spent + grant
end

local result
if op == 'reserve' then
  local limit, want, least = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
  local id, lease_seconds = ARGV[7], tonumber(ARGV[8])
  local left = limit - spent - holding
  local outcome, grant = 'granted', 0
  if left >= want then
    grant = want
  elseif holding > 0 and limit - spent >= least then
    outcome = 'wait'
  elseif left >= least then
    grant = left
  else
    outcome = 'refused'
  end
  result = {outcome, n(grant), n(spent), n(holding)}
  if outcome == 'granted' then
    redis.call('ZADD', leases, f(now + lease_seconds), id)
    redis.call('HSET', held, id, n(grant))
    holding = holding + grant
  end
elseif op == 'renew' then
  local id, lease_seconds = ARGV[4], tonumber(ARGV[5])
  result = 0
  if redis.call('ZSCORE', leases, id) then
    redis.call('ZADD', leases, f(now + lease_seconds), id)
    result = 1
  end
elseif op == 'settle' then
  local id, cost = ARGV[4], tonumber(ARGV[5])
  local grant = redis.call('HGET', held, id)
  local was_charged = redis.call('HGET', charged, id)
  if grant then
    redis.call('ZREM', leases, id)
    redis.call('HDEL', held, id)
    holding = holding - tonumber(grant)
    spent = spent + cost
  elseif was_charged then
    redis.call('HDEL', charged, id)
    spent = spent + cost - tonumber(was_charged)
  end
  result = 1
else
  result = {n(spent), n(holding)}
end
redis.call('HSET', state, 'spent', n(spent), 'held', n(holding))
for _, key in ipairs(KEYS) do redis.call('EXPIREAT', key, drop_at) end
return result
"""


class RedisStore:
    """Budgets' days in Redis, shared by every worker that names the same server."""

    def __init__(
        self,
        url: str,
        *,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        clock: Callable[[], float] | None = None,
        client: Any = None,
    ) -> None:
        self._url = checked_url(url, "the named budgets' Redis URL")
        self.lease_seconds = lease_seconds
        #: None: the worker's clock for the day, Redis's for leases (production);
        #: a function: the tests' clock for both.
        self._clock = clock
        # A worker runs many calls at once: they queue for a bounded pool of
        # connections instead of opening one each (as the shared limiter does).
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

    def __repr__(self) -> str:
        return f"RedisStore({redacted(self._url)!r})"

    @staticmethod
    def keys(budget: str, day: str) -> list[str]:
        base = f"{KEY_PREFIX}{{{budget}:{day}}}:"
        return [base + part for part in ("state", "leases", "held", "charged")]

    async def _run(self, budget: str, day: str | None, op: str, *args: object) -> Any:
        now = time.time() if self._clock is None else self._clock()
        day = day or day_of(now)
        clock = "" if self._clock is None else repr(now)
        try:
            return day, await self._script(
                keys=self.keys(budget, day), args=[op, clock, int(kept_until(day)), *args]
            )
        except RedisError as exc:  # worded without the URL: it may hold a password
            raise BudgetStoreUnavailable(
                f"the named budgets' Redis at {redacted(self._url)} is unreachable "
                f"({type(exc).__name__})"
            ) from None

    async def reserve(
        self, budget: str, limit: float, want: float, least: float, lease: str
    ) -> Decision:
        day, (outcome, grant, spent, held) = await self._run(
            budget,
            None,
            "reserve",
            nanos(limit),
            nanos(want),
            nanos(least),
            lease,
            self.lease_seconds,
        )
        return Decision(
            outcome.decode() if isinstance(outcome, bytes) else str(outcome),
            budget,
            day,
            lease,
            int(grant) / NANO,
            int(spent) / NANO,
            int(held) / NANO,
            limit,
        )

    async def renew(self, decision: Decision) -> bool:
        _, renewed = await self._run(
            decision.budget, decision.day, "renew", decision.lease, self.lease_seconds
        )
        return bool(int(renewed))

    async def settle(self, decision: Decision, cost: float) -> None:
        await self._run(decision.budget, decision.day, "settle", decision.lease, nanos(cost))

    async def standing(self, budget: str, day: str | None = None) -> tuple[float, float]:
        """The day's spend and what calls in flight hold (USD); today unless ``day``."""
        _, (spent, held) = await self._run(budget, day, "standing")
        return int(spent) / NANO, int(held) / NANO

    async def aclose(self) -> None:
        await self._redis.aclose()
