"""Removing Claude Code run folders nobody has used for the retention period.

Every run of an agentic task leaves a folder (its files, the CLI's session
transcripts) under the data home; without a sweep they pile up forever. A
run's age is the mtime of its ``.lock`` (touched when an attempt starts, while
it streams, and when it ends), and a run whose lock any attempt holds, on any
worker process of this host, is running and is never removed, however old.
Processes still working inside a removed folder (tools orphaned by a dead
worker) are ended first.

The provider sweeps when it starts and then at most once per
:data:`SWEEP_EVERY` seconds, when a session opens, in a background thread.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import threading
import time
from pathlib import Path

from ._claude_process import end_survivors
from ._claude_workspace import LOCK

#: Default retention, in days: how long a finished (or abandoned) run's folder is kept.
DEFAULT_RETENTION_DAYS = 7.0
#: The least time between two sweeps of one provider, in seconds.
SWEEP_EVERY = 3600.0

log = logging.getLogger(__name__)


def _remove_if_idle(run: Path, cutoff: float) -> bool:
    """Remove ``run`` if its lock is older than ``cutoff`` and no attempt holds it."""
    lock = run / LOCK
    try:
        if lock.stat().st_mtime >= cutoff:
            return False
        fd = os.open(lock, os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False  # an attempt holds it: the run is running
        if os.stat(lock).st_mtime >= cutoff:
            return False  # an attempt touched it between our look and our lock
        end_survivors(run)
        shutil.rmtree(run, ignore_errors=True)
        return not run.exists()
    finally:
        os.close(fd)


def _abandoned(folder: Path, cutoff: float) -> bool:
    """A folder with no run lock (an older layout, a half-made run), unchanged since cutoff."""
    try:
        return folder.stat().st_mtime < cutoff and not any(
            (child / LOCK).exists() for child in folder.iterdir()
        )
    except OSError:
        return False


def sweep(base_dir: Path, retention_seconds: float, now: float | None = None) -> list[Path]:
    """Remove every run folder under ``base_dir`` idle longer than the retention.

    Returns the folders removed. Never raises: a sweep must not stop a worker.
    """
    cutoff = (time.time() if now is None else now) - retention_seconds
    removed: list[Path] = []
    try:
        tasks = [p for p in Path(base_dir).iterdir() if p.is_dir() and not p.is_symlink()]
    except OSError:
        return removed
    for task in tasks:
        with contextlib.suppress(OSError):
            for run in [p for p in task.iterdir() if p.is_dir() and not p.is_symlink()]:
                if _remove_if_idle(run, cutoff):
                    removed.append(run)
            if not any(task.iterdir()):
                task.rmdir()  # its last run is gone
            elif _abandoned(task, cutoff):
                end_survivors(task)
                shutil.rmtree(task, ignore_errors=True)
                removed.append(task)
    if removed:
        log.info(
            "removed %d Claude Code run folder(s) idle for over %ss",
            len(removed),
            retention_seconds,
        )
    return removed


class Sweeper:
    """Runs :func:`sweep` in a daemon thread, at most once per ``every`` seconds."""

    def __init__(
        self, base_dir: Path, retention_seconds: float, every: float = SWEEP_EVERY
    ) -> None:
        self.base_dir = Path(base_dir)
        self.retention_seconds = retention_seconds
        self.every = every
        self._last: float | None = None
        self._thread: threading.Thread | None = None
        self._guard = threading.Lock()

    def maybe_start(self) -> None:
        """Start a sweep unless one runs or the last began less than ``every`` ago."""
        with self._guard:
            now = time.monotonic()
            if self._thread is not None and self._thread.is_alive():
                return
            if self._last is not None and now - self._last < self.every:
                return
            self._last = now
            self._thread = threading.Thread(
                target=sweep,
                args=(self.base_dir, self.retention_seconds),
                name="claude-code-sweep",
                daemon=True,
            )
            self._thread.start()

    def join(self, timeout: float | None = None) -> None:
        """Wait for the running sweep, if any (tests, an orderly shutdown)."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
