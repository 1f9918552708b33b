"""Chunk batching: few signals, one in flight, none for a short answer."""

from __future__ import annotations

import asyncio

from ai_orchestrator.activities._publisher import ChunkPublisher
from ai_orchestrator.messages import ChunkBatch


class Recorder:
    def __init__(self, delay: float = 0.0, fail: bool = False) -> None:
        self.batches: list[ChunkBatch] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.delay = delay
        self.fail = fail

    async def __call__(self, batch: ChunkBatch) -> None:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay)
            if self.fail:
                raise RuntimeError("workflow gone")
            self.batches.append(batch)
        finally:
            self.in_flight -= 1


async def test_answer_within_first_window_sends_nothing() -> None:
    send = Recorder()
    pub = ChunkPublisher(send, attempt=1, interval=0.2)
    for word in ["a", "b", "c"]:
        pub.add(word)
    assert await pub.finish() == (0, "abc")
    assert send.batches == [] and pub.signals == 0


async def test_long_stream_is_batched_with_one_signal_in_flight() -> None:
    send = Recorder(delay=0.03)
    pub = ChunkPublisher(send, attempt=3, interval=0.05)
    for i in range(100):
        pub.add(f"{i},")
        await asyncio.sleep(0.005)
    offset, tail = await pub.finish()
    sent = "".join(b.text for b in send.batches)
    assert sent + tail == "".join(f"{i}," for i in range(100))
    assert offset == len(sent)
    assert send.max_in_flight == 1
    assert 2 <= len(send.batches) <= 15  # ~0.5 s of tokens at >= 80 ms per signal
    assert all(b.attempt == 3 for b in send.batches)
    offsets = [b.offset for b in send.batches]
    assert offsets == sorted(offsets) and offsets[0] == 0


async def test_failed_signal_keeps_text_for_the_result() -> None:
    send = Recorder(fail=True)
    pub = ChunkPublisher(send, attempt=1, interval=0.01)
    pub.add("kept ")
    await asyncio.sleep(0.05)
    pub.add("text")
    assert await pub.finish() == (0, "kept text")


async def test_flush_delivers_everything_now() -> None:
    send = Recorder()
    pub = ChunkPublisher(send, attempt=1, interval=10.0)
    pub.add("partial ")
    pub.add("answer")
    await pub.flush(timeout=1.0)
    assert [b.text for b in send.batches] == ["partial answer"]
