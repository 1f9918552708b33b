"""What travels on the live channel, and how it is sealed.

A frame is a piece of one stream's text at an offset, like a chunk batch, but
it never enters history. It is encoded with the client's and worker's own
data converter, payload codec included: with encryption on, a frame is as
unreadable to the channel (a worker endpoint, a broker) as a payload is to
the Temporal server.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict
from temporalio.api.common.v1 import Payload
from temporalio.converter import DataConverter

#: How an attempt's live stream ended, in its last frame. Only ``COMPLETED``
#: means the workflow's result is final text; every other end means "ask the
#: workflow what happens next" (a retry, a cancel, a hand-over).
END_COMPLETED = "completed"
END_FAILED = "failed"
END_CANCELLED = "cancelled"
END_HANDED_OVER = "handed_over"
#: A newer attempt of the same run opened on this worker before this one ended.
END_SUPERSEDED = "superseded"


class LiveFrame(BaseModel):
    """Text of one stream from ``offset``; a newer ``generation`` supersedes an older one.

    ``start`` is the first offset this source holds for the generation: a
    resumed attempt's source starts where the workflow's checkpoint was, and a
    reader behind it fills the gap from the workflow.
    """

    model_config = ConfigDict(extra="ignore")

    run_id: str
    generation: int
    offset: int
    text: str = ""
    start: int = 0
    #: Set on the attempt's last frame (see the ``END_*`` constants).
    end: str | None = None


async def seal(frame: LiveFrame, converter: DataConverter) -> bytes:
    """The frame as bytes, through the payload codec (encrypted when encryption is on)."""
    (payload,) = await converter.encode([frame])
    return payload.SerializeToString()


async def unseal(data: bytes, converter: DataConverter) -> LiveFrame:
    payload = Payload()
    payload.ParseFromString(data)
    (frame,) = await converter.decode([payload], [LiveFrame])
    return frame
