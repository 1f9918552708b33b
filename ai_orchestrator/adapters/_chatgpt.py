"""ChatGPT (any OpenAI-compatible server) called directly, in this process.

This is the plans' in-process adapter: quick to use, nothing durable. Tasks
live in this process's memory and die with it; for tasks that must survive,
use :class:`ai_orchestrator.TaskClient`. The SDK's own retries are off and
tenacity retries whole attempts, so there is one retry layer on this path.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from openai import AsyncOpenAI, OpenAI

from ..config import DEFAULT_MODEL
from ..core import Platform, Result, Task, TaskStatus
from ..errors import IncompleteStreamError, classify, redact
from ..pricing import PricingTable
from ..providers._tls import openai_http_client
from ..providers.openai_chat import ChatStream, request_params
from ..retry import retry_on_rate_limit
from ..streaming import PrefixGuard
from ._base import AsyncBasePlatformAdapter, BasePlatformAdapter

_CAPABILITIES = [
    "OpenAI API integration",
    "Streaming responses",
    "Token tracking",
    "Retry on rate limits",
]


@dataclass
class _Live:
    """What a running in-process task has produced so far."""

    task: Task
    attempt: int = 0
    text: list[str] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    job: asyncio.Task[Result] | None = None

    def notify(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()


def _usage_result(task: Task, stream: ChatStream, pricing: PricingTable, started: float) -> Result:
    usage = stream.final_usage()
    cost = pricing.cost(stream.model, usage.prompt_tokens, usage.completion_tokens)
    return Result(
        task=task,
        platform=Platform.CHATGPT,
        success=True,
        status=TaskStatus.COMPLETED,
        tokens_used=usage.total_tokens,
        cost=cost or 0.0,
        duration_seconds=time.monotonic() - started,
        metadata={
            "model": stream.model,
            "input_tokens": usage.prompt_tokens,
            "output_tokens": usage.completion_tokens,
            "usage_estimated": usage.estimated,
            "cost_known": cost is not None,
            "finish_reason": stream.finish_reason,
        },
    )


class AsyncChatGPTAdapter(AsyncBasePlatformAdapter):
    """Async adapter for ChatGPT via the OpenAI API (or any compatible server).

    Args:
        api_key: defaults to ``OPENAI_API_KEY``.
        model: default model when a task names none.
        timeout: per-request timeout in seconds.
        base_url: defaults to ``OPENAI_BASE_URL``, else OpenAI.
        pricing: per-model prices; a strict table rejects unknown models.
        max_attempts: tenacity attempts per task.
    """

    def __init__(
        self,
        api_key: str | None = None,
        model: str = DEFAULT_MODEL,
        timeout: float = 60.0,
        *,
        base_url: str | None = None,
        pricing: PricingTable | None = None,
        max_attempts: int = 5,
    ) -> None:
        super().__init__()
        self._api_key = api_key or os.environ.get("OPENAI_API_KEY")
        self._base_url = base_url or os.environ.get("OPENAI_BASE_URL")
        self._model = model
        self._timeout = timeout
        self._pricing = pricing or PricingTable()
        self._max_attempts = max_attempts
        self._client: AsyncOpenAI | None = None
        self._pending_tasks: dict[str, _Live] = {}

    async def __aenter__(self) -> AsyncChatGPTAdapter:
        if not self._api_key:
            raise ValueError(
                "OPENAI_API_KEY not set: pass api_key= or set the environment variable"
            )
        self._client = AsyncOpenAI(
            api_key=self._api_key,
            base_url=self._base_url,
            timeout=self._timeout,
            max_retries=0,
            http_client=openai_http_client(),
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for live in self._pending_tasks.values():
            if live.job is not None and not live.job.done():
                live.job.cancel()
        if self._client is not None:
            await self._client.close()
            self._client = None

    @property
    def is_implemented(self) -> bool:
        return bool(self._api_key)

    @property
    def implementation_status(self) -> str:
        return "working" if self._api_key else "unavailable"

    def get_adapter_status(self) -> dict[str, Any]:
        return {
            "name": "ChatGPT (Async)",
            "is_implemented": self.is_implemented,
            "status": self.implementation_status,
            "model": self._model,
            "capabilities": list(_CAPABILITIES),
            "requirements": [f"OPENAI_API_KEY {'(set)' if self._api_key else '(missing)'}"],
        }

    def _require_client(self) -> AsyncOpenAI:
        if self._client is None:
            raise RuntimeError("Client not initialized. Use 'async with' context manager.")
        return self._client

    def _params(self, task: Task) -> dict[str, Any]:
        params = request_params(task, self._model)
        self._pricing.check(params["model"])
        return params

    async def submit_task(self, task: Task) -> str:
        params = self._params(task)
        task_id = task.task_id or self._generate_task_id(task)
        if task_id in self._pending_tasks:
            return task_id
        task.task_id = task_id
        live = _Live(task=task)
        self._pending_tasks[task_id] = live
        live.job = asyncio.create_task(self._execute_internal(task, params, live))
        return task_id

    async def get_status(self, task_id: str) -> TaskStatus:
        live = self._pending_tasks.get(task_id)
        if live is None or live.job is None:
            return TaskStatus.UNKNOWN
        job = live.job
        if not job.done():
            return TaskStatus.RUNNING if live.attempt else TaskStatus.PENDING
        if job.cancelled():
            return TaskStatus.CANCELLED
        if job.exception() is not None:
            return TaskStatus.FAILED
        return job.result().status

    def _unknown(self, task_id: str) -> Result:
        return Result(
            task=Task(prompt=f"<unknown task {task_id}>"),
            success=False,
            status=TaskStatus.UNKNOWN,
            error=f"Unknown task_id: {task_id}",
        )

    async def get_result(self, task_id: str, timeout: float | None = 300) -> Result:
        live = self._pending_tasks.get(task_id)
        if live is None or live.job is None:
            return self._unknown(task_id)
        try:
            return await self._wait_with_timeout(live.job, timeout)
        except asyncio.TimeoutError:
            return Result(
                task=live.task,
                success=False,
                status=TaskStatus.FAILED,
                error=f"Task timed out after {timeout}s",
                partial_output="".join(live.text),
            )
        except asyncio.CancelledError:
            if not live.job.cancelled():
                raise  # our caller was cancelled, not the task
            return Result(
                task=live.task,
                success=False,
                status=TaskStatus.CANCELLED,
                error="cancelled",
                partial_output="".join(live.text),
            )

    async def stream_result(self, task_id: str) -> AsyncIterator[str]:
        """Live chunks of a submitted task, from its start; ends when the task ends.

        Raises:
            StreamRestartedError: a retry produced text that contradicts what was streamed.
        """
        live = self._pending_tasks.get(task_id)
        if live is None or live.job is None:
            return
        guard, attempt, seen = PrefixGuard(), live.attempt, 0
        while True:
            changed = live.changed
            if live.attempt != attempt:
                attempt, seen = live.attempt, 0
                guard.restart(attempt)
            while seen < len(live.text):
                fresh = guard.feed(live.text[seen])
                seen += 1
                if fresh:
                    yield fresh
            if live.job.done():
                return
            await changed.wait()

    async def cancel_task(self, task_id: str) -> bool:
        live = self._pending_tasks.get(task_id)
        if live is None or live.job is None or live.job.done():
            return False
        live.job.cancel()
        await asyncio.wait({live.job})
        return True

    async def _execute_internal(
        self, task: Task, params: dict[str, Any] | None = None, live: _Live | None = None
    ) -> Result:
        """Run one task to a Result, retrying whole attempts; errors become failed Results."""
        client = self._require_client()
        params = params or self._params(task)
        live = live or _Live(task=task)
        started = time.monotonic()

        @retry_on_rate_limit(max_attempts=self._max_attempts)
        async def attempt() -> Result:
            live.attempt += 1
            live.text = []
            live.notify()
            async with ChatStream(client, params) as stream:
                async for delta in stream:
                    live.text.append(delta)
                    live.notify()
            result = _usage_result(task, stream, self._pricing, started)
            result.output = "".join(live.text)
            return result

        try:
            return await attempt()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            return Result(
                task=task,
                platform=Platform.CHATGPT,
                success=False,
                status=TaskStatus.FAILED,
                error=redact(classify(exc).message, self._api_key),
                duration_seconds=time.monotonic() - started,
                partial_output="".join(live.text) or None,
            )
        finally:
            live.notify()

    async def execute_streaming(self, task: Task) -> AsyncIterator[str]:
        """Stream one task's answer directly; opening the stream is retried, not the text.

        Raises:
            IncompleteStreamError: the provider stopped without a finish reason.
        """
        client = self._require_client()
        params = self._params(task)

        @retry_on_rate_limit(max_attempts=self._max_attempts)
        async def open_stream() -> ChatStream:
            stream = ChatStream(client, params)
            return await stream.__aenter__()

        stream = await open_stream()
        async with stream:
            async for delta in stream:
                yield delta


class ChatGPTAdapter(BasePlatformAdapter):
    """The synchronous adapter: one blocking call per task."""

    def __init__(
        self,
        api_key: str | None = None,
        model: str = DEFAULT_MODEL,
        timeout: float = 60.0,
        *,
        base_url: str | None = None,
        pricing: PricingTable | None = None,
        max_attempts: int = 5,
    ) -> None:
        self._api_key = api_key or os.environ.get("OPENAI_API_KEY")
        self._base_url = base_url or os.environ.get("OPENAI_BASE_URL")
        self._model = model
        self._timeout = timeout
        self._pricing = pricing or PricingTable()
        self._max_attempts = max_attempts

    @property
    def is_implemented(self) -> bool:
        return bool(self._api_key)

    @property
    def implementation_status(self) -> str:
        return "working" if self._api_key else "unavailable"

    def get_adapter_status(self) -> dict[str, Any]:
        return {
            "name": "ChatGPT",
            "is_implemented": self.is_implemented,
            "status": self.implementation_status,
            "model": self._model,
            "capabilities": ["OpenAI API integration", "Token tracking", "Retry on rate limits"],
            "requirements": [f"OPENAI_API_KEY {'(set)' if self._api_key else '(missing)'}"],
        }

    def execute(self, task: Task) -> Result:
        started = time.monotonic()
        if not self._api_key:
            return Result(task=task, success=False, error="OPENAI_API_KEY not set")
        params = request_params(task, self._model)
        self._pricing.check(params["model"])
        client = OpenAI(
            api_key=self._api_key, base_url=self._base_url, timeout=self._timeout, max_retries=0
        )

        @retry_on_rate_limit(max_attempts=self._max_attempts)
        def call() -> Any:
            response = client.chat.completions.create(**params)
            if not response.choices or response.choices[0].finish_reason is None:
                raise IncompleteStreamError("the provider's response has no finish reason")
            return response

        try:
            with client:
                response = call()
        except Exception as exc:
            return Result(
                task=task,
                success=False,
                error=redact(classify(exc).message, self._api_key),
                duration_seconds=time.monotonic() - started,
            )
        usage = response.usage
        prompt = usage.prompt_tokens if usage else 0
        completion = usage.completion_tokens if usage else 0
        cost = self._pricing.cost(params["model"], prompt, completion)
        return Result(
            task=task,
            output=response.choices[0].message.content or "",
            success=True,
            status=TaskStatus.COMPLETED,
            tokens_used=usage.total_tokens if usage else 0,
            cost=cost or 0.0,
            duration_seconds=time.monotonic() - started,
            metadata={
                "model": response.model or params["model"],
                "input_tokens": prompt,
                "output_tokens": completion,
                "cost_known": cost is not None,
                "finish_reason": response.choices[0].finish_reason,
            },
        )
