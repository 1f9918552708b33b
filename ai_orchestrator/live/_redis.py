"""The live channel on Redis Streams: for workers that scale out behind one broker.

One stream per run, ``ai-orchestrator:live:{workflow_id}:{run_id}``; every entry
holds one sealed :class:`LiveFrame` (encrypted when encryption is on, so Redis
sees only ciphertext). Workers publish with :class:`RedisLivePublisher`;
clients read with :class:`RedisLiveSubscriber`. Both are configured by
``AI_ORCHESTRATOR_LIVE_REDIS_URL`` (``redis://:password@host:6379/0``); what a
worker advertises in heartbeat details is only the word ``redis``, never the URL.

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
import contextlib
import logging
import os
import threading
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from temporalio.converter import DataConverter

try:
    import redis.asyncio as aioredis
    import redis.exceptions as redis_errors
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "the Redis live channel needs redis-py: pip install 'temporal-ai-orchestrator[redis]'"
    ) from exc

from ..config import ConfigError
from ._frames import LiveFrame, seal, unseal

logger = logging.getLogger(__name__)

#: The Redis URL both sides use, e.g. ``redis://:password@host:6379/0``.
ENV_LIVE_REDIS_URL = "AI_ORCHESTRATOR_LIVE_REDIS_URL"
#: What a worker advertises in heartbeat details (no URL: it may hold a password).
ADDRESS = "redis"
KEY_PREFIX = "ai-orchestrator:live:"
#: The entry field holding the sealed frame.
FIELD = b"frame"

DEFAULT_EXPIRE_SECONDS = 3600
DEFAULT_MAX_FRAMES = 10_000
DEFAULT_FLUSH_INTERVAL = 0.005
#: A longer pending text is sent as several frames, so no entry grows unbounded.
MAX_FRAME_CHARS = 32_768
_SCHEMES = ("redis", "rediss", "unix")


class RedisLiveError(ConnectionError):
    """The live channel on Redis cannot be read: read the text from the workflow instead."""


class RedisLiveUnavailable(RedisLiveError):
    """Redis is unreachable, or refuses our credentials."""


class RedisLiveDecodeError(RedisLiveError):
    """A frame cannot be unsealed: the worker's and client's converters (encryption) differ."""


def stream_key(workflow_id: str, run_id: str) -> str:
    return f"{KEY_PREFIX}{workflow_id}:{run_id}"


def redacted(url: str) -> str:
    """``scheme://host:port/db`` without user or password, for messages and logs."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<unparsable Redis URL>"
    return f"{parts.scheme}://{host}{port}{parts.path}"


def _checked_url(url: str, where: str) -> str:
    url = url.strip()
    try:
        scheme = urlsplit(url).scheme
    except ValueError:
        scheme = ""
    if scheme not in _SCHEMES:
        # Never echo the value: it may hold a password.
        raise ConfigError(
            f"{where} must be a redis://, rediss:// or unix:// URL, "
            "e.g. redis://:password@host:6379/0"
        )
    return url


def _url_from_env(env: Mapping[str, str] | None) -> str | None:
    source = os.environ if env is None else env
    raw = source.get(ENV_LIVE_REDIS_URL, "")
    if not raw.strip():
        return None
    return _checked_url(raw, ENV_LIVE_REDIS_URL)


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
        self._url = _checked_url(url, "the live channel's Redis URL")
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
        url = _url_from_env(env)
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
            self._client = aioredis.from_url(
                self._url,
                socket_connect_timeout=self._connect_timeout,
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
        self._url = _checked_url(url, "the live channel's Redis URL")
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
        url = _url_from_env(env)
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
            self._client = aioredis.from_url(
                self._url,
                socket_connect_timeout=self._connect_timeout,
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
        except redis_errors.RedisError as exc:
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
