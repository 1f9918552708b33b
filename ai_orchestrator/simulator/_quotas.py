"""Per-key quotas as providers enforce them: requests and tokens per minute, as token buckets.

Providers scope a limit to the credential and the model (OpenAI per
organisation/project and model, Anthropic per organisation and model class,
Gemini per project and model); here the credential is the API key a request
carries, so two keys, or two models on one key, never share a bucket.

A request is charged when it arrives, before anything is generated: 1 against
RPM, and its prompt plus the most it may generate (``max_tokens`` or the API's
equivalent, :attr:`Quotas.default_max_tokens` when absent) against TPM. That
is how OpenAI estimates a request, and how Anthropic charges output tokens up
front, so a burst of requests with a large ``max_tokens`` is refused even if
their answers would be short; a client that wants to fit more must ask for
less. Anthropic then gives back what the answer did not use;
:attr:`Quotas.refund_unused` does the same, off by default.

Buckets refill continuously (capacity per 60 s, never above capacity) rather
than emptying at a minute boundary, as both OpenAI and Anthropic describe
theirs, so "when would this fit" has an exact answer: the Retry-After of a
refusal. A request larger than the bucket itself can never fit and is refused
without one.

Nothing here knows HTTP: :mod:`._quota_replies` renders a decision in each
API's headers and bodies. Single event loop only, like the rest of the state.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

#: Buckets refill their whole capacity over this many seconds (per-minute limits).
QUOTA_WINDOW_SECONDS = 60.0
#: What a request without ``max_tokens`` is charged for its answer.
DEFAULT_MAX_TOKENS = 4096
#: The fields of :class:`Quotas` other than ``models``, as the admin API spells them.
_SCALAR_KEYS = ("rpm", "tpm", "refund_unused", "default_max_tokens")
#: Slack for float rounding: a request that waited exactly its Retry-After fits.
_EPSILON = 1e-6


def _check_limit(name: str, value: object) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"{name} must be an int >= 1 or null (no limit), got {value!r}")
    return value


@dataclass(frozen=True)
class QuotaLimits:
    """One model's override; a field left None inherits the default of :class:`Quotas`."""

    rpm: int | None = None
    tpm: int | None = None

    def __post_init__(self) -> None:
        _check_limit("rpm", self.rpm)
        _check_limit("tpm", self.tpm)


@dataclass(frozen=True)
class Quotas:
    """What each (API key, model) may use per minute; None means no such limit.

    ``models`` overrides ``rpm``/``tpm`` for the models it names (exact model
    ids, as the request sends them).
    """

    rpm: int | None = None
    tpm: int | None = None
    models: Mapping[str, QuotaLimits] = field(default_factory=dict)
    refund_unused: bool = False
    default_max_tokens: int = DEFAULT_MAX_TOKENS

    def __post_init__(self) -> None:
        _check_limit("rpm", self.rpm)
        _check_limit("tpm", self.tpm)
        if not isinstance(self.models, Mapping) or not all(
            isinstance(k, str) and isinstance(v, QuotaLimits) for k, v in self.models.items()
        ):
            raise ValueError("models must map model ids to QuotaLimits")
        if not isinstance(self.refund_unused, bool):
            raise ValueError(f"refund_unused must be a boolean, got {self.refund_unused!r}")
        tokens = self.default_max_tokens
        if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 1:
            raise ValueError(f"default_max_tokens must be an int >= 1, got {tokens!r}")

    def limits_for(self, model: str) -> QuotaLimits:
        override = self.models.get(model)
        if override is None:
            return QuotaLimits(self.rpm, self.tpm)
        return QuotaLimits(
            self.rpm if override.rpm is None else override.rpm,
            self.tpm if override.tpm is None else override.tpm,
        )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["models"] = {model: asdict(limits) for model, limits in self.models.items()}
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Quotas:
        """Strict, for the admin API: unknown keys are an error, so typos fail loudly."""
        if not isinstance(data, Mapping):
            raise ValueError(f"quotas must be a JSON object or null, got {data!r}")
        unknown = sorted(set(data) - {"models", *_SCALAR_KEYS})
        if unknown:
            raise ValueError(f"unknown quotas keys: {', '.join(unknown)}")
        models = data.get("models") or {}
        if not isinstance(models, Mapping):
            raise ValueError("quotas models must map model ids to {rpm, tpm}")
        parsed: dict[str, QuotaLimits] = {}
        for model, limits in models.items():
            if not isinstance(limits, Mapping) or set(limits) - {"rpm", "tpm"}:
                raise ValueError(f"quotas models[{model!r}] must be an object of rpm and tpm")
            parsed[model] = QuotaLimits(limits.get("rpm"), limits.get("tpm"))
        fields = {key: data[key] for key in _SCALAR_KEYS if key in data}
        return cls(models=parsed, **fields)


def parse_model_limits(spec: str) -> tuple[str, QuotaLimits]:
    """The CLI's form: ``"gpt-4o:rpm=500,tpm=30000"`` -> ``("gpt-4o", QuotaLimits(500, 30000))``."""
    model, sep, rest = spec.rpartition(":")
    if not sep or not model or not rest:
        raise ValueError(f"expected MODEL:rpm=N,tpm=N, got {spec!r}")
    values: dict[str, int] = {}
    for item in rest.split(","):
        key, eq, raw = item.partition("=")
        key = key.strip()
        if not eq or key not in ("rpm", "tpm") or not raw.strip().isdigit():
            raise ValueError(f"expected MODEL:rpm=N,tpm=N, got {spec!r}")
        values[key] = int(raw)
    return model, QuotaLimits(values.get("rpm"), values.get("tpm"))


class _Bucket:
    """``capacity`` units refilled continuously over :data:`QUOTA_WINDOW_SECONDS`.

    The level may go below zero when a request is charged without being
    checked (a scripted fault let it through); refill pays the debt first.
    """

    def __init__(self, capacity: int, now: float) -> None:
        self.capacity = capacity
        self.level = float(capacity)
        self._at = now

    @property
    def rate(self) -> float:
        return self.capacity / QUOTA_WINDOW_SECONDS

    def refill(self, now: float) -> None:
        self.level = min(self.capacity, self.level + max(0.0, now - self._at) * self.rate)
        self._at = now

    def wait(self, amount: int) -> float:
        """Seconds until ``amount`` fits (0 if it does now; inf if it never can)."""
        if amount > self.capacity:
            return math.inf
        return max(0.0, (amount - self.level) / self.rate - _EPSILON)

    def view(self) -> BucketView:
        return BucketView(
            limit=self.capacity,
            remaining=max(0, math.floor(self.level + _EPSILON)),
            reset_seconds=max(0.0, (self.capacity - self.level) / self.rate),
        )


@dataclass(frozen=True)
class BucketView:
    """One limit as the headers report it: ``reset_seconds`` until the bucket is full again."""

    limit: int
    remaining: int
    reset_seconds: float


@dataclass(frozen=True)
class QuotaAsk:
    """What one arriving request would cost its (key, model); ``max_tokens`` None if not sent."""

    api_key: str | None
    model: str
    prompt_tokens: int
    max_tokens: int | None


@dataclass(frozen=True)
class Admission:
    """The quota decision for one request, and its buckets as they stand after it.

    ``tokens`` is what the request costs (prompt plus its answer's maximum);
    ``charged`` is what was taken (0 when refused or let through uncounted).
    A refusal names the limit (``"requests"`` or ``"tokens"``) and says when
    the request would fit; ``retry_after`` is None when it never can (larger
    than the bucket). ``requests``/``tokens_view`` are None where no limit applies.
    """

    admitted: bool
    tokens: int
    charged: int
    refused_by: str | None
    retry_after: float | None
    requests: BucketView | None
    tokens_view: BucketView | None


@dataclass
class QuotaUsage:
    """What one (API key, model) did, for tests and benchmarks; counted with or without quotas.

    ``rate_limited`` counts every 429 answered to it (quotas, the simulator's
    ``rpm_limit`` or a scripted fault), ``rate_limited_by_api`` splits them by
    API, ``quota_refusals`` is how many of them these quotas decided.
    ``tokens_reserved`` sums what admitted requests were charged (prompt plus
    their answers' maximum), ``tokens_used`` what they then used (prompt plus
    the tokens generated), ``tokens_refunded`` what was given back.
    """

    api_key: str | None
    model: str
    requests: int = 0
    rate_limited: int = 0
    rate_limited_by_api: dict[str, int] = field(default_factory=dict)
    quota_refusals: int = 0
    tokens_reserved: int = 0
    tokens_used: int = 0
    tokens_refunded: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class QuotaKeeper:
    """Buckets and counters per (API key, model), under one :class:`Quotas` config."""

    def __init__(self, quotas: Quotas | None = None) -> None:
        self._quotas = quotas
        self._buckets: dict[tuple[str | None, str, str], _Bucket] = {}
        self.usage: dict[tuple[str | None, str], QuotaUsage] = {}

    @property
    def quotas(self) -> Quotas | None:
        return self._quotas

    @quotas.setter
    def quotas(self, value: Quotas | None) -> None:
        """New limits start from full buckets; the counters are kept."""
        if value is not None and not isinstance(value, Quotas):
            raise ValueError(f"quotas must be a Quotas or None, got {value!r}")
        self._quotas = value
        self._buckets.clear()

    def usage_for(self, api_key: str | None, model: str) -> QuotaUsage:
        key = (api_key, model)
        if key not in self.usage:
            self.usage[key] = QuotaUsage(api_key, model)
        return self.usage[key]

    def _bucket(
        self, api_key: str | None, model: str, kind: str, limit: int | None, now: float
    ) -> _Bucket | None:
        if limit is None:
            return None
        key = (api_key, model, kind)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(limit, now)
        bucket.refill(now)
        return bucket

    def admit(self, ask: QuotaAsk, *, enforce: bool = True, charge: bool = True) -> Admission:
        """Charge ``ask`` if it fits; ``enforce=False`` charges it regardless (into debt).

        ``charge=False`` only looks: what the headers of an answer that
        generates nothing (a scripted error, an ``rpm_limit`` refusal) report.
        """
        now = time.monotonic()
        quotas = self._quotas
        max_tokens = ask.max_tokens
        if max_tokens is None:
            max_tokens = quotas.default_max_tokens if quotas else DEFAULT_MAX_TOKENS
        tokens = ask.prompt_tokens + max_tokens
        limits = quotas.limits_for(ask.model) if quotas else QuotaLimits()
        requests = self._bucket(ask.api_key, ask.model, "requests", limits.rpm, now)
        token_bucket = self._bucket(ask.api_key, ask.model, "tokens", limits.tpm, now)
        asks = (("requests", requests, 1), ("tokens", token_bucket, tokens))
        waits = {name: bucket.wait(n) for name, bucket, n in asks if bucket is not None}
        refused_by = None
        if enforce and charge and any(w > 0 for w in waits.values()):
            # The limit that keeps it out longest is the one to name.
            refused_by = max(waits, key=lambda name: (waits[name], name == "tokens"))
        usage = self.usage_for(ask.api_key, ask.model)
        if charge and refused_by is None:
            for bucket, amount in ((requests, 1), (token_bucket, tokens)):
                if bucket is not None:
                    bucket.level -= amount
            usage.requests += 1
            usage.tokens_reserved += tokens
        if refused_by is not None:
            usage.quota_refusals += 1
        wait = max(waits.values(), default=0.0)
        return Admission(
            admitted=refused_by is None,
            tokens=tokens,
            charged=tokens if charge and refused_by is None else 0,
            refused_by=refused_by,
            retry_after=None if refused_by is None or math.isinf(wait) else wait,
            requests=requests.view() if requests is not None else None,
            tokens_view=token_bucket.view() if token_bucket is not None else None,
        )

    def settle(self, api_key: str | None, model: str, charged: int, used: int) -> None:
        """The answer is over: count what it used, and refund the rest if configured."""
        if charged <= 0:
            return
        usage = self.usage_for(api_key, model)
        usage.tokens_used += used
        quotas = self._quotas
        unused = charged - used
        if quotas is None or not quotas.refund_unused or unused <= 0:
            return
        bucket = self._buckets.get((api_key, model, "tokens"))
        if bucket is not None:
            bucket.refill(time.monotonic())
            bucket.level = min(bucket.capacity, bucket.level + unused)
        usage.tokens_refunded += unused

    def count_reply(self, api_key: str | None, model: str, api: str, status: int) -> None:
        if status != 429:
            return
        usage = self.usage_for(api_key, model)
        usage.rate_limited += 1
        usage.rate_limited_by_api[api] = usage.rate_limited_by_api.get(api, 0) + 1

    def reset(self) -> None:
        """Full buckets and zero counters; the config is kept."""
        self._buckets.clear()
        self.usage = {}
