"""Fixtures: a fresh simulator per test and the real openai SDK pointed at it."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import openai
import pytest
import pytest_asyncio

from ai_orchestrator.providers._tls import openai_http_client
from ai_orchestrator.simulator import Simulator

API_KEY = "sk-test-simulator-0123456789abcdef"  # test_simulator.py asserts on this exact key


@pytest.fixture
def sim_options() -> dict[str, Any]:
    # Unpaced so tests are fast; pacing tests set tokens_per_second themselves.
    return {"tokens_per_second": 0, "default_tokens": 16}


@pytest_asyncio.fixture
async def openai_client(sim: Simulator) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        base_url=sim.base_url, api_key=API_KEY, max_retries=0, http_client=openai_http_client()
    ) as c:
        yield c


@pytest.fixture(autouse=True)
def no_server_errors_logged(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """A misbehaving client must never make the server log an error."""
    caplog.set_level(logging.WARNING)
    yield
    noisy = [
        r
        for r in caplog.get_records("call") + caplog.get_records("teardown")
        if r.levelno >= logging.ERROR and r.name.split(".")[0] in ("aiohttp", "asyncio")
    ]
    assert not noisy, [r.getMessage() for r in noisy]
