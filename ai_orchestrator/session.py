"""The local stack behind ``run`` and ``dev``: use what is there, start what is not.

If Temporal answers at the configured address it is used; if not, and the
address is local, an embedded dev server is started on it with its SQLite file
in the data directory, so tasks outlive the command. A worker is started
unless one already polls the task queue. With no provider configured, the
worker talks to the built-in simulator, and the caller is told so.
"""

from __future__ import annotations

import asyncio
from contextlib import AbstractAsyncContextManager
from dataclasses import replace
from pathlib import Path
from types import TracebackType

from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client
from temporalio.worker import Worker

from .client import TaskClient
from .config import ConfigError, ProviderSettings, data_home, task_queue, temporal_connect_config
from .converter import data_converter_from_env
from .devserver import DevServer
from .metrics import prometheus_runtime
from .providers._config import configured as configured_vendors
from .providers._config import simulated as simulated_providers
from .simulator import Simulator
from .worker import running, until_signalled

_LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", "[::1]"}


def _split(target: str) -> tuple[str, int]:
    host, _, port = target.rpartition(":")
    return host or "localhost", int(port or 7233)


async def worker_polling(client: Client, queue: str) -> bool:
    """Whether some worker polls ``queue`` for provider calls right now."""
    response = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=client.namespace,
            task_queue=TaskQueue(name=queue),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
        )
    )
    return bool(response.pollers)


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

    async def _start_server(self) -> None:
        host, port = _split(self.target)
        if host not in _LOCAL_HOSTS:
            raise ConfigError(f"cannot reach Temporal at {self.target}")
        self.server = DevServer(
            db_file=self.db_file,
            host="127.0.0.1",
            port=port,
            ui_port=self._ui_port,
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
            if self.server is None and await worker_polling(self.client, self.task_queue):
                self.notes.append(f"Using Temporal at {self.target} and its running worker(s)")
                return self
            await self._start_worker(self.client)
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        return self

    async def _start_worker(self, client: Client) -> None:
        provider = ProviderSettings.from_env()
        options: dict[str, object] = {}
        if not provider.configured and not configured_vendors():
            self.simulator = Simulator(tokens_per_second=self._sim_rate)
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
        model = self.provider.default_model if self.provider else "gpt-4o-mini"
        return TaskClient(self.client, task_queue=self.task_queue, default_model=model)

    async def wait_for_signal(self) -> None:
        await until_signalled()
