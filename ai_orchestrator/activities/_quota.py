"""An attempt's place in its provider's quota: reserved before the call, settled after.

Every attempt used to react only to its own 429, so each refill woke every
waiting task and all but one were refused again. Now an attempt first reserves
what the provider will count (its prompt and its ``max_tokens``) on the limit
key, waiting in priority order while the key has no room (heartbeating, so a
cancel still reaches it, and using up no attempt), and afterwards gives the
limiter what the provider said: the limits in the answer's headers, and a
Retry-After, which holds every call on the key.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from ..core import Platform
from ..errors import DEADLINE_EXCEEDED, RATE_LIMITED
from ..limits import Lease, Limiter, limit_key, observe
from ..messages import AttemptState, CompletionRequest
from ..metrics import TaskMetrics
from ..providers import Provider, ProviderStream
from ._attempts import estimate_tokens
from ._pacing import LastBeat

logger = logging.getLogger(__name__)


def key_for(provider: Provider, platform: Platform, model: str) -> str:
    """Platform, the provider's address and account (a hash of its key), and model.

    A provider that knows how its vendor scopes quotas says so (``limit_scope``);
    otherwise its SDK client's ``base_url`` and ``api_key`` (OpenAI, Anthropic).
    """
    scope = getattr(provider, "limit_scope", None)
    if callable(scope):
        address, api_key = scope()
        return limit_key(platform.value, address, api_key, model)
    client: Any = getattr(provider, "_client", None)
    address = str(getattr(client, "base_url", "") or "")
    api_key = getattr(client, "api_key", None)
    return limit_key(platform.value, address, api_key if isinstance(api_key, str) else None, model)


async def reserve(
    limiter: Limiter,
    key: str,
    request: CompletionRequest,
    state: AttemptState,
    beat: LastBeat,
    *,
    prompt_chars: int,
    model: str,
    default_max_tokens: int,
    meter: Callable[[], TaskMetrics],
) -> Lease:
    """Wait for room on ``key``, then hold what the provider will count for this call."""
    constraints = request.task.effective_constraints
    tokens = estimate_tokens(prompt_chars) + (constraints.max_tokens or default_max_tokens)
    priority = getattr(activity.info().priority, "priority_key", None) or 3
    deadline = request.deadline_epoch

    waited = False

    async def waiting(seconds: float) -> None:
        nonlocal waited
        if deadline is not None and time.time() + seconds > deadline:
            raise ApplicationError(
                f"the provider's quota for {model} has no room for this call "
                f"({tokens} tokens) before the task's deadline",
                type=DEADLINE_EXCEEDED,
                non_retryable=True,
            )
        # Readers see the wait in the heartbeat (``TaskClient.describe_task``).
        state.waiting_for_capacity = round(max(seconds, 0.0), 1)
        waited = True
        beat.send(state)  # a cancel arrives with a heartbeat's answer

    try:
        lease = await limiter.acquire(
            key, tokens, model=model, priority=priority, while_waiting=waiting
        )
    finally:
        state.waiting_for_capacity = None
    if waited:
        # The wait's end, said now: the stream's own heartbeats start an interval
        # later (longer on a busy worker), and the SDK holds this one back only
        # until its throttle window closes.
        beat.send(state)
    meter().capacity_wait.record(lease.waited, {"model": model})
    meter().quota_tokens.add(tokens, {"model": model, "kind": "reserved"})
    return lease


def opened(limiter: Limiter, lease: Lease, stream: ProviderStream) -> None:
    """The answer started: its headers say where the key stands (ending a probe).

    Runs beside the stream, so a slow limiter never holds up the first chunk.
    """
    seen = observe(stream.response_headers(), time.time())

    async def tell() -> None:
        try:
            await limiter.observe(lease.key, seen, opened=True)
        except Exception:
            logger.exception("could not record the quota headers of an answer on %s", lease.key)

    task = asyncio.get_running_loop().create_task(tell())
    _telling.add(task)
    task.add_done_callback(_telling.discard)


#: Observations in flight (a task nobody holds may be collected before it runs).
_telling: set[asyncio.Task[None]] = set()


#: Longest an attempt holds its answer back while the limiter settles its call: a
#: limiter that does not answer (a stalled Redis) settles in the background instead,
#: or the attempt outlives its heartbeat timeout and its paid answer is lost.
SETTLE_WAIT = 0.2


async def settle(
    limiter: Limiter,
    lease: Lease,
    stream: ProviderStream,
    prompt_chars: int,
    error: BaseException | None,
    meter: Callable[[], TaskMetrics],
) -> None:
    """What the call took, what the provider says is left, and any wait it asked for.

    Never raises, and never holds the answer up for long (``SETTLE_WAIT``): the
    limiter's bookkeeping must not turn an answer into a failure.
    """
    task = asyncio.get_running_loop().create_task(
        _settle(limiter, lease, stream, prompt_chars, error, meter)
    )
    _telling.add(task)
    task.add_done_callback(_telling.discard)
    await asyncio.wait({task}, timeout=SETTLE_WAIT)  # a cancel here leaves it running


async def _settle(
    limiter: Limiter,
    lease: Lease,
    stream: ProviderStream,
    prompt_chars: int,
    error: BaseException | None,
    meter: Callable[[], TaskMetrics],
) -> None:
    try:
        usage = stream.usage
        used = (
            usage.prompt_tokens + usage.completion_tokens
            if usage is not None and not usage.estimated
            else (estimate_tokens(prompt_chars) + stream.chunks if stream.opened else 0)
        )
        await limiter.observe(lease.key, observe(stream.response_headers(), time.time()))
        await limiter.settle(lease, used)
        meter().quota_tokens.add(used, {"model": stream.model, "kind": "used"})
        if (
            isinstance(error, ApplicationError)
            and error.type == RATE_LIMITED
            and error.next_retry_delay is not None
        ):
            await limiter.pause(lease.key, error.next_retry_delay.total_seconds())
    except Exception:
        logger.exception("could not settle a call's quota reservation on %s", lease.key)
