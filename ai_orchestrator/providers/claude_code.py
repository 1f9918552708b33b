"""Claude Code sessions: the ``claude`` CLI run headless, one subprocess per attempt.

An agentic task is not one completion but a session of many model turns and
tool calls, so this provider drives the CLI rather than an API::

    claude -p --output-format stream-json --verbose --include-partial-messages
           --permission-mode acceptEdits --max-turns N --model MODEL
           [--append-system-prompt CONTEXT_AND_FILES] [--settings READ_GRANTS]
           [--add-dir DIR ...]
           [--resume SESSION_ID]      < PROMPT

in a per-task working directory ``<base_dir>/<task_id>``, the prompt on stdin
(no argv length limit; a prompt starting with ``-`` stays a prompt). What it maps:

* **Text.** Real partial deltas (``stream_event`` / ``text_delta``) of the
  top-level agent; an assistant message whose text did not stream (older CLIs,
  no partials) is yielded whole. Texts of successive messages are separated by
  a blank line. Sub-agent text, tool calls and the CLI's synthetic error
  messages are not output; tool calls are counted in :attr:`tool_uses`.
* **Identity.** ``session_id`` is known from the first event (``system/init``):
  the activity heartbeats it, so that a retry after a dead worker passes it as
  ``resume_session`` and the CLI continues the conversation instead of
  starting over (``--resume``). A session the CLI no longer has is started
  afresh, transparently (:attr:`resumed` tells which happened).
* **End.** Only the final ``result`` event completes the stream: ``success``
  is ``stop``; ``error_max_turns``/``error_max_budget_usd`` are ``length``
  (a limit the caller set; the vendor reason says which); an API error the CLI
  gave up on raises :class:`ClaudeCodeError`, whose ``retryable`` and
  ``error_type`` say what to do. Retryable ones are also
  :class:`~ai_orchestrator.errors.IncompleteStreamError`, so the existing
  classifier already retries them; the rest classify as non-retryable.
* **Cost.** ``total_cost_usd`` as the CLI computed it (:attr:`cost_usd`), and
  its token usage (cache tokens counted as prompt tokens) in :attr:`usage`.
* **Files.** :attr:`files_created` lists, as absolute paths, the files under
  the working directory that are new or changed after this attempt (a
  snapshot diff, so files made by any tool count) plus any file outside it
  that a Write/Edit/NotebookEdit call wrote (its tool result not an error).
* **Task files.** ``Task.files`` are left where they are and listed in the
  system prompt (the same rendering as the API providers); relative ones are
  relative to the working directory. Each absolute one is granted read-only
  (a ``Read(//path)`` allow rule, ``/**`` for a directory, passed with
  ``--settings``): headless, the CLI refuses to read outside its working
  directory otherwise. Editing outside it stays refused unless the worker
  grants a directory with ``add_dirs``.

The CLI retries nothing itself (``CLAUDE_CODE_MAX_RETRIES=0``; Temporal is the
only retry layer) and sends no telemetry, error reports or update checks.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import uuid
from collections import deque
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..core import Platform, Task
from ..errors import (
    CONNECTION_FAILED,
    INCOMPLETE_STREAM,
    PROVIDER_REJECTED,
    PROVIDER_UNAVAILABLE,
    QUOTA_EXHAUSTED,
    RATE_LIMITED,
    IncompleteStreamError,
)
from ..messages import Usage
from ._base import FINISH_LENGTH, FINISH_STOP, ProviderStream

#: Where the worker may name the CLI; otherwise ``claude`` is looked up on PATH.
BINARY_ENV = "AI_ORCHESTRATOR_CLAUDE_BIN"
DEFAULT_MAX_TURNS = 50
DEFAULT_PERMISSION_MODE = "acceptEdits"
#: What a resumed session is told: the original prompt is in its history already.
RESUME_PROMPT = (
    "The previous run of this session was interrupted before it finished. Continue the "
    "original task from where it stopped, without redoing steps that are already done."
)
#: Set for every session: no telemetry, error reports, update checks or other
#: non-essential traffic, and no retries inside the CLI (Temporal retries).
QUIET_ENV: Mapping[str, str] = {
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    "DISABLE_TELEMETRY": "1",
    "DISABLE_ERROR_REPORTING": "1",
    "DISABLE_AUTOUPDATER": "1",
    "CLAUDE_CODE_MAX_RETRIES": "0",
}
#: Result subtypes that mean a limit the caller set was reached, not a failure.
_LIMIT_SUBTYPES = frozenset({"error_max_turns", "error_max_budget_usd"})
#: Usage fields that together are the prompt (cache reads and writes are billed too).
_PROMPT_TOKEN_KEYS = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
#: Tools whose input names a file they write.
_WRITING_TOOLS = {"Write": "file_path", "Edit": "file_path", "MultiEdit": "file_path"}
_NOTEBOOK_TOOL = ("NotebookEdit", "notebook_path")
_GLOB = re.compile(r"[*?\[\]{}]")
_NO_SESSION = re.compile(r"No conversation found with session ID", re.I)
_QUOTA = re.compile(r"credit balance|spend limit|spending limit|billing", re.I)
#: The CLI prefixes transport failures (no HTTP status) with this.
_API_ERROR = re.compile(r"^\s*API Error\b", re.I)
#: stream-json lines carry whole tool results; asyncio's 64 KiB default is too small.
_LINE_LIMIT = 64 * 1024 * 1024
_STDERR_TAIL = 4000
#: How long each signal of the shutdown ladder (SIGINT, SIGTERM) is given.
DEFAULT_GRACE = 3.0


class ClaudeCodeNotFoundError(FileNotFoundError):
    """The ``claude`` CLI is not installed where this worker looks for it."""


class ClaudeCodeError(Exception):
    """The CLI ended the session with an error, or died without a result.

    ``error_type`` is one of :mod:`ai_orchestrator.errors`' names, chosen the
    way :func:`~ai_orchestrator.errors.classify` would for the HTTP status the
    CLI reports; ``retryable`` says whether another attempt (which resumes the
    session) may succeed.
    """

    retryable = False

    def __init__(
        self,
        message: str,
        *,
        error_type: str = PROVIDER_REJECTED,
        status: int | None = None,
        subtype: str | None = None,
        session_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.status = status
        self.subtype = subtype
        self.session_id = session_id


class RetryableClaudeCodeError(ClaudeCodeError, IncompleteStreamError):
    """A transient failure: rate limit, overload, 5xx, lost connection, a crash."""

    retryable = True


def find_claude_binary(binary: str | None = None) -> str | None:
    """The CLI to run: ``binary``, else ``$AI_ORCHESTRATOR_CLAUDE_BIN``, else PATH."""
    name = binary or os.environ.get(BINARY_ENV) or "claude"
    return shutil.which(name)


def workdir_name(task_id: str | None) -> str:
    """A directory name for a task id, safe whatever the id contains.

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


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
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


def _grantable(path: str) -> bool:
    """Absolute, and no glob characters that would make its rule grant more."""
    return os.path.isabs(path) and not _GLOB.search(path)


def _read_rule(path: str) -> str:
    """A permission rule to read ``path`` (``//`` marks an absolute path in rules)."""
    rule = "/" + path.rstrip("/")
    return f"Read({rule}/**)" if os.path.isdir(path) else f"Read({rule})"


def _result_error(event: Mapping[str, Any], session_id: str | None) -> ClaudeCodeError:
    """The exception for a ``result`` event that is an error and not a limit."""
    subtype = str(event.get("subtype") or "")
    status = event.get("api_error_status")
    status = status if isinstance(status, int) else None
    errors = event.get("errors")
    detail = str(event.get("result") or "") or (
        "; ".join(str(e) for e in errors) if isinstance(errors, list) else ""
    )
    message = f"the claude CLI ended the session with an error ({subtype}"
    message += f", HTTP {status}): " if status is not None else "): "
    message += detail or "no detail given"
    kwargs: dict[str, Any] = {"status": status, "subtype": subtype, "session_id": session_id}
    if status is not None:
        if status == 429 and _QUOTA.search(detail):
            return ClaudeCodeError(message, error_type=QUOTA_EXHAUSTED, **kwargs)
        if status == 429:
            return RetryableClaudeCodeError(message, error_type=RATE_LIMITED, **kwargs)
        if status in (408, 409) or status >= 500:
            return RetryableClaudeCodeError(message, error_type=PROVIDER_UNAVAILABLE, **kwargs)
        return ClaudeCodeError(message, error_type=PROVIDER_REJECTED, **kwargs)
    if subtype == "error_during_execution" or _API_ERROR.match(detail):
        # A tool or transport failure mid-session: the next attempt resumes it.
        error_type = CONNECTION_FAILED if _API_ERROR.match(detail) else INCOMPLETE_STREAM
        return RetryableClaudeCodeError(message, error_type=error_type, **kwargs)
    # No status and not a transport failure: not logged in, a refused setting, ...
    return ClaudeCodeError(message, error_type=PROVIDER_REJECTED, **kwargs)


class ClaudeCodeStream(ProviderStream):
    """One attempt of a Claude Code session: the CLI as a subprocess.

    Leaving the ``async with`` block while the CLI runs (a cancel, an error)
    stops it and every process it started: SIGINT to its process group, then
    SIGTERM, then SIGKILL, each after a grace period. Text already yielded
    stays yielded.
    """

    platform = Platform.CLAUDE_CODE

    def __init__(
        self,
        *,
        binary: str,
        args: Sequence[str],
        prompt: str,
        resume_prompt: str,
        workdir: Path,
        env: Mapping[str, str],
        model: str,
        resume_session: str | None = None,
        grace: float = DEFAULT_GRACE,
    ) -> None:
        super().__init__(model)
        self.workdir = workdir
        self.session_id: str | None = resume_session
        #: True when this attempt continued an earlier session (``--resume``).
        self.resumed = False
        self.tool_uses = 0
        self.num_turns = 0
        #: What the CLI says the whole session cost, in US dollars.
        self.cost_usd: float | None = None
        #: The session's final answer (the ``result`` event's text).
        self.result_text: str | None = None
        self.files_created: list[str] = []
        self.returncode: int | None = None
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
        self._writes: dict[str, str] = {}  # tool_use id -> the path it writes
        self._written: set[str] = set()
        self._streamed_messages: set[str] = set()
        self._current_message: str | None = None
        self._spoken = False
        self._started = False  # the CLI said system/init: a session is under way
        self._last_message: str | None = None

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

    async def open(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._before = await asyncio.to_thread(_snapshot, self.workdir)
        await self._start(self._resume_session)

    async def _start(self, resume: str | None) -> None:
        self.resumed = resume is not None
        self._process = await asyncio.create_subprocess_exec(
            *self.command(resume),
            cwd=self.workdir,
            env=self._env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,  # its own process group: close() stops all of it
            limit=_LINE_LIMIT,
        )
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
        if process is None:
            return
        try:
            await self._stop(process)
        finally:
            if self._stderr_task is not None:
                self._stderr_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._stderr_task
            await self._collect_files()

    async def _stop(self, process: asyncio.subprocess.Process) -> None:
        """SIGINT (the CLI aborts its request and exits), SIGTERM, SIGKILL: to the group."""
        try:
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
                if process.returncode is not None:
                    break
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, sig)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(asyncio.shield(process.wait()), self._grace)
            # Tools the CLI started (a shell, a server) must not outlive the session.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
            self.returncode = process.returncode
        except BaseException:
            # Cancelled again while stopping it: no grace left, but no orphan either.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            raise

    async def _collect_files(self) -> None:
        self.files_created = await asyncio.to_thread(self._changed_files)

    def _changed_files(self) -> list[str]:
        after = _snapshot(self.workdir)
        changed = {path for path, stamp in after.items() if self._before.get(path) != stamp}
        outside = {p for p in self._written if p not in after and os.path.isfile(p)}
        return sorted(changed | outside)

    # -- the events ----------------------------------------------------------------

    async def deltas(self) -> AsyncIterator[str]:
        if self._process is None:
            raise RuntimeError("ClaudeCodeStream must be opened with 'async with'")
        while True:
            process = self._process
            assert process is not None and process.stdout is not None
            result: dict[str, Any] | None = None
            while line := await process.stdout.readline():
                event = self._parse(line)
                if event is None:
                    continue
                if event.get("type") == "result":
                    result = event
                    break  # the CLI may linger (background work): the answer is complete
                for text in self.handle(event):
                    yield text
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(process.wait()), self._grace)
            if result is not None and self._lost_session(result):
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
            self._raise_without_result(returncode)
            return  # exit 0 without a result: the base class reports it incomplete
        text = self.finish(result)
        if text:
            yield text

    def _parse(self, line: bytes) -> dict[str, Any] | None:
        try:
            event = json.loads(line)
        except ValueError:
            return None  # not an event (a stray log line): nothing to map
        return event if isinstance(event, dict) else None

    def _lost_session(self, result: Mapping[str, Any]) -> bool:
        if not self.resumed or result.get("subtype") != "error_during_execution":
            return False
        errors = result.get("errors")
        return isinstance(errors, list) and any(_NO_SESSION.search(str(e)) for e in errors)

    def _raise_without_result(self, returncode: int) -> None:
        if returncode == 0:
            return
        how = f"was killed by signal {-returncode}" if returncode < 0 else f"exited {returncode}"
        message = f"the claude CLI {how} without a result; stderr: {self.stderr_tail() or '-'}"
        if returncode < 0 or self._started:
            # It crashed mid-session; the next attempt resumes it.
            raise RetryableClaudeCodeError(
                message, error_type=INCOMPLETE_STREAM, session_id=self.session_id
            )
        # It never started a session: bad flags, a broken install, a refused setting.
        raise ClaudeCodeError(message, error_type=PROVIDER_REJECTED)

    def handle(self, event: Mapping[str, Any]) -> list[str]:
        """Map one non-result event; returns the text it adds to the answer."""
        session = event.get("session_id")
        if isinstance(session, str) and session:
            self.session_id = session
        kind = event.get("type")
        if kind == "system" and event.get("subtype") == "init":
            self._started = True
        if event.get("parent_tool_use_id"):
            return []  # a sub-agent's work: its summary comes back as a tool result
        if kind == "stream_event":
            return self._partial(event.get("event") or {})
        if kind == "assistant":
            return self._assistant(event.get("message") or {})
        if kind == "user":
            self._tool_results(event.get("message") or {})
        return []

    def _partial(self, inner: Mapping[str, Any]) -> list[str]:
        kind = inner.get("type")
        if kind == "message_start":
            message = inner.get("message") or {}
            self._current_message = message.get("id")
            return []
        if kind != "content_block_delta":
            return []
        delta = inner.get("delta") or {}
        if delta.get("type") != "text_delta" or not delta.get("text"):
            return []
        if self._current_message:
            self._streamed_messages.add(self._current_message)
        return self._text(str(delta["text"]), self._current_message)

    def _assistant(self, message: Mapping[str, Any]) -> list[str]:
        model = message.get("model")
        synthetic = model == "<synthetic>"  # the CLI's own error text, not the model's
        if isinstance(model, str) and model and not synthetic:
            self.model = model
        message_id = message.get("id")
        streamed = message_id in self._streamed_messages
        texts: list[str] = []
        for block in message.get("content") or ():
            if not isinstance(block, dict):
                continue
            if block.get("type") == "tool_use":
                self._tool_use(block)
            elif block.get("type") == "text" and block.get("text"):
                if not streamed and not synthetic:
                    texts += self._text(str(block["text"]), message_id)
        return texts

    def _tool_use(self, block: Mapping[str, Any]) -> None:
        self.tool_uses += 1
        name = block.get("name")
        field = _WRITING_TOOLS.get(str(name))
        if name == _NOTEBOOK_TOOL[0]:
            field = _NOTEBOOK_TOOL[1]
        value = (block.get("input") or {}).get(field) if field else None
        if isinstance(value, str) and value and isinstance(block.get("id"), str):
            path = value if os.path.isabs(value) else str(self.workdir / value)
            self._writes[block["id"]] = path

    def _tool_results(self, message: Mapping[str, Any]) -> None:
        """A write counts once its result says it happened (a refusal is an error)."""
        content = message.get("content")
        for block in content if isinstance(content, list) else ():
            if isinstance(block, dict) and block.get("type") == "tool_result":
                path = self._writes.pop(str(block.get("tool_use_id")), None)
                if path is not None and not block.get("is_error"):
                    self._written.add(path)

    def _text(self, text: str, message_id: str | None) -> list[str]:
        """Text for the answer, after a blank line when an earlier message spoke."""
        separate = self._spoken and message_id != self._last_message
        self._spoken, self._last_message = True, message_id
        return ["\n\n" + text] if separate else [text]

    def finish(self, event: Mapping[str, Any]) -> str:
        """Map the ``result`` event; returns text to add (only if none was yielded)."""
        session = event.get("session_id")
        if isinstance(session, str) and session:
            self.session_id = session
        cost = event.get("total_cost_usd")
        if isinstance(cost, (int, float)):
            self.cost_usd = float(cost)
        turns = event.get("num_turns")
        if isinstance(turns, int):
            self.num_turns = turns
        usage = event.get("usage")
        if isinstance(usage, dict):
            prompt = sum(int(usage.get(key) or 0) for key in _PROMPT_TOKEN_KEYS)
            output = int(usage.get("output_tokens") or 0)
            self.usage = Usage(
                prompt_tokens=prompt, completion_tokens=output, total_tokens=prompt + output
            )
        subtype = str(event.get("subtype") or "")
        text = event.get("result")
        self.result_text = text if isinstance(text, str) else None
        if subtype in _LIMIT_SUBTYPES:
            self.vendor_finish_reason = subtype
            self.finish_reason = FINISH_LENGTH
            return ""
        if event.get("is_error") or subtype != "success":
            raise _result_error(event, self.session_id)
        self.vendor_finish_reason = str(event.get("stop_reason") or subtype)
        self.finish_reason = FINISH_STOP
        # Nothing streamed (a CLI that sent only the result): the result is the answer.
        return "" if self._spoken else (self.result_text or "")


class ClaudeCodeProvider:
    """Runs tasks as Claude Code sessions, each in ``<base_dir>/<task_id>``.

    Args:
        base_dir: where working directories are made (one per task id).
        binary: the CLI; default ``$AI_ORCHESTRATOR_CLAUDE_BIN`` or ``claude`` on PATH.
            Checked here, so a worker without the CLI fails at startup, clearly.
        max_turns: ``--max-turns`` unless the task's ``metadata["max_turns"]`` says.
        permission_mode: ``acceptEdits`` lets the agent edit files in its working
            directory (and ``add_dirs``) but not run shell commands or fetch the
            web: in headless mode every permission prompt is a refusal.
        add_dirs: more directories the agent may read and edit (``--add-dir``).
        env: the environment the CLI inherits (default: this process's), which
            carries ``ANTHROPIC_API_KEY``/``ANTHROPIC_BASE_URL``; :data:`QUIET_ENV`
            is applied on top.
        partial_messages: stream text as it is generated (``--include-partial-messages``).
        grace: seconds each stop signal is given before the next, harder one.
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
        partial_messages: bool = True,
        resume_prompt: str = RESUME_PROMPT,
        grace: float = DEFAULT_GRACE,
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
        self.binary = found
        self.base_dir = Path(base_dir)
        self.max_turns = max_turns
        self.permission_mode = permission_mode
        self.add_dirs = [Path(d) for d in add_dirs]
        self._env = {**(os.environ if env is None else env), **QUIET_ENV}
        self.partial_messages = partial_messages
        self.resume_prompt = resume_prompt
        self.grace = grace

    def workdir(self, task: Task) -> Path:
        return self.base_dir / workdir_name(task.task_id)

    def arguments(self, task: Task, model: str) -> list[str]:
        """The flags after ``-p`` (``--resume`` is added per attempt, the prompt is stdin)."""
        from ..chat import build_messages  # one rendering of context and files for every vendor

        args = ["--output-format", "stream-json", "--verbose"]
        if self.partial_messages:
            args.append("--include-partial-messages")
        args += ["--permission-mode", self.permission_mode]
        args += ["--max-turns", str(self._max_turns(task))]
        if model:
            args += ["--model", model]
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
        resume_session = resume_session or resume
        return ClaudeCodeStream(
            binary=self.binary,
            args=self.arguments(task, model),
            prompt=task.prompt,
            resume_prompt=self.resume_prompt,
            workdir=self.workdir(task),
            env=self._env,
            model=model,
            resume_session=resume_session,
            grace=self.grace,
        )

    async def aclose(self) -> None:
        """Nothing pooled: every session's process is stopped by its stream."""
