"""The two halves of a live channel: a worker publishes, readers subscribe.

Every backend (the worker-hosted endpoint, Redis Streams) implements both
halves; the activity and the client only see these protocols. A reader finds
where a run's text is published through the attempt's heartbeat details
(``AttemptState.live``): an address with no secret in it, since heartbeat
details are stored by the Temporal server.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Protocol

from ._frames import LiveFrame


class LiveSink(Protocol):
    """One attempt's stream. Never blocks the activity: a slow or absent channel
    loses live text (readers fall back to the workflow), never the answer."""

    def add(self, text: str) -> None: ...

    def close(self, end: str) -> None:
        """Publish the last frame (``end`` is one of the ``END_*`` constants)."""
        ...

    def on_read(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once, when a reader first gets text (or, where the
        channel cannot tell, may get it): the activity then checkpoints at once,
        so what a reader saw is not lost with the worker."""
        ...


class LivePublisher(Protocol):
    """A worker's side of the channel, started and stopped with the worker."""

    #: What readers are told, in heartbeat details: ``http://host:port`` or ``redis``.
    address: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def open(
        self, workflow_id: str, run_id: str, generation: int, start: int = 0, prefix: str = ""
    ) -> LiveSink:
        """A sink for one attempt's text; ``prefix`` is the generation's text before ``start``
        when the attempt knows it (so late readers need not ask the workflow)."""
        ...


class LiveSubscriber(Protocol):
    """A client's side: reads one run's frames from an address a worker advertised."""

    def handles(self, address: str) -> bool: ...

    def read(
        self, address: str, workflow_id: str, run_id: str, generation: int, offset: int
    ) -> AsyncIterator[LiveFrame]:
        """Frames from ``offset`` of ``generation`` (or, if the source's generation is
        newer, from its ``start``) until the attempt's last frame or a disconnect."""
        ...

    async def aclose(self) -> None: ...
