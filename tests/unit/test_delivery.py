"""Batch delivery's rules that need no server: when a task takes a batch, and the
collector's settings from the environment."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import timedelta
from typing import Any

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from ai_orchestrator import Task, TaskConstraints
from ai_orchestrator.activities import _batches
from ai_orchestrator.activities._batches import (
    BatchActivities,
    batch_tag,
    index_of,
    item_custom_id,
)
from ai_orchestrator.config import ConfigError
from ai_orchestrator.core import Platform
from ai_orchestrator.delivery import (
    MAX_ITEMS,
    BatchAnswer,
    BatchJoined,
    BatchMember,
    BatchPoll,
    FanOut,
    settings_from_env,
)
from ai_orchestrator.pricing import PricingTable
from ai_orchestrator.providers import ItemResult
from ai_orchestrator.workflows._batch_path import BatchPath, wants_batch

DAY = 24 * 3600


@pytest.mark.parametrize(
    ("delivery", "timeout", "batched"),
    [
        ("realtime", 30 * 3600, False),
        ("batch", 300, True),  # asked for: taken, whatever the deadline
        ("auto", 300, False),
        ("auto", DAY + 3599, False),  # the window, but no hour to go real time after
        ("auto", DAY + 3600, True),
    ],
)
def test_which_tasks_take_a_batch(delivery: str, timeout: float, batched: bool) -> None:
    constraints = TaskConstraints(delivery=delivery, timeout_seconds=timeout)  # type: ignore[arg-type]
    task = Task(prompt="p", constraints=constraints)
    assert wants_batch(task) is batched


def test_an_agent_session_never_takes_a_batch() -> None:
    constraints = TaskConstraints(delivery="batch")
    task = Task(prompt="p", constraints=constraints, platform_hint=Platform.CLAUDE_CODE)
    assert not wants_batch(task)


def test_a_bad_delivery_is_refused_at_submit() -> None:
    with pytest.raises(ValueError, match="delivery"):
        TaskConstraints(delivery="overnight")  # type: ignore[arg-type]


def test_collector_settings_from_the_environment() -> None:
    assert settings_from_env({}) == {}
    assert settings_from_env(
        {"AI_ORCHESTRATOR_BATCH_WINDOW_SECONDS": "0.5", "AI_ORCHESTRATOR_BATCH_MAX_ITEMS": "100"}
    ) == {"window_seconds": 0.5, "max_items": 100}
    for bad in ("0", "-1", "soon"):
        with pytest.raises(ConfigError, match="AI_ORCHESTRATOR_BATCH_POLL_SECONDS"):
            settings_from_env({"AI_ORCHESTRATOR_BATCH_POLL_SECONDS": bad})
    with pytest.raises(ConfigError, match=f"at most {MAX_ITEMS}"):
        settings_from_env({"AI_ORCHESTRATOR_BATCH_MAX_ITEMS": str(MAX_ITEMS + 1)})


def test_result_ids_name_members_of_this_batch_only() -> None:
    tag, other = batch_tag("collector/one"), batch_tag("collector/two")
    assert len(tag) <= 64 and tag != other
    assert index_of(tag, item_custom_id(tag, 41)) == 41
    assert index_of(tag, item_custom_id(other, 41)) is None  # a stranger's result
    assert index_of(tag, "m000041") is None


def test_a_capped_task_is_never_batched() -> None:
    """A batch answer arrives whole: no cap could stop it midway."""
    for cap in ({"max_cost_usd": 0.01}, {"budget": "team-a"}):
        with pytest.raises(ValueError, match="cannot hold max_cost_usd or a named budget"):
            TaskConstraints(delivery="batch", **cap)  # type: ignore[arg-type]
        constraints = TaskConstraints(delivery="auto", timeout_seconds=DAY * 2, **cap)  # type: ignore[arg-type]
        task = Task(prompt="p", constraints=constraints)
        assert not wants_batch(task)  # streamed, capped


def test_a_task_takes_no_answer_from_a_batch_it_is_not_in() -> None:
    """A task in batch B must not take batch A's error (A's send failed and told every
    member): it would go real time while B still sends it, paid twice."""
    path = BatchPath()
    path.waiting = True
    path.join(BatchJoined(batch_workflow_id="B", index=0))
    path.answered(BatchAnswer(batch_workflow_id="A", provider_batch_id="", retryable=True))
    assert path.answer is None
    mine = BatchAnswer(batch_workflow_id="B", provider_batch_id="pb", retryable=True)
    path.answered(mine)
    assert path.answer is mine


def _env(beats: list[tuple], **info: Any) -> ActivityEnvironment:
    """An activity environment (with ``info`` changed) whose heartbeats land in ``beats``."""
    env = ActivityEnvironment(client=object())  # type: ignore[arg-type]
    if info:
        env.info = dataclasses.replace(env.info, **info)
    env.on_heartbeat = lambda *details: beats.append(details)
    return env


def _beat_fast_and_tell_with(monkeypatch: pytest.MonkeyPatch, tell: Any) -> None:
    """Beats every 10 ms, and ``tell`` in place of signalling a member."""
    real_beating = _batches._beating
    monkeypatch.setattr(_batches, "_beating", lambda details=tuple: real_beating(details, 0.01))
    monkeypatch.setattr(_batches, "_tell", tell)


def _fan(members: int, **extra: Any) -> FanOut:
    return FanOut(
        batch_workflow_id="pb",
        provider_batch_id="x",
        platform="chatgpt",
        model="m",
        members=[BatchMember(workflow_id=f"t{i}") for i in range(members)],
        included=list(range(members)),
        **extra,
    )


async def test_fan_out_never_records_an_answer_it_has_not_delivered(monkeypatch) -> None:
    """A heartbeat taken while an answer's signal is in flight must not count it as
    handed out: a worker dying then would resume past it, and the answer is lost."""
    tag = batch_tag("pb")
    results = [
        ItemResult(custom_id=item_custom_id(tag, i), kind="succeeded", text=f"a{i}")
        for i in range(3)
    ]

    class Provider:
        async def results(self, batch_id: str, *, skip: int = 0):
            for result in results[skip:]:
                yield result

    async def tell(client, member, answer) -> bool:
        if member.workflow_id == "t1":
            await asyncio.sleep(0.2)  # heartbeats go out meanwhile
            raise RuntimeError("worker died mid-signal")
        return True

    _beat_fast_and_tell_with(monkeypatch, tell)
    beats: list[tuple] = []
    providers: dict = {Platform.CHATGPT: Provider()}
    acts = BatchActivities(providers, pricing=PricingTable(), default_model="m")
    with pytest.raises(RuntimeError):
        await _env(beats).run(acts.fan_out, _fan(3))
    assert beats
    position, answered, _ = beats[-1]
    assert 1 not in answered and position <= 1


class _SlowProvider:
    """A provider that takes a while to say how a batch is doing, or to cancel it."""

    async def state(self, batch_id: str) -> object:
        await asyncio.sleep(0.2)
        raise RuntimeError("answered only after the beats were counted")

    async def cancel(self, batch_id: str) -> None:
        await asyncio.sleep(0.2)


@pytest.mark.parametrize("step", ["poll", "cancel"])
async def test_asking_a_slow_provider_heartbeats_meanwhile(step: str) -> None:
    """A slow answer is not a dead worker: the activity beats every third of its
    heartbeat timeout while it waits, so only a dead worker's stops."""
    beats: list[tuple] = []
    env = _env(beats, heartbeat_timeout=timedelta(seconds=0.15))
    providers: dict = {Platform.CHATGPT: _SlowProvider()}
    acts = BatchActivities(providers, pricing=PricingTable(), default_model="m")
    poll = BatchPoll(provider_batch_id="x", platform="chatgpt")
    if step == "poll":
        with pytest.raises(ApplicationError, match="after the beats"):
            await env.run(acts.poll, poll)
    else:
        await env.run(acts.cancel, poll)
    assert len(beats) >= 2


async def test_fan_out_tells_each_missing_member_once_across_a_retry(monkeypatch) -> None:
    """A batch that failed: every member hears why. A worker dying mid-way resumes
    after the members already told, and counts each one once."""
    told: list[str] = []

    async def tell(client, member, answer) -> bool:
        await asyncio.sleep(0.05)  # heartbeats go out meanwhile
        if member.workflow_id == "t2" and told.count("t2") == 0 and len(told) == 2:
            told.append("died")
            raise RuntimeError("worker died mid-signal")
        told.append(member.workflow_id)
        return True

    _beat_fast_and_tell_with(monkeypatch, tell)
    beats: list[tuple] = []
    acts = BatchActivities({}, pricing=PricingTable(), default_model="m")
    fan = _fan(4, error="the provider's batch failed")
    with pytest.raises(RuntimeError):
        await _env(beats).run(acts.fan_out, fan)
    retry = _env([], attempt=2, heartbeat_details=list(beats[-1]))
    summary = await retry.run(acts.fan_out, fan)
    assert told == ["t0", "t1", "died", "t2", "t3"]
    assert summary.errored == 4
