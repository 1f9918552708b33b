"""Worker tuning from the environment: numbers a worker can use, or one clear error."""

from __future__ import annotations

import pytest

from ai_orchestrator.config import ENV_WORKFLOW_POLLERS, ConfigError, WorkerTuning


def test_workflow_pollers_default_and_override() -> None:
    assert WorkerTuning.from_env({}).workflow_pollers == 20
    assert WorkerTuning.from_env({ENV_WORKFLOW_POLLERS: "8"}).workflow_pollers == 8
    assert WorkerTuning.from_env({ENV_WORKFLOW_POLLERS: ""}).workflow_pollers == 20


@pytest.mark.parametrize("raw", ["0", "-3", "2.5", "many", "inf", "nan"])
def test_workflow_pollers_rejects_what_is_not_a_positive_count(raw: str) -> None:
    with pytest.raises(ConfigError, match=ENV_WORKFLOW_POLLERS):
        WorkerTuning.from_env({ENV_WORKFLOW_POLLERS: raw})
