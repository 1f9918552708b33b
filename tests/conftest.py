"""Shared fixtures: one real Temporal dev server per session, a simulator per test.

Each integration test gets its own task queue and task ids, so tests never see
each other's work even though they share the server.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from temporalio.client import Client
from temporalio.worker import Worker

from ai_orchestrator import RetrySettings, TaskClient
from ai_orchestrator.config import ProviderSettings, WorkerTuning
from ai_orchestrator.local.devserver import DevServer
from ai_orchestrator.local.session import worker_polling
from ai_orchestrator.payloads.converter import data_converter
from ai_orchestrator.simulator import Simulator
from ai_orchestrator.worker import running

from .support import bytecode, forked
from .support.helpers import wait_until

#: Real Redis servers (fixtures `redis_url`, `start_redis`).
pytest_plugins = ["tests.support.redis_server"]

#: A fake key with a distinctive shape: tests search history and errors for it.
SECRET_KEY = "sk-test-0123456789abcdefSECRETxyz"

#: Fast retries so fault tests take seconds, bounded so they cannot storm. (Temporal
#: rounds delays under 1 s up to 1 s; the short interval matters for Retry-After tests.)
FAST_RETRY = RetrySettings(
    max_attempts=4,
    initial_interval_seconds=0.2,
    backoff_coefficient=2.0,
    max_interval_seconds=2.0,
    heartbeat_timeout_seconds=2.0,
)


#: Seconds a test worker gives running attempts when it stops (production: 10).
TEST_GRACE_SECONDS = 0.5

#: Fixtures that need the Temporal dev server or a Redis server.
_TEMPORAL_FIXTURES = frozenset(
    {"temporal", "client", "worker", "tasks", "redis_url", "start_redis"}
)
#: Folders whose tests start a Temporal server or real processes (workers, CLIs, Redis).
_INTEGRATION_FOLDERS = frozenset({"providers", "client", "cli", "reliability", "live"})


#: Seconds each of the slowest files took (``pytest --durations=0``, 2026-12-03, 2 cores,
#: four processes). The parallel run hands whole files out in collection order, so
#: these go first: a long file started last kept one process busy for a minute
#: after the others had finished (xdist's own order puts the files with the most
#: tests first, which are the quick unit files). Stale figures cost time, never
#: correctness.
SLOW_FILES = {
    "reliability/test_batch_durability.py": 118,
    "reliability/test_shared_limiter.py": 52,
    "reliability/test_batch_delivery.py": 46,
    "cli/test_cli_restarts.py": 12,
    "providers/test_platforms.py": 33,
    "reliability/test_paid_processes.py": 32,
    "reliability/test_chaos.py": 30,
    "reliability/test_quotas.py": 29,
    "providers/test_claude_code_tasks.py": 27,
    "live/test_live_processes.py": 26,
    "reliability/test_paid_once.py": 26,
    "reliability/test_edges_runs.py": 25,
    "reliability/test_provider_errors.py": 25,
    "reliability/test_global_rate_limit.py": 21,
    "reliability/test_worker_processes.py": 19,
    "reliability/test_edges_inputs.py": 17,
    "providers/test_claude_code_runs.py": 17,
    "cli/test_cli_outcomes.py": 17,
    "live/test_live_tasks.py": 16,
    "reliability/test_resume_tasks.py": 16,
    "client/test_stuck.py": 16,
}


def _weight(item: pytest.Item) -> int:
    return SLOW_FILES.get(f"{item.path.parent.name}/{item.path.name}", 0)


def pytest_configure(config: pytest.Config) -> None:
    """Before a parallel run's test processes start, make the bytecode they would
    each compile (see :mod:`tests.support.bytecode`), and start the fork server
    they share (see :mod:`tests.support.forked`)."""
    parallel = getattr(config.option, "numprocesses", None) and config.option.dist != "no"
    if not parallel or "PYTEST_XDIST_WORKER" in os.environ:
        return
    if config.getoption("assertmode") == "rewrite" and not config.getini(
        "enable_assertion_pass_hook"
    ):
        bytecode.prepare_all()
    if "not integration" not in (config.option.markexpr or ""):  # the fast lane forks none
        forked.start_shared()  # after the bytecode, which it then loads


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark ``integration`` what needs a Temporal server or a subprocess, so that
    ``pytest -m "not integration"`` is a fast lane with neither; put the slowest
    files first (see ``SLOW_FILES``; the sort keeps each file's own order)."""
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if item.path.parent.name in _INTEGRATION_FOLDERS or fixtures & _TEMPORAL_FIXTURES:
            item.add_marker(pytest.mark.integration)
    items.sort(key=lambda item: -_weight(item))


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
async def temporal() -> AsyncIterator[DevServer]:
    async with DevServer() as server:
        yield server


@pytest.fixture(scope="session")
async def client(temporal: DevServer) -> Client:
    return await Client.connect(temporal.target, data_converter=data_converter())


@pytest.fixture
def sim_options() -> dict[str, Any]:
    """How this test's simulator starts; a folder or module overrides this, not ``sim``."""
    return {"tokens_per_second": 200.0, "default_tokens": 24}


@pytest.fixture
async def sim(sim_options: dict[str, Any]) -> AsyncIterator[Simulator]:
    """The simulator this test talks to (one per test), started with ``sim_options``."""
    async with Simulator(**sim_options) as simulator:
        yield simulator


@pytest.fixture
def queue() -> str:
    return unique("tq")


def provider_for(sim: Simulator, **overrides: object) -> ProviderSettings:
    settings = ProviderSettings(
        api_key=SECRET_KEY,
        base_url=sim.base_url,
        default_model="gpt-4o-mini",
        read_timeout=5.0,
        flush_interval=0.1,
    )
    return ProviderSettings(**{**settings.__dict__, **overrides})  # type: ignore[arg-type]


@asynccontextmanager
async def running_worker(
    client: Client, queue: str, sim: Simulator, **options: object
) -> AsyncIterator[Worker]:
    provider = options.pop("provider", None) or provider_for(sim)
    # A test's worker stops as soon as its test is done: an attempt still running
    # then (a test about cancels or failures) hands over at once instead of
    # keeping the test waiting the production grace period.
    options.setdefault("tuning", WorkerTuning(graceful_shutdown_seconds=TEST_GRACE_SECONDS))
    async with running(client, task_queue=queue, provider=provider, **options) as worker:  # type: ignore[arg-type]
        # Listed as the queue's poller before the test goes on: a CLI the test starts
        # next looks for a live worker, and a forked one asks within milliseconds.
        await wait_until(lambda: worker_polling(client, queue), 30, f"a worker polling {queue}")
        yield worker


@pytest.fixture
async def worker(client: Client, queue: str, sim: Simulator) -> AsyncIterator[Worker]:
    async with running_worker(client, queue, sim) as w:
        yield w


@pytest.fixture
def tasks(client: Client, queue: str) -> TaskClient:
    return TaskClient(client, task_queue=queue, retry=FAST_RETRY)
