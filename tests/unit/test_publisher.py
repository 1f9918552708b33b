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


class Flaky(Recorder):
    """Fails its first ``failures`` sends with a passing error, then delivers."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    async def __call__(self, batch: ChunkBatch) -> None:
        if self.failures:
            self.failures -= 1
            raise RuntimeError("server restarting")
        await super().__call__(batch)


async def test_a_passing_signal_error_is_retried_not_given_up(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """One transient failure must not silence the live channel for the rest of the attempt."""
    monkeypatch.setattr("ai_orchestrator.activities._publisher._RETRY_FIRST", 0.01)
    send = Flaky(failures=2)
    pub = ChunkPublisher(send, attempt=1, interval=0.01, run_id="r", generation=1)
    pub.add("first ")
    await asyncio.sleep(0.2)
    pub.add("second")
    await asyncio.sleep(0.2)
    offset, tail = await pub.finish()
    assert "".join(b.text for b in send.batches) + tail == "first second"
    assert send.batches[0].text.startswith("first") and offset > 0
    assert all(b.run_id == "r" and b.generation == 1 for b in send.batches)


async def test_signals_stop_at_the_runs_budget_and_text_goes_to_the_result() -> None:
    send = Recorder()
    pub = ChunkPublisher(send, attempt=1, interval=0.01, max_signals=2)
    for i in range(20):
        pub.add(f"{i},")
        await asyncio.sleep(0.02)
    offset, tail = await pub.finish()
    assert pub.signals == 2 and len(send.batches) == 2
    assert "".join(b.text for b in send.batches) + tail == "".join(f"{i}," for i in range(20))
    assert offset == sum(len(b.text) for b in send.batches)


async def test_final_flush_carries_the_ledger_even_without_text() -> None:
    from ai_orchestrator.messages import AttemptBill, Ledger

    send = Recorder()
    pub = ChunkPublisher(send, attempt=2, interval=10.0)
    ledger = Ledger(attempts=[AttemptBill(attempt=1, completion_tokens=5, outcome="failed")])
    await pub.flush(timeout=1.0, ledger=ledger)
    assert len(send.batches) == 1 and send.batches[0].ledger == ledger
