"""``python -m ai_orchestrator ...`` processes forked from a preloaded interpreter.

The suite starts about a hundred processes of ours (workers to SIGKILL, CLIs to
run as a user would), and each spent 1.5 s of CPU importing the vendor SDKs
before doing anything: a quarter of the suite's CPU on a 2-core machine. This
server imports them once; each process is then a ``fork`` of it that runs the
command's real ``__main__`` with its own argv, environment, working folder and
pipes, and exits as the command would (its exit code, or minus the signal that
killed it). Nothing of the command is stubbed: only the interpreter's start is
shared. ``AI_ORCHESTRATOR_TEST_FORK=0`` starts every process fresh instead.

The server forks only while it is single-threaded (the parent of a fork must
hold no lock another thread could own), so it waits on its sockets and its
children with one ``select`` loop. It dies with the test process that started
it, and its children die with it.

Protocol (one Unix socket connection per process): the client sends one JSON
line (``args``, ``env``, ``cwd``) with the child's stdin, stdout and stderr as
file descriptors; the server answers ``pid N`` and, when the child ends,
``exit N``. A client that hangs up kills its child.
"""

from __future__ import annotations

import array
import atexit
import contextlib
import ctypes
import io
import json
import os
import runpy
import selectors
import signal
import socket
import sys
import threading
import traceback

#: What a process of ours imports before it does anything (``ai-orchestrator worker``
#: brings in most of it; the rest is what the commands import lazily).
PRELOAD = (
    "ai_orchestrator.cli",
    "ai_orchestrator.worker",
    "ai_orchestrator.providers",
    "ai_orchestrator.simulator",
    "openai",
    "anthropic",
    "google.genai",
    "temporalio.client",
    "temporalio.worker",
)
_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Linux: this process gets SIGKILL when its parent dies (no orphans)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _receive(conn: socket.socket) -> tuple[dict[str, object], list[int]]:
    fds = array.array("i")
    data = b""
    while not data.endswith(b"\n"):
        msg, ancdata, _, _ = conn.recvmsg(1 << 20, socket.CMSG_SPACE(3 * fds.itemsize))
        if not msg:
            raise EOFError
        data += msg
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
    return json.loads(data), list(fds)


def _child(request: dict[str, object], fds: list[int]) -> int:
    """Become ``python -m ai_orchestrator ARGS`` (this runs in the fork)."""
    die_with_parent()
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
    os.closerange(3, 1 << 16)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    os.chdir(str(request["cwd"]))
    os.environ.clear()
    os.environ.update(request["env"])  # type: ignore[arg-type]
    sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False))
    # Unbuffered, as the tests' processes run (PYTHONUNBUFFERED=1).
    sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), write_through=True)
    sys.stderr = io.TextIOWrapper(
        io.FileIO(2, "w", closefd=False), write_through=True, errors="backslashreplace"
    )
    sys.argv = ["ai_orchestrator", *request["args"]]  # type: ignore[misc]
    code: int = 0
    try:
        runpy.run_module("ai_orchestrator", run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        if exc.code is None:
            code = 0
        elif isinstance(exc.code, int):
            code = exc.code
        else:
            print(exc.code, file=sys.stderr)
            code = 1
    except BaseException:
        traceback.print_exc()
        code = 1
    # What the interpreter does on its way out: join non-daemon threads, run atexit.
    with contextlib.suppress(Exception):
        threading._shutdown()  # type: ignore[attr-defined]
    with contextlib.suppress(Exception):
        atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    return code


def _warm() -> None:
    """What every process would compute once, computed here: the SDK's default worker
    build id (a hash of every loaded module's bytecode, 0.2 s a process) and the
    vendor clients' TLS contexts (both memoized by the code that makes them)."""
    with contextlib.suppress(Exception):
        from temporalio.worker._worker import load_default_build_id

        load_default_build_id()
    from ai_orchestrator.providers._tls import genai_httpx_tls, genai_tls, httpx_tls

    # (Read with the server's environment: no test sets SSL_CERT_FILE / SSL_CERT_DIR.)
    httpx_tls()
    genai_httpx_tls()
    genai_tls()


def serve(path: str) -> None:
    die_with_parent()
    try:
        for name in PRELOAD:
            __import__(name)
        _warm()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(f"{path}.binding")
        listener.listen(64)
        os.rename(f"{path}.binding", path)  # the path exists only once it accepts
    except BaseException:
        with open(f"{path}.failed", "w") as failed:  # its clients learn at once
            traceback.print_exc(file=failed)
        raise
    print("ready", flush=True)
    children: dict[int, socket.socket] = {}
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    while True:
        for key, _ in selector.select(timeout=0.02):
            sock: socket.socket = key.fileobj  # type: ignore[assignment]
            if sock is listener:
                _start(listener, selector, children)
            else:  # the client hung up: its process goes too
                with contextlib.suppress(OSError):
                    if not sock.recv(1):
                        os.kill(key.data, signal.SIGKILL)
                        selector.unregister(sock)
        _reap(selector, children)


def _start(
    listener: socket.socket,
    selector: selectors.BaseSelector,
    children: dict[int, socket.socket],
) -> None:
    """Fork the process one connection asks for. A connection's trouble (a client gone
    before its answer, a fork refused) ends that connection only, never the server
    and the processes it runs for everyone else."""
    try:
        conn, _ = listener.accept()
    except OSError:
        return
    try:
        request, fds = _receive(conn)
    except (EOFError, OSError, ValueError):
        conn.close()
        return
    pid = 0
    try:
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                listener.close()
                code = _child(request, fds)
            finally:
                os._exit(code)
        children[pid] = conn
        conn.sendall(f"pid {pid}\n".encode())
        selector.register(conn, selectors.EVENT_READ, pid)
    except OSError as exc:
        if pid:  # the client is gone: so is its process (reaped by _reap)
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        else:
            with contextlib.suppress(OSError):
                conn.sendall(f"error {exc}\n".encode())
            conn.close()
    finally:
        for fd in fds:
            os.close(fd)


def _reap(selector: selectors.BaseSelector, children: dict[int, socket.socket]) -> None:
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        conn = children.pop(pid, None)
        if conn is None:
            continue
        with contextlib.suppress(OSError):
            conn.sendall(f"exit {os.waitstatus_to_exitcode(status)}\n".encode())
        with contextlib.suppress(KeyError, ValueError):
            selector.unregister(conn)
        conn.close()


if __name__ == "__main__":
    serve(sys.argv[1])
