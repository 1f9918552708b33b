"""Which provider batches hold a running batch's tasks, and how far they are.

Tasks with batch delivery wait for hours without a token of progress, so the
batch's progress says what their provider batches do instead (validating, in
progress, n of m done). Asked only when some task takes a provider batch, and
kept cheap whatever the file's size: every :data:`WATCH_INTERVAL` seconds, at
most :data:`SAMPLE` open tasks not yet placed are asked which provider-batch
workflow holds them, and each such workflow not yet ended is asked its state.
Both are queries, which write nothing to any history; a provider batch holds
thousands of tasks, so that is a handful of queries per interval.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable

from temporalio.client import Client

from ..client._describe import ProviderBatchInfo, batch_of, provider_batch_state

#: Seconds between two looks at the provider batches.
WATCH_INTERVAL = 2.0
#: Open tasks asked per look for the provider batch holding them.
SAMPLE = 3


class ProviderBatchWatch:
    """The provider batches of a batch's open tasks, refreshed by :meth:`watch`.

    Args:
        client: the Temporal client the tasks were submitted with.
        open_tasks: the ids of the open tasks that take a provider batch.
        on_change: given :attr:`states` after a look that changed them.
    """

    def __init__(
        self,
        client: Client,
        open_tasks: Callable[[], Iterable[str]],
        on_change: Callable[[tuple[ProviderBatchInfo, ...]], None],
    ) -> None:
        self._client = client
        self._open_tasks = open_tasks
        self._on_change = on_change
        self._batches: dict[str, ProviderBatchInfo | None] = {}
        self._placed: set[str] = set()
        self._asked: dict[str, float] = {}

    @property
    def states(self) -> tuple[ProviderBatchInfo, ...]:
        """The provider batches found so far, in the order they were found."""
        return tuple(info for info in self._batches.values() if info is not None)

    async def look(self) -> None:
        """Place a few open tasks, then refresh every provider batch not yet ended."""
        before = self.states
        unplaced = [t for t in self._open_tasks() if t not in self._placed]
        self._asked = {t: self._asked[t] for t in unplaced if t in self._asked}
        # The least recently asked first: a task still gathering does not starve the rest.
        unplaced.sort(key=lambda t: self._asked.get(t, float("-inf")))
        for task_id in unplaced[:SAMPLE]:
            self._asked[task_id] = time.monotonic()
            joined = await batch_of(self._client, task_id)
            if joined is not None:
                self._placed.add(task_id)
                self._asked.pop(task_id, None)
                self._batches.setdefault(joined.batch_workflow_id, None)
        for workflow_id, info in list(self._batches.items()):
            if info is None or info.status != "ended":
                self._batches[workflow_id] = (
                    await provider_batch_state(self._client, workflow_id) or info
                )
        if self.states != before:
            self._on_change(self.states)

    async def watch(self) -> None:
        """Look every :data:`WATCH_INTERVAL` seconds, until cancelled."""
        while True:
            await self.look()
            await asyncio.sleep(WATCH_INTERVAL)
