"""The local stack behind ``run`` and ``dev``: use what is there, start what is not.

If Temporal answers at the configured address it is used; if not, and the
address is local, an embedded dev server is started on it with its SQLite file
in the data directory, so tasks outlive the command (its Web UI on 8233, or on
a free port when 8233 is taken: another dev server, a second ``run``). A worker
is started unless a live one already polls the task queue: the server keeps
listing the pollers of a worker that was killed for minutes, so a poller whose
process is gone (same host) or that has not polled for longer than a long poll
lasts does not count, and the caller is told which it was. With no provider
configured, the worker talks to the built-in simulator, and the caller is told so.
"""

from __future__ import annotations

import asyncio
import os
import socket
from contextlib import AbstractAsyncContextManager
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import TracebackType

from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import PollerInfo, TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client
from temporalio.worker import Worker

from ..client import TaskClient
from ..config import (
    DEFAULT_MODEL,
    ConfigError,
    ProviderSettings,
    data_home,
    task_queue,
    temporal_connect_config,
)
from ..config import configured as configured_vendors
from ..metrics import prometheus_runtime
from ..payloads.converter import data_converter_from_env
from ..providers._config import simulated as simulated_providers
from ..simulator import Simulator
from ..worker import running, until_signalled
from .devserver import DevServer, free_port, port_open

_LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", "[::1]"}

#: Tokens in a simulated answer when the task sets no smaller ``max_tokens``. At
#: 40 tokens/s an answer streams for 3 s: long enough to watch, and to cancel once
#: its first text arrived (the README's example) before it is over, since an
#: attempt hears of a cancel only at its next heartbeat (about a second).
SIMULATED_ANSWER_TOKENS = 120


def _split(target: str) -> tuple[str, int]:
    host, _, port = target.rpartition(":")
    return host or "localhost", int(port or 7233)


#: A live worker renews its poll at least this often: a long poll lasts about a
#: minute (then the server answers empty and the worker polls again).
POLL_RENEWED_WITHIN = timedelta(seconds=90)


def poller_alive(poller: PollerInfo, now: datetime | None = None) -> bool:
    """Whether ``poller`` can still take tasks, as far as this host can tell.

    The server lists a poller for minutes after its worker died. An SDK worker's
    identity is ``pid@host``: on this host, a pid that no longer runs is proof it
    is gone; elsewhere, a poll not renewed for :data:`POLL_RENEWED_WITHIN` is.
    """
    pid, _, host = poller.identity.partition("@")
    if host == socket.gethostname() and pid.isdigit() and not _process_exists(int(pid)):
        return False
    if not poller.HasField("last_access_time"):
        return True
    last = poller.last_access_time.ToDatetime(tzinfo=timezone.utc)
    return (now or datetime.now(timezone.utc)) - last <= POLL_RENEWED_WITHIN


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    return True


async def pollers(client: Client, queue: str) -> list[PollerInfo]:
    """The pollers the server lists for ``queue``'s provider calls, gone ones included."""
    response = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=client.namespace,
            task_queue=TaskQueue(name=queue),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
        )
    )
    return list(response.pollers)


async def worker_polling(client: Client, queue: str) -> bool:
    """Whether a live worker polls ``queue`` for provider calls right now."""
    return any(poller_alive(p) for p in await pollers(client, queue))


class LocalStack:
    def __init__(
        self,
        *,
        data_dir: str | Path | None = None,
        port: int | None = None,
        ui_port: int | None = 8233,
        force_server: bool = False,
        simulator_tokens_per_second: float = 40.0,
        metrics_address: str | None = None,
    ) -> None:
        self._config = temporal_connect_config()
        if metrics_address:
            self._config["runtime"] = prometheus_runtime(metrics_address)
        if port is not None:
            self._config["target_host"] = f"localhost:{port}"
        self.target: str = self._config["target_host"]
        self.db_file = Path(data_dir or data_home()) / "temporal.db"
        self._ui_port = ui_port
        self._force_server = force_server
        self._sim_rate = simulator_tokens_per_second
        self.task_queue = task_queue()
        self.server: DevServer | None = None
        self.simulator: Simulator | None = None
        self.worker: Worker | None = None
        self._worker_cm: AbstractAsyncContextManager[Worker] | None = None
        self.client: Client | None = None
        self.provider: ProviderSettings | None = None
        self.notes: list[str] = []

    @property
    def ui_url(self) -> str:
        if self.server is not None and self.server.ui_url:
            return self.server.ui_url
        return "(the Web UI of your Temporal deployment)"

    @property
    def provider_description(self) -> str:
        if self.simulator is not None:
            return f"SIMULATOR at {self.simulator.base_url} (no OPENAI_API_KEY set)"
        if self.provider is None:
            return "the already running worker's"
        return self.provider.base_url or "OpenAI (https://api.openai.com/v1)"

    async def _connect(self, timeout: float) -> Client:
        return await asyncio.wait_for(
            Client.connect(data_converter=data_converter_from_env(), **self._config), timeout
        )

    def _free_ui_port(self) -> int | None:
        """The UI port asked for, or a free one if something already listens there."""
        if self._ui_port and port_open("127.0.0.1", self._ui_port):
            taken, port = self._ui_port, free_port()
            self.notes.append(
                f"Web UI port {taken} is in use (another Temporal dev server?); "
                f"this one's Web UI is on port {port}"
            )
            return port
        return self._ui_port

    async def _start_server(self) -> None:
        host, port = _split(self.target)
        if host not in _LOCAL_HOSTS:
            raise ConfigError(f"cannot reach Temporal at {self.target}")
        self.server = DevServer(
            db_file=self.db_file,
            host="127.0.0.1",
            port=port,
            ui_port=self._free_ui_port(),
            log_file=self.db_file.parent / "temporal.log",
        )
        await self.server.start()
        self.notes.append(
            f"Started embedded Temporal at {self.target} (data: {self.db_file}, "
            f"Web UI: {self.server.ui_url})"
        )

    async def __aenter__(self) -> LocalStack:
        try:
            if self._force_server:
                await self._start_server()
                self.client = await self._connect(15)
            else:
                try:
                    self.client = await self._connect(3)
                except Exception:
                    await self._start_server()
                    self.client = await self._connect(15)
            if self.server is None and await self._use_running_worker(self.client):
                return self
            await self._start_worker(self.client)
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        return self

    async def _use_running_worker(self, client: Client) -> bool:
        """Whether a live worker serves the queue (else say why one is started here)."""
        listed = await pollers(client, self.task_queue)
        live = [p for p in listed if poller_alive(p)]
        if live:
            self.notes.append(
                f"Using Temporal at {self.target} and its running worker(s) on task queue "
                f"{self.task_queue!r} ({', '.join(p.identity for p in live)})"
            )
            return True
        gone = f" (gone: {', '.join(p.identity for p in listed)})" if listed else ""
        self.notes.append(
            f"Using Temporal at {self.target}; no live worker polls task queue "
            f"{self.task_queue!r}{gone}, so this command runs one until it ends"
        )
        return False

    async def _start_worker(self, client: Client) -> None:
        provider = ProviderSettings.from_env()
        options: dict[str, object] = {}
        if not provider.configured and not configured_vendors():
            self.simulator = Simulator(
                tokens_per_second=self._sim_rate, default_tokens=SIMULATED_ANSWER_TOKENS
            )
            await self.simulator.start()
            provider = replace(provider, base_url=self.simulator.base_url, api_key="simulator")
            options["providers"] = simulated_providers(self.simulator.url)
        self.provider = provider
        self._worker_cm = running(client, task_queue=self.task_queue, provider=provider, **options)
        self.worker = await self._worker_cm.__aenter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._worker_cm is not None:
            worker_cm, self._worker_cm, self.worker = self._worker_cm, None, None
            await worker_cm.__aexit__(None, None, None)
        if self.simulator is not None:
            await self.simulator.stop()
        if self.server is not None:
            await self.server.stop()

    def task_client(self) -> TaskClient:
        if self.client is None:
            raise RuntimeError("LocalStack is not started")
        model = self.provider.default_model if self.provider else DEFAULT_MODEL
        return TaskClient(self.client, task_queue=self.task_queue, default_model=model)

    async def wait_for_signal(self) -> None:
        await until_signalled()
