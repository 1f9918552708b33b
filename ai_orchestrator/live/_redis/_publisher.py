"""The worker's side of the Redis channel: sinks that never block, one writer that batches.

Publishing never blocks or fails the activity: :meth:`LiveSink.add` appends to
a buffer, and one writer task per publisher coalesces each sink's pending text
into one frame every few milliseconds and sends every sink's frames in one
pipeline; a sink's first frame is sent as soon as it opens (empty unless
``prefix`` was given), so the stream exists before the first token. If Redis
is unreachable the publisher warns once (until it is reachable again) and
drops live text: the durable path has it, and the frames' offsets show
readers the gap. Every write refreshes the stream's expiry, so a
finished stream (or one whose worker died) is deleted ``expire_seconds`` after
its last frame; streams are also capped at about ``max_frames`` entries.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from temporalio.converter import DataConverter

from .._frames import LiveFrame, seal
from ._connection import ADDRESS, FIELD, checked_url, connect, redacted, stream_key, url_from_env

# Named after the channel, as before it was split: log settings that name it still apply.
logger = logging.getLogger("ai_orchestrator.live._redis")

DEFAULT_EXPIRE_SECONDS = 3600
DEFAULT_MAX_FRAMES = 10_000
DEFAULT_FLUSH_INTERVAL = 0.005
#: A longer pending text is sent as several frames, so no entry grows unbounded.
MAX_FRAME_CHARS = 32_768


class _RedisSink:
    """One attempt's buffer; :meth:`add` and :meth:`close` only append and wake the writer."""

    def __init__(
        self,
        publisher: RedisLivePublisher,
        key: str,
        run_id: str,
        generation: int,
        start: int,
        prefix: str,
    ) -> None:
        self._publisher = publisher
        self.key = key
        self._run_id = run_id
        self._generation = generation
        if len(prefix) > start:  # the prefix is the text before ``start``: keep its tail
            prefix = prefix[len(prefix) - start :] if start > 0 else ""
        self._start = start - len(prefix)
        self._offset = self._start  # where the next drained text begins
        self._pending: list[str] = [prefix] if prefix else []
        self._announced = False  # whether the opening frame was drained
        self._end: str | None = None
        self._closed = False
        self._lock = threading.Lock()
        self._on_read: Callable[[], None] | None = None

    def add(self, text: str) -> None:
        if not text:
            return
        with self._lock:
            if self._closed:
                return
            self._pending.append(text)
        self._publisher._mark(self)
        if self._on_read is not None:  # readers of Redis are not seen: any may read it
            read, self._on_read = self._on_read, None
            read()

    def on_read(self, callback: Callable[[], None]) -> None:
        self._on_read = callback

    def close(self, end: str) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._end = end
        self._publisher._mark(self)

    def _drain(self) -> list[LiveFrame]:
        """The frames for everything pending (the first drain gives at least one)."""
        with self._lock:
            pending, self._pending = self._pending, []
            end, self._end = self._end, None
        text = "".join(pending)
        frames: list[LiveFrame] = []
        for at in range(0, len(text), MAX_FRAME_CHARS):
            piece = text[at : at + MAX_FRAME_CHARS]
            frames.append(self._frame(self._offset, piece))
            self._offset += len(piece)
        if not frames and not self._announced:
            frames.append(self._frame(self._offset, ""))  # the stream exists from the open
        self._announced = True
        if end is not None:
            if frames:
                frames[-1] = frames[-1].model_copy(update={"end": end})
            else:
                frames.append(self._frame(self._offset, "", end))
        return frames

    def _frame(self, offset: int, text: str, end: str | None = None) -> LiveFrame:
        return LiveFrame(
            run_id=self._run_id,
            generation=self._generation,
            offset=offset,
            text=text,
            start=self._start,
            end=end,
        )


class RedisLivePublisher:
    """A worker's side: one Redis client and one writer task for every sink it opens.

    ``converter`` must be the worker's data converter (with its payload codec),
    so frames are sealed exactly like payloads. ``flush_interval`` is how long
    the writer waits after the first pending text, to coalesce what follows.
    """

    address = ADDRESS

    def __init__(
        self,
        url: str,
        converter: DataConverter,
        *,
        expire_seconds: int = DEFAULT_EXPIRE_SECONDS,
        max_frames: int = DEFAULT_MAX_FRAMES,
        flush_interval: float = DEFAULT_FLUSH_INTERVAL,
        connect_timeout: float = 2.0,
        retry_after: float = 1.0,
    ) -> None:
        self._url = checked_url(url, "the live channel's Redis URL")
        self._converter = converter
        self._expire_seconds = max(1, int(expire_seconds))
        self._max_frames = max(1, int(max_frames))
        self._flush_interval = flush_interval
        self._connect_timeout = connect_timeout
        self._retry_after = retry_after
        self._client: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._writer: asyncio.Task[None] | None = None
        self._dirty: dict[_RedisSink, None] = {}
        self._stopping = False
        self._healthy = True
        self._down_until = 0.0

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None, converter: DataConverter, **options: Any
    ) -> RedisLivePublisher | None:
        """A publisher for ``AI_ORCHESTRATOR_LIVE_REDIS_URL``, or None when it is unset.

        Raises:
            ConfigError: the value is not a Redis URL (the message never quotes it).
        """
        url = url_from_env(env)
        return None if url is None else cls(url, converter, **options)

    def __repr__(self) -> str:
        return f"RedisLivePublisher({redacted(self._url)!r})"

    async def start(self) -> None:
        """Start the writer; an unreachable Redis is logged, never raised."""
        self._ensure_started()
        try:
            await self._client.ping()
        except Exception as exc:
            self._report_down(exc)

    async def stop(self, timeout: float = 5.0) -> None:
        """Send what is pending (for at most ``timeout`` seconds), then disconnect."""
        writer, self._writer = self._writer, None
        if writer is not None:
            self._stopping = True
            assert self._wake is not None
            self._wake.set()
            try:
                await asyncio.wait_for(asyncio.shield(writer), timeout)
            except (asyncio.TimeoutError, Exception):
                writer.cancel()
                with contextlib.suppress(BaseException):
                    await writer
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.aclose()
        self._loop = None
        self._dirty.clear()

    def open(
        self, workflow_id: str, run_id: str, generation: int, start: int = 0, prefix: str = ""
    ) -> _RedisSink:
        self._ensure_started()
        sink = _RedisSink(self, stream_key(workflow_id, run_id), run_id, generation, start, prefix)
        self._mark(sink)  # the opening frame: readers see the stream before any text
        return sink

    # -- the writer ------------------------------------------------------------

    def _ensure_started(self) -> None:
        if self._writer is not None:
            return
        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # opened outside the event loop before start(): its sinks drop their text
        self._wake = asyncio.Event()
        self._stopping = False
        if self._client is None:
            self._client = connect(
                self._url,
                connect_timeout=self._connect_timeout,
                socket_timeout=max(5.0, self._connect_timeout),
            )
        self._writer = self._loop.create_task(self._run_writer(), name="redis-live-writer")

    def _mark(self, sink: _RedisSink) -> None:
        """Queue ``sink`` for the next flush; callable from the loop or from another thread."""
        loop = self._loop
        if loop is None or self._stopping:
            return
        try:
            on_loop = asyncio.get_running_loop() is loop
        except RuntimeError:
            on_loop = False
        if on_loop:
            self._queue(sink)
        else:
            with contextlib.suppress(RuntimeError):  # the loop has closed
                loop.call_soon_threadsafe(self._queue, sink)

    def _queue(self, sink: _RedisSink) -> None:
        self._dirty[sink] = None
        if self._wake is not None:
            self._wake.set()

    async def _run_writer(self) -> None:
        assert self._wake is not None
        while True:
            await self._wake.wait()
            if not self._stopping:
                await asyncio.sleep(self._flush_interval)  # let more text arrive
            self._wake.clear()
            await self._flush()
            if self._stopping and not self._dirty:
                return

    async def _flush(self) -> None:
        sinks = list(self._dirty)
        self._dirty.clear()
        batch = [(sink.key, sink._drain()) for sink in sinks]
        if not batch:
            return
        loop = asyncio.get_running_loop()
        if loop.time() < self._down_until:
            return  # dropped: Redis failed moments ago, and readers see the gap
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                for key, frames in batch:
                    for frame in frames:
                        data = await seal(frame, self._converter)
                        pipe.xadd(key, {FIELD: data}, maxlen=self._max_frames, approximate=True)
                    if frames:
                        pipe.expire(key, self._expire_seconds)
                await pipe.execute()
        except Exception as exc:  # never fail the activity over live text
            self._down_until = loop.time() + self._retry_after
            self._report_down(exc)
        else:
            self._report_up()

    def _report_down(self, exc: BaseException) -> None:
        if self._healthy:
            self._healthy = False
            logger.warning(
                "live channel: Redis at %s is unreachable (%s); live text is dropped "
                "until it is back (readers get it from the workflow)",
                redacted(self._url),
                type(exc).__name__,
            )

    def _report_up(self) -> None:
        if not self._healthy:
            self._healthy = True
            logger.info("live channel: Redis at %s is reachable again", redacted(self._url))
