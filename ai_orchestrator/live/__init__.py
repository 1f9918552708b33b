"""The live channel: streamed text to readers, beside (not through) workflow history.

History keeps checkpoints of a task's text (enough for partial output, late
joiners and restarts); live readers get every delta from where it is
produced. See the README's "Live streaming" section for the two paths.
"""

from ._channel import LivePublisher, LiveSink, LiveSubscriber
from ._frames import (
    END_CANCELLED,
    END_COMPLETED,
    END_FAILED,
    END_HANDED_OVER,
    LiveFrame,
    seal,
    unseal,
)

__all__ = [
    "END_CANCELLED",
    "END_COMPLETED",
    "END_FAILED",
    "END_HANDED_OVER",
    "LiveFrame",
    "LivePublisher",
    "LiveSink",
    "LiveSubscriber",
    "seal",
    "unseal",
]
