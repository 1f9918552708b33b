"""docker-compose.yml is parsed (no Docker engine here) and checked against the code."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from ai_orchestrator import config
from ai_orchestrator.cli import cli

#: These tests start a real subprocess (see tests/conftest.py for the lanes).
pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_services_and_ports() -> None:
    services = compose()["services"]
    assert {"postgresql", "temporal", "temporal-ui", "worker", "simulator"} <= set(services)
    assert "7233:7233" in services["temporal"]["ports"]
    assert "8233:8080" in services["temporal-ui"]["ports"]
    for name in ("worker", "simulator"):
        assert services[name]["build"] == "." and (ROOT / "Dockerfile").is_file()


def test_worker_environment_matches_the_code() -> None:
    env = compose()["services"]["worker"]["environment"]
    assert env["TEMPORAL_ADDRESS"] == "temporal:7233"
    assert env[config.ENV_TASK_QUEUE] == config.DEFAULT_TASK_QUEUE
    # The key is passed from the environment, never written into the file.
    assert env["OPENAI_API_KEY"].startswith("${OPENAI_API_KEY")
    assert "sk-" not in (ROOT / "docker-compose.yml").read_text()
    dockerfile = (ROOT / "Dockerfile").read_text().splitlines()
    assert not [line for line in dockerfile if line.startswith(("ENV", "ARG")) and "KEY" in line]


def test_commands_exist_in_the_cli() -> None:
    services = compose()["services"]
    runner = CliRunner()
    for name in ("worker", "simulator"):
        command = services[name]["command"]
        help_result = runner.invoke(cli, [command[0], "--help"])
        assert help_result.exit_code == 0, help_result.output
        for flag in (arg for arg in command[1:] if arg.startswith("--")):
            assert flag in help_result.output


def test_every_environment_variable_is_one_the_code_reads() -> None:
    source = "\n".join(p.read_text() for p in (ROOT / "ai_orchestrator").rglob("*.py"))
    temporal_envconfig = {"TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE"}
    for name, service in compose()["services"].items():
        if service.get("build") != ".":
            continue
        for key in service.get("environment", {}):
            assert key in temporal_envconfig or f'"{key}"' in source, (
                f"{name}: {key} is read by nothing"
            )


def test_worker_depends_on_setup_and_exposes_metrics() -> None:
    services = compose()["services"]
    worker = services["worker"]
    assert worker["depends_on"]["setup"]["condition"] == "service_completed_successfully"
    assert services["setup"]["command"] == ["setup"]
    port = worker["environment"]["AI_ORCHESTRATOR_METRICS_ADDRESS"].rsplit(":", 1)[1]
    assert port in worker["expose"]
    assert "ports" not in worker  # replicas (--scale) cannot share a host port


@pytest.mark.skipif(
    shutil.which("docker-compose") is None,
    reason="docker-compose (Debian package) not installed; .ci/run installs it",
)
def test_a_real_compose_implementation_accepts_the_file(tmp_path: Path) -> None:
    def check(path: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["docker-compose", "-f", str(path), "config", "-q"],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "OPENAI_API_KEY": ""},
        )

    ok = check(ROOT / "docker-compose.yml")
    assert ok.returncode == 0, ok.stderr
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(
        (ROOT / "docker-compose.yml")
        .read_text()
        .replace("condition: service_completed_successfully", "condition: whenever")
    )
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    assert check(broken).returncode != 0  # positive control: the checker does reject errors
