"""Cost from usage, user-extended prices, and strict tables as allow lists."""

from __future__ import annotations

import pytest

from ai_orchestrator import ModelPrice, PricingTable, UnknownModelError, allow_list


def test_default_price_of_gpt_4o_mini() -> None:
    cost = PricingTable().cost("gpt-4o-mini", 1_000_000, 1_000_000)
    assert cost == pytest.approx(0.15 + 0.60)


def test_dated_snapshot_uses_its_own_family() -> None:
    table = PricingTable()
    assert table.lookup("gpt-4o-mini-2024-07-18") == table.lookup("gpt-4o-mini")
    assert table.lookup("gpt-4o-2024-08-06") == table.lookup("gpt-4o")


def test_users_can_add_models_without_mutating_the_default() -> None:
    table = PricingTable().with_prices(
        {"llama3": ModelPrice(input_per_million=0, output_per_million=0)}
    )
    assert table.cost("llama3", 10, 10) == 0
    assert PricingTable().lookup("llama3") is None


def test_unknown_model_costs_none_unless_strict() -> None:
    assert PricingTable().cost("mystery", 1, 1) is None
    with pytest.raises(UnknownModelError, match="mystery"):
        PricingTable(strict=True).check("mystery")


def test_allow_list_is_strict() -> None:
    table = allow_list(["gpt-4o-mini", "local-model"])
    table.check("local-model")
    with pytest.raises(UnknownModelError):
        table.check("gpt-4o")
