"""Real Redis servers (the live channel, the shared limiter): one per session, more on demand.

A pytest plugin (see the root conftest): a test using them is an integration test.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from ai_orchestrator.local.devserver import free_port


def _start(port: int, password: str, log: Path) -> subprocess.Popen[bytes]:
    """A redis-server without persistence on ``port``, once it answers PING."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail(
            "redis-server is not installed: run `apt-get install redis-server` "
            "(.ci/run installs it); the live channel's Redis tests need a real server"
        )
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                *(binary, "--save", "", "--appendonly", "no", "--port", str(port)),
                *("--bind", "127.0.0.1", "--requirepass", password, "--daemonize", "no"),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    client = redis.Redis(port=port, password=password, socket_connect_timeout=0.5, socket_timeout=2)
    try:
        deadline = time.monotonic() + 15
        while True:
            if process.poll() is not None:
                output = log.read_text(errors="replace")[-2000:]
                pytest.fail(f"redis-server exited with {process.returncode}:\n{output}")
            try:
                if client.ping():
                    return process
            except redis.RedisError:
                if time.monotonic() > deadline:
                    _stop(process)
                    pytest.fail(f"redis-server on port {port} did not answer PING in 15 s")
                time.sleep(0.05)
    finally:
        client.close()


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``redis://:password@127.0.0.1:PORT/0`` of a throwaway server."""
    port, password = free_port(), secrets.token_hex(12)
    process = _start(port, password, tmp_path_factory.mktemp("redis") / "redis-server.log")
    yield f"redis://:{password}@127.0.0.1:{port}/0"
    _stop(process)


@pytest.fixture
def start_redis(tmp_path: Path) -> Iterator[Callable[[int, str], None]]:
    """Starts another server on a given port and password; stopped after the test."""
    started: list[subprocess.Popen[bytes]] = []

    def start(port: int, password: str) -> None:
        started.append(_start(port, password, tmp_path / f"redis-{len(started)}.log"))

    yield start
    for process in started:
        _stop(process)
