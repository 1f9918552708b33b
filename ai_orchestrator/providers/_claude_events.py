"""Claude Code's ``stream-json`` events mapped onto the answer, its cost and its files.

Pure bookkeeping, no process: :class:`SessionEvents` is mixed into the stream
so the event mapping can be read (and recorded lines replayed) apart from
how the CLI is started and stopped.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..messages import Usage
from ._base import FINISH_LENGTH, FINISH_STOP
from ._claude_errors import result_error

#: Result subtypes that mean a limit the caller set was reached, not a failure.
_LIMIT_SUBTYPES = frozenset({"error_max_turns", "error_max_budget_usd"})
#: Usage fields that together are the prompt (cache reads and writes are billed too).
_PROMPT_TOKEN_KEYS = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
#: Tools whose input names a file they write.
_WRITING_TOOLS = {"Write": "file_path", "Edit": "file_path", "MultiEdit": "file_path"}
_NOTEBOOK_TOOL = ("NotebookEdit", "notebook_path")
_NO_SESSION = re.compile(r"No conversation found with session ID", re.I)


def parse(line: bytes) -> dict[str, Any] | None:
    """One stdout line as an event, or None for anything else (a stray log line)."""
    try:
        event = json.loads(line)
    except ValueError:
        return None
    return event if isinstance(event, dict) else None


def lost_session(result: Mapping[str, Any]) -> bool:
    """The CLI could not resume because it no longer has the session."""
    if result.get("subtype") != "error_during_execution":
        return False
    errors = result.get("errors")
    return isinstance(errors, list) and any(_NO_SESSION.search(str(e)) for e in errors)


class SessionEvents:
    """The mapping state of one attempt; mixed into a ``ProviderStream``.

    Expects the host to provide ``workdir``, ``model``, ``usage``,
    ``finish_reason`` and ``vendor_finish_reason`` (the stream's own fields).
    """

    workdir: Path
    model: str
    usage: Usage | None
    finish_reason: str | None
    vendor_finish_reason: str | None

    def _init_events(self, session_id: str | None) -> None:
        self.session_id: str | None = session_id
        self.tool_uses = 0
        self.num_turns = 0
        #: What the CLI says the whole session cost, in US dollars.
        self.cost_usd: float | None = None
        #: The session's final answer (the ``result`` event's text).
        self.result_text: str | None = None
        self._writes: dict[str, str] = {}  # tool_use id -> the path it writes
        self._written: set[str] = set()
        self._streamed_messages: set[str] = set()
        self._current_message: str | None = None
        self._spoken = False
        self._started = False  # the CLI said system/init: a session is under way
        self._last_message: str | None = None

    def handle(self, event: Mapping[str, Any]) -> list[str]:
        """Map one non-result event; returns the text it adds to the answer."""
        session = event.get("session_id")
        if isinstance(session, str) and session and session != self.session_id:
            self.session_id = session
            # The session is what a retry resumes: recorded at once (see ProviderStream).
            getattr(self, "_handle_known", lambda: None)()
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
            raise result_error(event, self.session_id)
        self.vendor_finish_reason = str(event.get("stop_reason") or subtype)
        self.finish_reason = FINISH_STOP
        # Nothing streamed (a CLI that sent only the result): the result is the answer.
        return "" if self._spoken else (self.result_text or "")
