"""Per-model prices, so every result can say what it cost.

Prices change more often than this package is released, so the table is data a
user extends or replaces (``PricingTable.with_prices``), never code to patch.
A strict table doubles as an allow list: a task naming a model it does not know
is rejected before it starts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field


class ModelPrice(BaseModel):
    """US dollars per one million tokens."""

    model_config = ConfigDict(frozen=True)

    input_per_million: float = Field(ge=0)
    output_per_million: float = Field(ge=0)
    #: Through the provider's batch API (None: ``BATCH_DISCOUNT`` of the above, as
    #: OpenAI, Anthropic and Google all charge).
    batch_input_per_million: float | None = Field(default=None, ge=0)
    batch_output_per_million: float | None = Field(default=None, ge=0)

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (
            prompt_tokens * self.input_per_million + completion_tokens * self.output_per_million
        ) / 1_000_000

    def batch_cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        """What the answer costs through the provider's batch API."""
        per_in = self.batch_input_per_million
        per_out = self.batch_output_per_million
        return (
            prompt_tokens * (self.input_per_million * BATCH_DISCOUNT if per_in is None else per_in)
            + completion_tokens
            * (self.output_per_million * BATCH_DISCOUNT if per_out is None else per_out)
        ) / 1_000_000


#: Batch APIs answer within 24 hours at half the price (OpenAI, Anthropic, Google).
BATCH_DISCOUNT = 0.5


#: List prices (standard tier, USD per 1M tokens) at the time of writing: OpenAI,
#: then Anthropic and Google (sources and dates beside each group).
DEFAULT_PRICES: Mapping[str, ModelPrice] = {
    "gpt-4o-mini": ModelPrice(input_per_million=0.15, output_per_million=0.60),
    "gpt-4o": ModelPrice(input_per_million=2.50, output_per_million=10.00),
    "gpt-4.1": ModelPrice(input_per_million=2.00, output_per_million=8.00),
    "gpt-4.1-mini": ModelPrice(input_per_million=0.40, output_per_million=1.60),
    "gpt-4.1-nano": ModelPrice(input_per_million=0.10, output_per_million=0.40),
    "gpt-5": ModelPrice(input_per_million=1.25, output_per_million=10.00),
    "gpt-5-mini": ModelPrice(input_per_million=0.25, output_per_million=2.00),
    "gpt-5-nano": ModelPrice(input_per_million=0.05, output_per_million=0.40),
    "o3-mini": ModelPrice(input_per_million=1.10, output_per_million=4.40),
    "o4-mini": ModelPrice(input_per_million=1.10, output_per_million=4.40),
    "gpt-4-turbo": ModelPrice(input_per_million=10.00, output_per_million=30.00),
    "gpt-3.5-turbo": ModelPrice(input_per_million=0.50, output_per_million=1.50),
    # Anthropic list prices (base input / output, USD per 1M tokens) at the time of
    # writing (November 2026, Anthropic's models & pricing pages). Prompt-cache writes
    # and reads are priced differently and are not modelled here. Dated snapshots
    # ("claude-sonnet-4-5-20250929") match their family by prefix.
    "claude-fable-5-1": ModelPrice(input_per_million=10.00, output_per_million=50.00),
    "claude-opus-5-5": ModelPrice(input_per_million=4.00, output_per_million=20.00),
    "claude-opus-5": ModelPrice(input_per_million=5.00, output_per_million=25.00),
    "claude-sonnet-5-5": ModelPrice(input_per_million=2.00, output_per_million=10.00),
    "claude-opus-4-8": ModelPrice(input_per_million=5.00, output_per_million=25.00),
    "claude-opus-4-7": ModelPrice(input_per_million=5.00, output_per_million=25.00),
    "claude-opus-4-6": ModelPrice(input_per_million=5.00, output_per_million=25.00),
    "claude-opus-4-5": ModelPrice(input_per_million=5.00, output_per_million=25.00),
    "claude-opus-4-1": ModelPrice(input_per_million=15.00, output_per_million=75.00),
    "claude-opus-4-0": ModelPrice(input_per_million=15.00, output_per_million=75.00),
    "claude-opus-4": ModelPrice(input_per_million=15.00, output_per_million=75.00),
    "claude-sonnet-4-6": ModelPrice(input_per_million=3.00, output_per_million=15.00),
    "claude-sonnet-4-5": ModelPrice(input_per_million=3.00, output_per_million=15.00),
    "claude-sonnet-4-0": ModelPrice(input_per_million=3.00, output_per_million=15.00),
    "claude-sonnet-4": ModelPrice(input_per_million=3.00, output_per_million=15.00),
    "claude-haiku-4-5": ModelPrice(input_per_million=1.00, output_per_million=5.00),
    "claude-3-7-sonnet": ModelPrice(input_per_million=3.00, output_per_million=15.00),
    "claude-3-5-haiku": ModelPrice(input_per_million=0.80, output_per_million=4.00),
    "claude-3-haiku": ModelPrice(input_per_million=0.25, output_per_million=1.25),
    # Google Gemini API list prices (paid tier, USD per 1M tokens) at the time of
    # writing (November 2026, ai.google.dev pricing). Pro models double above 200K
    # prompt tokens; the <=200K rate is listed. Output includes thinking tokens.
    "gemini-3.1-pro": ModelPrice(input_per_million=2.00, output_per_million=12.00),
    "gemini-3.1-flash-lite": ModelPrice(input_per_million=0.25, output_per_million=1.50),
    "gemini-3-pro": ModelPrice(input_per_million=2.00, output_per_million=12.00),
    "gemini-3-flash": ModelPrice(input_per_million=0.50, output_per_million=3.00),
    "gemini-2.5-pro": ModelPrice(input_per_million=1.25, output_per_million=10.00),
    "gemini-2.5-flash": ModelPrice(input_per_million=0.30, output_per_million=2.50),
    "gemini-2.5-flash-lite": ModelPrice(input_per_million=0.10, output_per_million=0.40),
    "gemini-2.0-flash": ModelPrice(input_per_million=0.10, output_per_million=0.40),
    "gemini-2.0-flash-lite": ModelPrice(input_per_million=0.075, output_per_million=0.30),
}


class UnknownModelError(ValueError):
    """A strict pricing table was asked about a model it does not list."""


@dataclass(frozen=True)
class PricingTable:
    """Prices by model name; dated snapshots ("gpt-4o-2024-08-06") match their family.

    Args:
        prices: the table.
        strict: if true, unknown models are an error (an allow list); if false they
            cost 0.0 and the result's metadata says the price was unknown.
    """

    prices: Mapping[str, ModelPrice] = field(default_factory=lambda: dict(DEFAULT_PRICES))
    strict: bool = False

    def with_prices(self, extra: Mapping[str, ModelPrice]) -> PricingTable:
        return PricingTable(prices={**self.prices, **extra}, strict=self.strict)

    def lookup(self, model: str) -> ModelPrice | None:
        if model in self.prices:
            return self.prices[model]
        # Longest known prefix, so "gpt-4o-mini-2024-07-18" is not priced as "gpt-4o".
        family = max((m for m in self.prices if model.startswith(m + "-")), key=len, default=None)
        return self.prices[family] if family else None

    def check(self, model: str) -> None:
        if self.strict and self.lookup(model) is None:
            raise UnknownModelError(
                f"model {model!r} is not in the configured pricing table "
                f"(known: {', '.join(sorted(self.prices))})"
            )

    def cost(self, model: str, prompt_tokens: int, completion_tokens: int) -> float | None:
        price = self.lookup(model)
        return None if price is None else price.cost(prompt_tokens, completion_tokens)


def allow_list(models: Iterable[str], base: PricingTable | None = None) -> PricingTable:
    """A strict table restricted to ``models`` (unpriced ones cost 0.0)."""
    base = base or PricingTable()
    zero = ModelPrice(input_per_million=0, output_per_million=0)
    return PricingTable(prices={m: base.lookup(m) or zero for m in models}, strict=True)
