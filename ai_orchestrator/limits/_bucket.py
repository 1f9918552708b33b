"""One limit key's capacity, as the provider counts it: pure, so it can be tested
without time and shared by the in-process and the shared limiters.

A provider counts a request's prompt plus its ``max_tokens`` against the
tokens-per-minute limit when the request arrives, and one against requests per
minute; both refill continuously over a minute. A call reserves that much here
first. What the provider reports on every answer corrects the view (capacity,
what remains), a Retry-After pauses the key, and a reservation whose worker died
expires with its lease, so no capacity leaks.

A key nobody has heard from yet lets one call go first (the probe) and holds
the others until its answer's headers say where the key stands: letting the
whole first burst through blind is a 429 for every call past the quota.
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
#: Longest a key with unknown limits holds calls behind its probe, should the
#: probe's answer be slow to start.
PROBE_SECONDS = 10.0


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
    #: While a probe is out on an unknown key, other calls wait until this time.
    probe_until: float = 0.0
    probe_lease: str = ""
    #: The provider sends no limits and none are configured: calls go unlimited.
    headerless: bool = False

    @property
    def unknown(self) -> bool:
        return self.tpm is None and self.rpm is None and not self.headerless

    def _end_probe(self) -> None:
        self.probe_until, self.probe_lease = 0.0, ""

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
        if self.unknown:
            waits.append(self.probe_until - now)
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
        if self.unknown and self.probe_until <= now:
            self.probe_until, self.probe_lease = now + PROBE_SECONDS, lease_id
        if self.tpm is not None:
            self.tokens -= tokens
        if self.rpm is not None:
            self.requests -= 1
        self.leases[lease_id] = Reservation(tokens, now + lease)

    def settle(self, lease_id: str, used: int | None, now: float) -> None:
        """The call ended; ``used``: the tokens it actually took (None: unknown)."""
        self._refill(now)
        held = self.leases.pop(lease_id, None)
        if lease_id == self.probe_lease:  # it ended without saying: the next call probes
            self._end_probe()
        if held is None or used is None or not self.refund or self.tpm is None:
            return
        self.tokens = min(self.tpm, self.tokens + max(0, held.tokens - used))

    def observe(self, seen: Observed, now: float, *, opened: bool = False) -> None:
        """The provider's own view: its limits, and never more left than it says.

        ``opened``: ``seen`` comes from an answer that started, so a key without
        limits in it has none to learn (a failed call's missing headers say nothing).
        """
        self._refill(now)
        if seen.empty:
            if opened and self.unknown:
                self.headerless = True
                self._end_probe()
            return
        self._end_probe()
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
