"""The client's side of the Redis channel: a run's frames, from the beginning, in order.

Reading starts from the beginning of the stream: frames of a generation older
than the newest are skipped, text before the requested offset is trimmed, and a
newer generation's frames are yielded from their start. The reader stops at the
last frame (``end`` set) of the newest generation, unless more frames follow it
(a hand-over within one generation); once the stream is gone, or silent for
``idle_timeout``, it ends without an end frame. A stream that never appears,
an unreachable Redis and frames it cannot unseal raise :class:`RedisLiveError`,
a :class:`ConnectionError`: the caller follows the workflow instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import Any

from temporalio.converter import DataConverter

from .._frames import LiveFrame, unseal
from ._connection import (
    ADDRESS,
    FIELD,
    RedisError,
    RedisLiveDecodeError,
    RedisLiveError,
    RedisLiveUnavailable,
    checked_url,
    connect,
    redacted,
    stream_key,
    url_from_env,
)


class RedisLiveSubscriber:
    """A client's side: reads a run's stream from the beginning, then waits for new frames.

    ``converter`` must match the workers' (same encryption keys). ``block_seconds``
    is how long one wait for new entries lasts before checking that the stream
    still exists. A publisher writes a stream's first (empty) frame as soon as a
    sink opens, so a stream missing for ``missing_timeout`` means its worker
    cannot reach Redis: :meth:`read` raises :class:`RedisLiveUnavailable`. A
    stream with no new frame for ``idle_timeout`` ends the read without an end
    frame (its worker may be gone: the caller looks at the workflow again), and
    so does a stream that disappears (expired or deleted).

    Raises (from :meth:`read`): :class:`RedisLiveUnavailable` or
    :class:`RedisLiveDecodeError`, both :class:`ConnectionError`: fall back to
    the workflow.
    """

    def __init__(
        self,
        url: str,
        converter: DataConverter,
        *,
        block_seconds: float = 1.0,
        missing_timeout: float = 3.0,
        idle_timeout: float = 30.0,
        connect_timeout: float = 2.0,
    ) -> None:
        self._url = checked_url(url, "the live channel's Redis URL")
        self._converter = converter
        self._block_ms = max(1, int(block_seconds * 1000))
        self._missing_timeout = missing_timeout
        self._idle_timeout = idle_timeout
        self._connect_timeout = connect_timeout
        self._client: Any = None

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None, converter: DataConverter, **options: Any
    ) -> RedisLiveSubscriber | None:
        """A subscriber for ``AI_ORCHESTRATOR_LIVE_REDIS_URL``, or None when it is unset."""
        url = url_from_env(env)
        return None if url is None else cls(url, converter, **options)

    def __repr__(self) -> str:
        return f"RedisLiveSubscriber({redacted(self._url)!r})"

    def handles(self, address: str) -> bool:
        return address == ADDRESS

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    def _redis(self) -> Any:
        if self._client is None:
            self._client = connect(
                self._url,
                connect_timeout=self._connect_timeout,
                socket_timeout=self._block_ms / 1000 + 10.0,
            )
        return self._client

    async def read(
        self, address: str, workflow_id: str, run_id: str, generation: int, offset: int
    ) -> AsyncIterator[LiveFrame]:
        if not self.handles(address):
            raise ValueError(f"RedisLiveSubscriber does not read {address!r}")
        try:
            async for frame in self._read(
                stream_key(workflow_id, run_id), run_id, generation, offset
            ):
                yield frame
        except RedisLiveError:
            raise
        except RedisError as exc:
            raise RedisLiveUnavailable(
                f"live channel: cannot read from Redis at {redacted(self._url)} "
                f"({type(exc).__name__}: {exc}); read the text from the workflow"
            ) from None
        except OSError as exc:
            raise RedisLiveUnavailable(
                f"live channel: cannot reach Redis at {redacted(self._url)} "
                f"({type(exc).__name__}); read the text from the workflow"
            ) from None

    async def _read(
        self, key: str, run_id: str, generation: int, offset: int
    ) -> AsyncIterator[LiveFrame]:
        client = self._redis()
        # Skip straight to the newest generation when the stream already has one.
        last = await client.xrevrange(key, count=1)
        newest = (await self._unseal(last[0][1])).generation if last else generation
        state = _ReadState(run_id, generation, offset, newest)
        last_id = b"0-0"
        seen_any = False
        loop = asyncio.get_running_loop()
        waiting_since = loop.time()
        while True:
            # After an end frame, only look (no wait) for frames that supersede it.
            block = None if state.held_end is not None else self._block_ms
            reply = await client.xread({key: last_id}, count=500, block=block)
            entries = reply[0][1] if reply else []
            if not entries:
                if state.held_end is not None:
                    yield state.end_frame()
                    return
                waited = loop.time() - waiting_since
                if await client.exists(key):
                    if waited >= self._idle_timeout:
                        return  # a silent source (its worker may be gone): look again
                elif seen_any:
                    return  # expired or deleted: nothing more
                elif waited >= self._missing_timeout:
                    raise RedisLiveUnavailable(
                        f"live channel: no stream for run {run_id!r} appeared in Redis at "
                        f"{redacted(self._url)} within {self._missing_timeout:g} s (its worker "
                        "may not reach Redis); read the text from the workflow"
                    )
                continue
            seen_any = True
            waiting_since = loop.time()
            for entry_id, fields in entries:
                last_id = entry_id
                frame = await self._unseal(fields)
                out = state.accept(frame)
                if out is not None:
                    yield out

    async def _unseal(self, fields: Mapping[bytes, bytes]) -> LiveFrame:
        data = fields.get(FIELD)
        if data is None:
            raise RedisLiveDecodeError("live channel: a Redis stream entry has no frame field")
        try:
            return await unseal(data, self._converter)
        except Exception as exc:
            raise RedisLiveDecodeError(
                f"live channel: cannot decode a frame from Redis at {redacted(self._url)} "
                f"({type(exc).__name__}): the workers seal frames with another data converter; "
                "is encryption (AI_ORCHESTRATOR_ENCRYPTION_KEYS) configured the same "
                "on workers and this client?"
            ) from None


class _ReadState:
    """Which generation a reader follows and the next offset it wants from it."""

    def __init__(self, run_id: str, generation: int, offset: int, newest: int) -> None:
        self.run_id = run_id
        self.generation = generation
        self.position = offset
        #: Frames of generations below this are superseded (the stream holds a newer one).
        self.floor = max(generation, newest)
        self.held_end: str | None = None

    def accept(self, frame: LiveFrame) -> LiveFrame | None:
        """The part of ``frame`` to yield, if any (an end is held: see ``held_end``)."""
        if frame.generation < self.floor or frame.run_id != self.run_id:
            return None
        if frame.generation > self.generation:
            # A newer generation supersedes: follow it from its start.
            self.generation = self.floor = frame.generation
            self.position = frame.start
        # Any frame after an end (a hand-over within the generation, or a newer one)
        # means that end was not the last.
        self.held_end = frame.end
        text, at = frame.text, frame.offset
        if at < self.position:  # overlap: trim what the reader has
            text = text[self.position - at :]
            at = self.position
        if not text:
            return None
        self.position = at + len(text)
        return frame.model_copy(update={"offset": at, "text": text, "end": None})

    def end_frame(self) -> LiveFrame:
        return LiveFrame(
            run_id=self.run_id,
            generation=self.generation,
            offset=self.position,
            end=self.held_end,
        )
