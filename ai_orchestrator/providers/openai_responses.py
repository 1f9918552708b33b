"""OpenAI's Responses API in background mode: a broken stream is re-attached, not regenerated.

Each answer is created with ``background=True, store=True, stream=True``: the
provider keeps generating (and storing the events) when the connection drops,
so a later attempt re-opens the same response with
``responses.retrieve(id, stream=True, starting_after=<sequence number>)`` and
readers see one unbroken answer, billed once. Every ``response.output_text.delta``
carries a ``sequence_number``; the stream records, for each delta boundary, the
characters yielded so far and that number, and :meth:`ResponsesStream.continuation`
turns a boundary into a token::

    responses:<response id>:<sequence number>:<characters before it>

(ids and counters only: it goes into heartbeat details). Background mode stores
the response at the provider: not for zero-data-retention accounts.

Terminal events decide completeness: ``response.completed`` (stop),
``response.incomplete`` (length, or content filter), ``response.failed`` and
``error`` events raise an ``openai.APIError`` whose body is the event's error,
judged by :func:`ai_orchestrator.errors.classify` like any in-stream error.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx2
import openai
from openai import AsyncOpenAI

from ..core import Platform, Task
from ..errors import ContinuationLost
from ..messages import Usage
from ._base import FINISH_FILTERED, FINISH_LENGTH, FINISH_STOP, ProviderStream, build_messages

logger = logging.getLogger(__name__)

TOKEN_PREFIX = "responses"
#: Statuses after which the provider generates nothing more.
_FINISHED = frozenset({"completed", "incomplete", "failed", "cancelled"})
#: Statuses from which re-attaching would only replay a failure: a retry starts over.
_DEAD = frozenset({"failed", "cancelled"})
#: Why re-attaching can fail for good: no such response (expired, deleted, never
#: stored), or one the provider will not stream again (not created in background).
_LOST_STATUSES = frozenset({400, 404, 410})
_INCOMPLETE_REASONS = {
    "max_output_tokens": FINISH_LENGTH,
    "content_filter": FINISH_FILTERED,
}
#: How long :meth:`ResponsesStream.cancel` waits for the provider.
CANCEL_TIMEOUT = 10.0
_TERMINAL_EVENTS = frozenset(
    {"response.completed", "response.incomplete", "response.failed", "error"}
)


@dataclass(frozen=True)
class Continuation:
    """Where a later attempt picks up a response: after event ``sequence``, which
    ended the first ``chars`` characters of its text."""

    response_id: str
    sequence: int
    chars: int

    @property
    def token(self) -> str:
        return f"{TOKEN_PREFIX}:{self.response_id}:{self.sequence}:{self.chars}"

    @classmethod
    def parse(cls, token: str) -> Continuation:
        """Raises:
        ContinuationLost: ``token`` is not one of ours (so nothing can be re-attached).
        """
        parts = token.split(":")
        if len(parts) == 4 and parts[0] == TOKEN_PREFIX and parts[1]:
            try:
                sequence, chars = int(parts[2]), int(parts[3])
            except ValueError:
                pass
            else:
                if sequence >= 0 and chars >= 0:
                    return cls(parts[1], sequence, chars)
        raise ContinuationLost(f"not a Responses API continuation token: {token[:80]!r}")


def is_token(token: str) -> bool:
    return token.startswith(TOKEN_PREFIX + ":")


def request_params(task: Task, model: str) -> dict[str, Any]:
    """Keyword arguments for ``responses.create``: the prompt as input, the task's
    context (and file list) as instructions, as the chat path renders them."""

    messages = build_messages(task)
    instructions = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
    params: dict[str, Any] = {"model": model, "input": task.prompt}
    if instructions:
        params["instructions"] = instructions
    constraints = task.effective_constraints
    if constraints.max_tokens is not None:
        params["max_output_tokens"] = constraints.max_tokens
    if constraints.temperature is not None:
        params["temperature"] = constraints.temperature
    return params


def finish_reason(status: str | None, incomplete_reason: str | None) -> tuple[str, str]:
    """Our finish reason and the vendor's, for a response that ended without failing."""
    if status == "incomplete":
        vendor = incomplete_reason or "incomplete"
        return _INCOMPLETE_REASONS.get(vendor, FINISH_LENGTH), vendor
    return FINISH_STOP, status or "completed"


def failure_body(event: Any) -> dict[str, Any]:
    """The error object of a ``response.failed`` or ``error`` event, as the body of
    an ``APIError`` (``classify`` judges it by its ``code``, then its ``type``)."""
    if event.type == "response.failed":
        error = getattr(event.response, "error", None)
        if error is not None:
            body = error.model_dump(exclude_none=True, include={"code", "message", "param", "type"})
            body.setdefault("message", "the response failed")
            return body
        if getattr(event.response, "status", None) == "cancelled":
            return {"type": "response_cancelled", "message": "the response was cancelled"}
        return {"type": "response_failed", "message": "the response failed without an error"}
    body = {"code": getattr(event, "code", None), "message": getattr(event, "message", None)}
    if getattr(event, "param", None):
        body["param"] = event.param
    return {key: value for key, value in body.items() if value is not None} or {
        "message": "the provider sent an error event"
    }


async def cancel_response(client: AsyncOpenAI, response_id: str) -> Any | None:
    """Stop a background response; the Response after (status, usage so far), or None
    if the cancel failed. A response that finished first is returned as it ended."""
    try:
        return await client.responses.cancel(response_id, timeout=CANCEL_TIMEOUT)
    except openai.BadRequestError:  # "Cannot cancel a completed response": read how it ended
        try:
            return await client.responses.retrieve(response_id, timeout=CANCEL_TIMEOUT)
        except Exception as exc:
            logger.warning("could not read response %s after cancelling: %s", response_id, exc)
            return None
    except Exception as exc:  # never let a failed cancel hide the user's cancel
        logger.warning("could not cancel response %s: %s", response_id, exc)
        return None


def response_usage(response: Any | None) -> Usage | None:
    """The provider's own count for a Response object, once it reports one."""
    usage = getattr(response, "usage", None)
    if usage is None:
        return None
    return Usage(
        prompt_tokens=usage.input_tokens,
        completion_tokens=usage.output_tokens,
        total_tokens=usage.total_tokens,
    )


#: Cancels of answers whose id arrived after their attempt ended; kept referenced
#: until done (asyncio holds tasks weakly).
_REAPERS: set[asyncio.Task[None]] = set()
#: How long a reaper waits for a slow create to name its answer.
REAP_TIMEOUT = 300.0


class ResponsesStream(ProviderStream):
    """A streamed background response, or the rest of one (``continue_from``).

    Args:
        client: an ``AsyncOpenAI`` with ``max_retries=0``.
        params: from :func:`request_params`.
        continue_from: a token from an earlier attempt's :meth:`continuation`:
            ``open()`` re-attaches after that boundary (raising
            :class:`ContinuationLost`, before any text, if it cannot) and the
            stream yields only the text after it.
    """

    platform = Platform.CHATGPT

    def __init__(
        self, client: AsyncOpenAI, params: dict[str, Any], *, continue_from: str | None = None
    ) -> None:
        super().__init__(params["model"])
        self._client = client
        self._params = params
        self._continue_from = continue_from
        self._response_id: str | None = None
        self._status: str | None = None
        #: Characters of the response before this stream's first (0 unless continued).
        self._base_chars = 0
        #: Characters this stream yielded so far -> the event that ended them.
        self._boundaries: dict[int, int] = {}
        self._position = 0
        #: Events up to this sequence number were seen (replays are skipped).
        self._last_sequence = -1
        self._failed = False
        self._refused = False
        #: The create request, kept apart from the attempt: if the attempt is
        #: cancelled while it is in flight, its answer is still found and stopped.
        self._creating: asyncio.Future[Any] | None = None
        #: Events the create read to learn the id, not yet given to :meth:`deltas`.
        self._head: list[Any] = []
        self._reaper: asyncio.Task[None] | None = None

    @property
    def response_id(self) -> str | None:
        return self._response_id

    @property
    def status(self) -> str | None:
        """The response's last known status (``queued``, ``in_progress``, ``completed`` ...)."""
        return self._status

    def continuation(self, chars: int) -> str | None:
        """The token for the boundary after ``chars`` characters *this stream* yielded
        (the position within the response is in the token), or None: no response id
        yet, ``chars`` is not a delta boundary, or the response failed or was
        cancelled (re-attaching would only replay that)."""
        if self._response_id is None or self._failed or self._status in _DEAD:
            return None
        sequence = self._boundaries.get(chars)
        if sequence is None:
            return None
        return Continuation(self._response_id, sequence, self._base_chars + chars).token

    @property
    def unaccounted(self) -> bool:
        """A create went out (not refused) but the answer's id never reached us."""
        creating = self._creating
        if creating is None or self._response_id is not None:
            return False
        return not (creating.done() and not creating.cancelled() and creating.exception())

    async def open(self) -> None:
        if self._continue_from is None:
            self._creating = asyncio.ensure_future(self._create())
            self._stream = await asyncio.shield(self._creating)
            return
        start = Continuation.parse(self._continue_from)
        try:
            self._stream = await self._client.responses.retrieve(
                start.response_id, stream=True, starting_after=start.sequence
            )
        except openai.APIStatusError as exc:
            if exc.status_code not in _LOST_STATUSES:
                raise  # an outage or a rate limit: a later attempt may re-attach
            raise ContinuationLost(
                f"response {start.response_id} cannot be streamed again "
                f"(HTTP {exc.status_code}: {exc.message})"
            ) from exc
        except ValueError as exc:  # the SDK refused the request itself
            raise ContinuationLost(f"response {start.response_id}: {exc}") from exc
        self._response_id = start.response_id
        self._base_chars = start.chars
        self._last_sequence = start.sequence
        self._boundaries[0] = start.sequence

    async def cancel(self) -> None:
        """Cancel the background response unless it is finished; best effort.

        A create still in flight is waited for (in the background past
        ``CANCEL_TIMEOUT``): its answer is cancelled as soon as its id arrives.
        """
        if self._response_id is None and self.unaccounted:
            if self._reaper is None:
                self._reaper = asyncio.create_task(self._reap())
                _REAPERS.add(self._reaper)
                self._reaper.add_done_callback(_REAPERS.discard)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._reaper), CANCEL_TIMEOUT)
            return
        await self._cancel_known()

    async def _cancel_known(self) -> None:
        if self._response_id is None or self._status in _FINISHED:
            return
        response = await cancel_response(self._client, self._response_id)
        if response is not None:
            self._status = getattr(response, "status", None) or "cancelled"
            self.usage = response_usage(response) or self.usage

    async def _create(self) -> Any:
        """Create the response and read events until one names it, apart from the
        attempt (shielded): a cancel landing meanwhile cannot close the stream
        before the id is known. The events read are replayed by :meth:`deltas`."""
        stream = await self._client.responses.create(
            **self._params, stream=True, background=True, store=True
        )
        while self._response_id is None:
            try:
                event = await stream.__anext__()
            except StopAsyncIteration:
                break
            self._head.append(event)
            if event.type in ("response.created", "response.queued", "response.in_progress"):
                self._note(event.response, getattr(event, "sequence_number", None))
            elif event.type in _TERMINAL_EVENTS or event.type == "response.output_text.delta":
                break  # a server that names nothing first: the stream says the rest
        return stream

    async def _events(self) -> AsyncIterator[Any]:
        head, self._head = self._head, []
        for event in head:
            yield event
        async for event in self._stream:
            yield event

    async def _reap(self) -> None:
        """Wait for the create, which reads up to the event naming the answer; stop it."""
        creating = self._creating
        assert creating is not None
        try:
            stream = await asyncio.wait_for(asyncio.shield(creating), REAP_TIMEOUT)
        except Exception:  # refused, or never answered: nothing was created that we can name
            return
        with contextlib.suppress(Exception):
            await stream.close()
        await self._cancel_known()

    def _note(self, response: Any, sequence: int | None) -> None:
        if response is None:
            return
        if response.id and self._response_id is None:
            self._response_id = response.id
            if sequence is not None:
                self._boundaries.setdefault(0, sequence)
            self._handle_known()
        self._status = response.status or self._status
        self.model = response.model or self.model
        self.usage = response_usage(response) or self.usage

    def _raise(self, event: Any) -> None:
        self._failed = True
        body = failure_body(event)
        response = getattr(self._stream, "response", None)
        request = getattr(response, "request", None) or httpx2.Request(
            "GET", str(self._client.base_url)
        )
        raise openai.APIError(str(body.get("message")), request, body=body)

    async def deltas(self) -> AsyncIterator[str]:
        if self._stream is None:
            raise RuntimeError("ResponsesStream must be opened with 'async with' before iterating")
        async for event in self._events():
            sequence = getattr(event, "sequence_number", None)
            if isinstance(sequence, int):
                if sequence <= self._last_sequence:
                    continue  # already seen (a server that replays from the start)
                self._last_sequence = sequence
            kind = event.type
            if kind == "response.output_text.delta":
                text = event.delta
                if text:
                    self._position += len(text)
                    if isinstance(sequence, int):
                        self._boundaries.setdefault(self._position, sequence)
                    yield text
            elif kind in ("response.created", "response.queued", "response.in_progress"):
                self._note(event.response, sequence)
            elif kind == "response.refusal.delta":
                self._refused = True
            elif kind in ("response.completed", "response.incomplete"):
                self._note(event.response, sequence)
                details = event.response.incomplete_details
                self.finish_reason, self.vendor_finish_reason = finish_reason(
                    event.response.status or kind.removeprefix("response."),
                    details.reason if details is not None else None,
                )
                if self._refused and self.finish_reason == FINISH_STOP:
                    self.finish_reason, self.vendor_finish_reason = FINISH_FILTERED, "refusal"
                return
            elif kind == "response.failed":
                self._note(event.response, sequence)
                self._raise(event)
            elif kind == "error":
                self._raise(event)
