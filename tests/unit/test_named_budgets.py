"""Named budgets: their configuration, a day's arithmetic, and a call's share of it.

The day's rules are kept twice, in this process (``LocalStore``) and in one Redis
script (``RedisStore``, against a real redis-server): every case runs on both, and
a random walk checks that they give the same answers to the nano-dollar.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from typing import Any

import pytest
from temporalio.exceptions import ApplicationError

from ai_orchestrator import Task, TaskConstraints
from ai_orchestrator.activities import _named
from ai_orchestrator.activities._budget import Budget
from ai_orchestrator.budgets import (
    GRANTED,
    REFUSED,
    WAIT,
    Budgets,
    BudgetStoreUnavailable,
    LocalStore,
    budgets_from_env,
    day_of,
    parse_budgets,
)
from ai_orchestrator.budgets._redis import RedisStore
from ai_orchestrator.config import ConfigError
from ai_orchestrator.core import LENIENT_CONTEXT
from ai_orchestrator.errors import CONFIGURATION_ERROR, CONNECTION_FAILED, NAMED_BUDGET_EXCEEDED
from ai_orchestrator.messages import AttemptBill, AttemptState, CompletionRequest
from ai_orchestrator.pricing import ModelPrice

LEASE = 30.0
#: 23:00 UTC today, an hour before the day rolls over (not a fixed date: Redis
#: drops a day's keys by its own clock, two days after the day ends).
EVENING = time.time() // 86_400 * 86_400 + 23 * 3600
DAY_1, DAY_2 = day_of(EVENING), day_of(EVENING + 7200)
PRICE = ModelPrice(input_per_million=2.0, output_per_million=10.0)  # a chunk: $0.00001


class _Clock:
    def __init__(self) -> None:
        self.now = EVENING

    def __call__(self) -> float:
        return self.now


def _name() -> str:
    return f"team-{uuid.uuid4().hex[:8]}"


# -- configuration -----------------------------------------------------------------------


def test_budgets_are_parsed_from_the_environment() -> None:
    assert parse_budgets("team-a:usd_per_day=5; tenant:b.c_d:usd_per_day=20.5;") == {
        "team-a": 5.0,
        "tenant:b.c_d": 20.5,
    }
    assert parse_budgets("") == {} and parse_budgets(" ; ") == {}


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("team-a", "is not NAME:usd_per_day=N"),
        ("team a:usd_per_day=5", "is not NAME:usd_per_day=N"),
        (f"{'x' * 65}:usd_per_day=5", "is not NAME:usd_per_day=N"),
        ("team-a:usd_per_week=5", "is not usd_per_day=N"),
        ("team-a:usd_per_day=", "is not usd_per_day=N"),
        ("team-a:usd_per_day=-1", "is not usd_per_day=N"),
        ("team-a:usd_per_day=nan", "is not usd_per_day=N"),
        ("team-a:usd_per_day=inf", "is not usd_per_day=N"),
        ("team-a:usd_per_day=5;team-a:usd_per_day=6", "named twice"),
    ],
)
def test_garbage_budgets_are_refused_clearly(text: str, says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        parse_budgets(text)


def test_choosing_the_store_from_the_environment() -> None:
    assert budgets_from_env({}) is None  # a task naming a budget then fails at once
    local = budgets_from_env({"AI_ORCHESTRATOR_BUDGETS": "a:usd_per_day=1"})
    assert local is not None and isinstance(local.store, LocalStore) and local.limits == {"a": 1}
    shared = budgets_from_env(
        {
            "AI_ORCHESTRATOR_BUDGETS": "a:usd_per_day=1",
            "AI_ORCHESTRATOR_BUDGETS_STORE": "redis://h/0",
        }
    )
    assert shared is not None and isinstance(shared.store, RedisStore)
    live = {
        "AI_ORCHESTRATOR_BUDGETS": "a:usd_per_day=1",
        "AI_ORCHESTRATOR_BUDGETS_STORE": "redis",
        "AI_ORCHESTRATOR_LIVE_REDIS_URL": "redis://h/1",
    }
    assert isinstance(budgets_from_env(live).store, RedisStore)  # type: ignore[union-attr]
    with pytest.raises(ConfigError, match="needs AI_ORCHESTRATOR_LIVE_REDIS_URL"):
        budgets_from_env({**live, "AI_ORCHESTRATOR_LIVE_REDIS_URL": ""})
    with pytest.raises(ConfigError, match="must be local, redis") as caught:
        budgets_from_env({**live, "AI_ORCHESTRATOR_BUDGETS_STORE": "http://user:pw@h"})
    assert "pw" not in str(caught.value)


def test_a_task_names_a_budget_by_a_short_safe_name() -> None:
    assert TaskConstraints(budget="tenant:acme.eu-1_a").budget == "tenant:acme.eu-1_a"
    for bad in ("", "team a", "x" * 65, "team{a}", "naïve"):
        with pytest.raises(ValueError, match="budget must be a name of 1-64"):
            TaskConstraints(budget=bad)
    # A worker decoding a task leaves the name to its own budgets (unknown: fails clearly).
    decoded = TaskConstraints.model_validate({"budget": "team a"}, context=LENIENT_CONTEXT)
    assert decoded.budget == "team a"


# -- a day's arithmetic, on both stores ----------------------------------------------------


@pytest.fixture(
    params=["local", pytest.param("redis", marks=pytest.mark.integration)],
)
async def store(request: pytest.FixtureRequest) -> Any:
    clock = _Clock()
    if request.param == "local":
        made: Any = LocalStore(lease_seconds=LEASE, clock=clock)
    else:
        made = RedisStore(request.getfixturevalue("redis_url"), lease_seconds=LEASE, clock=clock)
    made.clock = clock
    yield made
    await made.aclose()


async def _reserve(store: Any, budget: str, want: float, least: float = 0.01, limit: float = 1.0):
    return await store.reserve(budget, limit, want, least, uuid.uuid4().hex)


async def test_a_call_gets_what_it_wants_while_that_fits(store: Any) -> None:
    name = _name()
    first = await _reserve(store, name, 0.3)
    assert (first.outcome, first.granted, first.spent, first.held) == (GRANTED, 0.3, 0, 0)
    await _reserve(store, name, 0.3)
    third = await _reserve(store, name, 0.3)
    assert (third.granted, third.held) == (0.3, pytest.approx(0.6))
    assert await store.standing(name) == (0, pytest.approx(0.9))
    # 0.1 left, 0.9 held: room may come back when they settle, so it waits.
    assert (await _reserve(store, name, 0.3)).outcome == WAIT
    await store.settle(first, 0.1)  # what it really cost; the rest of its 0.3 is released
    assert await store.standing(name) == (pytest.approx(0.1), pytest.approx(0.6))
    assert (await _reserve(store, name, 0.3)).granted == pytest.approx(0.3)


async def test_the_last_of_the_day_goes_to_one_call_then_it_is_refused(store: Any) -> None:
    name = _name()
    await store.settle(await _reserve(store, name, 0.3), 0.95)  # a bill may exceed its share
    partial = await _reserve(store, name, 0.3)  # nothing held: all that is left
    assert (partial.outcome, partial.granted) == (GRANTED, pytest.approx(0.05))
    # Held, but what is not spent cannot start a call: refused, not left waiting.
    refused = await _reserve(store, name, 0.3, least=0.06)
    assert (refused.outcome, refused.granted) == (REFUSED, 0)
    assert (refused.spent, refused.held) == (pytest.approx(0.95), pytest.approx(0.05))
    await store.settle(partial, 0.05)
    refused = await _reserve(store, name, 0.3, least=0.000001)
    assert refused.outcome == REFUSED and refused.spent == pytest.approx(1.0)


async def test_a_silent_reservation_is_charged_in_full_and_corrected_if_it_settles(
    store: Any,
) -> None:
    name = _name()
    live, dead = await _reserve(store, name, 0.2), await _reserve(store, name, 0.3)
    store.clock.now += LEASE * 0.9
    assert await store.renew(live)  # the running call keeps its lease
    store.clock.now += LEASE * 0.2
    # The other stopped renewing (its worker died): its whole share counts as spent.
    assert await store.standing(name) == (pytest.approx(0.3), pytest.approx(0.2))
    assert not await store.renew(dead)
    assert (await _reserve(store, name, 0.6)).outcome == WAIT  # 0.5 left, 0.2 held
    await store.settle(live, 0.2)
    # It was alive after all: its true cost replaces the charge.
    await store.settle(dead, 0.05)
    assert (await store.standing(name))[0] == pytest.approx(0.25)
    await store.settle(dead, 0.05)  # settled once only
    assert (await store.standing(name))[0] == pytest.approx(0.25)


async def test_a_new_utc_day_starts_afresh_and_yesterday_keeps_its_calls(store: Any) -> None:
    name = _name()
    yesterday = await _reserve(store, name, 0.9)
    assert yesterday.day == DAY_1
    store.clock.now += 2 * 3600  # 01:00 UTC the next day
    today = await _reserve(store, name, 0.9)
    assert (today.day, today.granted, today.held) == (DAY_2, 0.9, 0)
    await store.settle(yesterday, 0.4)  # a call that ran over midnight counts on its day
    assert await store.standing(name, DAY_1) == (pytest.approx(0.4), 0)
    assert await store.standing(name) == (0, pytest.approx(0.9))


@pytest.mark.parametrize("seed", [3, 11])
async def test_the_redis_script_keeps_the_same_rules(redis_url: str, seed: int) -> None:
    """300 random reservations, renewals, settlements and clock moves (across leases
    and a midnight) on both stores: the same answers, to the nano-dollar."""
    clock = _Clock()
    local = LocalStore(lease_seconds=LEASE, clock=clock)
    shared = RedisStore(redis_url, lease_seconds=LEASE, clock=clock)
    names = [_name(), _name()]
    rng = random.Random(seed)
    open_: list[Any] = []
    seen: set[str] = set()
    for step in range(300):
        clock.now += rng.choice([0.0, 0.5, 5.0, 20.0, LEASE, 900.0])
        op = rng.choice(["reserve", "reserve", "reserve", "settle", "settle", "renew"])
        name = rng.choice(names)
        if op == "reserve":
            want, least = rng.choice([0.05, 0.2, 0.5]), rng.choice([0.001, 0.04])
            lease = f"l{step}"
            mine = await local.reserve(name, 1.0, want, least, lease)
            theirs = await shared.reserve(name, 1.0, want, least, lease)
            assert mine == theirs, step
            seen.add(mine.outcome)
            if mine.outcome == GRANTED:
                open_.append(mine)
        elif op == "settle" and open_:
            decision = open_.pop(rng.randrange(len(open_)))
            cost = decision.granted * rng.choice([0.0, 0.5, 1.0, 1.1])
            await local.settle(decision, cost)
            await shared.settle(decision, cost)
        elif op == "renew" and open_:
            decision = rng.choice(open_)
            assert await local.renew(decision) == await shared.renew(decision), step
        for day in (DAY_1, DAY_2, None):
            assert await local.standing(name, day) == await shared.standing(name, day), step
    assert seen == {GRANTED, WAIT, REFUSED}  # the walk reached every rule
    await shared.aclose()


async def test_an_unreachable_redis_is_said_without_its_password() -> None:
    store = RedisStore("redis://:secret-pw@127.0.0.1:1/0")
    with pytest.raises(BudgetStoreUnavailable, match="unreachable") as caught:
        await store.reserve("a", 1.0, 0.1, 0.01, "l")
    assert "secret-pw" not in str(caught.value) and "secret-pw" not in repr(store)
    await store.aclose()


async def test_a_call_waits_for_reservations_in_flight_to_settle(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("ai_orchestrator.budgets.POLL_SECONDS", 0.01)
    budgets = Budgets({"a": 1.0})
    held = await budgets.reserve("a", 0.8, 0.01)
    polls: list[float] = []

    async def waiting(decision: Any) -> None:
        polls.append(decision.held)
        if len(polls) == 3:
            await budgets.store.settle(held, 0.3)

    decision = await budgets.reserve("a", 0.5, 0.01, waiting)
    assert decision.outcome == GRANTED and decision.granted == 0.5
    assert polls == [0.8, 0.8, 0.8]


async def test_a_call_cancelled_while_its_share_is_being_granted_gives_the_share_back() -> None:
    """The store granted the share as the cancel arrived (a Redis reply on its way):
    nobody will settle it, so it must go back, not be charged in full at its lease's end."""
    answering, answered = asyncio.Event(), asyncio.Event()

    class _Slow(LocalStore):
        async def reserve(self, *args: Any) -> Any:
            answering.set()
            decision = await super().reserve(*args)  # granted in the store ...
            await answered.wait()  # ... the reply still on its way
            return decision

    budgets = Budgets({"a": 1.0}, _Slow())
    call = asyncio.ensure_future(budgets.reserve("a", 0.4, 0.01))
    await answering.wait()
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    answered.set()
    for _ in range(100):
        await asyncio.sleep(0.01)
        if await budgets.store.standing("a") == (0, 0):
            break
    assert await budgets.store.standing("a") == (0, 0)  # nothing held, nothing spent


# -- a call's share ----------------------------------------------------------------------


class _Beat:
    def __init__(self) -> None:
        self.sent = 0

    def send(self, details: object) -> None:
        self.sent += 1


class _Meter:
    def __init__(self) -> None:
        self.refusals: list[dict[str, str]] = []
        self.budget_refusals = self

    def add(self, value: int, attributes: dict[str, str]) -> None:
        self.refusals.append(attributes)


def _request(deadline: float | None = None, **constraints: Any) -> CompletionRequest:
    task = Task(prompt="x" * 400, constraints=TaskConstraints(**constraints))  # ~100 tokens
    return CompletionRequest(task=task, deadline_epoch=deadline)


async def _share(budgets: Budgets | None, request: CompletionRequest, **options: Any) -> Any:
    meter = options.pop("meter", _Meter())
    return await _named.reserve(
        budgets,
        request,
        options.pop("state", AttemptState(attempt=1, generation=1)),
        options.pop("beat", _Beat()),  # type: ignore[arg-type]
        price=options.pop("price", PRICE),
        prompt_chars=400,
        model="m",
        default_max_tokens=1000,
        meter=lambda: meter,  # type: ignore[arg-type,return-value]
    )


async def test_a_budget_the_worker_does_not_know_fails_at_once() -> None:
    for budgets in (None, Budgets({"team-a": 1.0, "team-b": 2.0})):
        with pytest.raises(ApplicationError, match="'team-x' is not configured") as caught:
            await _share(budgets, _request(budget="team-x"))
        assert caught.value.type == CONFIGURATION_ERROR and caught.value.non_retryable
    assert "team-a, team-b" in caught.value.message
    with pytest.raises(ApplicationError, match="has no price"):
        await _share(Budgets({"a": 1.0}), _request(budget="a"), price=None)
    assert await _share(None, _request()) is None  # a task naming none is not budgeted


async def test_a_full_share_with_max_tokens_leaves_the_stream_to_the_provider() -> None:
    budgets = Budgets({"a": 1.0})
    hold = await _share(budgets, _request(budget="a", max_tokens=50))
    # The prompt (~100 tokens) and 50 tokens of answer: the most the call can cost.
    assert hold.decision.granted == pytest.approx(PRICE.cost(100, 50))
    assert hold.cap is None  # the provider stops at max_tokens
    await _named.settle(hold, AttemptState(attempt=1, generation=1))
    # Without max_tokens the worker's default is reserved, and the share caps the stream.
    hold = await _share(budgets, _request(budget="a"))
    assert hold.decision.granted == pytest.approx(PRICE.cost(100, 1000))
    assert hold.cap is not None and hold.cap.cap == hold.decision.granted
    await _named.settle(hold, AttemptState(attempt=1, generation=1))


async def test_a_reattachs_share_covers_the_new_call_made_should_it_fail() -> None:
    budgets = Budgets({"a": 1.0})
    state = AttemptState(attempt=2, generation=1, continuation="resp_1")
    hold = await _share(budgets, _request(budget="a", max_tokens=50), state=state)
    assert hold.decision.granted == pytest.approx(PRICE.cost(100, 50))
    await _named.settle(hold, state)


async def test_the_last_share_caps_the_stream_and_the_tighter_cap_holds() -> None:
    budgets = Budgets({"a": 0.0005})
    hold = await _share(budgets, _request(budget="a", max_tokens=500))
    share = hold.cap
    assert share is not None and share.cap == pytest.approx(0.0005)  # less than it wanted
    # The prompt (0.0002) leaves about 30 chunks.
    assert not share.stop_after(28) and share.stop_after(30)
    error = share.exceeded(30)
    assert error.type == NAMED_BUDGET_EXCEEDED and error.non_retryable
    assert "'a' ran out during this call" in error.message and "partial output" in error.message
    task_cap = Budget(cap=0.01, spent=0.0, prompt=0.0002, per_chunk=0.00001)
    assert _named.tighter(task_cap, hold) is share
    tight = Budget(cap=0.0003, spent=0.0, prompt=0.0002, per_chunk=0.00001)
    assert _named.tighter(tight, hold) is tight
    assert _named.tighter(task_cap, None) is task_cap and _named.tighter(None, None) is None


async def test_a_spent_budget_refuses_the_call_naming_its_spend() -> None:
    budgets = Budgets({"team-a": 0.001})
    meter = _Meter()
    first = await _share(budgets, _request(budget="team-a", max_tokens=50), meter=meter)
    state = AttemptState(attempt=1, generation=1)
    state.ledger.attempts.append(
        AttemptBill(attempt=1, generation=1, model="m", cost=0.00095, outcome="completed")
    )
    await _named.settle(first, state)  # what the attempt's bill says it cost
    assert await budgets.store.standing("team-a") == (pytest.approx(0.00095), 0)
    with pytest.raises(ApplicationError) as caught:
        await _share(budgets, _request(budget="team-a", max_tokens=50), meter=meter)
    error = caught.value
    assert error.type == NAMED_BUDGET_EXCEEDED and error.non_retryable
    assert "'team-a' is spent for today" in error.message
    assert "$0.000950 of its $0.001000 spent today (UTC " in error.message
    assert "00:00 UTC" in error.message
    assert meter.refusals == [{"model": "m", "budget": "team-a"}]


async def test_a_call_waiting_past_the_deadline_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("ai_orchestrator.budgets.POLL_SECONDS", 0.01)
    monkeypatch.setattr("ai_orchestrator.activities._named.POLL_SECONDS", 0.01)
    budgets = Budgets({"a": 0.001})
    await budgets.reserve("a", 0.0009, 0.0001)  # held by a call in flight
    beat = _Beat()
    with pytest.raises(ApplicationError, match="had no room for it before the task's deadline"):
        await _share(budgets, _request(time.time() + 0.3, budget="a", max_tokens=50), beat=beat)
    assert beat.sent >= 1  # it heartbeated while it waited


async def test_an_unreachable_store_holds_the_call_until_the_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("ai_orchestrator.activities._named.POLL_SECONDS", 0.01)
    budgets = Budgets({"a": 1.0}, RedisStore("redis://:secret-pw@127.0.0.1:1/0"))
    beat = _Beat()
    with pytest.raises(ApplicationError, match="no call goes ahead unbudgeted") as caught:
        await _share(budgets, _request(time.time() + 0.2, budget="a"), beat=beat)
    assert caught.value.type == CONNECTION_FAILED and caught.value.non_retryable
    assert "secret-pw" not in caught.value.message and beat.sent >= 1
    await budgets.aclose()


async def test_a_running_call_keeps_its_lease_and_a_settled_one_lets_it_go() -> None:
    budgets = Budgets({"a": 1.0}, LocalStore(lease_seconds=0.3))
    hold = await _share(budgets, _request(budget="a", max_tokens=50))
    await asyncio.sleep(0.7)  # two leases long: renewed, still held, not charged
    assert await budgets.store.standing("a") == (0, hold.decision.granted)
    await _named.settle(hold, AttemptState(attempt=1, generation=1))
    await asyncio.sleep(0.4)
    assert await budgets.store.standing("a") == (0, 0)
