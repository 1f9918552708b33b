"""A named budget's day: the rules, and the store one worker process keeps them in.

Amounts are whole nano-dollars, so the Redis script (``_redis.py``), which does
the same arithmetic in Lua's doubles, gives the same answers to the nano-dollar
(``tests/unit/test_named_budgets.py`` runs both on the same operations).

One day of one budget holds what was *spent* (settled calls' true costs, and
the reservations of calls that went silent, in full) and what is *held* by
calls in flight. A call asks for the most it can cost (``want``) and the least
worth starting (``least``: its prompt and one chunk):

* it is granted ``want`` when that much is left;
* it waits while calls in flight hold the room it needs and what is not yet
  spent would still let it start: they may leave room when they settle (a
  budget is spent when it is spent, not while it is reserved);
* it is granted what is left, less than it wants, once nothing is held;
* it is refused when even ``least`` no longer fits.

A reservation is a lease: the call renews it while it runs and settles it with
its true cost when it ends. One that is not renewed in time (its worker was
killed) is charged in full: what the provider billed it is unknown, and the
grant is the most it could have been. Should the call turn out to be alive after
all, its settlement replaces that charge with its true cost.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timezone

NANO = 1_000_000_000
DAY_SECONDS = 86_400
#: A day's record is kept this long after the day ends (late settlements, operators).
KEEP_SECONDS = 2 * DAY_SECONDS
#: A reservation not renewed for this long is charged in full (its worker died).
DEFAULT_LEASE_SECONDS = 60.0

GRANTED, WAIT, REFUSED = "granted", "wait", "refused"


def nanos(usd: float) -> int:
    return round(usd * NANO)


def day_of(now: float) -> str:
    """The UTC day of ``now``, ``YYYY-MM-DD``."""
    return datetime.fromtimestamp(now, timezone.utc).date().isoformat()


def kept_until(day: str) -> float:
    """When a day's record may be dropped: ``KEEP_SECONDS`` after the day ends."""
    start = datetime.combine(date.fromisoformat(day), datetime.min.time(), timezone.utc)
    return start.timestamp() + DAY_SECONDS + KEEP_SECONDS


class BudgetStoreUnavailable(ConnectionError):
    """The shared store cannot be reached: no call may go ahead unbudgeted."""


@dataclass(frozen=True)
class Decision:
    """The answer to one reservation, and where the budget's day stood then."""

    outcome: str  # GRANTED, WAIT or REFUSED
    budget: str
    day: str
    lease: str
    #: What the call may spend (USD); 0 unless granted.
    granted: float
    #: The day's spend and what calls in flight held, before this call (USD).
    spent: float
    held: float
    limit: float


@dataclass
class Day:
    """One budget's day, in nano-dollars: the rules both stores keep."""

    spent: int = 0
    held: int = 0
    #: Live reservations: lease -> (grant, expiry).
    leases: dict[str, tuple[int, float]] = field(default_factory=dict)
    #: Reservations charged in full when their lease ran out: lease -> grant.
    charged: dict[str, int] = field(default_factory=dict)

    def expire(self, now: float) -> None:
        for lease, (grant, expiry) in list(self.leases.items()):
            if expiry <= now:
                del self.leases[lease]
                self.charged[lease] = grant
                self.held -= grant
                self.spent += grant

    def reserve(
        self, now: float, limit: int, want: int, least: int, lease: str, lease_seconds: float
    ) -> tuple[str, int]:
        self.expire(now)
        left = limit - self.spent - self.held
        if left >= want:
            grant = want
        elif self.held > 0 and limit - self.spent >= least:
            return WAIT, 0
        elif left >= least:
            grant = left
        else:
            return REFUSED, 0
        self.leases[lease] = (grant, now + lease_seconds)
        self.held += grant
        return GRANTED, grant

    def renew(self, now: float, lease: str, lease_seconds: float) -> bool:
        self.expire(now)
        if lease not in self.leases:
            return False
        self.leases[lease] = (self.leases[lease][0], now + lease_seconds)
        return True

    def settle(self, now: float, lease: str, cost: int) -> None:
        self.expire(now)
        if lease in self.leases:
            grant, _ = self.leases.pop(lease)
            self.held -= grant
            self.spent += cost
        elif lease in self.charged:  # charged in full while it was still running
            self.spent += cost - self.charged.pop(lease)


class LocalStore:
    """Every budget's days in this process: the embedded default.

    Each worker process keeping its own days lets N workers spend N budgets:
    several worker processes need the Redis store.
    """

    def __init__(
        self,
        *,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.lease_seconds = lease_seconds
        self._clock = clock
        self._days: dict[tuple[str, str], tuple[Day, float]] = {}

    def __repr__(self) -> str:
        return "LocalStore()"

    def _day(self, budget: str, day: str | None = None) -> tuple[str, Day]:
        now = self._clock()
        for key in [k for k, (_, until) in self._days.items() if until <= now]:
            del self._days[key]  # a day nobody settles any more
        day = day or day_of(now)
        record, _ = self._days.setdefault((budget, day), (Day(), kept_until(day)))
        record.expire(now)
        return day, record

    async def reserve(
        self, budget: str, limit: float, want: float, least: float, lease: str
    ) -> Decision:
        day, record = self._day(budget)
        spent, held = record.spent / NANO, record.held / NANO
        outcome, grant = record.reserve(
            self._clock(), nanos(limit), nanos(want), nanos(least), lease, self.lease_seconds
        )
        return Decision(outcome, budget, day, lease, grant / NANO, spent, held, limit)

    async def renew(self, decision: Decision) -> bool:
        _, record = self._day(decision.budget, decision.day)
        return record.renew(self._clock(), decision.lease, self.lease_seconds)

    async def settle(self, decision: Decision, cost: float) -> None:
        _, record = self._day(decision.budget, decision.day)
        record.settle(self._clock(), decision.lease, nanos(cost))

    async def standing(self, budget: str, day: str | None = None) -> tuple[float, float]:
        """The day's spend and what calls in flight hold (USD); today unless ``day``."""
        _, record = self._day(budget, day)
        return record.spent / NANO, record.held / NANO

    async def aclose(self) -> None:
        return None
