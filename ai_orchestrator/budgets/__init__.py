"""Named budgets shared by many tasks: a team's or a tenant's USD per UTC day.

A task names one (``TaskConstraints(budget="team-a")``); the workers know how
much each may spend (``AI_ORCHESTRATOR_BUDGETS="team-a:usd_per_day=5;..."``).
Every call reserves the most it can cost before it starts and settles its true
cost after it ends, so calls running at once never promise the same dollar
twice; a call the day's budget cannot start is refused with a clear error.

Where the days are kept is the store: ``LocalStore`` in the worker process (the
embedded default; several worker processes would each spend the whole budget)
or ``RedisStore``, shared by every worker (``AI_ORCHESTRATOR_BUDGETS_STORE`` set
to a ``redis://`` URL, or ``redis`` for the live channel's), one atomic script
per change. Both keep the same rules (``_store.Day``).
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import re
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol

from ..config import ConfigError
from ..core import BUDGET_NAME_PATTERN
from ..redis_urls import is_redis_url
from ._store import (
    DEFAULT_LEASE_SECONDS,
    GRANTED,
    REFUSED,
    WAIT,
    BudgetStoreUnavailable,
    Day,
    Decision,
    LocalStore,
    day_of,
)

logger = logging.getLogger(__name__)

#: ``"team-a:usd_per_day=5;tenant-b:usd_per_day=20"``: what each budget may spend a UTC day.
ENV_BUDGETS = "AI_ORCHESTRATOR_BUDGETS"
#: ``local`` (the default: this process's view), a ``redis://`` URL (shared by every
#: worker) or ``redis`` (the live channel's Redis, ``AI_ORCHESTRATOR_LIVE_REDIS_URL``).
ENV_BUDGETS_STORE = "AI_ORCHESTRATOR_BUDGETS_STORE"
_LIVE_REDIS_URL = "AI_ORCHESTRATOR_LIVE_REDIS_URL"
#: How often a call waiting for reservations in flight to settle asks again.
POLL_SECONDS = 0.5


class BudgetStore(Protocol):
    """Where budgets' days are kept; ``LocalStore`` and ``RedisStore`` keep the same rules."""

    lease_seconds: float

    async def reserve(
        self, budget: str, limit: float, want: float, least: float, lease: str
    ) -> Decision: ...

    async def renew(self, decision: Decision) -> bool: ...

    async def settle(self, decision: Decision, cost: float) -> None: ...

    async def standing(self, budget: str, day: str | None = None) -> tuple[float, float]: ...

    async def aclose(self) -> None: ...


def parse_budgets(text: str) -> dict[str, float]:
    """``"team-a:usd_per_day=5;tenant-b:usd_per_day=20"`` -> {name: USD a day}."""
    budgets: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        name, sep, setting = part.rpartition(":")
        key, eq, raw = setting.partition("=")
        try:
            value = float(raw)
        except ValueError:
            value = math.nan
        if not sep or not re.fullmatch(BUDGET_NAME_PATTERN, name):
            raise ConfigError(
                f"{ENV_BUDGETS}: {part!r} is not NAME:usd_per_day=N "
                "(a name of 1-64 letters, digits and . _ : -)"
            )
        if key.strip() != "usd_per_day" or not eq or not (0 < value < math.inf):
            raise ConfigError(
                f"{ENV_BUDGETS}: {setting!r} in {part!r} is not usd_per_day=N (N > 0)"
            )
        if name in budgets:
            raise ConfigError(f"{ENV_BUDGETS}: budget {name!r} is named twice")
        budgets[name] = value
    return budgets


class Budgets:
    """The budgets a worker knows, and the store their days are kept in."""

    def __init__(self, limits: Mapping[str, float], store: BudgetStore | None = None) -> None:
        self.limits = dict(limits)
        self.store: BudgetStore = store if store is not None else LocalStore()

    def __repr__(self) -> str:
        return f"Budgets({sorted(self.limits)}, {self.store!r})"

    async def reserve(
        self,
        name: str,
        want: float,
        least: float,
        while_waiting: Callable[[Decision], Awaitable[None]] | None = None,
    ) -> Decision:
        """Reserve up to ``want`` (at least ``least``) of today's ``name``: granted or
        refused. While calls in flight hold the room this one needs, it waits for
        them to settle, calling ``while_waiting`` between polls (which may raise)."""
        limit = self.limits[name]
        lease = uuid.uuid4().hex
        while True:
            asking = asyncio.ensure_future(self.store.reserve(name, limit, want, least, lease))
            try:
                decision = await asyncio.shield(asking)
            except asyncio.CancelledError:
                # The store may grant it all the same (its answer on the way): nobody
                # would settle that share, so it goes back as soon as it is known.
                asking.add_done_callback(self._give_back)
                raise
            if decision.outcome != WAIT:
                return decision
            if while_waiting is not None:
                await while_waiting(decision)
            await asyncio.sleep(POLL_SECONDS)

    def _give_back(self, asking: asyncio.Future[Decision]) -> None:
        """Settle at $0 a share granted to a call cancelled while it was asking."""
        if asking.cancelled() or asking.exception() is not None:
            return
        decision = asking.result()
        if decision.outcome == GRANTED:
            task = asyncio.ensure_future(self._settle_unused(decision))
            _giving_back.add(task)
            task.add_done_callback(_giving_back.discard)

    async def _settle_unused(self, decision: Decision) -> None:
        try:
            await self.store.settle(decision, 0.0)
        except Exception as exc:  # it is charged in full when its lease runs out
            logger.warning(
                "could not give back a share of named budget %r: %s", decision.budget, exc
            )

    async def aclose(self) -> None:
        await self.store.aclose()


#: Shares on their way back to the store (a task nobody holds may be collected).
_giving_back: set[asyncio.Future[None]] = set()


def budgets_from_env(env: Mapping[str, str] | None = None) -> Budgets | None:
    """The worker's budgets; None when it names none (a task naming one then fails)."""
    env = os.environ if env is None else env
    limits = parse_budgets(env.get(ENV_BUDGETS, ""))
    raw = env.get(ENV_BUDGETS_STORE, "").strip()
    if not limits:
        return None
    if raw.lower() in ("", "local"):
        return Budgets(limits, LocalStore())
    if raw.lower() == "redis":
        raw = env.get(_LIVE_REDIS_URL, "").strip()
        if not raw:
            raise ConfigError(
                f"{ENV_BUDGETS_STORE}=redis needs {_LIVE_REDIS_URL} (the Redis to share)"
            )
    if not is_redis_url(raw):  # never echoed: a URL may hold a password
        raise ConfigError(f"{ENV_BUDGETS_STORE} must be local, redis or a redis:// URL")
    from ._redis import RedisStore  # redis-py is an optional extra

    return Budgets(limits, RedisStore(raw))


__all__ = [
    "DEFAULT_LEASE_SECONDS",
    "ENV_BUDGETS",
    "ENV_BUDGETS_STORE",
    "GRANTED",
    "POLL_SECONDS",
    "REFUSED",
    "WAIT",
    "BudgetStore",
    "BudgetStoreUnavailable",
    "Budgets",
    "Day",
    "Decision",
    "LocalStore",
    "budgets_from_env",
    "day_of",
    "parse_budgets",
]
