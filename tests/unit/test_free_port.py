"""``free_port``: a port no ``bind(0)`` is handed while a server is told to take it.

The dev server picks its own HTTP, metrics and internal ports by ``bind(0)``
while it starts; a frontend port merely bound and released could come back to
one of those, and the server died a moment after it first answered. A port in
TIME_WAIT is never handed out by ``bind(0)`` (Linux), yet a server setting
SO_REUSEADDR takes it.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from ai_orchestrator.local.devserver import free_port, port_open

TIME_WAIT = "06"


def _states(port: int) -> set[str]:
    """TCP states of local sockets on ``port``, from the kernel's table."""
    states = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port:
            states.add(fields[3])
    return states


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads Linux's TCP table")
def test_port_waits_in_time_wait_and_a_server_can_take_it() -> None:
    port = free_port()
    assert not port_open("127.0.0.1", port)  # nothing listens there
    assert TIME_WAIT in _states(port)
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", port))
        server.listen()
        assert port_open("127.0.0.1", port)
