"""A batch's cost cap: what each task may cost, what the batch has committed, and the watch.

Design decisions, so they are not undone by accident:

* **Reservations.** A task is submitted only if what finished tasks cost, plus
  the reservations of the running ones, plus its own reservation fits the cap.
  A reservation is the most one answer can cost: the prompt at about four
  characters a token (the worker's own count) and ``max_tokens`` of output
  (:data:`~ai_orchestrator.limits.DEFAULT_MAX_TOKENS` when unset, an estimate
  then, since a provider's own default can be larger), at the dearest price of
  the models the task may run on, and never more than the task's own
  ``max_cost_usd``, which the worker holds. A model without a price cannot be
  reserved for: the batch is refused before anything is submitted.
* **Input order.** Tasks are admitted one at a time, in input order. One that
  does not fit waits for running tasks to settle (they usually cost less than
  reserved); if it still does not fit with nothing running, the batch stops
  submitting: it and every later task end "not submitted", so a re-run with a
  higher cap carries on from there.
* **The watch.** Retries and fallbacks can cost more than a reservation, so the
  spend of running tasks is read from their heartbeats every
  :data:`SPEND_POLL_INTERVAL` seconds. Once settled spend plus what the running
  tasks have spent or reserved (the larger of the two, per task) would cross
  the cap, every running task is cancelled (keeping its partial output and
  true cost) and nothing more is submitted.
* **Tasks go out unchanged.** Handing each task a per-task ``max_cost_usd`` of
  what the batch has left would let the worker hold the cap at the provider,
  but it changes the task's fingerprint: a resumed batch (with another cap, or
  none) would then collide with its own runs (``TaskIdConflictError``) and its
  results file would no longer vouch for finished work. A task that must be
  held at the provider sets its own ``max_cost_usd`` in the batch file: that
  is part of its identity, and its reservation then uses it.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Iterable

from temporalio.service import RPCError

from ..client import TaskClient
from ..core import Result, Task, TaskStatus
from ..limits import DEFAULT_MAX_TOKENS
from ..messages import STREAM_ACTIVITY, AttemptState
from ..pricing import PricingTable
from ..providers import route
from ..providers._base import build_messages
from ._types import CAP_CANCELLED, CAP_NOT_SUBMITTED, BatchInputError

#: Seconds between reads of the running tasks' spend (workers heartbeat about
#: every second by default, so reading more often sees nothing new).
SPEND_POLL_INTERVAL = 0.5
#: Float sums of many small prices: a cap met exactly is not crossed.
_SLACK = 1e-12


def prompt_tokens(task: Task) -> int:
    """The task's prompt as the worker counts it before the provider does."""
    chars = sum(len(m["content"]) for m in build_messages(task))
    return math.ceil(chars / 4)


def _models(task: Task, default_model: str) -> list[str]:
    constraints = task.effective_constraints
    models = [route(task, default_model)[1]]
    for fallback in constraints.fallback_models:
        alt = constraints.model_copy(update={"model": fallback})
        models.append(route(task.model_copy(update={"constraints": alt}), default_model)[1])
    return models


def reservation(
    task: Task,
    pricing: PricingTable,
    default_model: str,
    default_max_tokens: int = DEFAULT_MAX_TOKENS,
) -> float:
    """The most one answer to ``task`` can cost, in USD (see the module docstring).

    Raises:
        BatchInputError: a model the task may run on has no price.
    """
    constraints = task.effective_constraints
    prompt = prompt_tokens(task)
    output = constraints.max_tokens or default_max_tokens
    most = 0.0
    for model in _models(task, default_model):
        price = pricing.lookup(model)
        if price is None:
            raise BatchInputError(
                f"task {task.task_id!r}: model {model!r} has no price, so the batch's cost cap "
                "cannot count it; add a price (PricingTable.with_prices) or drop the cap"
            )
        most = max(most, price.cost(prompt, output))
    own = constraints.max_cost_usd
    return most if own is None else min(most, own)


class Purse:
    """The cap's arithmetic: settled spend, and what running tasks reserved or spent."""

    def __init__(self, cap: float, settled: float = 0.0) -> None:
        if not (math.isfinite(cap) and cap > 0):
            raise ValueError(f"max_cost_usd must be a number above 0, got {cap!r}")
        self.cap = cap
        self.settled = settled
        self.reserved: dict[str, float] = {}
        self.spent: dict[str, float] = {}

    def committed(self) -> float:
        """Settled spend plus, per running task, the larger of its reservation and spend."""
        return self.settled + sum(
            max(amount, self.spent.get(task_id, 0.0)) for task_id, amount in self.reserved.items()
        )

    def fits(self, amount: float) -> bool:
        return self.committed() + amount <= self.cap + _SLACK

    def crossed(self) -> bool:
        return self.committed() > self.cap + _SLACK

    def hold(self, task_id: str, amount: float) -> None:
        self.reserved[task_id] = amount

    def see(self, task_id: str, spent: float) -> None:
        """A running task's spend so far (ignored once it settled; never goes down)."""
        if task_id in self.reserved:
            self.spent[task_id] = max(spent, self.spent.get(task_id, 0.0))

    def settle(self, task_id: str | None, cost: float) -> None:
        """A task ended: its reservation is released and its true cost counted."""
        if task_id is not None:
            self.reserved.pop(task_id, None)
            self.spent.pop(task_id, None)
        self.settled += cost


async def spend_so_far(client: TaskClient, task_id: str, prompt: int) -> float | None:
    """What a running task has spent, from its provider activity's last heartbeat.

    None when it cannot be read (not started yet, no heartbeat yet, an RPC
    error): the reservation then stands for it. Models a task fell back from
    are not in the heartbeat; their spend shows when the task ends.
    """
    try:
        desc = await client.client.get_workflow_handle(task_id).describe()
    except RPCError:
        return None
    spent: float | None = None
    for pending in desc.raw_description.pending_activities:
        payloads = list(pending.heartbeat_details.payloads)
        if pending.activity_type.name != STREAM_ACTIVITY or not payloads:
            continue
        with contextlib.suppress(Exception):  # not ours, or a key this client lacks
            (state,) = await client.client.data_converter.decode(payloads, [AttemptState])
            spent = (spent or 0.0) + state.settled(prompt).cost
    return spent


class CapGuard:
    """Holds a batch to its cap: admits tasks in input order, watches, cancels."""

    def __init__(
        self, client: TaskClient, cap: float, tasks: Iterable[Task], settled: float = 0.0
    ) -> None:
        self.client = client
        self.purse = Purse(cap, settled)
        pricing = client.pricing or PricingTable()
        self._reserve: dict[str, float] = {}
        self._prompt: dict[str, int] = {}
        for task in tasks:  # every price is checked before anything is submitted
            assert task.task_id is not None
            self._reserve[task.task_id] = reservation(task, pricing, client.default_model)
            self._prompt[task.task_id] = prompt_tokens(task)
        #: "refused" (the next task did not fit) or "crossed" (spend would cross it).
        self.stopped: str | None = None
        #: Tasks this batch cancelled because of the cap.
        self.cancelled: set[str] = set()
        self._gate = asyncio.Lock()
        self._changed = asyncio.Event()
        self._cancel_sent: set[str] = set()

    @property
    def cap(self) -> float:
        return self.purse.cap

    async def admit(self, task: Task) -> bool:
        """Reserve for ``task`` and return True, or False if the cap stops it (for good)."""
        assert task.task_id is not None
        amount = self._reserve[task.task_id]
        async with self._gate:  # one at a time: the input order is the admission order
            while True:
                if self.stopped:
                    return False
                if self.purse.fits(amount):
                    self.purse.hold(task.task_id, amount)
                    return True
                if not self.purse.reserved:
                    self.stopped = "refused"
                    return False
                self._changed.clear()
                await self._changed.wait()

    def release(self, task_id: str) -> None:
        """Submission failed: nothing was spent, the reservation goes back."""
        self.purse.settle(task_id, 0.0)
        self._changed.set()

    async def started(self, task_id: str) -> None:
        """Cancel a task submitted while the batch was being stopped."""
        if self.stopped == "crossed":
            await self._cancel_running()

    async def settle(self, task: Task, result: Result, *, cap_cancelled_before: bool) -> Result:
        """Count a finished task's true cost; say so in its error if the cap cancelled it."""
        self.purse.settle(task.task_id, result.cost)
        self._changed.set()
        if self.purse.crossed() and self.stopped != "crossed":
            await self._cross()
        cancelled = task.task_id in self.cancelled or cap_cancelled_before
        if result.status == TaskStatus.CANCELLED and cancelled:
            error = f"{CAP_CANCELLED} (${self.cap:.6f}) would have been crossed"
            return result.model_copy(update={"error": error})
        return result

    def refusal(self, task: Task) -> str:
        assert task.task_id is not None
        need = self._reserve[task.task_id]
        return (
            f"{CAP_NOT_SUBMITTED} (${self.cap:.6f}) would be crossed "
            f"(${self.purse.committed():.6f} spent or reserved, this task may cost ${need:.6f}); "
            "run the batch again with a higher cap to run it"
        )

    async def _cross(self) -> None:
        self.stopped = "crossed"
        self._changed.set()
        await self._cancel_running()

    async def _cancel_running(self) -> None:
        """Cancel every running task not yet cancelled (again next poll if a call failed)."""
        for task_id in [t for t in self.purse.reserved if t not in self._cancel_sent]:
            await self.cancel(task_id)

    async def cancel(self, task_id: str) -> None:
        self.cancelled.add(task_id)
        self._cancel_sent.add(task_id)
        try:
            await self.client.cancel_task(task_id)
        except (RPCError, ConnectionError):
            self._cancel_sent.discard(task_id)  # asked again at the next poll

    async def watch(self) -> None:
        """Read running tasks' spend until cancelled; stop the batch once it would cross."""
        while True:
            await asyncio.sleep(SPEND_POLL_INTERVAL)
            running = list(self.purse.reserved)
            spends = await asyncio.gather(
                *(spend_so_far(self.client, t, self._prompt[t]) for t in running)
            )
            for task_id, spent in zip(running, spends, strict=True):
                if spent is not None:
                    self.purse.see(task_id, spent)
            if self.stopped == "crossed":
                await self._cancel_running()
            elif self.purse.crossed():
                await self._cross()
