"""One limit key's capacity, as the provider counts it: pure, so it can be tested
without time and shared by the in-process and the shared limiters.

A provider counts a request's prompt plus its ``max_tokens`` against the
tokens-per-minute limit when the request arrives, and one against requests per
minute; both refill continuously over a minute. A call reserves that much here
first. What the provider reports on every answer corrects the view (capacity,
what remains), a Retry-After pauses the key, and a reservation whose worker died
expires with its lease, so no capacity leaks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ._headers import Observed

#: A reservation's lease: a call must settle within it, or it is given up.
DEFAULT_LEASE_SECONDS = 600.0
#: A call reaches the provider a little after it is reserved here, so the
#: provider's bucket runs that far behind ours: a call waiting for room waits for
#: this much more refill, or it arrives a few milliseconds early and is refused.
ARRIVAL_LAG = 0.25


@dataclass
class Reservation:
    tokens: int
    expires: float


@dataclass
class Bucket:
    """Capacity per minute (None: not known, not limited) and what is left of it."""

    tpm: float | None = None
    rpm: float | None = None
    tokens: float = 0.0
    requests: float = 0.0
    updated: float = 0.0
    paused_until: float = 0.0
    #: Unused tokens go back when a call settles (only where the provider does so).
    refund: bool = False
    leases: dict[str, Reservation] = field(default_factory=dict)

    def _refill(self, now: float) -> None:
        for lease_id, held in list(self.leases.items()):
            if held.expires <= now:  # its worker died: the provider counted it long ago
                del self.leases[lease_id]
        elapsed = max(0.0, now - self.updated)
        if self.tpm is not None:
            self.tokens = min(self.tpm, self.tokens + elapsed * self.tpm / 60.0)
        if self.rpm is not None:
            self.requests = min(self.rpm, self.requests + elapsed * self.rpm / 60.0)
        self.updated = now

    def configure(self, tpm: float | None, rpm: float | None, now: float) -> None:
        """Limits from configuration (a provider that sends no headers)."""
        self._refill(now)
        if tpm is not None and self.tpm is None:
            self.tpm, self.tokens = tpm, tpm
        if rpm is not None and self.rpm is None:
            self.rpm, self.requests = rpm, rpm

    def wait(self, tokens: int, now: float) -> float:
        """Seconds until a call of ``tokens`` fits (0: now)."""
        self._refill(now)
        waits = [self.paused_until - now]
        # A call fits when the bucket holds it plus the provider's lag behind us
        # (ARRIVAL_LAG of refill); one larger than the whole limit waits for a full
        # bucket, then goes.
        if self.tpm is not None:
            target = min(tokens + self.tpm / 60.0 * ARRIVAL_LAG, self.tpm)
            if self.tokens < target:
                waits.append((target - self.tokens) * 60.0 / self.tpm)
        if self.rpm is not None:
            target = min(1 + self.rpm / 60.0 * ARRIVAL_LAG, self.rpm)
            if self.requests < target:
                waits.append((target - self.requests) * 60.0 / self.rpm)
        return max(0.0, *waits)

    def reserve(self, lease_id: str, tokens: int, now: float, lease: float) -> None:
        self._refill(now)
        if self.tpm is not None:
            self.tokens -= tokens
        if self.rpm is not None:
            self.requests -= 1
        self.leases[lease_id] = Reservation(tokens, now + lease)

    def settle(self, lease_id: str, used: int | None, now: float) -> None:
        """The call ended; ``used``: the tokens it actually took (None: unknown)."""
        self._refill(now)
        held = self.leases.pop(lease_id, None)
        if held is None or used is None or not self.refund or self.tpm is None:
            return
        self.tokens = min(self.tpm, self.tokens + max(0, held.tokens - used))

    def observe(self, seen: Observed, now: float) -> None:
        """The provider's own view: its limits, and never more left than it says."""
        self._refill(now)
        if seen.limit_tokens:
            if self.tpm is None:
                self.tokens = float(seen.limit_tokens)
            self.tpm = float(seen.limit_tokens)
        if seen.remaining_tokens is not None and self.tpm is not None:
            self.tokens = min(self.tokens, float(seen.remaining_tokens))
        if seen.limit_requests:
            if self.rpm is None:
                self.requests = float(seen.limit_requests)
            self.rpm = float(seen.limit_requests)
        if seen.remaining_requests is not None and self.rpm is not None:
            self.requests = min(self.requests, float(seen.remaining_requests))

    def pause(self, until: float) -> None:
        """A Retry-After: nobody calls on this key before ``until``."""
        self.paused_until = max(self.paused_until, until)
