"""A Responses API response: its generation and its stored events, apart from any connection.

A response is a :class:`ResponseRun` whose generation is an asyncio task
apart from any HTTP connection. Every event it makes is stored with its
``sequence_number``; a connection only *reads* them (:mod:`._responses`), so a
streamed create and any number of re-attaches all see the same events.

Cancelling ends the stored events with ``response.failed`` carrying the
Response in status ``cancelled``: the openai SDK (3.x) models no
``response.cancelled`` event, and ``response.failed`` is the terminal event
it does model that carries the whole Response, so a client sees both that the
stream ended and why (``event.response.status == "cancelled"``).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from . import _responses_shapes as shapes
from ._records import ResponseRecord
from ._state import SimulatorState

DELTA = "response.output_text.delta"
TERMINAL_EVENTS = frozenset({"response.completed", "response.incomplete", "response.failed"})


class ResponseRun:
    """One response's generation and its stored events (the record is its bill)."""

    def __init__(
        self,
        state: SimulatorState,
        billing: ResponseRecord,
        params: shapes.ResponsesParams,
        tokens: list[str],
        incomplete_reason: str | None,
        api_key: str | None = None,
        quota_tokens: int = 0,
    ) -> None:
        """``quota_tokens``: what the create was charged against ``api_key``'s quota,
        settled when generation ends (a background response outlives its connection)."""
        self.state = state
        self.api_key = api_key
        self.quota_tokens = quota_tokens
        self.billing = billing
        self.params = params
        self.tokens = tokens
        self.incomplete_reason = incomplete_reason
        self.item_id = "msg_" + billing.id.removeprefix("resp_")
        self.created = int(time.time())
        self.completed_at: int | None = None
        self.events: list[dict[str, Any]] = []
        self.parts: list[str] = []
        self.item_added = False
        self.done = False
        self.task: asyncio.Task[None] | None = None
        # Swapped on every event, like SimulatorState's: wakes every reader.
        self._changed = asyncio.Event()

    @property
    def status(self) -> str:
        return self.billing.status

    def snapshot(self) -> dict[str, Any]:
        """The Response object as it stands (what GET and every lifecycle event carry)."""
        output: list[dict[str, Any]] = []
        if self.item_added:
            item_status = {"completed": "completed", "in_progress": "in_progress"}.get(
                self.status, "incomplete"
            )
            output.append(shapes.message_item(self.item_id, item_status, "".join(self.parts)))
        finished = self.status not in ("queued", "in_progress")
        billing = self.billing
        return shapes.response_object(
            response_id=billing.id,
            created_at=self.created,
            model=self.params.model,
            status=self.status,
            background=self.params.background,
            store=self.params.store,
            instructions=self.params.instructions,
            max_output_tokens=self.params.max_output_tokens,
            temperature=self.params.temperature,
            output=output,
            usage_=shapes.usage(billing.input_tokens, billing.generated_tokens)
            if finished
            else None,
            incomplete_reason=self.incomplete_reason if self.status == "incomplete" else None,
            completed_at=self.completed_at,
        )

    def emit(self, type_: str, **fields: Any) -> None:
        if self.done:
            return
        self.events.append({"type": type_, "sequence_number": len(self.events), **fields})
        if type_ in TERMINAL_EVENTS:
            self.done = True
            billing = self.billing
            billing.finished_at = time.monotonic()
            used = billing.input_tokens + billing.generated_tokens
            self.state.quota.settle(self.api_key, billing.model, self.quota_tokens, used)
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
        self.state.notify()

    async def wait_change(self) -> None:
        await self._changed.wait()

    async def wait_done(self) -> None:
        while not self.done:
            await self.wait_change()

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._generate())
        if self.params.background:
            self.state.background.add(self.task)
            self.task.add_done_callback(self.state.background.discard)

    async def _generate(self) -> None:
        """Paced as chat is: one token per ``token_delay``, read per token."""
        self.emit("response.created", response=self.snapshot())
        self.billing.status = "in_progress"
        self.emit("response.in_progress", response=self.snapshot())
        ids = {"item_id": self.item_id, "output_index": 0, "content_index": 0}
        self.item_added = True
        item = shapes.message_item(self.item_id, "in_progress", None)
        self.emit("response.output_item.added", output_index=0, item=item)
        self.emit("response.content_part.added", **ids, part=shapes.text_part(""))
        for token in self.tokens:
            await asyncio.sleep(self.state.token_delay())
            self.parts.append(token)
            self.billing.generated_tokens += 1
            self.emit(DELTA, **ids, delta=token, logprobs=[])
        text = "".join(self.parts)
        self.emit("response.output_text.done", **ids, text=text, logprobs=[])
        self.emit("response.content_part.done", **ids, part=shapes.text_part(text))
        self.billing.status = "incomplete" if self.incomplete_reason else "completed"
        self.completed_at = int(time.time())
        item = self.snapshot()["output"][0]
        self.emit("response.output_item.done", output_index=0, item=item)
        self.emit(f"response.{self.billing.status}", response=self.snapshot())

    def cancel(self) -> None:
        """Stop generating; the stored events end with ``response.failed`` (see module doc)."""
        if self.done:
            return
        if self.task is not None:
            self.task.cancel()
        self.billing.status = "cancelled"
        self.emit("response.failed", response=self.snapshot())


def lookup(state: SimulatorState, response_id: str) -> ResponseRun | None:
    """The stored response, or None if unknown, not stored, or expired (then it is 404)."""
    run: ResponseRun | None = state.response_runs.get(response_id)
    if run is None or not run.params.store:
        return None
    billing = run.billing
    if (
        not billing.expired
        and billing.finished_at is not None
        and time.monotonic() - billing.finished_at >= state.response_ttl
    ):
        billing.expired = True
    return None if billing.expired else run
