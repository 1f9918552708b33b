"""Where a Claude Code run works, and what one attempt may leave for the next.

Layout under the provider's base directory (``$AI_ORCHESTRATOR_HOME/claude-code``)::

    <task id>/<run id>/          one workflow run: its retries share it
        work/                    the agent's working directory (the task folder)
        .lock                    held (shared) while an attempt runs; its mtime is
                                 the run's last sign of life, for the retention sweep
        sessions/projects/...    the CLI's session transcripts, carried between attempts
        homes/<attempt>/         one attempt's HOME and CLAUDE_CONFIG_DIR, then removed

Why keyed by run: a rerun (``rerun_task``, an operator reset) is a new run of
the same task id and must start clean, while retries of one run must find the
folder, and the session, they resume.

Why a fresh HOME per attempt: the CLI loads settings (hooks, MCP servers,
permissions, env) from HOME and from the project folder, and the agent can
write files. Settings it wrote must not configure a later attempt, so each
attempt gets an empty config dir outside the task folder, and only the
conversation transcripts (``*.jsonl``, what ``--resume`` reads) are carried
over. Project settings are turned off with ``--setting-sources user`` and
``--strict-mcp-config`` by the provider.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import uuid
from pathlib import Path

from temporalio import activity

WORK = "work"
LOCK = ".lock"
SESSIONS = "sessions"
HOMES = "homes"
#: Inside a config dir, where the CLI keeps its transcripts (``<project>/<session>.jsonl``).
PROJECTS = "projects"
#: The run key used outside a Temporal activity (direct use of the provider).
LOCAL_RUN = "local"


def workdir_name(task_id: str | None) -> str:
    """A directory name for a task id (or run id), safe whatever the id contains.

    Ids are arbitrary printable strings (``a/../b`` included); anything but
    letters, digits, ``.``, ``_`` and ``-`` is replaced, and a hash of the
    original keeps two ids that differ only there apart.
    """
    if not task_id:
        return f"session-{uuid.uuid4().hex}"
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", task_id)[:120]
    if safe != task_id or safe.strip(".") == "":
        safe = f"{safe.strip('.') or 'task'}-{hashlib.sha256(task_id.encode()).hexdigest()[:12]}"
    return safe


def current_run_id() -> str | None:
    """The workflow run this code runs for, inside an activity; else None."""
    if not activity.in_activity():
        return None
    return activity.info().workflow_run_id or None


class RunFolder:
    """The folder of one run of a task: see the module docstring for its layout."""

    def __init__(self, base_dir: Path, task_id: str | None, run_id: str | None) -> None:
        self.root = Path(base_dir) / workdir_name(task_id) / workdir_name(run_id or LOCAL_RUN)
        self.work = self.root / WORK
        self._lock_fd: int | None = None

    # -- in use --------------------------------------------------------------------

    def acquire(self) -> None:
        """Create the folder and hold its lock (shared: a stale attempt may still run).

        The sweep removes a run only while it holds the lock exclusively; if it
        removed this one just before we got the lock, we start again on a new file.
        """
        while True:
            try:
                self.root.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.root / LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except FileNotFoundError:
                continue  # the sweep removed an empty task folder under us
            fcntl.flock(fd, fcntl.LOCK_SH)
            try:
                if os.fstat(fd).st_ino == os.stat(self.root / LOCK).st_ino:
                    break
            except FileNotFoundError:
                pass
            os.close(fd)
        self._lock_fd = fd
        self.work.mkdir(exist_ok=True)
        self.touch()

    def touch(self) -> None:
        """Record that the run is alive now (the sweep measures age from here)."""
        with contextlib.suppress(OSError):
            os.utime(self.root / LOCK)

    def release(self) -> None:
        fd, self._lock_fd = self._lock_fd, None
        if fd is not None:
            self.touch()
            os.close(fd)  # closing drops the lock

    # -- one attempt's HOME ----------------------------------------------------------

    def new_home(self) -> Path:
        """An empty HOME for one attempt, holding only the run's session transcripts.

        Homes left by earlier attempts (a worker that died cannot clean up) give
        their transcripts to the run first and are then removed, with anything
        the agent may have planted in them.
        """
        homes = self.root / HOMES
        homes.mkdir(exist_ok=True)
        for old in homes.iterdir():
            self._keep_transcripts(old)
            shutil.rmtree(old, ignore_errors=True)
        home = homes / uuid.uuid4().hex
        (home / ".claude").mkdir(parents=True)
        _copy_jsonl(self.root / SESSIONS / PROJECTS, home / ".claude" / PROJECTS)
        return home

    def end_home(self, home: Path) -> None:
        """Keep the attempt's transcripts for the next attempt; remove the rest."""
        self._keep_transcripts(home)
        shutil.rmtree(home, ignore_errors=True)

    def _keep_transcripts(self, home: Path) -> None:
        _copy_jsonl(home / ".claude" / PROJECTS, self.root / SESSIONS / PROJECTS)


def _copy_jsonl(source: Path, target: Path) -> None:
    """Copy every ``*.jsonl`` under ``source`` to the same place under ``target``.

    Plain files only (a symlink the agent planted is not followed), newest wins.
    """
    if not source.is_dir():
        return
    for dirpath, _dirs, files in os.walk(source):
        for name in files:
            if not name.endswith(".jsonl"):
                continue
            src = Path(dirpath) / name
            dst = target / src.relative_to(source)
            with contextlib.suppress(OSError):
                if src.is_symlink() or not src.is_file():
                    continue
                if dst.exists() and dst.stat().st_mtime_ns >= src.stat().st_mtime_ns:
                    continue
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dst)


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``root`` with its (mtime_ns, size), skipping the CLI's own state."""
    found: dict[str, tuple[int, int]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in (".git", ".claude")]
        for name in filenames:
            path = os.path.join(dirpath, name)
            with contextlib.suppress(OSError):
                st = os.stat(path, follow_symlinks=False)
                found[path] = (st.st_mtime_ns, st.st_size)
    return found
