"""Payloads from newer peers decode; users still get strict models.

A task input written by a newer client with one extra field must not jam an
older worker's run, while a typo at construction must still fail loudly.
"""

from __future__ import annotations

import json
import pickle

import pytest
from pydantic import ValidationError
from temporalio.api.common.v1 import Payload

from ai_orchestrator import Result, Task, TaskConstraints
from ai_orchestrator.core import LENIENT_CONTEXT
from ai_orchestrator.messages import TaskInput
from ai_orchestrator.payloads.codec import EncryptionCodec
from ai_orchestrator.payloads.converter import (
    LenientPydanticJSONPayloadConverter,
    data_converter,
    lenient_pydantic_data_converter,
)

KEY = bytes(range(32))


def newer_task_input_payload() -> Payload:
    """A TaskInput as a newer client would write it: unknown fields at every level."""
    value = TaskInput(task=Task(prompt="hello", constraints=TaskConstraints(max_tokens=7)))
    data = json.loads(value.model_dump_json())
    data["added_in_v9"] = {"anything": True}
    data["task"]["reasoning_effort"] = "high"
    data["task"]["constraints"]["top_p"] = 0.5
    return Payload(metadata={"encoding": b"json/plain"}, data=json.dumps(data).encode())


async def test_unknown_fields_in_task_and_constraints_are_dropped_on_decode() -> None:
    [decoded] = await data_converter().decode([newer_task_input_payload()], [TaskInput])
    assert isinstance(decoded, TaskInput)
    assert decoded.task.prompt == "hello"
    assert decoded.task.constraints is not None and decoded.task.constraints.max_tokens == 7
    assert "reasoning_effort" not in decoded.task.model_dump()


async def test_encrypted_converter_is_lenient_too() -> None:
    codec = EncryptionCodec({"k": KEY}, "k")
    [encrypted] = await codec.encode([newer_task_input_payload()])
    [decoded] = await data_converter(codec).decode([encrypted], [TaskInput])
    assert decoded.task.constraints is not None and decoded.task.constraints.max_tokens == 7


def test_payload_converter_decodes_result_with_unknown_fields() -> None:
    result = Result(task=Task(prompt="x"), output="ok", success=True)
    data = json.loads(result.model_dump_json())
    data["grade"] = "A"
    data["task"]["new_field"] = 1
    payload = Payload(metadata={"encoding": b"json/plain"}, data=json.dumps(data).encode())
    [decoded] = data_converter().payload_converter.from_payloads([payload], [Result])
    assert decoded.output == "ok" and decoded.task.prompt == "x"


def test_construction_stays_strict() -> None:
    with pytest.raises(ValidationError, match="bogus"):
        Task(prompt="x", bogus=1)  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="top_p"):
        TaskConstraints(top_p=0.5)  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="bogus"):
        Task.model_validate_json('{"prompt": "x", "bogus": 1}')


def test_lenient_context_still_validates_known_fields() -> None:
    with pytest.raises(ValidationError, match="prompt"):
        Task.model_validate({"prompt": " ", "bogus": 1}, context=LENIENT_CONTEXT)
    with pytest.raises(ValidationError, match="max_tokens"):
        Task.model_validate(
            {"prompt": "x", "constraints": {"max_tokens": 0, "top_p": 1}}, context=LENIENT_CONTEXT
        )


def test_type_adapter_cache_is_kept_and_converter_pickles() -> None:
    converter = LenientPydanticJSONPayloadConverter()
    payload = Payload(metadata={"encoding": b"json/plain"}, data=b'{"prompt": "x", "z": 0}')
    for _ in range(3):
        assert converter.from_payload(payload, Task).prompt == "x"
    info = converter._type_adapter.cache_info()
    assert info.misses == 1 and info.hits == 2
    restored = pickle.loads(pickle.dumps(converter))
    assert restored.from_payload(payload, Task).prompt == "x"


def test_unencrypted_converter_is_the_lenient_one() -> None:
    assert data_converter() is lenient_pydantic_data_converter
