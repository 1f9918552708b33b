"""What every provider stream offers the activity, whatever the vendor.

Each vendor module maps its own stream events, usage and stop reasons onto
this one shape, so the activity, the chunk channel, classification and
billing never branch on the vendor. Vendor SDKs are built with their own
retries off: Temporal is the only retry layer.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import Any, Protocol

from ..config import DEFAULT_MODEL
from ..core import Platform, Task
from ..errors import IncompleteStreamError
from ..messages import Usage

#: Finish reasons, normalised across vendors (the vendor's own is kept beside it).
FINISH_STOP = "stop"
FINISH_LENGTH = "length"
#: The provider refused or filtered the answer; the same prompt would be again.
FINISH_FILTERED = "content_filter"
FILTERED_REASONS = frozenset({FINISH_FILTERED, "refusal", "safety", "recitation"})


def _render(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)


def build_messages(task: Task) -> list[dict[str, str]]:
    """The task's context (and file list) as a system message, then the prompt."""
    messages: list[dict[str, str]] = []
    parts: list[str] = []
    if task.context:
        parts.append(
            "Context:\n" + "\n".join(f"{k}: {_render(v)}" for k, v in task.context.items())
        )
    if task.files:
        parts.append("Files:\n" + "\n".join(f"- {path}" for path in task.files))
    if parts:
        messages.append({"role": "system", "content": "\n\n".join(parts)})
    messages.append({"role": "user", "content": task.prompt})
    return messages


def resolve_model(task: Task, default_model: str = DEFAULT_MODEL) -> str:
    constraints = task.constraints
    return constraints.model if constraints and constraints.model else default_model


class ProviderStream:
    """One streamed answer: ``async with`` opens it, iteration yields text deltas.

    Leaving the ``async with`` block early (cancellation, an error) closes the
    HTTP response, so the provider stops generating and billing. A stream that
    ends without the vendor's end marker raises :class:`IncompleteStreamError`:
    half an answer must never be taken for a whole one.
    """

    platform: Platform

    def __init__(self, model: str) -> None:
        self.model = model
        self.finish_reason: str | None = None
        #: The vendor's own stop reason (e.g. ``end_turn``, ``SAFETY``).
        self.vendor_finish_reason: str | None = None
        self.usage: Usage | None = None
        self.chunks = 0
        self.chars = 0
        #: When the first chunk came (monotonic seconds): the stream's pace is
        #: measured from it.
        self.first_chunk_at: float | None = None
        #: True once the provider accepted the request: from then on it bills.
        self.opened = False
        #: What the vendor itself says this attempt cost, when it says (an agent
        #: CLI does); None: cost comes from usage and the price table.
        self.cost_usd: float | None = None
        #: Files the attempt wrote (agentic platforms), known once it is closed.
        self.files_created: list[str] = []
        #: The vendor SDK's open stream, set by ``open()``; closing it stops the provider.
        self._stream: Any = None
        #: Called once the provider's handle for this answer is known (a response
        #: id, a session id), before any text: the activity records it durably at
        #: once, so a worker dying now leaves something a retry can re-attach to.
        self.on_handle: Callable[[], None] | None = None
        #: Called once the provider accepted the request, with its headers at
        #: hand: the quota limiter learns where the key stands from them at once.
        self.on_open: Callable[[], None] | None = None

    def _handle_known(self) -> None:
        if self.on_handle is not None:
            self.on_handle()

    @property
    def unaccounted(self) -> bool:
        """True if the provider may be generating (and billing) an answer this stream
        cannot identify, e.g. a create whose reply never arrived; its bill is flagged."""
        return False

    @property
    def resume_token(self) -> str | None:
        """What a later attempt needs to continue this one instead of starting over.

        Recorded in heartbeat details (no text, no secret) and handed back to the
        provider on retry; None where the vendor cannot continue a stream.
        """
        return None

    @property
    def response_id(self) -> str | None:
        """The provider's id for the answer being generated, where it has one that
        outlives the connection (a background Responses API response).

        Attempts that stream the same response are billed once, by the attempt
        that sees its final usage.
        """
        return None

    def continuation(self, chars: int) -> str | None:
        """A token from which a later attempt continues *this same text* after its
        first ``chars`` characters (a delta boundary), or None if the vendor cannot.

        Unlike :attr:`resume_token` (which continues the work with new text), a
        continuation keeps the generation: readers see one unbroken stream. The
        token goes into heartbeat details, so it holds ids and counters only.
        """
        return None

    async def cancel(self) -> None:
        """Tell the provider to stop generating (the user cancelled the task).

        Closing the stream is enough for most vendors; a response generated in the
        background keeps going unless it is cancelled explicitly.
        """

    async def open(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        """Close the vendor's stream (once): the HTTP response ends, generation stops."""
        if self._stream is not None:
            stream, self._stream = self._stream, None
            closing = getattr(stream, "close", None) or stream.aclose  # SDK stream or generator
            await closing()

    def deltas(self) -> AsyncIterator[str]:
        raise NotImplementedError

    async def __aenter__(self) -> ProviderStream:
        # Opened already when an attempt first tried to re-attach (see the activity).
        if not self.opened:
            await self.open()
            self.opened = True
            if self.on_open is not None:
                self.on_open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __aiter__(self) -> AsyncIterator[str]:
        return self._counted()

    async def _counted(self) -> AsyncIterator[str]:
        async for text in self.deltas():
            if text:
                if self.first_chunk_at is None:
                    self.first_chunk_at = time.monotonic()
                self.chunks += 1
                self.chars += len(text)
                yield text
        if self.finish_reason is None:
            raise IncompleteStreamError(
                f"the provider's stream ended after {self.chars} characters without saying "
                "it was finished; the answer is incomplete"
            )

    def response_headers(self) -> dict[str, str]:
        """The HTTP headers of the answer being streamed (rate-limit state), if any."""
        response = getattr(self._stream, "response", None)
        headers = getattr(response, "headers", None)
        try:
            return dict(headers) if headers is not None else {}
        except (TypeError, ValueError):
            return {}

    def pace(self, now: float | None = None) -> float:
        """Chunks a second since the first one; 0 before two chunks came."""
        if self.first_chunk_at is None or self.chunks < 2:
            return 0.0
        elapsed = (time.monotonic() if now is None else now) - self.first_chunk_at
        return (self.chunks - 1) / elapsed if elapsed > 0 else 0.0

    def final_usage(self) -> Usage:
        """Usage as reported, or estimated from the chunk count if the vendor sent none."""
        if self.usage is not None:
            return self.usage
        return Usage(
            prompt_tokens=0, completion_tokens=self.chunks, total_tokens=self.chunks, estimated=True
        )


class Provider(Protocol):
    """A configured vendor client: builds one stream per attempt."""

    platform: Platform

    def stream(self, task: Task, model: str) -> ProviderStream:
        """A new answer; providers that can continue one also take ``resume=<token>``
        (new text, same work) or ``continue_from=<token>`` (the same text, from a
        :meth:`ProviderStream.continuation`)."""
        ...

    async def aclose(self) -> None: ...
