"""The Claude Code settings an operator sets, read and refused the way the README says."""

from __future__ import annotations

import pytest

from ai_orchestrator.config import ConfigError
from ai_orchestrator.providers._claude_env import QUIET_ENV, cli_environment
from ai_orchestrator.providers._config import claude_extra_env, claude_retention_days


def test_extra_names_are_a_comma_separated_list_of_names() -> None:
    env = {"AI_ORCHESTRATOR_CLAUDE_ENV": " AWS_REGION, MY_TOOL_TOKEN ,,"}
    assert claude_extra_env(env) == ("AWS_REGION", "MY_TOOL_TOKEN")
    assert claude_extra_env({}) == ()
    with pytest.raises(ConfigError, match="variable names") as caught:
        claude_extra_env({"AI_ORCHESTRATOR_CLAUDE_ENV": "sk-ant-pasted=value"})
    assert "sk-ant-pasted" not in str(caught.value)  # a pasted secret is not echoed


def test_retention_is_positive_days_default_seven() -> None:
    assert claude_retention_days({}) == 7.0
    assert claude_retention_days({"AI_ORCHESTRATOR_CLAUDE_RETENTION_DAYS": "0.5"}) == 0.5
    for bad in ("0", "-1", "soon", "inf"):
        with pytest.raises(ConfigError, match="RETENTION_DAYS"):
            claude_retention_days({"AI_ORCHESTRATOR_CLAUDE_RETENTION_DAYS": bad})


def test_only_allow_listed_and_added_names_pass() -> None:
    source = {
        "PATH": "/bin",
        "LC_ALL": "C",
        "ANTHROPIC_API_KEY": "k",
        "CLAUDE_CODE_USE_BEDROCK": "1",
        "OPENAI_API_KEY": "no",
        "AI_ORCHESTRATOR_ENCRYPTION_KEYS": "no",
        "HOME": "/root",
        "CLAUDE_CONFIG_DIR": "/root/.claude",
        "AWS_REGION": "eu-west-1",
    }
    env = cli_environment(source, ["AWS_REGION", "HOME"])
    assert env == {
        "PATH": "/bin",
        "LC_ALL": "C",
        "ANTHROPIC_API_KEY": "k",
        "CLAUDE_CODE_USE_BEDROCK": "1",
        "AWS_REGION": "eu-west-1",
        **QUIET_ENV,
    }  # HOME and CLAUDE_CONFIG_DIR are the attempt's own, even when named
