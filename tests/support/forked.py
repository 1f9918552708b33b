"""The test side of :mod:`.forkserver`: a process that behaves like asyncio's.

A forked process is the fork server's child, not this process's, so its end
is learned from the server (``exit N`` on its connection) rather than from
``waitpid``; everything else (its pid, signals, pipes) is the real process's.
"""

from __future__ import annotations

import array
import asyncio
import atexit
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def forked_processes() -> bool:
    """Processes of ours are forked unless ``AI_ORCHESTRATOR_TEST_FORK=0``."""
    return os.environ.get("AI_ORCHESTRATOR_TEST_FORK", "1") != "0" and sys.platform == "linux"


#: The socket of the fork server a parallel run's test processes share (set by its
#: controller, see :func:`start_shared`).
SHARED_ENV = "AI_ORCHESTRATOR_TEST_FORKSERVER"


def start_shared() -> None:
    """Start one fork server for the whole parallel run, before its test processes
    start: it preloads while they collect, once rather than once in each (5 s of
    CPU apiece). They inherit its address in ``SHARED_ENV``."""
    if forked_processes() and not _SHARED:
        server = _Server()
        _SHARED.append(server)
        os.environ[SHARED_ENV] = server.path


def _state(path: str) -> str | None:
    """``ready``, ``failed`` (with why), or None while the server starts."""
    if os.path.exists(path):  # made once it accepts connections
        return "ready"
    with contextlib.suppress(OSError), open(f"{path}.failed") as failed:
        return f"failed: {failed.read().strip()[-300:]}"
    return None


class _Shared:
    """The run's shared fork server, as a test process sees it (started elsewhere)."""

    #: Seconds to wait for it before starting this process's own.
    WAIT = 60.0

    def __init__(self, path: str) -> None:
        self.path = path

    async def ready(self) -> None:
        for _ in range(int(self.WAIT * 10)):  # it started with the run: rarely a wait
            if (state := _state(self.path)) is not None:
                break
            await asyncio.sleep(0.1)
        if state != "ready":
            raise RuntimeError(f"the shared fork server at {self.path}: {state or 'not started'}")

    def alive(self) -> bool:
        return True  # if it died, the next connection is refused (see ``fork``)

    def close(self) -> None:
        pass  # the controller's to stop


class _Server:
    """This test process's fork server, started on first use.

    Started from the event loop's own thread: the server dies with the thread that
    started it (``PR_SET_PDEATHSIG`` follows threads), and the loop's thread lives
    as long as the tests do, where an executor's might not.
    """

    def __init__(self) -> None:
        self.folder = tempfile.mkdtemp(prefix="aio-fork-")
        self.path = os.path.join(self.folder, "s")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.support.forkserver", self.path],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
        )
        atexit.register(self.close)

    async def ready(self) -> None:
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(self.proc.stdout.readline), 120)
        if line.strip() != b"ready":
            raise RuntimeError(f"the fork server did not start (exit {self.proc.wait()})")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for name in (self.path, f"{self.path}.binding", f"{self.path}.failed"):
            with contextlib.suppress(OSError):
                os.unlink(name)
        with contextlib.suppress(OSError):
            os.rmdir(self.folder)


_server: _Server | _Shared | None = None
_starting = asyncio.Lock()
#: The shared server failed here once: this process uses its own from then on.
_shared_failed = False
#: The shared server, when this process started it (kept referenced for the run).
_SHARED: list[_Server] = []


async def _running_server() -> _Server | _Shared:
    """The server, started once even when the first processes are asked for at once:
    the run's shared one if there is one, else (or if it failed) this process's own."""
    global _server, _shared_failed
    async with _starting:
        if _server is None or not _server.alive():
            shared = None if _shared_failed else os.environ.get(SHARED_ENV)
            if shared:
                try:
                    await (found := _Shared(shared)).ready()
                    _server = found
                    return _server
                except RuntimeError as exc:
                    print(f"{exc}; this test process starts its own", file=sys.stderr)
                    _shared_failed = True
            server = _Server()
            try:
                await server.ready()
            except BaseException:
                server.close()
                raise
            _server = server
    return _server


def _forget_shared() -> None:
    """The shared server refused a connection (it died): use this process's own."""
    global _server, _shared_failed
    if isinstance(_server, _Shared):
        _shared_failed, _server = True, None


#: Pipe connections being set up (kept referenced until they are).
_PENDING: set[asyncio.Task[object]] = set()


def _pipe_reader(fd: int) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    task = loop.create_task(
        loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(fd, "rb", buffering=0)
        )
    )
    _PENDING.add(task)
    task.add_done_callback(_PENDING.discard)
    return reader


class ForkedProcess:
    """What the tests use of :class:`asyncio.subprocess.Process`, for a forked one."""

    def __init__(
        self,
        pid: int,
        stdout: asyncio.StreamReader,
        stderr: asyncio.StreamReader,
        control: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.pid = pid
        self.stdin = None
        self.stdout: asyncio.StreamReader | None = stdout
        self.stderr: asyncio.StreamReader | None = stderr
        self.returncode: int | None = None
        self._writer = writer
        self._ended = asyncio.ensure_future(self._watch(control))

    async def _watch(self, control: asyncio.StreamReader) -> int:
        line = await control.readline()
        try:
            code = int(line.split()[1]) if line.startswith(b"exit ") else -signal.SIGKILL
        except (IndexError, ValueError):
            code = -signal.SIGKILL
        self.returncode = code
        self._writer.close()
        return code

    async def wait(self) -> int:
        return await asyncio.shield(self._ended)

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    async def communicate(self, input: bytes | None = None) -> tuple[bytes, bytes]:
        assert self.stdout is not None and self.stderr is not None
        out, err = await asyncio.gather(self.stdout.read(), self.stderr.read())
        await self.wait()
        return out, err


async def fork(*args: str, env: dict[str, str], cwd: Path) -> ForkedProcess:
    """``python -m ai_orchestrator ARGS``, forked from the preloaded server."""
    server = await _running_server()
    try:
        return await _fork_from(server, args, env, cwd)
    except (ConnectionRefusedError, FileNotFoundError):
        if not isinstance(server, _Shared):
            raise
        _forget_shared()
        return await _fork_from(await _running_server(), args, env, cwd)


async def _fork_from(
    server: _Server | _Shared, args: tuple[str, ...], env: dict[str, str], cwd: Path
) -> ForkedProcess:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    devnull = os.open(os.devnull, os.O_RDONLY)
    request = json.dumps({"args": list(args), "env": env, "cwd": str(cwd)}).encode() + b"\n"
    fds = array.array("i", [devnull, out_w, err_w])
    try:
        try:
            sock.connect(server.path)
            sock.sendmsg([request], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds.tobytes())])
        finally:
            for fd in (devnull, out_w, err_w):
                os.close(fd)
        sock.setblocking(False)
        control, writer = await asyncio.open_unix_connection(sock=sock)
        line = await control.readline()
        if not line.startswith(b"pid "):
            raise RuntimeError(f"the fork server refused {args}: {line!r}")
    except BaseException:
        sock.close()
        os.close(out_r)
        os.close(err_r)
        raise
    return ForkedProcess(
        int(line.split()[1]), _pipe_reader(out_r), _pipe_reader(err_r), control, writer
    )
