"""What makes two submissions the same task: the fingerprint, and reading a run's own."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from typing import Any

from temporalio.api.common.v1 import Payload
from temporalio.api.history.v1 import HistoryEvent

from ai_orchestrator.client._identity import (
    FINGERPRINT_MEMO,
    fingerprint,
    run_fingerprint,
    run_input,
)
from ai_orchestrator.core import Platform, Task, TaskConstraints, TaskType
from ai_orchestrator.messages import TaskInput
from ai_orchestrator.payloads.codec import EncryptionCodec
from ai_orchestrator.payloads.converter import data_converter

TASK = Task(prompt="Summarise the memo", task_id="t-1")


def test_the_fingerprint_is_a_stable_hash_of_canonical_json() -> None:
    """Open runs keep the fingerprint their client computed: a change of the canonical
    form (fields, key order, separators, escaping, JSON mode) would make every one of
    them a "different task" to a newer client, which would then refuse re-submissions."""
    task = Task(
        prompt="Résumé the memo",
        type=TaskType.RESEARCH,
        platform_hint=Platform.CLAUDE,
        priority=2,
        metadata={"team": "ops", "due": datetime(2025, 1, 2, 3, 4, 5, tzinfo=timezone.utc)},
        files=["a.txt"],
        constraints=TaskConstraints(max_tokens=100, fallback_models=["gpt-4o"]),
        task_id="t-1",
    )
    canonical = (
        '{"constraints":{"fallback_models":["gpt-4o"],"max_tokens":100},"files":["a.txt"],'
        '"metadata":{"due":"2025-01-02T03:04:05Z","team":"ops"},"platform_hint":"claude",'
        '"priority":2,"prompt":"Résumé the memo","type":"research"}'
    )
    assert fingerprint(task) == "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def test_only_what_changes_the_work_changes_the_fingerprint() -> None:
    base = fingerprint(Task(prompt="p", task_id="a"))
    created = datetime(2020, 1, 1, tzinfo=timezone.utc)
    assert fingerprint(Task(prompt="p", task_id="b", created_at=created)) == base
    assert fingerprint(Task(prompt="p", constraints=TaskConstraints())) == base  # runs alike
    others = [
        Task(prompt="q"),
        Task(prompt="p", constraints=TaskConstraints(max_tokens=5)),
        Task(prompt="p", constraints=TaskConstraints(timeout_seconds=60)),
    ]
    assert len({base, *map(fingerprint, others)}) == 4


class _Description:
    def __init__(self, memo: dict[str, Any] | Exception) -> None:
        self._memo = memo

    async def memo_value(self, key: str, default: Any, *, type_hint: Any = None) -> Any:
        if isinstance(self._memo, Exception):
            raise self._memo
        return self._memo.get(key, default)


class _Handle:
    """What run_fingerprint reads of a workflow handle: its memo and its start event."""

    def __init__(self, memo: dict[str, Any] | Exception, payloads: list[Payload]) -> None:
        self.memo, self.payloads = memo, payloads

    async def describe(self) -> _Description:
        return _Description(self.memo)

    async def fetch_history_events(self) -> AsyncIterator[HistoryEvent]:
        event = HistoryEvent()
        event.workflow_execution_started_event_attributes.input.payloads.extend(self.payloads)
        yield event


async def test_a_runs_fingerprint_is_its_memo_else_its_inputs() -> None:
    converter = data_converter()
    started = await converter.encode([TaskInput(task=TASK)])
    recorded = _Handle({FINGERPRINT_MEMO: "sha256:recorded"}, started)
    assert await run_fingerprint(recorded, converter) == "sha256:recorded"  # type: ignore[arg-type]
    older = _Handle({}, started)  # a run of an older client: no memo
    assert await run_fingerprint(older, converter) == fingerprint(TASK)  # type: ignore[arg-type]
    assert await run_input(older, converter) == TaskInput(task=TASK)  # type: ignore[arg-type]
    other_key = _Handle(ValueError("a memo encrypted with another key"), started)
    assert await run_fingerprint(other_key, converter) == fingerprint(TASK)  # type: ignore[arg-type]


async def test_a_run_that_cannot_be_read_is_never_taken_for_the_same_task() -> None:
    """None makes the caller refuse to attach: never a guess."""
    converter = data_converter()
    foreign = data_converter(EncryptionCodec({"k": bytes(32)}, "k"))
    unreadable = [
        await converter.encode(["another workflow's input"]),
        await foreign.encode([TaskInput(task=TASK)]),  # encrypted with a key we lack
        [],
    ]
    for payloads in unreadable:
        handle = _Handle({}, payloads)
        assert await run_fingerprint(handle, converter) is None  # type: ignore[arg-type]
        assert await run_input(handle, converter) is None  # type: ignore[arg-type]
