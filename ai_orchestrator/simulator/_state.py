"""Mutable simulator state shared by the HTTP handlers and the Python API.

Kept apart from the aiohttp wiring so tests, handlers and the admin API all
go through one place for the fault queue, the request log and waiting.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace

from ._faults import Fault
from ._records import RecordedRequest


@dataclass
class _Entry:
    fault: Fault
    remaining: int


def _check_tps(value: float) -> float:
    value = float(value)
    if value < 0:
        raise ValueError("tokens_per_second must be >= 0 (0 means no pacing)")
    return value


def _check_default_tokens(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"default_tokens must be an int >= 1, got {value!r}")
    return value


class SimulatorState:
    """Fault queue, request log and pacing config; single event loop only."""

    def __init__(self, tokens_per_second: float, default_tokens: int) -> None:
        self._tokens_per_second = _check_tps(tokens_per_second)
        self._default_tokens = _check_default_tokens(default_tokens)
        self._script: deque[_Entry] = deque()
        self.requests: list[RecordedRequest] = []
        # Swapped for a fresh Event on every change: waking all waiters without
        # needing a lock, and usable from sync code such as reset().
        self._changed = asyncio.Event()
        self.stopping = False

    @property
    def tokens_per_second(self) -> float:
        return self._tokens_per_second

    @tokens_per_second.setter
    def tokens_per_second(self, value: float) -> None:
        self._tokens_per_second = _check_tps(value)

    @property
    def default_tokens(self) -> int:
        return self._default_tokens

    @default_tokens.setter
    def default_tokens(self, value: int) -> None:
        self._default_tokens = _check_default_tokens(value)

    def token_delay(self) -> float:
        """Read per token, so a runtime speed change affects the next token."""
        tps = self._tokens_per_second
        return 1.0 / tps if tps > 0 else 0.0

    def script(self, *faults: Fault) -> None:
        for fault in faults:
            if not isinstance(fault, Fault):
                raise TypeError(f"expected Fault, got {type(fault).__name__}")
            self._script.append(_Entry(fault, fault.times))

    def pending(self) -> list[Fault]:
        """The queue as faults whose ``times`` is what is left of each entry."""
        return [replace(e.fault, times=e.remaining) for e in self._script]

    def next_fault(self) -> Fault | None:
        if not self._script:
            return None
        entry = self._script[0]
        entry.remaining -= 1
        if entry.remaining <= 0:
            self._script.popleft()
        return entry.fault

    def open_record(self, authorization: str | None) -> RecordedRequest:
        index = len(self.requests)
        record = RecordedRequest(
            index=index,
            received_at=time.monotonic(),
            received_wall=time.time(),
            request_id=f"req_sim_{index}",
            authorization=authorization,
        )
        self.requests.append(record)
        self.notify()
        return record

    def reset(self) -> None:
        self._script.clear()
        self.requests = []
        self.notify()

    def notify(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def wait_until(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate():
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
            event = self._changed
            try:
                await asyncio.wait_for(event.wait(), remaining)
            except asyncio.TimeoutError:
                if not predicate():
                    raise TimeoutError(f"timed out after {timeout}s waiting for {what}") from None
