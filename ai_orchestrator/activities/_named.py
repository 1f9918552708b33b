"""A call's share of its task's named budget: reserved before the call, settled after.

The share asked for is the most the call can cost: its prompt (about four
characters a token; a chat continuation's includes the text so far; a re-attach's
prompt is billed already, but a new call made should it fail is billed its own)
and its ``max_tokens`` (the worker's default when the task sets none), priced.
Granted in full with ``max_tokens`` set, the provider itself keeps the call
within it; granted less (the last of the day), or without ``max_tokens``, the
share caps the stream like ``max_cost_usd`` does (``_budget``), the tighter of
the two holding. Afterwards the call settles what its attempt's bill says it
cost, releasing the rest of its share.

While it runs, the call renews its reservation's lease; a worker killed
mid-call stops renewing, and its whole share counts as spent once the lease
runs out (what the provider billed is unknown; the share is the most it could
be). A store that cannot be reached never lets a call go ahead unbudgeted: the
call waits for it, heartbeating, until the task's deadline.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from temporalio.exceptions import ApplicationError

from ..budgets import POLL_SECONDS, REFUSED, Budgets, BudgetStoreUnavailable, Decision
from ..errors import CONFIGURATION_ERROR, CONNECTION_FAILED, NAMED_BUDGET_EXCEEDED
from ..messages import AttemptState, CompletionRequest
from ..metrics import TaskMetrics
from ..pricing import ModelPrice
from ._budget import Budget, prompt_cost
from ._pacing import LastBeat

logger = logging.getLogger(__name__)


@dataclass
class Hold:
    """A granted share, until it is settled."""

    budgets: Budgets
    decision: Decision
    #: What the attempt's ledger held when the share was granted.
    before: float
    #: The cap the share sets on the stream (None: ``max_tokens`` keeps the call within it).
    cap: Budget | None
    renewing: asyncio.Task[None] | None = None
    settled: bool = False


def _where(decision: Decision) -> str:
    held = f", ${decision.held:.6f} held by calls in flight" if decision.held else ""
    return (
        f"${decision.spent:.6f} of its ${decision.limit:.6f} spent today (UTC {decision.day}){held}"
    )


def _refused(decision: Decision, least: float, why: str) -> ApplicationError:
    return ApplicationError(
        f"named budget {decision.budget!r} {why}: {_where(decision)}; this call needs at "
        f"least ${least:.6f} (its prompt and one chunk) and was not made; the budget "
        "renews at 00:00 UTC",
        type=NAMED_BUDGET_EXCEEDED,
        non_retryable=True,
    )


async def reserve(
    budgets: Budgets | None,
    request: CompletionRequest,
    state: AttemptState,
    beat: LastBeat,
    *,
    price: ModelPrice | None,
    prompt_chars: int,
    model: str,
    default_max_tokens: int,
    meter: Callable[[], TaskMetrics],
) -> Hold | None:
    """This call's share of its task's named budget; None for a task that names none."""
    constraints = request.task.effective_constraints
    name = constraints.budget
    if name is None:
        return None
    if budgets is None or name not in budgets.limits:
        known = ", ".join(sorted(budgets.limits)) if budgets is not None else ""
        raise ApplicationError(
            f"named budget {name!r} is not configured on this worker (its "
            f"AI_ORCHESTRATOR_BUDGETS names {known or 'none'}); the task is not run "
            "unbudgeted",
            type=CONFIGURATION_ERROR,
            non_retryable=True,
        )
    if price is None:
        raise ApplicationError(
            f"named budget {name!r} is set but model {model!r} has no price, so its cost "
            "cannot be held to the budget; add one with PricingTable.with_prices",
            type=CONFIGURATION_ERROR,
            non_retryable=True,
        )
    prompt, anew = prompt_cost(state, price, prompt_chars)
    per_chunk = price.cost(0, 1)
    # The share must cover a new call should a re-attach fail: nobody asks for more then.
    most = max(prompt, anew or 0.0)
    want = most + (constraints.max_tokens or default_max_tokens) * per_chunk
    least = prompt + per_chunk
    deadline = request.deadline_epoch

    def past_deadline() -> bool:
        return deadline is not None and time.time() + POLL_SECONDS > deadline

    async def waiting(decision: Decision) -> None:
        if past_deadline():
            meter().budget_refusals.add(1, {"model": model, "budget": name})
            raise _refused(decision, least, "had no room for it before the task's deadline")
        beat.send(state)  # a cancel arrives with a heartbeat's answer

    while True:
        try:
            decision = await budgets.reserve(name, want, least, waiting)
            break
        except BudgetStoreUnavailable as exc:
            if past_deadline():
                raise ApplicationError(
                    f"{exc} until the task's deadline: no call goes ahead unbudgeted",
                    type=CONNECTION_FAILED,
                    non_retryable=True,
                ) from None
            logger.warning("%s; the call for named budget %r waits for it", exc, name)
            beat.send(state)
            await asyncio.sleep(POLL_SECONDS)
    if decision.outcome == REFUSED:
        meter().budget_refusals.add(1, {"model": model, "budget": name})
        raise _refused(decision, least, "is spent for today")
    cap = None
    if decision.granted < want - 1e-9 or constraints.max_tokens is None:
        cap = Budget(
            cap=decision.granted,
            spent=0.0,
            prompt=prompt,
            per_chunk=per_chunk,
            named=name,
            standing=_where(decision),
            prompt_anew=anew,
        )
    hold = Hold(budgets, decision, before=state.ledger.cost, cap=cap)
    hold.renewing = asyncio.get_running_loop().create_task(_renew(budgets, decision))
    return hold


async def _renew(budgets: Budgets, decision: Decision) -> None:
    """Keep the share's lease while the call runs (a dead worker's share runs out)."""
    while True:
        await asyncio.sleep(budgets.store.lease_seconds / 3)
        try:
            if not await budgets.store.renew(decision):
                return  # charged in full already: the settlement corrects it
        except Exception as exc:
            logger.warning("could not renew a share of named budget %r: %s", decision.budget, exc)


def tighter(budget: Budget | None, hold: Hold | None) -> Budget | None:
    """The task's own cap or its share of the named budget, whichever is tighter."""
    share = hold.cap if hold is not None else None
    return budget.tighter(share) if budget is not None else share


#: Longest an attempt holds its answer back while its share settles: a store that
#: does not answer (a stalled Redis) settles in the background instead, or the
#: attempt outlives its heartbeat timeout and its paid answer is lost.
SETTLE_WAIT = 0.2
#: Settlements still on their way to the store (a task nobody holds may be collected).
_settling: set[asyncio.Task[None]] = set()


async def settle(hold: Hold | None, state: AttemptState) -> None:
    """Settle the share with the attempt's bill, releasing the rest. Never raises, and
    never holds the answer up for long (``SETTLE_WAIT``): a share that cannot be
    settled is charged in full when its lease runs out."""
    if hold is None or hold.settled:
        return
    hold.settled = True
    if hold.renewing is not None:
        hold.renewing.cancel()
    cost = max(0.0, state.ledger.cost - hold.before)
    task = asyncio.get_running_loop().create_task(_settle(hold, cost))
    _settling.add(task)
    task.add_done_callback(_settling.discard)
    await asyncio.wait({task}, timeout=SETTLE_WAIT)  # a cancel here leaves it running


async def _settle(hold: Hold, cost: float) -> None:
    try:
        await hold.budgets.store.settle(hold.decision, cost)
    except Exception:
        logger.exception("could not settle a share of named budget %r", hold.decision.budget)
