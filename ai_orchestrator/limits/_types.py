"""What the activity holds of a limiter: one shape for the per-process limiter and
the one shared by every worker, so the activity does not know which it has."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from ._headers import Observed


@dataclass
class Lease:
    """A reservation a call must settle (or let expire)."""

    key: str
    id: str
    tokens: int
    waited: float = 0.0


class Limiter(Protocol):
    async def acquire(
        self,
        key: str,
        tokens: int,
        *,
        model: str = "",
        priority: int = 3,
        while_waiting: Callable[[float], Awaitable[None]] | None = None,
    ) -> Lease:
        """Wait until a call of ``tokens`` fits on ``key`` (first in line), then reserve it.

        ``while_waiting(seconds_left)`` is called between naps (the activity
        heartbeats there, so a cancel reaches it); cancelling leaves the line.
        """
        ...

    async def settle(self, lease: Lease, used: int | None) -> None:
        """The call ended; ``used``: the tokens it took (None: unknown)."""
        ...

    async def observe(self, key: str, seen: Observed, *, opened: bool = False) -> None:
        """What an answer's headers say of ``key`` (``opened``: the answer started)."""
        ...

    async def pause(self, key: str, seconds: float) -> None:
        """A Retry-After one call saw holds every call on the key."""
        ...
