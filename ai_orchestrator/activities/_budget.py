"""A task's cost cap, held while it streams rather than checked after the answer.

A provider bills every token it generates, so a cap checked after the response
(as peers do) is crossed by a whole answer, and failed attempts are not counted
at all. Here the spend of the models and attempts before this one comes from the
same bill as ``Result.cost``, the prompt is counted before the call, and every
chunk is counted as it arrives: the stream stops when the next chunk would cross
the cap, so the bill stays within it (plus at most one chunk where the provider's
count runs ahead of ours).

What it cannot see it cannot hold: tokens a model spends before its first chunk
(reasoning models' hidden thinking), text already in flight when the stream is
closed, an attempt lost with its worker before its first heartbeat (listed
``cost_unknown``, counted as $0), and an agent CLI's spend within one turn
(Claude Code checks ``--max-budget-usd`` between turns). Output is counted per
chunk, at least a token each, long chunks at about four characters a token.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from temporalio.exceptions import ApplicationError

from ..errors import BUDGET_EXCEEDED, NAMED_BUDGET_EXCEEDED
from ..messages import AttemptState, CompletionRequest
from ..pricing import ModelPrice
from ._attempts import estimate_tokens


def prompt_cost(
    state: AttemptState, price: ModelPrice, prompt_chars: int
) -> tuple[float, float | None]:
    """What this attempt's call is billed for its prompt, and for a new call's should
    it start over instead (None: the same).

    A re-attach to a background response continues an answer whose prompt an earlier
    part billed already; a chat continuation is a new request, billed the prompt
    and the text so far (``chat:<characters>``) as its input.
    """
    full = price.cost(estimate_tokens(prompt_chars), 0)
    token = str(state.continuation or "")
    if not token:
        return full, None
    kind, _, chars = token.partition(":")
    if kind == "chat":
        so_far = int(chars) if chars.isdigit() else 0
        return price.cost(estimate_tokens(prompt_chars + so_far), 0), full
    return 0.0, full


@dataclass(frozen=True)
class Budget:
    """What is left of ``cap`` for one attempt, in the attempt's own units."""

    cap: float
    #: Billed before this attempt: earlier models and earlier attempts of this one.
    spent: float
    #: This attempt's prompt, estimated from its characters.
    prompt: float
    #: One chunk's price (a chunk is counted as one output token, as bills do).
    per_chunk: float
    #: The named budget this cap is the call's share of (None: ``max_cost_usd``),
    #: and where that budget stood when the share was granted, for the message.
    named: str | None = None
    standing: str = ""
    #: The prompt of a new call, should a re-attach (whose ``prompt`` is 0: billed
    #: already) fail and the attempt start over (None: the same as ``prompt``).
    prompt_anew: float | None = None

    @classmethod
    def of(
        cls,
        request: CompletionRequest,
        state: AttemptState,
        price: ModelPrice | None,
        prompt_chars: int,
        model: str,
    ) -> Budget | None:
        """The budget of a task that set ``max_cost_usd``; None for one that did not.

        A model without a price cannot be held to a cap: that fails for good,
        before anything is billed, rather than running unbounded.
        """
        cap = request.task.effective_constraints.max_cost_usd
        if cap is None:
            return None
        if price is None:
            raise ApplicationError(
                f"max_cost_usd is set but model {model!r} has no price, so its cost "
                "cannot be held to the cap; add one with PricingTable.with_prices",
                type=BUDGET_EXCEEDED,
                non_retryable=True,
            )
        spent = request.spent_usd + state.ledger.cost
        prompt, anew = prompt_cost(state, price, prompt_chars)
        return cls(
            cap=cap, spent=spent, prompt=prompt, per_chunk=price.cost(0, 1), prompt_anew=anew
        )

    def made_anew(self) -> Budget:
        """The re-attach failed and a new call is made: it is billed its prompt."""
        if self.prompt_anew is None:
            return self
        return replace(self, prompt=self.prompt_anew, prompt_anew=None)

    @property
    def remaining(self) -> float:
        """What this attempt may still spend (the provider's own cap for agent CLIs)."""
        return max(0.0, self.cap - self.spent)

    def tighter(self, other: Budget | None) -> Budget:
        """This cap or ``other``, whichever leaves the call less to spend."""
        return other if other is not None and other.remaining < self.remaining else self

    def refuses_start(self) -> bool:
        """Not even the prompt and one chunk fit: do not call the provider at all."""
        return self.spent + self.prompt + self.per_chunk > self.cap

    def stop_after(self, chunks: int) -> bool:
        """The next chunk would cross the cap."""
        return self.spent + self.prompt + (chunks + 1) * self.per_chunk > self.cap

    def exceeded(self, chunks: int, *, before_call: bool = False) -> ApplicationError:
        if self.named is not None:  # (a share is granted only when the call can start)
            return ApplicationError(
                f"named budget {self.named!r} ran out during this call: it was granted "
                f"${self.cap:.6f}, all that was left ({self.standing}); the stream was "
                f"stopped after {chunks} chunks and the partial output is kept",
                type=NAMED_BUDGET_EXCEEDED,
                non_retryable=True,
            )
        cost = self.spent + (0.0 if before_call else self.prompt + chunks * self.per_chunk)
        where = (
            "before calling the provider again"
            if before_call
            else f"after {chunks} streamed chunks; the stream was stopped and the partial "
            "output is kept"
        )
        return ApplicationError(
            f"the task's budget of ${self.cap:.6f} (max_cost_usd) would be exceeded: "
            f"${cost:.6f} spent {where}",
            type=BUDGET_EXCEEDED,
            non_retryable=True,
        )
