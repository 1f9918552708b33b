"""Stopping answers a task no longer wants, and learning what they cost.

A background answer (OpenAI's Responses API) goes on generating, and billing,
after every connection to it is gone. The attempt that streams it stops it on a
cancel (``stop_stream``, ``stop_continuation``), but a task can give up on an
answer while no attempt runs: cancelled during the backoff between attempts,
failed for good while re-attaching, or moving on to a fallback model. The
workflow then runs this activity with the answers its ledger says may still be
generating; each is cancelled, and the provider's own count of what it
generated replaces the estimates.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Mapping

from ..core import Platform
from ..messages import AttemptBill, StopAnswers, StoppedAnswers
from ..pricing import PricingTable
from ..providers import Provider, ProviderStream

logger = logging.getLogger(__name__)

#: How long an attempt waits for the provider to confirm a stop (it goes on after).
STOP_TIMEOUT = 10.0


async def stop_quietly(stopping: Awaitable[None]) -> None:
    """Wait a while for a stop to be confirmed (it goes on after); never raises."""
    try:
        await asyncio.wait_for(asyncio.shield(stopping), STOP_TIMEOUT)
    except (Exception, asyncio.CancelledError) as exc:
        logger.warning("could not tell the provider to stop generating: %s", exc)


async def stop_continuation(provider: Provider, token: str) -> None:
    """Stop the answer an earlier attempt left generating; never raises."""
    cancel_continuation = getattr(provider, "cancel_continuation", None)
    if cancel_continuation is not None:
        await stop_quietly(cancel_continuation(token))


async def stop_stream(stream: ProviderStream) -> None:
    """Tell the provider to stop an answer nobody will read; never raises."""
    await stop_quietly(stream.cancel())


async def stop_answers(
    providers: Mapping[Platform, Provider], pricing: PricingTable, request: StopAnswers
) -> StoppedAnswers:
    """Cancel every answer at once; never raises for one that cannot be stopped."""
    bills = await asyncio.gather(*(_stop_one(providers, pricing, p) for p in request.answers))
    return StoppedAnswers(bills=[bill for bill in bills if bill is not None])


async def _stop_one(
    providers: Mapping[Platform, Provider], pricing: PricingTable, part: AttemptBill
) -> AttemptBill | None:
    platform = Platform(part.platform) if part.platform else Platform.CHATGPT
    stop = getattr(providers.get(platform), "stop_answer", None)
    if stop is None or part.response_id is None:
        logger.warning("no way to stop answer %s on %s", part.response_id, platform.value)
        return None
    usage = await stop(part.response_id)
    if usage is None:
        return None
    cost = pricing.cost(part.model, usage.prompt_tokens, usage.completion_tokens)
    return part.model_copy(
        update={
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "estimated": False,
            "cost": cost or 0.0,
            "outcome": "stopped",
            "cost_unknown": False,
        }
    )
