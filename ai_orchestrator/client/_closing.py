"""Ending a client cleanly: what a script must not leave behind when it exits.

Temporal's Python SDK runs every RPC as a Rust future on its own (Tokio)
threads. When such a call ends, including when Python cancelled it, a Tokio
thread takes the GIL to resolve the Python future (pyo3-async-runtimes'
``future_into_py``: the cancel reaches Rust through the future's done callback,
which runs on a later turn of the event loop). If that happens while the
interpreter is finalizing, CPython aborts with ``Fatal Python error:
PyGILState_Release: thread state ... must be current when releasing`` (exit 134;
temporalio/sdk-python#300). Calls are left in flight at exit by a stream the
script broke out of (its generator is only closed by ``asyncio.run``'s last
steps, moments before finalization) and by the long polls a finished wait
cancels. :meth:`TaskClient.close` (``async with``) closes open streams while the
loop still runs, then lets the loop turn until those threads are done.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncGenerator
from typing import TypeVar

T = TypeVar("T")

#: Long enough for the done callbacks to run and the Tokio threads to take and
#: release the GIL (they need only the loop to be idle), short enough not to be
#: noticed at the end of a script.
BRIDGE_SETTLE_SECONDS = 0.1


class OpenStreams:
    """The streams a client handed out and that may still be open (weakly held)."""

    def __init__(self) -> None:
        self._streams: weakref.WeakSet[AsyncGenerator[object, None]] = weakref.WeakSet()

    def track(self, stream: AsyncGenerator[T, None]) -> AsyncGenerator[T, None]:
        self._streams.add(stream)  # type: ignore[arg-type]
        return stream

    async def close_all(self) -> None:
        """Close every stream not finished yet; a stream being read right now is left."""
        for stream in list(self._streams):
            if stream.ag_running:
                continue
            try:
                await stream.aclose()
            except RuntimeError:  # started reading concurrently: its reader closes it
                pass
        self._streams.clear()


async def settle_bridge() -> None:
    """Give the SDK's threads the idle loop they need to finish cancelled calls."""
    await asyncio.sleep(BRIDGE_SETTLE_SECONDS)
