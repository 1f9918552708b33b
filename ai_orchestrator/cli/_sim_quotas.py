"""The simulator's provider quotas as command-line options, for ``simulator`` and ``run``.

One spelling for both commands so a quota tried offline with ``run`` is the
same flag a long-running ``simulator`` takes; ``run`` prefixes them with
``--sim-`` because there they configure the stand-in provider, not the task.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from ..simulator import Quotas, Simulator


def _model_limits(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> dict[str, Any]:
    from ..simulator import parse_model_limits

    parsed: dict[str, Any] = {}
    for spec in values:
        try:
            model, limits = parse_model_limits(spec)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from exc
        parsed[model] = limits
    return parsed


def quota_options(prefix: str = "") -> Callable[[Any], Any]:
    """The four quota options, each spelled ``--{prefix}NAME``."""
    options = [
        click.option(
            f"--{prefix}rpm",
            "quota_rpm",
            type=click.IntRange(min=1),
            default=None,
            help="Simulator: requests per minute per API key and model (token bucket).",
        ),
        click.option(
            f"--{prefix}tpm",
            "quota_tpm",
            type=click.IntRange(min=1),
            default=None,
            help="Simulator: tokens per minute per API key and model; a request is charged "
            "its prompt plus max_tokens (4096 when absent) on arrival.",
        ),
        click.option(
            f"--{prefix}model-quota",
            "quota_models",
            multiple=True,
            callback=_model_limits,
            metavar="MODEL:rpm=N,tpm=N",
            help="Simulator: another rpm/tpm for one model (repeatable).",
        ),
        click.option(
            f"--{prefix}refund-unused",
            "quota_refund",
            is_flag=True,
            help="Simulator: give back the max_tokens an answer did not use, once it ends.",
        ),
    ]

    def decorate(fn: Any) -> Any:
        for option in reversed(options):
            fn = option(fn)
        return fn

    return decorate


def quotas_from(
    quota_rpm: int | None,
    quota_tpm: int | None,
    quota_models: dict[str, Any],
    quota_refund: bool,
) -> Quotas | None:
    """The options as a :class:`Quotas`, or None when no limit was asked for."""
    if quota_rpm is None and quota_tpm is None and not quota_models:
        return None
    from ..simulator import Quotas

    return Quotas(rpm=quota_rpm, tpm=quota_tpm, models=quota_models, refund_unused=quota_refund)


def describe(quotas: Quotas) -> str:
    """One line for the terminal: what each key and model may use."""

    def limits(rpm: int | None, tpm: int | None) -> str:
        return ", ".join(f"{n} {v}" for n, v in (("rpm", rpm), ("tpm", tpm)) if v is not None)

    parts = [limits(quotas.rpm, quotas.tpm) or "no default limit"]
    parts += [f"{model}: {limits(m.rpm, m.tpm)}" for model, m in quotas.models.items()]
    refund = ", unused max_tokens refunded" if quotas.refund_unused else ""
    return f"{'; '.join(parts)} per API key and model{refund}"


def usage_line(sim: Simulator) -> str:
    """What the quotas did to this run, e.g. ``3 of 5 responses were 429``."""
    usage = sim.quota_usage
    answered = sum(u.requests + u.rate_limited for u in usage)
    reserved = sum(u.tokens_reserved for u in usage)
    used = sum(u.tokens_used for u in usage)
    return (
        f"simulator: {sim.rate_limited} of {answered} responses were 429; "
        f"tokens reserved {reserved}, used {used}"
    )
