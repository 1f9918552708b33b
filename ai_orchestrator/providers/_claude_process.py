"""Starting the CLI so that it cannot outlive the worker, and ending what did.

* The CLI runs in its own session and process group, so stopping it
  (:func:`stop_group`) reaches every tool process it started.
* On Linux it also gets a parent-death signal (``PR_SET_PDEATHSIG``,
  SIGKILL): a worker that is SIGKILLed, or crashes, takes the CLI with it
  instead of leaving it streaming (and billing) for nobody. The signal fires
  when the *thread* that started the CLI ends; the activity starts it from
  the event loop's thread, which lives as long as the worker.
* Tool processes the CLI started are not its children's children for the
  kernel once it dies: they are re-parented to init. A retry therefore ends
  every process whose working directory is inside the run's folder
  (:func:`end_survivors`, a ``/proc`` scan) before the CLI resumes there.
* A worker that exits normally with a session still open kills its groups
  (``atexit``).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import ctypes
import ctypes.util
import os
import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

_PR_SET_PDEATHSIG = 1
#: stream-json lines carry whole tool results; asyncio's 64 KiB default is too small.
LINE_LIMIT = 64 * 1024 * 1024
#: Process groups of CLIs this process started and has not yet seen end.
_LIVE_GROUPS: set[int] = set()


def _load_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.prctl  # type: ignore[no-any-return]
    return None


#: Loaded once, in the parent: a preexec function may only call what is ready.
_PRCTL = _load_prctl()


def _dies_with_parent(parent: int) -> Callable[[], None] | None:
    """A preexec function: SIGKILL this child when its parent dies (Linux only)."""
    prctl = _PRCTL
    if prctl is None:
        return None

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the signal was armed
            os._exit(1)

    return preexec


async def spawn(
    argv: Sequence[str], *, cwd: Path, env: Mapping[str, str]
) -> asyncio.subprocess.Process:
    """The CLI in its own session, dying with this process, stdio piped."""
    process = await asyncio.create_subprocess_exec(
        *argv,
        cwd=cwd,
        env=dict(env),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,  # its own process group: stop_group() reaches all of it
        preexec_fn=_dies_with_parent(os.getpid()),
        limit=LINE_LIMIT,
    )
    _LIVE_GROUPS.add(process.pid)
    return process


def _kill_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


async def stop_group(process: asyncio.subprocess.Process, grace: float) -> None:
    """SIGINT (the CLI aborts its request and exits), SIGTERM, SIGKILL: to the group.

    Whatever is left of the group afterwards (a tool's background process) is
    SIGKILLed too, also when this is cancelled midway.
    """
    try:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
            if process.returncode is not None:
                break
            _kill_group(process.pid, sig)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(process.wait()), grace)
        # Tools the CLI started (a shell, a server) must not outlive the session.
        _kill_group(process.pid, signal.SIGKILL)
        await process.wait()
    finally:
        _kill_group(process.pid, signal.SIGKILL)
        _LIVE_GROUPS.discard(process.pid)


@atexit.register
def _kill_live_groups() -> None:
    for pgid in list(_LIVE_GROUPS):
        _kill_group(pgid, signal.SIGKILL)


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder + os.sep)


def processes_in(folder: Path) -> list[int]:
    """Processes (not this one) whose working directory is ``folder`` or below (Linux)."""
    proc = Path("/proc")
    if not proc.is_dir():
        return []
    root = os.path.realpath(folder)
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
        except OSError:  # gone meanwhile, or another user's
            continue
        if _inside(cwd.removesuffix(" (deleted)"), root):
            found.append(int(entry.name))
    return found


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[-1].split()[0] in (b"Z", b"X")
    except OSError:
        return True


def end_survivors(folder: Path, wait: float = 5.0) -> list[int]:
    """SIGKILL every process working inside ``folder``; returns their pids.

    Called before a retry resumes in the folder, so an earlier attempt's tool
    processes (orphaned when its worker died) cannot run beside the new one.
    Waits (up to ``wait`` seconds) until they are gone.
    """
    killed = processes_in(folder)
    for pid in killed:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + wait
    while killed and not all(_gone(pid) for pid in killed) and time.monotonic() < deadline:
        time.sleep(0.05)
    return killed
