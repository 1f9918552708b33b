"""The one rule for assembling streamed output, used by the workflow and the client.

Chunks arrive as batches tagged with the stream that produced them: the run
that scheduled the provider call and its generation (the attempt that started
generating). A batch of another run is ignored: an operator reset re-applies
the old run's signals to the new run, and they must not splice into its text.
A batch of a newer generation means the provider call started over, so the
older text is dropped rather than mixed in; batches of an older generation
arrive late and are ignored; overlapping batches are deduplicated by offset.
The workflow runs this on live signals, the client runs it over recorded
history (to recover the partial output of a cancelled run), so both agree.
"""

from __future__ import annotations

from .messages import AttemptBill, ChunkBatch, Ledger


class OutputBuffer:
    """Args:
    run_id: the run whose output this is; batches tagged with another run are
        ignored. None accepts every batch (older histories carry no run id).
    """

    def __init__(self, run_id: str | None = None) -> None:
        self.run_id = run_id
        #: The stream (generation) whose text this is; 0 before any text.
        self.attempt = 0
        self.chunks = 0
        self.restarts = 0
        #: The newest account of what the provider billed, from this run's batches.
        self.ledger: Ledger | None = None
        #: Each attempt's own bill, as it closed it, from any batch: a later account
        #: may only have an estimate of an attempt that ran on unseen (see
        #: :meth:`Ledger.with_late_bills`).
        self._own_bills: dict[tuple[int, int], AttemptBill] = {}
        self._parts: list[str] = []
        self._length = 0
        self._joined: str | None = ""

    @property
    def own_bills(self) -> Ledger:
        """Every attempt's own bill seen in this run's batches."""
        return Ledger(attempts=list(self._own_bills.values()))

    def _keep_bills(self, ledger: Ledger) -> None:
        for bill in ledger.attempts:
            if bill.outcome != "lost" and bill.response_id is None:
                self._own_bills.setdefault((bill.attempt, bill.generation), bill)

    @property
    def length(self) -> int:
        return self._length

    @property
    def text(self) -> str:
        if self._joined is None:
            self._joined = "".join(self._parts)
            self._parts = [self._joined]
        return self._joined

    def apply(self, batch: ChunkBatch) -> bool:
        """Fold one batch in; returns False if it was stale, of another run, or left a gap."""
        if batch.run_id is not None and self.run_id is not None and batch.run_id != self.run_id:
            return False
        if batch.ledger is not None:
            self._keep_bills(batch.ledger)
        if batch.bill_only:
            if batch.stream < self.attempt:
                return False  # a late attempt's word: its own bill is kept above, no more
            if batch.ledger is not None:
                self.ledger = batch.ledger
            return True
        stream = batch.stream
        if stream < self.attempt:
            return False
        if batch.ledger is not None:
            self.ledger = batch.ledger
        if stream > self.attempt:
            if self._length or self.attempt:
                self.restarts += 1
            self.attempt = stream
            self._parts, self._length, self._joined, self.chunks = [], 0, "", 0
        if batch.offset > self._length:
            return False
        fresh = batch.text[self._length - batch.offset :]
        if fresh:
            self._parts.append(fresh)
            self._length += len(fresh)
            self._joined = None
        self.chunks += batch.chunks
        return True
