"""Mutable simulator state shared by the HTTP handlers and the Python API.

Kept apart from the aiohttp wiring so tests, handlers and the admin API all
go through one place for the fault queue, the request log, chaos mode and
waiting. Every config value has one checker here, used by the constructor,
the property setters and the admin API alike.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

from ._batch_state import BatchBehaviour, BatchStore
from ._faults import (
    CREATE_ONLY_FAULTS,
    ERROR_FAULTS,
    REATTACH_FAULTS,
    RESPONSES_ONLY_FAULTS,
    Fault,
)
from ._quotas import Admission, QuotaAsk, QuotaKeeper, Quotas
from ._records import RecordedRequest, ResponseRecord
from ._text import check_text_style

#: Rolling window of the rpm limiter, as OpenAI's requests-per-minute limit.
RPM_WINDOW_SECONDS = 60.0
#: How long a finished Responses-API response stays retrievable by default.
DEFAULT_RESPONSE_TTL = 600.0

#: Who is asking for a fault, and which fault names each may take from the head.
#: ``"generation"`` is chat, Anthropic and Gemini; ``"responses"`` is
#: ``POST /v1/responses``; ``"reattach"`` is ``GET /v1/responses/{id}?stream=true``.
_TAKES: dict[str, Callable[[str], bool]] = {
    "generation": lambda name: name not in RESPONSES_ONLY_FAULTS,
    "responses": lambda name: name not in REATTACH_FAULTS,
    "reattach": lambda name: name in REATTACH_FAULTS,
}
assert CREATE_ONLY_FAULTS <= RESPONSES_ONLY_FAULTS


@dataclass
class _Entry:
    fault: Fault
    remaining: int


class Choice(NamedTuple):
    """What one valid request gets: its fault, who refused it, and its quota decision.

    ``limiter`` is ``"rpm"`` when the simulator-wide ``rpm_limit`` refused it,
    ``"quota"`` when its key's :class:`Quotas` did, else None; ``admission``
    is None when the handler asked for no quota check.
    """

    fault: Fault | None
    limiter: str | None
    admission: Admission | None


def check_tps(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise ValueError(
            f"tokens_per_second must be a number >= 0 (0 means no pacing), got {value!r}"
        )
    return float(value)


def check_default_tokens(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"default_tokens must be an int >= 1, got {value!r}")
    return value


def check_fault_rate(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ValueError(f"fault_rate must be a number from 0 to 1, got {value!r}")
    return float(value)


def check_chaos_seed(value: object) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise ValueError(f"chaos_seed must be an int or null, got {value!r}")
    return value


def check_response_ttl(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise ValueError(f"response_ttl must be a number of seconds >= 0, got {value!r}")
    return float(value)


def check_rpm_limit(value: object) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"rpm_limit must be an int >= 1 or null (no limit), got {value!r}")
    return value


#: Config key -> checker; the admin API validates a whole update with these
#: before applying any of it.
CONFIG_CHECKS: dict[str, Callable[[Any], Any]] = {
    "tokens_per_second": check_tps,
    "default_tokens": check_default_tokens,
    "fault_rate": check_fault_rate,
    "chaos_seed": check_chaos_seed,
    "rpm_limit": check_rpm_limit,
    "text_style": check_text_style,
}


def _chaos_fault(rng: random.Random, n_tokens: int) -> Fault:
    """One of the failures real providers show most, cut somewhere in the answer."""
    after = rng.randrange(max(n_tokens, 1))
    kind = rng.randrange(5)
    if kind == 0:
        return Fault.disconnect(after_tokens=after)
    if kind == 1:
        return Fault.no_finish(after_tokens=after)
    if kind == 2:
        return Fault.malformed(after_tokens=after)
    return Fault.status(500 if kind == 3 else 503)


class SimulatorState:
    """Fault queue, request log and pacing config; single event loop only."""

    def __init__(
        self,
        tokens_per_second: float,
        default_tokens: int,
        *,
        fault_rate: float = 0.0,
        chaos_seed: int | None = None,
        rpm_limit: int | None = None,
        text_style: str = "words",
        response_ttl: float = DEFAULT_RESPONSE_TTL,
        quotas: Quotas | None = None,
        batch_behaviour: BatchBehaviour | None = None,
    ) -> None:
        self._tokens_per_second = check_tps(tokens_per_second)
        self._default_tokens = check_default_tokens(default_tokens)
        self._fault_rate = check_fault_rate(fault_rate)
        self._chaos_seed = check_chaos_seed(chaos_seed)
        # Owned by the state, never the global one: a seed replays the same faults.
        self._rng = random.Random(self._chaos_seed)
        self._rpm_limit = check_rpm_limit(rpm_limit)
        self._admitted: deque[float] = deque()  # monotonic times, last RPM window
        self.quota = QuotaKeeper()
        self.quota.quotas = quotas  # the setter checks it
        self.text_style = text_style
        self._script: deque[_Entry] = deque()
        self.requests: list[RecordedRequest] = []
        # Responses API: billing records, the live runs behind them (owned by
        # _responses; Any here to keep this module free of aiohttp shapes) and
        # the background generations that Simulator.stop() must cancel.
        self.response_ttl = check_response_ttl(response_ttl)
        self.responses: dict[str, ResponseRecord] = {}
        self.response_runs: dict[str, Any] = {}
        self.background: set[asyncio.Task[Any]] = set()
        self.response_ids = itertools.count()
        # Provider batch jobs (OpenAI, Anthropic, Gemini): see _batch_state.
        self.batches = BatchStore(batch_behaviour)
        # Swapped for a fresh Event on every change: waking all waiters without
        # needing a lock, and usable from sync code such as reset().
        self._changed = asyncio.Event()
        self._cut = asyncio.Event()
        self.stopping = False

    @property
    def tokens_per_second(self) -> float:
        return self._tokens_per_second

    @tokens_per_second.setter
    def tokens_per_second(self, value: float) -> None:
        self._tokens_per_second = check_tps(value)

    @property
    def default_tokens(self) -> int:
        return self._default_tokens

    @default_tokens.setter
    def default_tokens(self, value: int) -> None:
        self._default_tokens = check_default_tokens(value)

    @property
    def fault_rate(self) -> float:
        return self._fault_rate

    @fault_rate.setter
    def fault_rate(self, value: float) -> None:
        self._fault_rate = check_fault_rate(value)

    @property
    def chaos_seed(self) -> int | None:
        return self._chaos_seed

    @chaos_seed.setter
    def chaos_seed(self, value: int | None) -> None:
        """Setting it (even to the same value) restarts the random fault sequence."""
        self._chaos_seed = check_chaos_seed(value)
        self._rng = random.Random(self._chaos_seed)

    @property
    def rpm_limit(self) -> int | None:
        return self._rpm_limit

    @rpm_limit.setter
    def rpm_limit(self, value: int | None) -> None:
        self._rpm_limit = check_rpm_limit(value)

    @property
    def text_style(self) -> str:
        return self._text_style

    @text_style.setter
    def text_style(self, value: str) -> None:
        self._text_style = check_text_style(value)

    def config(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in CONFIG_CHECKS}

    def configure(self, **values: Any) -> None:
        """Check every value first, so a bad update changes nothing."""
        unknown = sorted(set(values) - set(CONFIG_CHECKS))
        if unknown:
            raise ValueError(f"unknown config keys: {', '.join(unknown)}")
        checked = {key: CONFIG_CHECKS[key](value) for key, value in values.items()}
        for key, value in checked.items():
            setattr(self, key, value)

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

    @property
    def generated_tokens(self) -> int:
        """Output tokens produced across every API, as a provider would bill them.

        Chat, Anthropic and Gemini generate while their client is connected,
        so theirs is what each request sent (a chat continuation counts only
        what it added); a Responses response counts what its generation
        produced, once, connected or not; a batch counts its answered items.
        """
        sent = sum(r.tokens_sent for r in self.requests if r.api != "responses")
        responses = sum(r.generated_tokens for r in self.responses.values())
        return sent + responses + self.batches.generated_tokens()

    def next_fault(self, consumer: str = "generation") -> Fault | None:
        """Take one ``times`` unit of the head, if ``consumer`` can use that fault."""
        if not self._script:
            return None
        entry = self._script[0]
        if not _TAKES[consumer](entry.fault.name):
            return None
        entry.remaining -= 1
        if entry.remaining <= 0:
            self._script.popleft()
        return entry.fault

    def choose_fault(
        self, n_tokens: int, consumer: str = "generation"
    ) -> tuple[Fault | None, bool]:
        """:meth:`choose` without quotas: the fault, and whether the rpm limiter chose it."""
        choice = self.choose(n_tokens, consumer)
        return choice.fault, choice.limiter == "rpm"

    def choose(
        self, n_tokens: int, consumer: str = "generation", ask: QuotaAsk | None = None
    ) -> Choice:
        """The fault for one valid request, and who decided it.

        A scripted fault wins: it still counts toward the rpm window and, unless
        it is an error reply, is charged to the key's quotas (into debt if it
        must), as the provider saw the request. Otherwise the rpm limiter, then
        the key's quotas may refuse the request; an admitted one may get a
        random fault at ``fault_rate`` with ``after_tokens`` within its
        ``n_tokens``-token answer.
        """
        scripted = self.next_fault(consumer)
        now = time.monotonic()
        window = self._admitted
        while window and window[0] <= now - RPM_WINDOW_SECONDS:
            window.popleft()
        if scripted is None and self._rpm_limit is not None and len(window) >= self._rpm_limit:
            # Like OpenAI's limiter: wait until the oldest request leaves the window.
            wait = window[-self._rpm_limit] + RPM_WINDOW_SECONDS - now
            peek = self.quota.admit(ask, charge=False) if ask is not None else None
            return Choice(Fault.rate_limit(retry_after=max(1, math.ceil(wait))), "rpm", peek)
        admission = None
        if ask is not None:
            charge = scripted is None or scripted.name not in ERROR_FAULTS
            admission = self.quota.admit(ask, enforce=scripted is None, charge=charge)
            if not admission.admitted:
                wait = admission.retry_after
                refusal = Fault.rate_limit(
                    retry_after=None if wait is None else max(1, math.ceil(wait)),
                    retry_after_ms=None if wait is None else max(1, math.ceil(wait * 1000)),
                )
                return Choice(refusal, "quota", admission)
        window.append(now)
        if scripted is not None:
            return Choice(scripted, None, admission)
        if self._fault_rate > 0 and self._rng.random() < self._fault_rate:
            return Choice(_chaos_fault(self._rng, n_tokens), None, admission)
        return Choice(None, None, admission)

    def finish(self, record: RecordedRequest) -> None:
        """A request's reply is over: count a 429, settle what its answer used.

        A Responses-API create is settled by its run instead, when generation
        ends: a background response goes on after its connection.
        """
        self.quota.count_reply(record.api_key, record.model, record.api, record.status)
        if record.api != "responses":
            used = record.prompt_tokens + record.tokens_sent
            self.quota.settle(record.api_key, record.model, record.quota_tokens, used)

    def choose_reattach_fault(self, n_events: int) -> Fault | None:
        """A re-attach's fault: a scripted re-attach fault, else maybe a chaos drop.

        Re-attaches do not count toward the rpm window; chaos mode drops the
        stream after a random number of its ``n_events`` (expected) events.
        """
        scripted = self.next_fault("reattach")
        if scripted is not None:
            return scripted
        if self._fault_rate > 0 and self._rng.random() < self._fault_rate:
            return Fault.reattach_drop(after_events=self._rng.randrange(max(n_events, 1)))
        return None

    def open_record(
        self, authorization: str | None, api: str = "openai", api_key: str | None = None
    ) -> RecordedRequest:
        index = len(self.requests)
        record = RecordedRequest(
            index=index,
            received_at=time.monotonic(),
            received_wall=time.time(),
            request_id=f"req_sim_{index}",
            api=api,
            authorization=authorization,
            api_key=api_key,
        )
        self.requests.append(record)
        self.notify()
        return record

    def reset(self) -> None:
        """Also restarts the chaos sequence from its seed, empties the rpm window, refills
        every quota bucket and zeroes the quota counters.

        Every Responses-API response is cancelled (ending the streams tailing
        it) and forgotten, as is every batch and file (the batch behaviour stays).
        """
        self._script.clear()
        self.requests = []
        for run in self.response_runs.values():
            run.cancel()  # ends the streams tailing it with a terminal event
        for task in self.background:
            task.cancel()
        self.background.clear()
        self.responses = {}
        self.response_runs = {}
        self.batches.reset()
        self._rng = random.Random(self._chaos_seed)
        self._admitted.clear()
        self.quota.reset()
        self._cut = asyncio.Event()  # bound to no event loop yet (a reused simulator)
        self.notify()

    def cut_stalls(self) -> None:
        """End every stall now as a dropped connection."""
        cut, self._cut = self._cut, asyncio.Event()
        cut.set()

    async def stall(self, seconds: float) -> bool:
        """Go silent for ``seconds``; True when the stall was cut short instead."""
        try:
            await asyncio.wait_for(self._cut.wait(), seconds)
        except asyncio.TimeoutError:
            return False
        return True

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
