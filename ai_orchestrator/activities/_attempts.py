"""What one attempt knows about the attempts before it, and what it leaves to the next.

Temporal retries the provider activity on its own; the only thing an attempt
inherits is the last heartbeat any earlier attempt recorded. That is enough to
keep two promises that span attempts:

* **Bounded provider faults, unbounded patience.** Only provider faults (5xx,
  broken streams, connection failures) count against ``RetrySettings.max_attempts``;
  an attempt lost with its worker, handed over at shutdown, or waiting out a
  rate limit does not, so a task keeps going while its time budget lasts.
* **Every attempt billed is reported.** An attempt that streamed text and then
  broke, was cancelled, or died with its worker was still paid for; its bill
  (real usage, or an estimate from what it streamed) joins the ledger that the
  final result, the search attributes and the metrics report.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from typing import Any

from ..core import LENIENT_CONTEXT
from ..errors import CONNECTION_FAILED, INCOMPLETE_STREAM, PROVIDER_UNAVAILABLE
from ..messages import AttemptBill, AttemptState, Ledger, RetrySettings, Usage
from ..pricing import ModelPrice, PricingTable
from ..providers import ProviderStream
from ._publisher import ChunkPublisher

#: Failures that count against ``RetrySettings.max_attempts``. Rate limits are
#: waits the provider asked for, not faults; worker deaths and shutdowns never
#: reach an attempt's own error handling.
PROVIDER_FAULTS = frozenset({PROVIDER_UNAVAILABLE, CONNECTION_FAILED, INCOMPLETE_STREAM})

#: Chunk signals allowed over all attempts of one run; past it the text travels
#: in the result only (Temporal refuses a run's 10,001st signal).
MAX_RUN_SIGNALS = 2_000
#: Characters signalled over all attempts of one run: each attempt may stream up
#: to the output cap again, and a run's history must stay far below 50 MB.
MAX_RUN_SIGNALLED_CHARS = 8_000_000


def backoff(
    attempt: int, settings: RetrySettings, rng: Callable[[], float] = random.random
) -> float:
    """Seconds before the next attempt when the provider named no wait.

    Exponential in the attempt, then spread over ``[b, 2b]`` so that tasks that
    failed together come back apart, and no task retries at a constant interval.
    ``b`` is at least a second (Temporal rounds shorter delays up to one, which
    would make every early retry the same) and at most half of
    ``max_interval_seconds``, so the delay never exceeds it (or 2 s).
    """
    grown = settings.initial_interval_seconds * settings.backoff_coefficient ** max(0, attempt - 1)
    base = max(1.0, min(settings.max_interval_seconds / 2, grown))
    return base * (1.0 + rng())


def estimate_tokens(chars: int) -> int:
    """About four characters a token, the usual rule for English text."""
    return math.ceil(chars / 4) if chars > 0 else 0


def inherited(details: Sequence[Any]) -> AttemptState | None:
    """The previous attempt's state from heartbeat details, if it left any we can read."""
    if not details or not isinstance(details[0], dict):
        return None
    try:
        return AttemptState.model_validate(details[0], context=LENIENT_CONTEXT)
    except ValueError:
        return None  # an older worker's heartbeat ({"attempt", "chars"}): nothing to inherit


def heartbeat_details(
    state: AttemptState, stream: ProviderStream, publisher: ChunkPublisher
) -> AttemptState:
    """What this attempt leaves to the next as it streams: progress only, never text
    (heartbeat details are stored by the server)."""
    # A continuation is taken where the workflow's checkpoint ends, so the
    # next attempt's text joins the durable text exactly.
    acked = publisher.delivered
    own = stream.continuation(acked - publisher.start)
    # (A stream names its answer before it is opened: the create reads that far.)
    continuation = own if stream.opened or own is not None else state.continuation
    return state.model_copy(
        update={
            "chars": stream.chars,
            "chunks": stream.chunks,
            "resume_token": stream.resume_token or state.resume_token,
            "signals": state.signals + publisher.signals,
            "signalled_chars": state.signalled_chars + acked - publisher.start,
            "continuation": continuation,
            "continued_at": acked if continuation else 0,
            "response_id": stream.response_id or state.response_id,
        }
    )


def begin(
    attempt: int,
    prior: AttemptState | None,
    prompt_chars: int,
    generation_base: int = 0,
    *,
    model: str = "",
    price: ModelPrice | None = None,
) -> tuple[AttemptState, list[AttemptBill]]:
    """The state of a new attempt, and the bills of earlier attempts it closes as lost.

    An attempt that left a continuation keeps its generation: the new attempt
    continues the same text, so readers see no restart. An earlier attempt that
    never closed its bill died with its worker: it is billed what it had streamed
    by its last heartbeat, at the price it recorded. Attempts that left no
    heartbeat at all (every failure leaves one, so these died) may have been
    billed for an answer nobody can identify: each gets a bill flagged
    ``cost_unknown`` rather than silently nothing.
    """
    generation = generation_base + attempt
    if prior is not None and prior.continuation:
        generation = prior.generation
    prices = (
        {"price_in": price.input_per_million, "price_out": price.output_per_million}
        if price is not None
        else {}
    )
    settled = Ledger()
    if prior is not None:
        settled = (
            prior.settled(estimate_tokens(prompt_chars))
            if prior.attempt < attempt
            else prior.ledger
        )
    lost = settled.attempts[len(prior.ledger.attempts) :] if prior is not None else []
    last_seen = prior.attempt if prior is not None else 0
    lost += [
        AttemptBill(
            attempt=silent,
            generation=generation_base + silent,
            model=model,
            estimated=True,
            outcome="lost",
            cost_unknown=True,
        )
        for silent in range(last_seen + 1, attempt)
    ]
    ledger = Ledger(attempts=[*(prior.ledger.attempts if prior is not None else []), *lost])
    carried: dict[str, Any] = {}
    if prior is not None:
        carried = {
            "provider_faults": prior.provider_faults,
            "signals": prior.signals,
            "signalled_chars": prior.signalled_chars,
            "resume_token": prior.resume_token,
            "continuation": prior.continuation,
            "continued_at": prior.continued_at if prior.continuation else 0,
        }
    state = AttemptState(
        attempt=attempt, generation=generation, model=model, ledger=ledger, **prices, **carried
    )
    return state, lost


def close(
    state: AttemptState,
    *,
    outcome: str,
    pricing: PricingTable,
    usage: Usage | None,
    opened: bool,
    prompt_chars: int,
    error_type: str | None = None,
    vendor_cost: float | None = None,
    response_id: str | None = None,
    unaccounted: bool = False,
    platform: str | None = None,
) -> AttemptBill | None:
    """Add this attempt's bill to the ledger (once); None if the provider billed nothing.

    A request refused before generating (an HTTP error, a rate limit) costs
    nothing; a stream that was opened was billed for its prompt and for every
    chunk it produced, whether or not the answer is used. Attempts that streamed
    parts of one provider answer (``response_id``) are one bill: the provider's
    own usage, once known, replaces the estimates of the parts.
    """
    if state.closed:
        return None
    state.closed = True
    if usage is not None and not usage.estimated:
        prompt, completion, estimated = usage.prompt_tokens, usage.completion_tokens, False
    elif opened:
        prompt, completion, estimated = estimate_tokens(prompt_chars), state.chunks, True
    elif unaccounted:  # a request the provider may have taken; what it billed is unknown
        prompt, completion, estimated = 0, 0, True
    else:
        return None
    cost = vendor_cost if vendor_cost is not None else pricing.cost(state.model, prompt, completion)
    cost = cost or 0.0
    bill = AttemptBill(
        attempt=state.attempt,
        generation=state.generation,
        model=state.model,
        prompt_tokens=prompt,
        completion_tokens=completion,
        estimated=estimated,
        cost=cost,
        outcome=outcome,
        error_type=error_type,
        response_id=response_id,
        cost_unknown=unaccounted and estimated,
        platform=platform,
    )
    if response_id is not None:
        parts = [a for a in state.ledger.attempts if a.response_id == response_id]
        if not estimated or any(not a.estimated for a in parts):
            if not estimated:
                state.ledger.attempts = [
                    a for a in state.ledger.attempts if a.response_id != response_id
                ]
            else:  # the answer's real bill is in already: this part adds nothing
                bill = bill.model_copy(update={"prompt_tokens": 0, "completion_tokens": 0})
                bill.cost = 0.0
        elif parts:  # another estimated part of the same answer: its prompt is billed once
            bill = bill.model_copy(update={"prompt_tokens": 0})
            bill.cost = pricing.cost(state.model, 0, completion) or 0.0
    state.ledger.attempts.append(bill)
    return bill
