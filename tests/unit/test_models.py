"""Bad input is refused at construction, with a message naming the field."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from ai_orchestrator import Result, Task, TaskConstraints, TaskStatus


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": -5}, "max_tokens"),
        ({"temperature": 2.5}, "temperature"),
        ({"temperature": -0.1}, "temperature"),
        ({"timeout_seconds": 0}, "timeout_seconds"),
        ({"model": "  "}, "model"),
    ],
)
def test_bad_constraints_are_rejected(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        TaskConstraints(**kwargs)


@pytest.mark.parametrize("prompt", ["", "   \n"])
def test_empty_prompt_is_rejected(prompt: str) -> None:
    with pytest.raises(ValidationError, match="prompt must not be empty"):
        Task(prompt=prompt)


def test_priority_must_fit_temporal_range() -> None:
    with pytest.raises(ValidationError, match="priority"):
        Task(prompt="x", priority=9)


def test_assignment_is_validated_too() -> None:
    task = Task(prompt="x")
    with pytest.raises(ValidationError):
        task.prompt = ""


def test_unknown_field_is_an_error_not_silently_dropped() -> None:
    with pytest.raises(ValidationError, match="promt"):
        Task(promt="typo")  # type: ignore[call-arg]


def test_result_status_defaults_from_success() -> None:
    task = Task(prompt="x")
    assert Result(task=task, output="ok", success=True).status == TaskStatus.COMPLETED
    assert Result(task=task, success=False, error="no").status == TaskStatus.FAILED


def test_models_round_trip_as_json() -> None:
    task = Task(prompt="hi", context={"a": [1, 2]}, constraints=TaskConstraints(max_tokens=5))
    assert Task.model_validate_json(task.model_dump_json()) == task
