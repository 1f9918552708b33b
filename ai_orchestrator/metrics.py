"""Our metrics, exported on the worker's Prometheus endpoint beside Temporal's own.

They go through Temporal's metric meter, so one endpoint serves both and the
SDK's rules apply (workflow metrics are not re-emitted during replay). Names:
``ai_orchestrator_tasks`` (by status), ``ai_orchestrator_tokens`` (by
direction, model and platform), ``ai_orchestrator_cost_microusd`` (by model and platform; integer
micro-dollars because counters are integers), ``ai_orchestrator_rate_limited``
(provider 429s that will be retried) and ``ai_orchestrator_time_to_first_chunk``
(seconds).
"""

from __future__ import annotations

from temporalio.common import MetricMeter
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

ENV_METRICS = "AI_ORCHESTRATOR_METRICS_ADDRESS"


def prometheus_runtime(bind_address: str) -> Runtime:
    """A Temporal runtime serving ``http://<bind_address>/metrics``."""
    return Runtime(
        telemetry=TelemetryConfig(
            metrics=PrometheusConfig(bind_address=bind_address, durations_as_seconds=True)
        )
    )


class TaskMetrics:
    """Instruments created once per meter (creating them is not free)."""

    def __init__(self, meter: MetricMeter) -> None:
        self.tasks = meter.create_counter("ai_orchestrator_tasks", "Tasks finished, by status")
        self.tokens = meter.create_counter(
            "ai_orchestrator_tokens", "Tokens, by direction", "tokens"
        )
        self.cost = meter.create_counter(
            "ai_orchestrator_cost_microusd", "Provider cost in micro-dollars", "microusd"
        )
        self.rate_limited = meter.create_counter(
            "ai_orchestrator_rate_limited", "Provider rate-limit responses (429) to be retried"
        )
        self.first_chunk = meter.create_histogram_float(
            "ai_orchestrator_time_to_first_chunk", "From request to first streamed text", "s"
        )
        self.capacity_wait = meter.create_histogram_float(
            "ai_orchestrator_capacity_wait",
            "Time a call waited for room in its provider's quota before calling",
            "s",
        )
        self.quota_tokens = meter.create_counter(
            "ai_orchestrator_quota_tokens",
            "Quota tokens reserved before calls and used by them, by kind",
            "tokens",
        )
        self.budget_refusals = meter.create_counter(
            "ai_orchestrator_budget_refusals", "Calls stopped or refused by max_cost_usd"
        )

    def completion(
        self,
        model: str,
        prompt_tokens: int,
        completion_tokens: int,
        cost: float,
        platform: str = "chatgpt",
    ) -> None:
        labels = {"model": model, "platform": platform}
        self.tokens.add(prompt_tokens, {"direction": "input", **labels})
        self.tokens.add(completion_tokens, {"direction": "output", **labels})
        self.cost.add(round(cost * 1_000_000), labels)
