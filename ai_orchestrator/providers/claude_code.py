"""Claude Code sessions: the ``claude`` CLI run headless, one subprocess per attempt.

An agentic task is not one completion but a session of many model turns and
tool calls, so this provider drives the CLI rather than an API::

    claude -p --output-format stream-json --verbose --include-partial-messages
           --permission-mode acceptEdits --max-turns N --model MODEL
           --setting-sources user --strict-mcp-config
           [--append-system-prompt CONTEXT_AND_FILES] [--settings READ_GRANTS]
           [--add-dir DIR ...]
           [--resume SESSION_ID]      < PROMPT

in the run's working directory ``<base_dir>/<task id>/<run id>/work``, the
prompt on stdin (no argv length limit; a prompt starting with ``-`` stays a
prompt). This module puts the pieces together; each concern has its own:

* :mod:`._claude_events`: the ``stream-json`` events mapped onto text (real
  partial deltas of the top-level agent; whole messages that did not stream),
  the session id (heartbeated by the activity, so a retry after a dead worker
  resumes the session with ``--resume``; a session the CLI no longer has is
  started afresh, :attr:`~ClaudeCodeStream.resumed` tells), the end (only the
  ``result`` event completes the stream; max turns / budget are ``length``),
  cost (the CLI's ``total_cost_usd``) and usage, and files written.
* :mod:`._claude_errors`: :class:`ClaudeCodeError` with ``retryable`` and
  ``error_type``; retryable ones are also ``IncompleteStreamError``.
* :mod:`._claude_env`: the CLI's environment is an allow-list (what it needs to
  run and reach Anthropic, plus names the operator adds), never the worker's.
* :mod:`._claude_workspace`: one folder per workflow *run* (retries share it,
  a rerun starts clean), a fresh HOME/``CLAUDE_CONFIG_DIR`` per attempt with
  only the session transcripts carried over, so nothing the agent wrote
  configures a later attempt.
* :mod:`._claude_process`: the CLI runs in its own process group and dies with
  the worker (``PR_SET_PDEATHSIG`` on Linux); stopping kills the whole group;
  before an attempt starts, processes still working in the run's folder (tools
  orphaned by a dead worker) are ended.
* :mod:`._claude_sweep`: run folders idle for the retention period are removed.

``Task.files`` are left where they are and listed in the system prompt (the
same rendering as the API providers); each absolute one is granted read-only
(a ``Read(//path)`` rule passed with ``--settings``): headless, the CLI refuses
to read outside its working directory otherwise. Editing outside it stays
refused unless the worker grants a directory with ``add_dirs``.

The CLI retries nothing itself (``CLAUDE_CODE_MAX_RETRIES=0``; Temporal is the
only retry layer) and sends no telemetry, error reports or update checks.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..core import Platform, Task
from ._base import ProviderStream, build_messages
from ._claude_env import QUIET_ENV, cli_environment
from ._claude_errors import (
    ClaudeCodeError,
    ClaudeCodeNotFoundError,
    RetryableClaudeCodeError,
    exit_error,
)
from ._claude_errors import result_error as _result_error
from ._claude_events import SessionEvents, lost_session, parse
from ._claude_process import end_survivors, spawn, stop_group
from ._claude_sweep import DEFAULT_RETENTION_DAYS, Sweeper
from ._claude_workspace import RunFolder, current_run_id, snapshot, workdir_name

__all__ = [
    "BINARY_ENV",
    "DEFAULT_GRACE",
    "DEFAULT_MAX_TURNS",
    "DEFAULT_PERMISSION_MODE",
    "DEFAULT_RETENTION_DAYS",
    "QUIET_ENV",
    "RESUME_PROMPT",
    "ClaudeCodeError",
    "ClaudeCodeNotFoundError",
    "ClaudeCodeProvider",
    "ClaudeCodeStream",
    "RetryableClaudeCodeError",
    "_result_error",
    "find_claude_binary",
    "workdir_name",
]

#: Where the worker may name the CLI; otherwise ``claude`` is looked up on PATH.
BINARY_ENV = "AI_ORCHESTRATOR_CLAUDE_BIN"
DEFAULT_MAX_TURNS = 50
DEFAULT_PERMISSION_MODE = "acceptEdits"
#: What a resumed session is told: the original prompt is in its history already.
RESUME_PROMPT = (
    "The previous run of this session was interrupted before it finished. Continue the "
    "original task from where it stopped, without redoing steps that are already done."
)
#: Settings only from the attempt's own (fresh) HOME, none from the project folder
#: the agent writes in; MCP servers only from our command line (none).
ISOLATION_FLAGS = ("--setting-sources", "user", "--strict-mcp-config")
_GLOB = re.compile(r"[*?\[\]{}]")
_STDERR_TAIL = 4000
#: How long each signal of the shutdown ladder (SIGINT, SIGTERM) is given.
DEFAULT_GRACE = 3.0
#: How often a long session marks its run folder alive for the retention sweep.
_TOUCH_EVERY = 60.0


def find_claude_binary(binary: str | None = None) -> str | None:
    """The CLI to run: ``binary``, else ``$AI_ORCHESTRATOR_CLAUDE_BIN``, else PATH."""
    name = binary or os.environ.get(BINARY_ENV) or "claude"
    return shutil.which(name)


def _grantable(path: str) -> bool:
    """Absolute, and no glob characters that would make its rule grant more."""
    return os.path.isabs(path) and not _GLOB.search(path)


def _read_rule(path: str) -> str:
    """A permission rule to read ``path`` (``//`` marks an absolute path in rules)."""
    rule = "/" + path.rstrip("/")
    return f"Read({rule}/**)" if os.path.isdir(path) else f"Read({rule})"


class ClaudeCodeStream(SessionEvents, ProviderStream):
    """One attempt of a Claude Code session: the CLI as a subprocess.

    Leaving the ``async with`` block while the CLI runs (a cancel, an error)
    stops it and every process it started: SIGINT to its process group, then
    SIGTERM, then SIGKILL, each after a grace period. Text already yielded
    stays yielded.

    Given a ``run`` folder (the provider always gives one), the attempt holds
    the run's lock, ends processes left working in it, and runs the CLI with
    a fresh ``HOME``; without one it runs in ``workdir`` with ``env`` as is.
    """

    platform = Platform.CLAUDE_CODE

    def __init__(
        self,
        *,
        binary: str,
        args: Sequence[str],
        prompt: str,
        resume_prompt: str,
        env: Mapping[str, str],
        model: str,
        workdir: Path | None = None,
        run: RunFolder | None = None,
        resume_session: str | None = None,
        grace: float = DEFAULT_GRACE,
    ) -> None:
        super().__init__(model)
        if run is None and workdir is None:
            raise ValueError("a ClaudeCodeStream needs a run folder or a workdir")
        self.run = run
        self.workdir = run.work if run is not None else Path(workdir or ".")
        self._init_events(resume_session)
        #: True when this attempt continued an earlier session (``--resume``).
        self.resumed = False
        self.returncode: int | None = None
        #: This attempt's HOME (and CLAUDE_CONFIG_DIR below it), while it runs.
        self.home: Path | None = None
        #: Processes an earlier attempt left working in the run's folder, ended at open.
        self.survivors_ended: list[int] = []
        self._binary = binary
        self._args = list(args)
        self._prompt = prompt
        self._resume_prompt = resume_prompt
        self._resume_session = resume_session
        self._env = dict(env)
        self._grace = grace
        self._process: asyncio.subprocess.Process | None = None
        self._stderr: deque[str] = deque()
        self._stderr_chars = 0
        self._stderr_task: asyncio.Task[None] | None = None
        self._before: dict[str, tuple[int, int]] = {}
        self._touched = 0.0

    # -- the process ---------------------------------------------------------------

    @property
    def resume_token(self) -> str | None:
        """The session id: a retry resumes the session (``--resume``), not a new one."""
        return self.session_id

    def command(self, resume: str | None) -> list[str]:
        """The argument vector for one run of the CLI (also what tests inspect).

        The prompt is not in it: it goes to stdin (:meth:`prompt`), where no
        length limit applies and a prompt starting with ``-`` is not an option.
        """
        argv = [self._binary, "-p", *self._args]
        if resume:
            argv += ["--resume", resume]
        return argv

    def prompt(self, resume: str | None) -> str:
        """What the CLI reads from stdin: the task, or a nudge to finish a resumed one."""
        return self._resume_prompt if resume else self._prompt

    def environment(self) -> dict[str, str]:
        """What the CLI runs with: the given environment, this attempt's HOME on top."""
        env = dict(self._env)
        if self.home is not None:
            env["HOME"] = str(self.home)
            env["CLAUDE_CONFIG_DIR"] = str(self.home / ".claude")
        return env

    async def open(self) -> None:
        try:
            await asyncio.to_thread(self._prepare)
            self._before = await asyncio.to_thread(snapshot, self.workdir)
            await self._start(self._resume_session)
        except BaseException:
            await asyncio.to_thread(self._release)
            raise

    def _prepare(self) -> None:
        """Hold the run, end what an earlier attempt left running in it, make a HOME."""
        if self.run is None:
            self.workdir.mkdir(parents=True, exist_ok=True)
            return
        self.run.acquire()
        self._touched = time.monotonic()
        self.survivors_ended = end_survivors(self.run.root)
        self.home = self.run.new_home()

    def _release(self) -> None:
        if self.run is None:
            return
        home, self.home = self.home, None
        if home is not None:
            self.run.end_home(home)
        self.run.release()

    async def _start(self, resume: str | None) -> None:
        self.resumed = resume is not None
        self._process = await spawn(self.command(resume), cwd=self.workdir, env=self.environment())
        self._stderr_task = asyncio.create_task(self._drain_stderr(self._process))
        stdin = self._process.stdin
        assert stdin is not None
        # A CLI that dies at once breaks the pipe: its exit code and stderr tell why.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            stdin.write(self.prompt(resume).encode())
            await stdin.drain()
        stdin.close()

    async def _drain_stderr(self, process: asyncio.subprocess.Process) -> None:
        """Keep the pipe flowing (a full pipe would block the CLI) and its tail for errors."""
        assert process.stderr is not None
        while chunk := await process.stderr.read(4096):
            text = chunk.decode(errors="replace")
            self._stderr.append(text)
            self._stderr_chars += len(text)
            while self._stderr_chars - len(self._stderr[0]) >= _STDERR_TAIL:
                self._stderr_chars -= len(self._stderr.popleft())

    def stderr_tail(self) -> str:
        return "".join(self._stderr)[-_STDERR_TAIL:]

    async def close(self) -> None:
        process, self._process = self._process, None
        try:
            if process is not None:
                try:
                    await self._stop(process)
                finally:
                    if self._stderr_task is not None:
                        self._stderr_task.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await self._stderr_task
                    await self._collect_files()
        finally:
            await asyncio.to_thread(self._release)

    async def _stop(self, process: asyncio.subprocess.Process) -> None:
        await stop_group(process, self._grace)
        self.returncode = process.returncode

    async def _collect_files(self) -> None:
        self.files_created = await asyncio.to_thread(self._changed_files)

    def _changed_files(self) -> list[str]:
        after = snapshot(self.workdir)
        changed = {path for path, stamp in after.items() if self._before.get(path) != stamp}
        outside = {p for p in self._written if p not in after and os.path.isfile(p)}
        return sorted(changed | outside)

    def _alive(self) -> None:
        """Mark the run folder in use now and then, so a long session is never swept."""
        if self.run is not None and time.monotonic() - self._touched > _TOUCH_EVERY:
            self._touched = time.monotonic()
            self.run.touch()

    # -- the events ----------------------------------------------------------------

    async def deltas(self) -> AsyncIterator[str]:
        if self._process is None:
            raise RuntimeError("ClaudeCodeStream must be opened with 'async with'")
        while True:
            process = self._process
            assert process is not None and process.stdout is not None
            result: dict[str, Any] | None = None
            while line := await process.stdout.readline():
                self._alive()
                event = parse(line)
                if event is None:
                    continue
                if event.get("type") == "result":
                    result = event
                    break  # the CLI may linger (background work): the answer is complete
                for text in self.handle(event):
                    yield text
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(process.wait()), self._grace)
            if result is not None and self.resumed and lost_session(result):
                # The session is gone (another machine, a wiped config): start over.
                await self._stop(process)
                self.session_id = None
                await self._start(None)
                continue
            break
        if result is None:
            returncode = await process.wait()  # its stdout is closed: it is ending
            if self._stderr_task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await self._stderr_task
            exit_error(returncode, self._started, self.stderr_tail(), self.session_id)
            return  # exit 0 without a result: the base class reports it incomplete
        text = self.finish(result)
        if text:
            yield text


class ClaudeCodeProvider:
    """Runs tasks as Claude Code sessions, each run in ``<base_dir>/<task id>/<run id>``.

    Args:
        base_dir: where run folders are made (see :mod:`._claude_workspace`).
        binary: the CLI; default ``$AI_ORCHESTRATOR_CLAUDE_BIN`` or ``claude`` on PATH.
            Checked here, so a worker without the CLI fails at startup, clearly.
        max_turns: ``--max-turns`` unless the task's ``metadata["max_turns"]`` says.
        permission_mode: ``acceptEdits`` lets the agent edit files in its working
            directory (and ``add_dirs``) but not run shell commands or fetch the
            web: in headless mode every permission prompt is a refusal.
        add_dirs: more directories the agent may read and edit (``--add-dir``).
        env: where the CLI's environment is taken from (default: this process's).
            Only allow-listed names pass (:mod:`._claude_env`: PATH, locale,
            proxies and CAs, ``ANTHROPIC_*``, ``CLAUDE_CODE_*`` ...), plus
            ``extra_env``; :data:`QUIET_ENV` is applied on top, and HOME is the
            attempt's own.
        extra_env: more names the operator lets through (``AI_ORCHESTRATOR_CLAUDE_ENV``).
        partial_messages: stream text as it is generated (``--include-partial-messages``).
        grace: seconds each stop signal is given before the next, harder one.
        retention_days: run folders idle this long are removed (never a running
            one); swept when the provider starts and then at most hourly.
    """

    platform = Platform.CLAUDE_CODE

    def __init__(
        self,
        base_dir: Path,
        *,
        binary: str | None = None,
        max_turns: int = DEFAULT_MAX_TURNS,
        permission_mode: str = DEFAULT_PERMISSION_MODE,
        add_dirs: Sequence[Path] = (),
        env: Mapping[str, str] | None = None,
        extra_env: Iterable[str] = (),
        partial_messages: bool = True,
        resume_prompt: str = RESUME_PROMPT,
        grace: float = DEFAULT_GRACE,
        retention_days: float = DEFAULT_RETENTION_DAYS,
    ) -> None:
        found = find_claude_binary(binary)
        if found is None:
            raise ClaudeCodeNotFoundError(
                f"the claude CLI was not found ({binary or os.environ.get(BINARY_ENV) or 'claude'}"
                f" is not an executable on PATH): install it with 'npm install -g "
                f"@anthropic-ai/claude-code' or set {BINARY_ENV}"
            )
        if max_turns < 1:
            raise ValueError("max_turns must be at least 1")
        if not retention_days > 0:
            raise ValueError("retention_days must be positive")
        self.binary = found
        self.base_dir = Path(base_dir)
        self.max_turns = max_turns
        self.permission_mode = permission_mode
        self.add_dirs = [Path(d) for d in add_dirs]
        self.extra_env = tuple(extra_env)
        self._env = cli_environment(os.environ if env is None else env, self.extra_env)
        self.partial_messages = partial_messages
        self.resume_prompt = resume_prompt
        self.grace = grace
        self.sweeper = Sweeper(self.base_dir, retention_days * 86400.0)
        self.sweeper.maybe_start()

    def run_folder(self, task: Task, run_id: str | None = None) -> RunFolder:
        """The folder of the run ``run_id`` (default: the activity's run) of ``task``."""
        return RunFolder(self.base_dir, task.task_id, run_id or current_run_id())

    def workdir(self, task: Task, run_id: str | None = None) -> Path:
        """Where the agent works for this run of ``task``: retries share it, reruns do not."""
        return self.run_folder(task, run_id).work

    def arguments(self, task: Task, model: str) -> list[str]:
        """The flags after ``-p`` (``--resume`` is added per attempt, the prompt is stdin)."""

        args = ["--output-format", "stream-json", "--verbose"]
        if self.partial_messages:
            args.append("--include-partial-messages")
        args += ["--permission-mode", self.permission_mode]
        args += ["--max-turns", str(self._max_turns(task))]
        budget = task.effective_constraints.max_cost_usd
        if budget is not None:  # what is left of the task's cap; the CLI bills itself
            args += ["--max-budget-usd", f"{budget:.6f}"]
        if model:
            args += ["--model", model]
        args += ISOLATION_FLAGS
        system = "\n\n".join(m["content"] for m in build_messages(task) if m["role"] == "system")
        if system:
            args += ["--append-system-prompt", system]
        grants = [_read_rule(path) for path in task.files if _grantable(path)]
        if grants:
            args += ["--settings", json.dumps({"permissions": {"allow": grants}})]
        for directory in self.add_dirs:
            args += ["--add-dir", str(directory)]
        return args

    def _max_turns(self, task: Task) -> int:
        value = task.metadata.get("max_turns")
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
        return self.max_turns

    def stream(
        self,
        task: Task,
        model: str,
        *,
        resume: str | None = None,
        resume_session: str | None = None,
    ) -> ClaudeCodeStream:
        """``resume`` (the activity's name) and ``resume_session`` both name a session id."""
        self.sweeper.maybe_start()
        return ClaudeCodeStream(
            binary=self.binary,
            args=self.arguments(task, model),
            prompt=task.prompt,
            resume_prompt=self.resume_prompt,
            run=self.run_folder(task),
            env=self._env,
            model=model,
            resume_session=resume_session or resume,
            grace=self.grace,
        )

    async def aclose(self) -> None:
        """Nothing pooled: every session's process is stopped by its stream."""
