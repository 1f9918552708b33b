"""The cost cap's arithmetic: what was spent before, the prompt, and each chunk."""

from __future__ import annotations

import pytest
from temporalio.exceptions import ApplicationError

from ai_orchestrator import Task, TaskConstraints
from ai_orchestrator.activities._budget import Budget
from ai_orchestrator.errors import BUDGET_EXCEEDED
from ai_orchestrator.messages import AttemptBill, AttemptState, CompletionRequest, Ledger
from ai_orchestrator.pricing import ModelPrice

PRICE = ModelPrice(input_per_million=2.0, output_per_million=10.0)  # a chunk: $0.00001


def _request(cap: float | None, spent: float = 0.0) -> CompletionRequest:
    constraints = TaskConstraints(max_cost_usd=cap)
    return CompletionRequest(task=Task(prompt="p", constraints=constraints), spent_usd=spent)


def test_no_cap_no_budget() -> None:
    state = AttemptState(attempt=1, generation=1)
    assert Budget.of(_request(None), state, PRICE, 400, "m") is None


def test_earlier_models_attempts_and_the_prompt_all_count() -> None:
    lost = AttemptBill(attempt=1, generation=1, model="m", cost=0.0001, outcome="lost")
    state = AttemptState(attempt=2, generation=2, ledger=Ledger(attempts=[lost]))
    budget = Budget.of(_request(0.001, spent=0.0002), state, PRICE, 400, "m")
    assert budget is not None
    assert budget.spent == pytest.approx(0.0003)  # the fallback's and the lost attempt's
    assert budget.prompt == pytest.approx(PRICE.cost(100, 0))  # 400 characters, ~100 tokens
    assert budget.remaining == pytest.approx(0.0007)
    # 0.0003 + 0.0002 (prompt) leaves 0.0005: about 50 chunks; stop before the 51st.
    assert not budget.stop_after(48) and budget.stop_after(50)
    assert not budget.refuses_start()
    error = budget.exceeded(50)
    assert error.type == BUDGET_EXCEEDED and error.non_retryable
    assert "$0.001000" in error.message and "partial output is kept" in error.message


def test_a_start_the_cap_cannot_afford_is_refused() -> None:
    state = AttemptState(attempt=1, generation=1)
    budget = Budget.of(_request(0.0002), state, PRICE, 400, "m")
    assert budget is not None and budget.refuses_start()  # prompt 0.0002 + a chunk > cap
    assert "before calling the provider" in budget.exceeded(0, before_call=True).message


def test_a_cap_needs_a_price() -> None:
    state = AttemptState(attempt=1, generation=1)
    with pytest.raises(ApplicationError, match="has no price") as refused:
        Budget.of(_request(0.01), state, None, 400, "mystery")
    assert refused.value.non_retryable and refused.value.type == BUDGET_EXCEEDED


def test_the_cap_must_be_positive() -> None:
    with pytest.raises(ValueError):
        TaskConstraints(max_cost_usd=0)


def test_a_reattach_counts_no_prompt_unless_it_fails_and_a_chat_continuation_does() -> None:
    full = PRICE.cost(100, 0)  # 400 characters
    reattach = AttemptState(attempt=2, generation=1, continuation="resp_1")
    budget = Budget.of(_request(0.001), reattach, PRICE, 400, "m")
    assert budget is not None and budget.prompt == 0  # billed by the earlier part
    # The response is gone: the new call made instead is billed its prompt.
    assert budget.made_anew().prompt == pytest.approx(full)
    # A chat continuation sends the prompt and the 200 characters so far again.
    chat = AttemptState(attempt=2, generation=1, continuation="chat:200")
    budget = Budget.of(_request(0.001), chat, PRICE, 400, "m")
    assert budget is not None and budget.prompt == pytest.approx(PRICE.cost(150, 0))
    fresh = Budget.of(_request(0.001), AttemptState(attempt=1, generation=1), PRICE, 400, "m")
    assert fresh is not None and fresh.made_anew() == fresh
